//! `appauth-agent proxy`: the application's requests, forwarded with a token.

use std::sync::Arc;
use std::time::Duration;

use appauth_client::TokenHeader;
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;

use crate::body::{self, Idle, ProxyBody};
use crate::upstream::{Connector, Target};
use crate::{Keys, Metrics, error_body};
use appauth_core::drain::Drain;

/// Request bodies up to this size, of idempotent methods, are read before
/// sending so they can be sent again after a stale-token 401; larger ones
/// and all others stream through and are never retried.
pub const REPLAY_LIMIT: u64 = 64 * 1024;
/// A 401 whose body is at most this long is read to learn its reason.
const REFUSAL_BODY_LIMIT: u64 = 8 * 1024;
/// The reasons of a 401 that a freshly signed token can cure: the server
/// rotated or retired the key (`bad_signature`), learned of the app after
/// the token was cached (`unknown_app`), or the clock jumped (`expired`).
pub const STALE_REASONS: [&str; 3] = ["bad_signature", "unknown_app", "expired"];
/// Default for `--upstream-timeout`: the longest wait for a response head,
/// and for each next piece of a response body.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// How the proxy forwards.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where requests go.
    pub target: Target,
    /// Which header carries the token.
    pub header: TokenHeader,
    /// The wait for a response head, and between body pieces.
    pub timeout: Duration,
}

/// The forwarding proxy; one per process, shared by every connection.
#[derive(Debug)]
pub struct Proxy {
    keys: Arc<Keys>,
    settings: Settings,
    client: Client<Connector, ProxyBody>,
    metrics: Metrics,
    drain: Arc<Drain>,
    token_name: HeaderName,
    /// The current token as a header value, made once per token rather
    /// than once per request (a 600-byte value to check and copy).
    token_value: ArcSwapOption<(Arc<str>, HeaderValue)>,
}

impl Proxy {
    /// A proxy signing with `keys`, sending through `client`.
    pub fn new(
        keys: Arc<Keys>,
        settings: Settings,
        client: Client<Connector, ProxyBody>,
        metrics: Metrics,
        drain: Arc<Drain>,
    ) -> Arc<Self> {
        let token_name = match settings.header {
            TokenHeader::XToken => HeaderName::from_static(appauth_core::TOKEN_HEADER),
            TokenHeader::Bearer => header::AUTHORIZATION,
        };
        Arc::new(Self {
            keys,
            settings,
            client,
            metrics,
            drain,
            token_name,
            token_value: ArcSwapOption::empty(),
        })
    }

    /// `token` as the value of the token header (`Bearer ` prefixed for
    /// `Authorization`), marked sensitive.
    fn token_value(&self, token: &Arc<str>) -> Result<HeaderValue, Own> {
        if let Some(cached) = self.token_value.load().as_ref()
            && Arc::ptr_eq(&cached.0, token)
        {
            return Ok(cached.1.clone());
        }
        let value = match self.settings.header {
            TokenHeader::XToken => HeaderValue::from_str(token),
            TokenHeader::Bearer => HeaderValue::from_str(&format!("Bearer {token}")),
        };
        // Tokens are base64url and dots: never invalid as a header value.
        let mut value = value.map_err(|_| Own::NoKey)?;
        value.set_sensitive(true);
        self.token_value
            .store(Some(Arc::new((token.clone(), value.clone()))));
        Ok(value)
    }

    /// Answers one request of the application.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        let in_flight = self.drain.track();
        let mut response = match self.forward(req).await {
            Ok(r) => r,
            Err(refusal) => refusal.response(),
        };
        self.metrics.request(response.status().as_u16());
        if self.drain.is_draining() {
            // The application's keep-alive connection ends with this answer.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response.map(|body| body::boxed(body::Tracked::new(body, in_flight)))
    }

