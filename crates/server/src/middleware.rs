//! The actix-web middleware that puts appauth in front of any service.
//!
//! ```no_run
//! use std::sync::Arc;
//! use actix_web::{web, App, HttpServer, Responder};
//! use appauth_core::{Verifier, VerifyConfig};
//! use appauth_server::{AppAuth, Caller, KeyStore, Metrics};
//!
//! async fn hello(caller: Caller) -> impl Responder {
//!     format!("hello, {}", caller.app_id)
//! }
//!
//! # async fn run(store: Arc<KeyStore>, metrics: Arc<Metrics>) -> std::io::Result<()> {
//! let gate = AppAuth::new(Verifier::new(VerifyConfig::default()), store, metrics);
//! HttpServer::new(move || {
//!     App::new().service(web::scope("/api").wrap(gate.clone()).route("/hello", web::get().to(hello)))
//! })
//! .bind("127.0.0.1:8080")?
//! .run()
//! .await
//! # }
//! ```

use std::future::{Future, Ready, ready};
use std::ops::Deref;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

/// The header the Node recipe sends its token in.
pub const X_TOKEN: HeaderName = HeaderName::from_static("x-token");

use crate::access::AccessControl;
use crate::cache::TokenCache;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError};
use appauth_core::{KeyProvider, Rejection, Verified, Verifier};

use crate::error::AuthError;
use crate::metrics::Metrics;

/// A key source the middleware can use: keys plus a readiness flag.
pub trait KeySource: KeyProvider + Send + Sync {
    /// Whether keys are loaded; until then requests get 503.
    fn is_ready(&self) -> bool {
        true
    }
}

impl KeySource for crate::KeyStore {
    fn is_ready(&self) -> bool {
        crate::KeyStore::is_ready(self)
    }
}

impl KeySource for std::collections::HashMap<appauth_core::AppId, Arc<[appauth_core::PublicKey]>> {}

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
    type Error = AuthError;
    type Future = Ready<Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        // Absent only on a route the middleware does not wrap: refuse rather
        // than serve an unauthenticated caller.
        ready(
            req.extensions()
                .get::<Caller>()
                .cloned()
                .ok_or(AuthError::Rejected(Rejection::MissingToken)),
        )
    }
}

/// The middleware factory: cheap to clone, one per worker.
#[derive(Clone)]
pub struct AppAuth {
    state: Arc<GateState>,
}

#[derive(Clone)]
struct GateState {
    verifier: Verifier,
    keys: Arc<dyn KeySource>,
    metrics: Arc<Metrics>,
    access: Option<Arc<AccessControl>>,
    cache: Option<Arc<TokenCache>>,
    exempt: Vec<String>,
}

impl AppAuth {
    /// A gate verifying with `verifier` against `keys`, counting in `metrics`.
    pub fn new(verifier: Verifier, keys: Arc<dyn KeySource>, metrics: Arc<Metrics>) -> Self {
        Self {
            state: Arc::new(GateState {
                verifier,
                keys,
                metrics,
                access: None,
                cache: None,
                exempt: Vec::new(),
            }),
        }
    }

    /// Adds revocation, route policy and rate limits (SPEC section 3 steps
    /// 7-9), checked only once a token has verified.
    pub fn with_access(self, access: Arc<AccessControl>) -> Self {
        self.rebuild(|s| s.access = Some(access))
    }

    /// Adds the verified-token cache: a token seen before costs a lookup
    /// instead of an RSA verification.
    pub fn with_cache(self, cache: Arc<TokenCache>) -> Self {
        self.rebuild(|s| s.cache = Some(cache))
    }

    /// Lets requests for these exact paths through without a token, so the
    /// gate can wrap a whole app while health probes stay open.
    pub fn exempt<I: IntoIterator<Item = S>, S: Into<String>>(self, paths: I) -> Self {
        let paths: Vec<String> = paths.into_iter().map(Into::into).collect();
        self.rebuild(|s| s.exempt = paths)
    }

    fn rebuild(self, change: impl FnOnce(&mut GateState)) -> Self {
        let mut state = GateState::clone(&self.state);
        change(&mut state);
        Self {
            state: Arc::new(state),
        }
    }
}

