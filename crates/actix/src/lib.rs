//! appauth for an actix-web app you already run: the [`AppAuth`] middleware
//! and the [`Caller`] extractor over a watched keys directory, with
//! revocation, route policy, rate limits, a verified-token cache and
//! Prometheus metrics (docs/spec.md §3-§6).
//!
//! This crate is glue: every decision is `appauth-gate`'s ([`Gate`]), and
//! this crate only translates actix-web requests and responses. For axum,
//! tonic or hyper, depend on `appauth-tower` instead.
//!
//! ```
//! use actix_web::{App, test, web};
//! use appauth_actix::{AppAuth, Caller};
//! use appauth_core::{Claims, PrivateKey, sign_token, Algorithm};
//!
//! # actix_web::rt::System::new().block_on(async {
//! // The directory an operator fills with <appId>_public.pem files.
//! let keys = tempfile::tempdir()?;
//! let key = PrivateKey::generate(2048)?;
//! std::fs::write(keys.path().join("billing_public.pem"), key.public_key_pem()?)?;
//!
//! // Three lines to protect a scope; changes to the directory apply within a second.
//! let gate = AppAuth::from_dir(keys.path()).build()?;
//! let app = test::init_service(App::new().service(
//!     web::scope("/api").wrap(gate.clone()).route(
//!         "/hello",
//!         web::get().to(|caller: Caller| async move { format!("hello, {}", caller.app_id) }),
//!     ),
//! ))
//! .await;
//!
//! let now = appauth_core::Clock::now(&appauth_core::SystemClock);
//! let claims = Claims { app_id: "billing".into(), iat: now, exp: now + 300, nbf: None,
//!                       jti: None, aud: None, iss: None, extra: Default::default() };
//! let token = sign_token(&key, Algorithm::RS512, &claims)?;
//! let req = test::TestRequest::get().uri("/api/hello").insert_header(("x-token", token));
//! let body = test::call_and_read_body(&app, req.to_request()).await;
//! assert_eq!(body, "hello, billing");
//!
//! let refused = test::call_service(&app, test::TestRequest::get().uri("/api/hello").to_request()).await;
//! assert_eq!(refused.status(), 401);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::{Future, Ready, ready};
use std::ops::Deref;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, HeaderMap, HeaderName};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use appauth_core::{Rejection, Verified, Verifier};

// What the crate exported before the engine had a crate of its own, so
// embedders' imports keep compiling.
#[cfg(feature = "redis")]
pub use appauth_gate::shared;
pub use appauth_gate::{
    AccessControl, Admission, BuildError, Builder, ConfigEvent, ConfigFileError,
    DEFAULT_RESCAN_INTERVAL, DEFAULT_REVOCATIONS_FILE, DEFAULT_TOKEN_CACHE_MB, Denial, Gate,
    KeySource, KeyStore, Metrics, Refusal, ReloadReport, Reloadable, TokenCache, WatchConfig,
    content_version, extract_token, files, path, policy, revocation,
};

/// The verified caller, available to handlers as an extractor.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Verified>);

impl Deref for Caller {
    type Target = Verified;
    fn deref(&self) -> &Verified {
        &self.0
    }
}

impl FromRequest for Caller {
    type Error = Rejected;
    type Future = Ready<Result<Self, Rejected>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        // Absent only on a route the middleware does not wrap: refuse rather
        // than serve an unauthenticated caller.
        ready(
            req.extensions()
                .get::<Caller>()
                .cloned()
                .ok_or(Rejected(Refusal::Rejected(Rejection::MissingToken))),
        )
    }
}

/// A refusal as an actix-web error: the gate's status, headers and body,
/// unchanged.
#[derive(Debug)]
pub struct Rejected(pub Refusal);

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for Rejected {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        for header in self.0.headers() {
            response.insert_header(header);
        }
        response
            .content_type(Refusal::CONTENT_TYPE)
            .body(self.0.body())
    }
}

/// actix-web's header map, as the gate reads it.
struct ActixHeaders<'a>(&'a HeaderMap);

impl appauth_gate::Headers for ActixHeaders<'_> {
    fn field(&self, name: &str) -> appauth_gate::Field<'_> {
        // The two names the gate asks for, as constants: a `&str` name is
        // parsed again on every lookup.
        const X_TOKEN: HeaderName = HeaderName::from_static(appauth_core::TOKEN_HEADER);
        let values = match name {
            appauth_core::TOKEN_HEADER => self.0.get_all(X_TOKEN),
            appauth_gate::AUTHORIZATION => self.0.get_all(AUTHORIZATION),
            other => self.0.get_all(other),
        };
        appauth_gate::Field::of(values.map(|v| v.as_bytes()))
    }
}

