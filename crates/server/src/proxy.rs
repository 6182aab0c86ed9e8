//! Gateway mode: after verification, policy and rate limit, every path the
//! server does not serve itself is forwarded to `--upstream`, bodies streamed
//! both ways, with the verified appId in `x-app-id` and the token removed.

use std::time::Duration;

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{StatusCode, Uri};
use actix_web::{HttpRequest, HttpResponse, web};

use actix_web::body::SizedStream;

use appauth_actix::{Caller, Rejected};
use appauth_gate::{Gate, Held, RequestHead};

/// Upstream connections each worker may hold at once: four times the
/// default per-app `concurrency`, so one app at its cap leaves room for
/// others.
pub const UPSTREAM_CONNECTIONS_PER_WORKER: usize = 4 * appauth_gate::DEFAULT_CONCURRENCY as usize;

/// The upstream client of one worker (awc's are not `Send`): a bounded pool,
/// and redirects are the caller's business, not the gateway's.
pub fn client() -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().limit(UPSTREAM_CONNECTIONS_PER_WORKER))
        .disable_redirects()
        .finish()
}

/// Where and how to forward.
#[derive(Debug, Clone)]
pub struct Upstream {
    base: String,
    /// Longest wait for the upstream's response headers.
    pub timeout: Duration,
}

/// Why an `--upstream` value is refused at start-up.
#[derive(Debug, thiserror::Error)]
#[error("--upstream {url:?} is not usable: {problem} (expected e.g. http://127.0.0.1:9000)")]
pub struct UpstreamError {
    url: String,
    problem: &'static str,
}

impl Upstream {
    /// Checks `url`: http or https, a host, no query or fragment.
    pub fn parse(url: &str, timeout: Duration) -> Result<Self, UpstreamError> {
        let bad = |problem| UpstreamError {
            url: url.to_owned(),
            problem,
        };
        let uri: Uri = url.parse().map_err(|_| bad("it does not parse as a URL"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(bad("the scheme must be http or https")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("it has no host"));
        }
        if uri.query().is_some() || url.contains('#') {
            return Err(bad("it must not have a query or fragment"));
        }
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            timeout,
        })
    }
}

/// The header the upstream trusts for the caller's identity.
pub const X_APP_ID: HeaderName = HeaderName::from_static("x-app-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Headers the caller must not choose: the identity the upstream trusts, the
/// credentials the gate consumed, and the forwarding chain the gateway
/// writes. Compared the way CGI and WSGI servers read header names
/// (lower-cased, `_` as `-`), since they merge `X_App_Id` into `x-app-id`.
const RESERVED: [&str; 5] = [
    "x-app-id",
    "x-token",
    "authorization",
    "proxy-authorization",
    "x-forwarded-for",
];

/// Whether `name` is, or reads as, one of the reserved headers.
fn is_reserved(name: &HeaderName) -> bool {
    let name = name.as_str().as_bytes();
    RESERVED.iter().any(|r| {
        r.len() == name.len()
            && r.bytes()
                .zip(name)
                .all(|(r, n)| r == n.to_ascii_lowercase() || (r == b'-' && *n == b'_'))
    })
}

/// Headers that describe one connection, not the message.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    appauth_core::is_hop_by_hop(name.as_str())
}

/// Header names listed in `Connection`, also hop-by-hop.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

