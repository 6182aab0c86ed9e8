//! appauth for axum, tonic, hyper and any tower service on `http` 1.x: the
//! [`AppAuthLayer`] puts the appauth gate in front of a service, hands
//! handlers a [`Caller`], and answers refusals as HTTP responses or, for
//! gRPC requests, as gRPC statuses.
//!
//! This crate is glue: every decision is `appauth-gate`'s ([`Gate`]), and
//! this crate only translates `http` requests and responses. For actix-web,
//! depend on `appauth-actix` instead.
//!
//! ```
//! use axum::{Router, routing::get};
//! use appauth_tower::{AppAuthLayer, Caller};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = tempfile::tempdir()?;
//! let auth = AppAuthLayer::from_dir(keys.path()).exempt([("GET", "/healthz")]).build()?;
//! let app: Router = Router::new()
//!     .route("/healthz", get(|| async { "ok" }))
//!     .route("/hello", get(|caller: Caller| async move { format!("hello, {}", caller.app_id) }))
//!     .layer(auth);
//! # let _ = app; Ok(()) }
//! ```
//!
//! gRPC requests (`content-type: application/grpc…`) are refused with a
//! trailers-only response: HTTP 200, `grpc-status` 16 UNAUTHENTICATED, 7
//! PERMISSION_DENIED, 8 RESOURCE_EXHAUSTED, 3 INVALID_ARGUMENT or 14
//! UNAVAILABLE, and `grpc-message` carrying the reason code. Tokens come
//! from the `x-token` or `authorization: Bearer` metadata, as over HTTP.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::ops::Deref;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use appauth_core::Verified;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};

pub use appauth_gate::{
    Admission, BuildError, Builder, DEFAULT_TOKEN_CACHE_MB, Gate, Metrics, Refusal,
};

/// The verified caller, in the request's extensions (and, with the `axum`
/// feature, an extractor). In a tonic handler:
/// `request.extensions().get::<Caller>()`.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Verified>);

impl Deref for Caller {
    type Target = Verified;
    fn deref(&self) -> &Verified {
        &self.0
    }
}

/// A refusal as a response: the gate's status, headers and body, unchanged
/// (or its gRPC status, for a gRPC request).
#[derive(Debug, Clone)]
pub struct Rejected(pub Refusal);

impl Rejected {
    /// The HTTP response: status, headers and JSON body as the gate says.
    pub fn into_http<B: From<Bytes>>(self) -> Response<B> {
        self.http().map(|b| B::from(b.unwrap_or_default()))
    }

    /// The gRPC response: trailers-only, `grpc-status` and `grpc-message`
    /// (the reason code), no body.
    pub fn into_grpc<B: From<Bytes>>(self) -> Response<B> {
        self.grpc().map(|b| B::from(b.unwrap_or_default()))
    }

    fn http(self) -> Response<Option<Bytes>> {
        let refusal = self.0;
        let mut response = Response::new(Some(Bytes::from(refusal.body())));
        *response.status_mut() =
            StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(Refusal::CONTENT_TYPE),
        );
        insert_all(headers, &refusal);
        response
    }

    fn grpc(self) -> Response<Option<Bytes>> {
        let refusal = self.0;
        let code = refusal.code();
        let mut response = Response::new(None);
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(
            "grpc-status",
            HeaderValue::from(u16::from(code.grpc_status())),
        );
        headers.insert("grpc-message", HeaderValue::from_static(code.reason()));
        insert_all(headers, &refusal);
        response
    }
}

