//! A reqwest client that authenticates every request.

use std::sync::Arc;

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
}

/// Builds an [`AppAuthClient`].
#[derive(Debug)]
pub struct AppAuthClientBuilder {
    signer: Arc<Signer>,
    header: TokenHeader,
    http: Option<reqwest::Client>,
    ca_files: Vec<std::path::PathBuf>,
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
                let mut builder = reqwest::Client::builder().redirect(same_origin_redirects());
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
    builder: RequestBuilder,
}

impl AuthedRequest<'_> {
    /// Applies any reqwest builder method: headers, body, query, timeout.
    pub fn with(mut self, f: impl FnOnce(RequestBuilder) -> RequestBuilder) -> Self {
        self.builder = f(self.builder);
        self
    }

    /// Sends the request with a token; on 401, once more with a fresh token
    /// (when the body can be replayed).
    pub async fn send(self) -> Result<Response, Error> {
        let client = self.client;
        let token = client.signer.token()?;
        let retry = self.builder.try_clone();
        let response = client.authorize(self.builder, &token)?.send().await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(retry) = retry else {
            return Ok(response);
        };
        let fresh = client.signer.refresh_after_rejection(&token)?;
        Ok(client.authorize(retry, &fresh)?.send().await?)
    }
}