    async fn forward(&self, req: Request<Incoming>) -> Result<Response<ProxyBody>, Own> {
        if req.method() == Method::CONNECT {
            return Err(Own::BadRequest("connect_not_supported"));
        }
        let uri = self
            .settings
            .target
            .uri_of(req.uri())
            .ok_or(Own::BadRequest("not_origin_form"))?;
        // No key, no request: nothing leaves without a token.
        let token = self.keys.token().ok_or(Own::NoKey)?;
        let (parts, incoming) = req.into_parts();
        let method = parts.method;
        let mut headers = parts.headers;
        forward_headers_in_place(&mut headers, self.settings.header);
        headers.insert(self.token_name.clone(), self.token_value(&token)?);
        let replayable = is_idempotent(&method)
            && incoming
                .size_hint()
                .upper()
                .is_some_and(|n| n <= REPLAY_LIMIT);
        let (body, replay) = if !replayable {
            (body::boxed(incoming), None)
        } else if incoming.is_end_stream() {
            (body::empty(), Some(Bytes::new()))
        } else {
            let bytes = Limited::new(incoming, REPLAY_LIMIT as usize)
                .collect()
                .await
                .map_err(|_| Own::BadRequest("body_unreadable"))?
                .to_bytes();
            (body::full(bytes.clone()), Some(bytes))
        };
        let request = |headers: HeaderMap, body: ProxyBody| {
            let mut out = Request::new(body);
            *out.method_mut() = method.clone();
            *out.uri_mut() = uri.clone();
            // The pool picks HTTP/2 for a TLS upstream that offers it;
            // HTTP/2 from the application does not force it on the upstream.
            *out.version_mut() = Version::HTTP_11;
            *out.headers_mut() = headers;
            out
        };
        // Kept only when the request may be sent again.
        let first = match replay {
            Some(_) => headers.clone(),
            None => std::mem::take(&mut headers),
        };
        let response = self.send(request(first, body)).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(self.pass_back(response));
        }
        // A 401: read its reason when its body is declared small (appauth's
        // refusals are), and sign again when a fresh token can cure it. A
        // larger or undeclared body is not appauth's: passed back as is.
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_none_or(|n| n > REFUSAL_BODY_LIMIT) {
            return Ok(self.pass_back(response));
        }
        let (head, refusal) = response.into_parts();
        let refusal = refusal
            .collect()
            .await
            .map_err(|_| {
                self.metrics.upstream_error("body");
                Own::Upstream("body")
            })?
            .to_bytes();
        let fresh = stale_reason(&refusal)
            .then(|| self.keys.refresh_after_rejection(&token))
            .flatten()
            .filter(|fresh| **fresh != *token);
        match (fresh, replay) {
            (Some(fresh), Some(bytes)) => {
                headers.insert(self.token_name.clone(), self.token_value(&fresh)?);
                let body = if bytes.is_empty() {
                    body::empty()
                } else {
                    body::full(bytes)
                };
                let again = self.send(request(headers, body)).await?;
                Ok(self.pass_back(again))
            }
            _ => Ok(self.pass_back(Response::from_parts(head, body::full(refusal)))),
        }
    }

    /// One upstream call, up to the response head.
    async fn send(&self, req: Request<ProxyBody>) -> Result<Response<ProxyBody>, Own> {
        match tokio::time::timeout(self.settings.timeout, self.client.request(req)).await {
            Ok(Ok(response)) => {
                let metrics = self.metrics.clone();
                Ok(response.map(|incoming| {
                    body::boxed(Idle::new(incoming, self.settings.timeout, move || {
                        metrics.upstream_error("body");
                    }))
                }))
            }
            Ok(Err(e)) => {
                let kind = crate::upstream::error_kind(&e);
                self.metrics.upstream_error(kind);
                tracing::warn!(error = %error_chain(&e), kind, upstream = %self.settings.target.display(), "upstream request failed");
                Err(Own::Upstream(kind))
            }
            Err(_) => {
                self.metrics.upstream_error("timeout");
                tracing::warn!(timeout = ?self.settings.timeout, upstream = %self.settings.target.display(), "upstream sent no response head in time");
                Err(Own::Upstream("timeout"))
            }
        }
    }

    /// The upstream's response, minus the headers of its connection.
    fn pass_back(&self, mut response: Response<ProxyBody>) -> Response<ProxyBody> {
        strip_connection_headers(response.headers_mut());
        response
    }
}

