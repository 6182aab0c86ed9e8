//! A reqwest client that authenticates every request.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::{Error, Signer};

/// Which header carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenHeader {
    /// `x-token: <jwt>`, as the Node recipe sends it (the default).
    #[default]
    XToken,
    /// `Authorization: Bearer <jwt>` (RFC 6750).
    Bearer,
}

/// An HTTP client that adds an appauth token to every request and, when the
/// server answers 401, retries once with a freshly signed token (the server
/// may have just rotated keys, or the clock may have jumped).
///
/// ```no_run
/// # async fn demo() -> Result<(), appauth_client::Error> {
/// use appauth_client::{AppAuthClient, Signer};
/// let signer = Signer::builder("orders-service").key_file("orders-service_private.pem").build()?;
/// let client = AppAuthClient::builder(signer).build()?;
/// let users = client.get("http://127.0.0.1:8080/users").send().await?.text().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AppAuthClient {
    http: reqwest::Client,
    signer: Arc<Signer>,
    header: TokenHeader,
    retry: RetryPolicy,
    /// A token signed fresh after a 401 and refused again: the server does
    /// not take this key (yet), so further 401s do not cost a signature each
    /// until the signer's token changes.
    refused_fresh: Arc<parking_lot::Mutex<Option<Arc<str>>>>,
}

/// Builds an [`AppAuthClient`].
#[derive(Debug)]
pub struct AppAuthClientBuilder {
    signer: Arc<Signer>,
    header: TokenHeader,
    http: Option<reqwest::Client>,
    ca_files: Vec<std::path::PathBuf>,
    timeouts: Timeouts,
    retry: RetryPolicy,
}

/// How long a call may take. Default: 5 s to connect, 30 s between reads,
/// 30 s in all; reqwest's own default is to wait forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To establish the connection (TCP and TLS).
    pub connect: Duration,
    /// Between two reads of the response.
    pub read: Duration,
    /// For the whole call, one attempt.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(30),
            total: Duration::from_secs(30),
        }
    }
}

/// When a call is tried again: idempotent methods (GET, HEAD, OPTIONS, PUT,
/// DELETE) whose body can be replayed, after a connection error, a 503 or a
/// 429, waiting what `Retry-After` asks (whole seconds) or a jittered,
/// doubling backoff; never more than `attempts` in all, and never waiting
/// past `budget` since the first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: never retry). Default 3.
    pub attempts: u32,
    /// The first backoff; each next one doubles, jittered by up to half.
    /// Default 200 ms.
    pub backoff: Duration,
    /// The longest time spent waiting to retry, over all attempts. Default 10 s.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_millis(200),
            budget: Duration::from_secs(10),
        }
    }
}

impl AppAuthClientBuilder {
    /// Sends the token in `Authorization: Bearer` or `x-token` (default).
    pub fn header(mut self, header: TokenHeader) -> Self {
        self.header = header;
        self
    }

    /// Uses a preconfigured reqwest client (timeouts, TLS roots, proxies).
    /// Its redirect policy is its own: give it [`same_origin_redirects`], or
    /// none, so that the token is never sent to another origin.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Connect, read and total timeouts ([`Timeouts::default`] unless set).
    /// Ignored with [`AppAuthClientBuilder::http_client`], whose timeouts are
    /// its own.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// When calls are tried again ([`RetryPolicy::default`] unless set).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Also trusts the CA certificates (PEM) in `path`, besides the system
    /// roots: for servers with an internal CA. Ignored with
    /// [`AppAuthClientBuilder::http_client`], whose TLS is its own.
    pub fn ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<AppAuthClient, Error> {
        let http = match self.http {
            Some(h) => h,
            None => {
                let t = self.timeouts;
                let mut builder = reqwest::Client::builder()
                    .redirect(same_origin_redirects())
                    .connect_timeout(t.connect)
                    .read_timeout(t.read)
                    .timeout(t.total);
                for path in &self.ca_files {
                    let pem = std::fs::read(path).map_err(|source| Error::ReadCa {
                        path: path.clone(),
                        source,
                    })?;
                    let certs =
                        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::BadCa {
                            path: path.clone(),
                            detail: e.to_string(),
                        })?;
                    if certs.is_empty() {
                        return Err(Error::BadCa {
                            path: path.clone(),
                            detail: "no PEM CERTIFICATE block found".into(),
                        });
                    }
                    for cert in certs {
                        builder = builder.add_root_certificate(cert);
                    }
                }
                builder.build()?
            }
        };
        Ok(AppAuthClient {
            http,
            signer: self.signer,
            header: self.header,
            retry: self.retry,
            refused_fresh: Arc::new(parking_lot::Mutex::new(None)),
        })
    }
}

/// A redirect policy that follows at most 10 redirects, and only within the
/// origin (scheme, host and port) of the request. reqwest's default drops
/// `Authorization` on a redirect to another host but would send `x-token`
/// along, and would follow `https` to `http`; here a redirect elsewhere is
/// not followed, and the caller gets the 3xx response itself.
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let from = attempt.previous().last().map(reqwest::Url::origin);
        if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else if from.is_some_and(|from| from != attempt.url().origin()) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