/// The request headers to forward: no hop-by-hop headers, no credential of
/// any scheme, no identity or forwarding header the caller wrote (in any
/// spelling); then the verified `x-app-id`, exactly once.
pub fn forward_headers(incoming: &HeaderMap, app_id: &str) -> Vec<(HeaderName, HeaderValue)> {
    let listed = connection_listed(incoming);
    let mut out: Vec<(HeaderName, HeaderValue)> = incoming
        .iter()
        .filter(|(name, _)| {
            !is_hop_by_hop(name)
                && !listed.iter().any(|l| l == name.as_str())
                && !is_reserved(name)
                && *name != header::HOST
                && *name != header::CONTENT_LENGTH
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    if let Ok(v) = HeaderValue::from_str(app_id) {
        out.push((X_APP_ID, v));
    }
    out
}

/// Forwards one verified request, holding one of its app's in-flight slots
/// until the response body is done (429 `concurrency_limit` when the app
/// holds all of them).
pub async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    caller: Caller,
    upstream: web::Data<Upstream>,
    client: web::Data<awc::Client>,
    gate: web::Data<Gate>,
) -> Result<HttpResponse, Rejected> {
    // The head is for the refusal's log line: the token was read already.
    let head = RequestHead {
        method: req.method().as_str(),
        path: req.path(),
        headers: &[],
    };
    let held = gate.hold(&caller, &head).map_err(Rejected)?;
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", upstream.base);
    let mut outgoing = client
        .request(req.method().clone(), url)
        .timeout(upstream.timeout)
        .no_decompress();
    for (name, value) in forward_headers(req.headers(), caller.app_id.as_str()) {
        outgoing = outgoing.append_header((name, value));
    }
    // With traces on, the upstream's spans hang under the decision's span
    // (same trace, the decision as parent; `tracestate` passes as sent).
    // With traces off, the caller's `traceparent` passes untouched.
    let trace = actix_web::HttpMessage::extensions(&req)
        .get::<appauth_gate::TraceParent>()
        .and_then(|t| HeaderValue::from_str(t.as_str()).ok());
    if let Some(value) = trace {
        outgoing = outgoing.insert_header((appauth_gate::TRACEPARENT, value));
    }
    if let Some(peer) = req.peer_addr() {
        // The caller's own X-Forwarded-For (exact spelling only) is kept as
        // the start of the chain; the peer the gateway saw is appended.
        let prior = req
            .headers()
            .get(&X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .map(|v| format!("{v}, "))
            .unwrap_or_default();
        outgoing = outgoing.insert_header((X_FORWARDED_FOR, format!("{prior}{}", peer.ip())));
    }
    // Bodies stream through without being buffered. A body with a length
    // keeps it (many upstreams read by Content-Length and see nothing of a
    // chunked body); a chunked one stays chunked; none stays none (some
    // upstreams refuse a chunked GET).
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let sent = match length {
        Some(len) => outgoing.send_body(SizedStream::new(len, payload)).await,
        None if req.headers().contains_key(header::TRANSFER_ENCODING) => {
            outgoing.send_stream(payload).await
        }
        None => outgoing.send().await,
    };
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            let (status, reason) = match e {
                awc::error::SendRequestError::Timeout => {
                    (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
                }
                _ => (StatusCode::BAD_GATEWAY, "upstream_unreachable"),
            };
            tracing::warn!(app_id = %caller.app_id, error = %e, reason, "upstream request failed");
            return Ok(HttpResponse::build(status)
                .json(serde_json::json!({ "error": "bad_gateway", "reason": reason })));
        }
    };
    let mut back = HttpResponse::build(response.status());
    if let Some(len) = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        back.no_chunking(len);
    }
    let listed = connection_listed(response.headers());
    for (name, value) in response.headers() {
        if !is_hop_by_hop(name)
            && !listed.iter().any(|l| l == name.as_str())
            && *name != header::CONTENT_LENGTH
        {
            back.append_header((name.clone(), value.clone()));
        }
    }
    Ok(back.streaming(Holding {
        body: response,
        _held: held,
    }))
}

pin_project_lite::pin_project! {
    /// An upstream body that keeps its app's in-flight slot until it ends
    /// (or the caller goes away and it is dropped).
    struct Holding<S> {
        #[pin]
        body: S,
        _held: Held,
    }
}

impl<S: futures_util::Stream> futures_util::Stream for Holding<S> {
    type Item = S::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        self.project().body.poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_are_checked() {
        let t = Duration::from_secs(1);
        assert!(Upstream::parse("http://127.0.0.1:9000", t).is_ok());
        assert!(Upstream::parse("https://api.internal/base/", t).is_ok());
        for bad in [
            "",
            "127.0.0.1:9000",
            "ftp://x",
            "http://",
            "http://x/?a=b",
            "not a url",
        ] {
            assert!(Upstream::parse(bad, t).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_hop_by_hop_and_forged_identity_are_dropped() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-token", "a.b.c"),
            ("authorization", "Bearer a.b.c"),
            ("x-app-id", "someone-else"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("accept", "application/json"),
            ("x-request-id", "r-1"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = forward_headers(&h, "orders");
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.iter().filter(|n| **n == "x-app-id").count(), 1);
        assert_eq!(
            out.iter().find(|(n, _)| n == "x-app-id").unwrap().1,
            "orders"
        );
        for gone in [
            "x-token",
            "authorization",
            "connection",
            "x-secret-hop",
            "keep-alive",
        ] {
            assert!(!names.contains(&gone), "{gone} forwarded");
        }
        assert!(names.contains(&"accept") && names.contains(&"x-request-id"));

        // No credential of any scheme goes upstream: the upstream trusts
        // x-app-id alone.
        let mut basic = HeaderMap::new();
        basic.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic Zm9v"),
        );
        assert!(
            !forward_headers(&basic, "a")
                .iter()
                .any(|(n, _)| n == "authorization")
        );
    }

    #[test]
    fn reserved_headers_in_any_spelling_are_dropped() {
        let mut h = HeaderMap::new();
        for name in [
            "x_app_id",
            "x_app-id",
            "x-app_id",
            "x_token",
            "x-token",
            "authorization",
            "proxy_authorization",
            "x_forwarded_for",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("forged"),
            );
        }
        h.append(
            HeaderName::from_static("x-app-idx"),
            HeaderValue::from_static("kept"),
        );
        let out = forward_headers(&h, "orders");
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-app-idx", "x-app-id"], "{out:?}");
        assert_eq!(out[1].1, "orders");
    }
}