/// The middleware: the gate in front of every request it wraps, handing the
/// handler a [`Caller`]. Cheap to clone (one per worker). Make one over a
/// watched directory with [`AppAuth::from_dir`], or over any [`KeySource`]
/// with [`AppAuth::new`]:
///
/// ```
/// use std::{collections::HashMap, sync::Arc};
/// use actix_web::{App, http::Method, test, web};
/// use appauth_actix::{AppAuth, Caller, Metrics};
/// use appauth_core::{AppId, PublicKey, Verifier, VerifyConfig};
///
/// # actix_web::rt::System::new().block_on(async {
/// let keys: HashMap<AppId, Arc<[PublicKey]>> = HashMap::new(); // no app has keys yet
/// let gate = AppAuth::new(Verifier::new(VerifyConfig::default()), Arc::new(keys), Arc::new(Metrics::new()))
///     .exempt([(Method::GET, "/healthz")]);
/// let app = test::init_service(
///     App::new()
///         .wrap(gate)
///         .route("/healthz", web::get().to(|| async { "ok" }))
///         .route("/data", web::get().to(|c: Caller| async move { c.app_id.to_string() })),
/// )
/// .await;
/// let open = test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
/// assert_eq!(open.status(), 200);
/// let closed = test::call_service(&app, test::TestRequest::get().uri("/data").to_request()).await;
/// assert_eq!(closed.status(), 401);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct AppAuth {
    gate: Gate,
}

impl From<Gate> for AppAuth {
    fn from(gate: Gate) -> Self {
        Self { gate }
    }
}

impl AppAuth {
    /// A gate over the `<appId>_public.pem` files of `keys_dir`, watched so
    /// that key, policy and revocation changes apply within a second. The
    /// builder's settings are `appauth-gate`'s ([`Builder`]).
    pub fn from_dir(keys_dir: impl Into<PathBuf>) -> Builder<AppAuth> {
        Builder::new(keys_dir)
    }

    /// A gate verifying with `verifier` against `keys`, counting in `metrics`.
    pub fn new(verifier: Verifier, keys: Arc<dyn KeySource>, metrics: Arc<Metrics>) -> Self {
        Gate::new(verifier, keys, metrics).into()
    }

    /// Adds revocation, route policy and rate limits ([`Gate::with_access`]).
    pub fn with_access(self, access: Arc<AccessControl>) -> Self {
        self.gate.with_access(access).into()
    }

    /// Adds the verified-token cache ([`Gate::with_cache`]).
    pub fn with_cache(self, cache: Arc<TokenCache>) -> Self {
        self.gate.with_cache(cache).into()
    }

    /// Lets these routes through without a token ([`Gate::exempt`]).
    pub fn exempt<I, M, S>(self, routes: I) -> Self
    where
        I: IntoIterator<Item = (M, S)>,
        M: AsRef<str>,
        S: AsRef<str>,
    {
        self.gate.exempt(routes).into()
    }

    /// Logs every accepted request ([`Gate::access_log`]).
    pub fn access_log(self, on: bool) -> Self {
        self.gate.access_log(on).into()
    }

    /// The engine inside.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The watched key store, for a gate made by [`AppAuth::from_dir`].
    pub fn key_store(&self) -> Option<&Arc<KeyStore>> {
        self.gate.key_store()
    }

    /// The metrics the gate counts in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.gate.metrics()
    }
}

impl<S, B> Transform<S, ServiceRequest> for AppAuth
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = AppAuthMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AppAuthMiddleware {
            service: Rc::new(service),
            gate: self.gate.clone(),
        }))
    }
}

/// The per-worker middleware service.
#[doc(hidden)]
pub struct AppAuthMiddleware<S> {
    service: Rc<S>,
    gate: Gate,
}

impl<S, B> Service<ServiceRequest> for AppAuthMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let head = appauth_gate::RequestHead {
            method: req.method().as_str(),
            path: req.path(),
            headers: &ActixHeaders(req.headers()),
        };
        let decision = self.gate.decide(&head);
        if let Some(trace) = decision.trace {
            // A proxying handler forwards it (`appauth_gate::TRACEPARENT`).
            req.extensions_mut().insert(trace);
        }
        let caller = match decision.result {
            Ok(Admission::Exempt) => None,
            Ok(Admission::Caller(verified)) => Some(verified),
            Err(refusal) => {
                let response = Rejected(refusal).error_response();
                return Box::pin(ready(Ok(req.into_response(response).map_into_right_body())));
            }
        };
        let service = self.service.clone();
        let Some(verified) = caller else {
            return Box::pin(async move { Ok(service.call(req).await?.map_into_left_body()) });
        };
        if !self.gate.access_log_enabled() {
            req.extensions_mut().insert(Caller(verified));
            return Box::pin(async move { Ok(service.call(req).await?.map_into_left_body()) });
        }
        let (gate, started) = (self.gate.clone(), Instant::now());
        let (method, path) = (req.method().clone(), req.path().to_owned());
        req.extensions_mut().insert(Caller(verified.clone()));
        Box::pin(async move {
            let response = service.call(req).await?;
            let status = response.status().as_u16();
            gate.log_accepted(&verified, method.as_str(), &path, status, started.elapsed());
            Ok(response.map_into_left_body())
        })
    }
}