fn insert_all(headers: &mut HeaderMap, refusal: &Refusal) {
    for (name, value) in refusal.headers() {
        // Names are fixed lower-case tokens and values ASCII: both always
        // convert.
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

#[cfg(feature = "axum")]
mod axum_glue {
    use super::{Caller, Refusal, Rejected};
    use appauth_core::Rejection;
    use axum_core::extract::FromRequestParts;
    use axum_core::response::{IntoResponse, Response};
    use http::request::Parts;

    impl IntoResponse for Rejected {
        fn into_response(self) -> Response {
            self.into_http()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for Caller {
        type Rejection = Rejected;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejected> {
            // Absent only on a route the layer does not wrap: refuse rather
            // than serve an unauthenticated caller.
            parts
                .extensions
                .get::<Caller>()
                .cloned()
                .ok_or(Rejected(Refusal::Rejected(Rejection::MissingToken)))
        }
    }
}

/// `http`'s header map, as the gate reads it.
struct HttpHeaders<'a>(&'a HeaderMap);

impl appauth_gate::Headers for HttpHeaders<'_> {
    fn field(&self, name: &str) -> appauth_gate::Field<'_> {
        // The two names the gate asks for, as constants: a `&str` name is
        // parsed again on every lookup.
        const X_TOKEN: HeaderName = HeaderName::from_static(appauth_core::TOKEN_HEADER);
        let values = match name {
            appauth_core::TOKEN_HEADER => self.0.get_all(X_TOKEN),
            appauth_gate::AUTHORIZATION => self.0.get_all(http::header::AUTHORIZATION),
            other => self.0.get_all(other),
        };
        appauth_gate::Field::of(values.iter().map(HeaderValue::as_bytes))
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The layer: the gate in front of any `Service<http::Request<B>>`. Cheap to
/// clone. Make one over a watched directory with [`AppAuthLayer::from_dir`],
/// or from a [`Gate`] with `AppAuthLayer::from(gate)`.
#[derive(Clone, Debug)]
pub struct AppAuthLayer {
    gate: Gate,
}

impl From<Gate> for AppAuthLayer {
    fn from(gate: Gate) -> Self {
        Self { gate }
    }
}

impl AppAuthLayer {
    /// A layer over the `<appId>_public.pem` files of `keys_dir`, watched so
    /// that key, policy and revocation changes apply within a second. The
    /// builder's settings are `appauth-gate`'s ([`Builder`]).
    pub fn from_dir(keys_dir: impl Into<PathBuf>) -> Builder<AppAuthLayer> {
        Builder::new(keys_dir)
    }

    /// The engine inside (its key store for `/readyz`, its metrics).
    pub fn gate(&self) -> &Gate {
        &self.gate
    }
}

impl<S> tower_layer::Layer<S> for AppAuthLayer {
    type Service = AppAuth<S>;

    fn layer(&self, inner: S) -> AppAuth<S> {
        AppAuth {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// The service [`AppAuthLayer`] wraps around `S`.
#[derive(Clone, Debug)]
pub struct AppAuth<S> {
    inner: S,
    gate: Gate,
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for AppAuth<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body<Data = Bytes>,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let head = appauth_gate::RequestHead {
            method: req.method().as_str(),
            path: req.uri().path(),
            headers: &HttpHeaders(req.headers()),
        };
        let decision = self.gate.decide(&head);
        if let Some(trace) = decision.trace {
            // A proxying service forwards it (`appauth_gate::TRACEPARENT`).
            req.extensions_mut().insert(trace);
        }
        let verified = match decision.result {
            Ok(Admission::Exempt) => None,
            Ok(Admission::Caller(verified)) => Some(verified),
            Err(refusal) => {
                let rejected = Rejected(refusal);
                let response = if is_grpc(req.headers()) {
                    rejected.grpc()
                } else {
                    rejected.http()
                };
                return ResponseFuture::refused(response);
            }
        };
        let log = match verified {
            Some(verified) => {
                req.extensions_mut().insert(Caller(verified.clone()));
                self.gate.access_log_enabled().then(|| AccessLog {
                    gate: self.gate.clone(),
                    verified,
                    method: req.method().to_string(),
                    path: req.uri().path().to_owned(),
                    started: Instant::now(),
                })
            }
            None => None,
        };
        ResponseFuture::inner(self.inner.call(req), log)
    }
}

/// What the access log needs once the response head is known.
struct AccessLog {
    gate: Gate,
    verified: Arc<Verified>,
    method: String,
    path: String,
    started: Instant,
}

pin_project_lite::pin_project! {
    /// The response future of [`AppAuth`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F, log: Option<AccessLog> },
        Refused { response: Option<Response<Option<Bytes>>> },
    }
}

impl<F> ResponseFuture<F> {
    fn inner(future: F, log: Option<AccessLog>) -> Self {
        Self {
            kind: Kind::Inner { future, log },
        }
    }

    fn refused(response: Response<Option<Bytes>>) -> Self {
        Self {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<AuthBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, log } => {
                let response = std::task::ready!(future.poll(cx))?;
                if let Some(l) = log.take() {
                    let status = response.status().as_u16();
                    let took = l.started.elapsed();
                    l.gate
                        .log_accepted(&l.verified, &l.method, &l.path, status, took);
                }
                Poll::Ready(Ok(response.map(|inner| AuthBody {
                    kind: BodyKind::Inner { inner },
                })))
            }
            KindProj::Refused { response } => {
                let response = response.take().expect("polled after completion");
                Poll::Ready(Ok(response.map(|bytes| AuthBody {
                    kind: BodyKind::Refusal { bytes },
                })))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response body: the service's own, or a refusal's few bytes.
    pub struct AuthBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project_lite::pin_project! {
    #[project = BodyProj]
    enum BodyKind<B> {
        Inner { #[pin] inner: B },
        Refusal { bytes: Option<Bytes> },
    }
}

impl<B> http_body::Body for AuthBody<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            BodyProj::Inner { inner } => inner.poll_frame(cx),
            BodyProj::Refusal { bytes } => {
                Poll::Ready(bytes.take().map(|b| Ok(http_body::Frame::data(b))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner { inner } => inner.is_end_stream(),
            BodyKind::Refusal { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.kind {
            BodyKind::Inner { inner } => inner.size_hint(),
            BodyKind::Refusal { bytes } => {
                http_body::SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