impl AppAuthClient {
    /// Starts building a client around `signer` (or an `Arc` of one).
    pub fn builder(signer: impl Into<Arc<Signer>>) -> AppAuthClientBuilder {
        AppAuthClientBuilder {
            signer: signer.into(),
            header: TokenHeader::default(),
            http: None,
            ca_files: Vec::new(),
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
        }
    }

    /// The underlying reqwest client, for anything this wrapper does not cover.
    pub fn inner(&self) -> &reqwest::Client {
        &self.http
    }

    /// The signer.
    pub fn signer(&self) -> &Arc<Signer> {
        &self.signer
    }

    /// A request to `url`, sent with a token by [`AuthedRequest::send`].
    pub fn request(&self, method: Method, url: impl reqwest::IntoUrl) -> AuthedRequest<'_> {
        AuthedRequest {
            client: self,
            idempotent: matches!(
                method,
                Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
            ),
            builder: self.http.request(method, url),
        }
    }

    /// `GET url`.
    pub fn get(&self, url: impl reqwest::IntoUrl) -> AuthedRequest<'_> {
        self.request(Method::GET, url)
    }

    /// `POST url`.
    pub fn post(&self, url: impl reqwest::IntoUrl) -> AuthedRequest<'_> {
        self.request(Method::POST, url)
    }

    fn authorize(&self, builder: RequestBuilder, token: &str) -> Result<RequestBuilder, Error> {
        Ok(match self.header {
            TokenHeader::XToken => builder.header(
                HeaderName::from_static(appauth_core::TOKEN_HEADER),
                header_value(token)?,
            ),
            TokenHeader::Bearer => {
                builder.header(AUTHORIZATION, header_value(&format!("Bearer {token}"))?)
            }
        })
    }
}

fn header_value(s: &str) -> Result<HeaderValue, Error> {
    // Tokens are base64url and dots, always a valid header value; a failure
    // here means a bug, reported rather than panicking.
    HeaderValue::from_str(s).map_err(|_| Error::TokenNotAHeaderValue)
}

/// A request being prepared; reqwest's builder methods are reachable through
/// [`AuthedRequest::with`].
#[derive(Debug)]
pub struct AuthedRequest<'c> {
    client: &'c AppAuthClient,
    /// Safe to send twice (RFC 9110 section 9.2.2), so safe to retry.
    idempotent: bool,
    builder: RequestBuilder,
}

impl AuthedRequest<'_> {
    /// Applies any reqwest builder method: headers, body, query, timeout.
    pub fn with(mut self, f: impl FnOnce(RequestBuilder) -> RequestBuilder) -> Self {
        self.builder = f(self.builder);
        self
    }

    /// Sends the request with a token. On 401, once more with a fresh token
    /// (when the body can be replayed, and at most once per refused key: a
    /// server that keeps refusing does not cost a signature per call). On a
    /// connection error, 503 or 429, an idempotent request is tried again as
    /// the client's [`RetryPolicy`] says.
    pub async fn send(self) -> Result<Response, Error> {
        let client = self.client;
        let idempotent = self.idempotent;
        let mut waited = Duration::ZERO;
        let mut attempt = 1;
        let mut builder = self.builder;
        loop {
            let again = builder.try_clone();
            let result = client.send_once(builder).await;
            let retry_after = match &result {
                Ok(r)
                    if r.status() == StatusCode::SERVICE_UNAVAILABLE
                        || r.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    Some(retry_after(r))
                }
                Ok(_) => return result,
                // A timeout spent the caller's patience already; a failure to
                // connect or a connection closed under a pooled request did not.
                Err(Error::Http(e)) if !e.is_timeout() && (e.is_connect() || e.is_request()) => {
                    None
                }
                Err(_) => return result,
            };
            let Some(next) = again.filter(|_| idempotent && attempt < client.retry.attempts) else {
                return result;
            };
            let wait = retry_after
                .flatten()
                .unwrap_or_else(|| jittered(client.retry.backoff * 2u32.pow(attempt - 1)));
            if waited + wait > client.retry.budget {
                return result;
            }
            tokio::time::sleep(wait).await;
            waited += wait;
            attempt += 1;
            builder = next;
        }
    }
}

impl AppAuthClient {
    /// One attempt, with the 401 retry.
    async fn send_once(&self, builder: RequestBuilder) -> Result<Response, Error> {
        let token = self.signer.token()?;
        let retry = builder.try_clone();
        let response = self.authorize(builder, &token)?.send().await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(retry) = retry else {
            return Ok(response);
        };
        if self.refused_fresh.lock().as_deref() == Some(&*token) {
            return Ok(response);
        }
        let fresh = self.signer.refresh_after_rejection(&token)?;
        let response = self.authorize(retry, &fresh)?.send().await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            *self.refused_fresh.lock() = Some(fresh);
        }
        Ok(response)
    }
}

/// `Retry-After` in whole seconds (the HTTP-date form is not followed: a
/// backoff is used instead), capped at a minute.
fn retry_after(response: &Response) -> Option<Duration> {
    let secs: u64 = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

/// `base` plus up to half again, so that many clients refused together do
/// not come back together.
fn jittered(base: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = aws_lc_rs::rand::fill(&mut byte);
    base + base.mul_f64(f64::from(byte[0]) / 255.0 / 2.0)
}