/// Whether a request can be sent twice without changing its effect
/// (RFC 9110 §9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Whether a refusal body names a reason a fresh token can cure.
fn stale_reason(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("reason")?.as_str().map(str::to_owned))
        .is_some_and(|r| STALE_REASONS.contains(&r.as_str()))
}

/// The request headers to send: the application's, minus the headers of
/// its connection to the agent (hop-by-hop, and those its `Connection`
/// lists), minus `Host` (the upstream's own is set from the URL), minus any
/// token it sent (`x-token`, and `Authorization` when it is a Bearer token
/// or the agent sends Bearer itself): the identity is the agent's alone.
pub fn forward_headers_in_place(headers: &mut HeaderMap, sent_as: TokenHeader) {
    strip_connection_headers(headers);
    headers.remove(header::HOST);
    headers.remove(appauth_core::TOKEN_HEADER);
    let bearer_sent = || {
        headers.get_all(header::AUTHORIZATION).iter().any(|v| {
            v.as_bytes()
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"bearer "))
        })
    };
    if sent_as == TokenHeader::Bearer || bearer_sent() {
        headers.remove(header::AUTHORIZATION);
    }
}

/// Removes hop-by-hop headers and every header `Connection` names.
fn strip_connection_headers(headers: &mut HeaderMap) {
    // Most messages carry none of them: look before allocating.
    let hop = |n: &HeaderName| appauth_core::is_hop_by_hop(n.as_str());
    if !headers.keys().any(hop) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    let present: Vec<HeaderName> = headers.keys().filter(|n| hop(n)).cloned().collect();
    for name in present {
        headers.remove(name);
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The agent's own answers, in the server's JSON shape.
#[derive(Debug)]
enum Own {
    /// A request the agent cannot forward as asked.
    BadRequest(&'static str),
    /// No usable key: 503, never an unsigned request.
    NoKey,
    /// The upstream call failed, of this kind.
    Upstream(&'static str),
}

impl Own {
    fn response(&self) -> Response<ProxyBody> {
        let (status, error, reason) = match self {
            Self::BadRequest(reason) => (StatusCode::BAD_REQUEST, "bad_request", *reason),
            Self::NoKey => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "no_signing_key",
            ),
            Self::Upstream("timeout") => (
                StatusCode::GATEWAY_TIMEOUT,
                "bad_gateway",
                "upstream_timeout",
            ),
            Self::Upstream("tls") => (StatusCode::BAD_GATEWAY, "bad_gateway", "upstream_tls"),
            Self::Upstream(_) => (
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "upstream_unreachable",
            ),
        };
        let mut response = Response::new(body::full(error_body(error, reason)));
        *response.status_mut() = status;
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(self, Self::NoKey) {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_applications_connection_host_and_tokens_are_not_forwarded() {
        let h = headers(&[
            ("host", "evil.example"),
            ("x-token", "forged"),
            ("authorization", "Bearer forged"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "for this hop only"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic abc"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("x-request-id", "r-1"),
            ("content-length", "5"),
            ("x-token-extra", "kept"),
        ]);
        let mut out = h.clone();
        forward_headers_in_place(&mut out, TokenHeader::XToken);
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "x-request-id", "x-token-extra"]);
        // Another scheme of Authorization is the application's business.
        let basic = headers(&[("authorization", "Basic dTpw")]);
        let forwarded = |sent_as| {
            let mut h = basic.clone();
            forward_headers_in_place(&mut h, sent_as);
            h.len()
        };
        assert_eq!(forwarded(TokenHeader::XToken), 1);
        assert_eq!(forwarded(TokenHeader::Bearer), 0);
    }

    #[test]
    fn only_stale_token_reasons_cost_a_signature() {
        let body = |r: &str| format!(r#"{{"error":"invalid_token","reason":"{r}"}}"#).into_bytes();
        for r in STALE_REASONS {
            assert!(stale_reason(&body(r)), "{r}");
        }
        for r in ["revoked", "missing_token", "wrong_audience", "malformed"] {
            assert!(!stale_reason(&body(r)), "{r}");
        }
        assert!(!stale_reason(b""));
        assert!(!stale_reason(b"<html>401</html>"));
    }
}