impl GateState {
    fn authenticate(&self, req: &ServiceRequest) -> Result<Arc<Verified>, AuthError> {
        if !self.keys.is_ready() {
            return Err(AuthError::NotReady);
        }
        let token = extract_token(req.headers())?;
        let keys = self.keys.as_ref();
        let verify = || {
            let started = Instant::now();
            let result = self.verifier.verify(token, keys);
            self.metrics
                .verify_seconds
                .observe(started.elapsed().as_secs_f64());
            result.map(Arc::new)
        };
        let verified = match &self.cache {
            None => verify()?,
            Some(cache) => {
                let now = self.verifier.clock().now();
                match cache.get(token, keys, &self.verifier, now) {
                    Some(hit) => {
                        self.metrics.token_cache_hits.inc();
                        hit
                    }
                    None => {
                        self.metrics.token_cache_misses.inc();
                        let verified = verify()?;
                        cache.insert(token, verified.clone());
                        self.metrics.token_cache_entries.set(cache.len() as i64);
                        verified
                    }
                }
            }
        };
        if let Some(access) = &self.access {
            access.check(&verified, req.method().as_str(), req.path())?;
        }
        Ok(verified)
    }
}

// UTF-8 is enough here (and SIMD-fast, unlike `to_str`'s byte loop): the
// verifier refuses anything outside base64url and dots anyway.
fn text(v: &HeaderValue) -> Result<&str, Rejection> {
    std::str::from_utf8(v.as_bytes()).map_err(|_| Rejection::NotThreeParts)
}

/// SPEC section 2: `x-token` or `Authorization: Bearer`; both with different
/// values is refused.
pub fn extract_token(headers: &HeaderMap) -> Result<&str, Rejection> {
    let mut x_tokens = headers.get_all(X_TOKEN);
    let x_token = match (x_tokens.next(), x_tokens.next()) {
        (None, _) => None,
        (Some(v), None) => Some(text(v)?),
        (Some(_), Some(_)) => return Err(Rejection::ConflictingTokens),
    };
    let mut auths = headers.get_all(AUTHORIZATION);
    let bearer = match (auths.next(), auths.next()) {
        (None, _) => None,
        (Some(v), None) => {
            let v = text(v).map_err(|_| Rejection::NotBearer)?;
            match v.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                    Some(token.trim())
                }
                // Another scheme (Basic for some other layer): ignored when an
                // x-token is present, refused when it is the only credential.
                _ if x_token.is_some() => None,
                _ => return Err(Rejection::NotBearer),
            }
        }
        (Some(_), Some(_)) => return Err(Rejection::ConflictingTokens),
    };
    match (x_token, bearer) {
        (None, None) => Err(Rejection::MissingToken),
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (Some(a), Some(b)) if a == b => Ok(a),
        (Some(_), Some(_)) => Err(Rejection::ConflictingTokens),
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
            state: self.state.clone(),
        }))
    }
}

/// The per-worker middleware service.
#[doc(hidden)]
pub struct AppAuthMiddleware<S> {
    service: Rc<S>,
    state: Arc<GateState>,
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
        let state = &self.state;
        if state.exempt.iter().any(|p| p == req.path()) {
            let service = self.service.clone();
            return Box::pin(async move { Ok(service.call(req).await?.map_into_left_body()) });
        }
        let result = state.authenticate(&req);
        match result {
            Ok(verified) => {
                state.metrics.record("accepted", "none");
                req.extensions_mut().insert(Caller(verified));
                let service = self.service.clone();
                Box::pin(async move { Ok(service.call(req).await?.map_into_left_body()) })
            }
            Err(err) => {
                let (outcome, reason) = err.outcome();
                state.metrics.record(outcome, reason);
                tracing::warn!(
                    app_id = err.app_id().unwrap_or("-"),
                    outcome,
                    reason,
                    detail = %err,
                    method = %req.method(),
                    path = req.path(),
                    "request refused"
                );
                let response = err.error_response();
                Box::pin(ready(Ok(req.into_response(response).map_into_right_body())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn token_extraction_follows_section_2() {
        assert_eq!(
            extract_token(&headers(&[("x-token", "a.b.c")])),
            Ok("a.b.c")
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "Bearer a.b.c")])),
            Ok("a.b.c")
        );
        assert_eq!(
            extract_token(&headers(&[
                ("x-token", "a.b.c"),
                ("authorization", "Bearer a.b.c")
            ])),
            Ok("a.b.c")
        );
        assert_eq!(
            extract_token(&headers(&[
                ("x-token", "a.b.c"),
                ("authorization", "Bearer x.y.z")
            ])),
            Err(Rejection::ConflictingTokens)
        );
        assert_eq!(
            extract_token(&headers(&[("x-token", "a.b.c"), ("x-token", "a.b.c")])),
            Err(Rejection::ConflictingTokens)
        );
        assert_eq!(extract_token(&headers(&[])), Err(Rejection::MissingToken));
        assert_eq!(
            extract_token(&headers(&[("authorization", "Basic Zm9vOmJhcg==")])),
            Err(Rejection::NotBearer)
        );
        assert_eq!(
            extract_token(&headers(&[
                ("x-token", "a.b.c"),
                ("authorization", "Basic Zm9v")
            ])),
            Ok("a.b.c")
        );
    }
}
