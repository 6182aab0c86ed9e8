//! The actix-web middleware that puts appauth in front of any service.
//!
//! ```no_run
//! use std::sync::Arc;
//! use actix_web::{web, App, HttpServer, Responder};
//! use appauth_core::{Verifier, VerifyConfig};
//! use appauth_actix::{AppAuth, Caller, KeyStore, Metrics};
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
use actix_web::http::Method;
use actix_web::http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError};
use appauth_core::{KeyProvider, Rejection, Verified, Verifier};
use prometheus_client::metrics::counter::Counter;

use crate::access::AccessControl;
use crate::cache::TokenCache;
use crate::error::AuthError;
use crate::metrics::Metrics;
use crate::refusal_log::RefusalLog;
use crate::store::KeyStore;
use crate::watcher::WatcherHandle;

const X_TOKEN: HeaderName = HeaderName::from_static(appauth_core::TOKEN_HEADER);

/// A key source the middleware can use: keys plus a readiness flag.
pub trait KeySource: KeyProvider + Send + Sync {
    /// Whether keys are loaded; until then requests get 503.
    fn is_ready(&self) -> bool {
        true
    }
}

impl KeySource for KeyStore {
    fn is_ready(&self) -> bool {
        KeyStore::is_ready(self)
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

/// The middleware: verifies the token of every request it wraps, then
/// revocation, policy and rate limit, and hands the handler a [`Caller`].
/// Cheap to clone (one per worker). Make one over a watched directory with
/// [`AppAuth::from_dir`], or over any [`KeySource`] with [`AppAuth::new`]:
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
    exempt: Vec<(Method, String)>,
    access_log: bool,
    refusals: Arc<RefusalLog>,
    /// The watched store and its watcher, when built from a directory: the
    /// watcher stops when the last clone of the gate is dropped.
    store: Option<(Arc<KeyStore>, Arc<WatcherHandle>)>,
}

impl std::fmt::Debug for AppAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.state;
        f.debug_struct("AppAuth")
            .field("verifier", &s.verifier)
            .field("access", &s.access.is_some())
            .field("cache", &s.cache)
            .field("exempt", &s.exempt)
            .field("access_log", &s.access_log)
            .field("store", &s.store.as_ref().map(|(store, _)| store))
            .finish_non_exhaustive()
    }
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
                access_log: false,
                refusals: Arc::new(RefusalLog::default()),
                store: None,
            }),
        }
    }

    /// Adds revocation, route policy and rate limits (docs/spec.md §3 steps
    /// 8-10), checked only once a token has verified.
    pub fn with_access(self, access: Arc<AccessControl>) -> Self {
        self.rebuild(|s| s.access = Some(access))
    }

    /// Adds the verified-token cache: a token seen before costs a lookup
    /// instead of an RSA verification.
    pub fn with_cache(self, cache: Arc<TokenCache>) -> Self {
        self.rebuild(|s| s.cache = Some(cache))
    }

    /// Keeps the watched store (and its watcher) with the gate.
    pub(crate) fn with_store(self, store: Arc<KeyStore>, watcher: WatcherHandle) -> Self {
        let watcher = Arc::new(watcher);
        self.rebuild(|s| s.store = Some((store, watcher)))
    }

    /// The watched key store, for a gate made by [`AppAuth::from_dir`]
    /// (readiness probes read it).
    pub fn key_store(&self) -> Option<&Arc<KeyStore>> {
        self.state.store.as_ref().map(|(s, _)| s)
    }

    /// The metrics the gate counts in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }

    /// Lets requests for these exact methods and paths through without a
    /// token, so the gate can wrap a whole app while health probes stay open.
    /// A path segment written `{name}` matches any one segment, as in an
    /// actix route (`/.well-known/appauth/{app}/jwks.json`).
    /// Only the method given is exempt: `POST /healthz` still needs a token,
    /// whatever the app behind would do with it. Each call adds to the
    /// routes already exempt, as [`crate::Builder::exempt`] does.
    pub fn exempt<I: IntoIterator<Item = (Method, S)>, S: Into<String>>(self, routes: I) -> Self {
        let routes = routes.into_iter().map(|(m, p)| (m, p.into()));
        self.rebuild(|s| s.exempt.extend(routes))
    }

    /// Logs every accepted request (app, kid, method, path, status and time
    /// to the response head) at INFO under the `appauth::access` target.
    /// Off by default: refusals are always logged, acceptances only on demand.
    pub fn access_log(self, on: bool) -> Self {
        self.rebuild(|s| s.access_log = on)
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
    fn authenticate(&self, req: &ServiceRequest) -> Result<(Arc<Verified>, Counter), AuthError> {
        crate::path::check(req.path()).map_err(AuthError::NotCanonical)?;
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
        let counter = |v: &Verified| {
            self.metrics
                .accepted_counter(v.app_id.as_str(), v.kid.as_str())
        };
        let (verified, accepted) = match &self.cache {
            None => {
                let verified = verify()?;
                let accepted = counter(&verified);
                (verified, accepted)
            }
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
                        let accepted = counter(&verified);
                        cache.insert(token, verified.clone(), accepted.clone());
                        self.metrics.token_cache_entries.set(cache.len() as i64);
                        (verified, accepted)
                    }
                }
            }
        };
        if let Some(access) = &self.access {
            access
                .check(&verified, req.method().as_str(), req.path())
                .map_err(|denial| AuthError::denied(&verified.app_id, denial))?;
        }
        Ok((verified, accepted))
    }
}

/// Whether `path` is the route `pattern`, where a `{name}` segment matches
/// any one non-empty segment.
fn route_matches(pattern: &str, path: &str) -> bool {
    if !pattern.contains('{') {
        return pattern == path;
    }
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {}
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

// UTF-8 is enough here (and SIMD-fast, unlike `to_str`'s byte loop): the
// verifier refuses anything outside base64url and dots anyway.
fn text(v: &HeaderValue) -> Result<&str, Rejection> {
    std::str::from_utf8(v.as_bytes()).map_err(|_| Rejection::NotThreeParts)
}

/// RFC 9110 section 11.4 and RFC 6750 section 2.1: a case-insensitive
/// scheme, then whitespace (any run of spaces and tabs), then the token.
/// `None` for another scheme; an error for a Bearer with no token or with
/// whitespace inside it.
fn bearer(value: &str) -> Result<Option<&str>, Rejection> {
    let blank = |c: char| c == ' ' || c == '\t';
    let value = value.trim_matches(blank);
    let (scheme, rest) = match value.find(blank) {
        Some(i) => (&value[..i], value[i..].trim_start_matches(blank)),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    if rest.is_empty() || rest.contains(blank) {
        return Err(Rejection::NotBearer);
    }
    Ok(Some(rest))
}

/// docs/spec.md §2: `x-token` or `Authorization: Bearer`; both with different
/// values is refused, so a second token can never ride along unchecked.
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
            match bearer(v)? {
                Some(token) => Some(token),
                // Another scheme (Basic for some other layer): ignored when an
                // x-token is present, refused when it is the only credential.
                None if x_token.is_some() => None,
                None => return Err(Rejection::NotBearer),
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
        if state
            .exempt
            .iter()
            .any(|(m, p)| m == req.method() && route_matches(p, req.path()))
        {
            let service = self.service.clone();
            return Box::pin(async move { Ok(service.call(req).await?.map_into_left_body()) });
        }
        let result = state.authenticate(&req);
        match result {
            Ok((verified, accepted)) => {
                state.metrics.record("accepted", "none");
                accepted.inc();
                let service = self.service.clone();
                if !state.access_log {
                    req.extensions_mut().insert(Caller(verified));
                    return Box::pin(
                        async move { Ok(service.call(req).await?.map_into_left_body()) },
                    );
                }
                let started = Instant::now();
                let (method, path) = (req.method().clone(), req.path().to_owned());
                req.extensions_mut().insert(Caller(verified.clone()));
                Box::pin(async move {
                    let response = service.call(req).await?;
                    tracing::info!(
                        target: "appauth::access",
                        app_id = %verified.app_id,
                        kid = %verified.kid,
                        method = %method,
                        path,
                        status = response.status().as_u16(),
                        micros = started.elapsed().as_micros() as u64,
                        "request"
                    );
                    Ok(response.map_into_left_body())
                })
            }
            Err(err) => {
                let (outcome, reason) = err.outcome();
                state.metrics.record(outcome, reason);
                // The metrics count every refusal; the log says one line per
                // reason per second, so a junk flood is not a log flood.
                if let Some(suppressed) = state.refusals.admit(outcome, reason) {
                    tracing::warn!(
                        app_id = err.app_id().unwrap_or("-"),
                        outcome,
                        reason,
                        detail = %err,
                        method = %req.method(),
                        path = req.path(),
                        suppressed,
                        "request refused"
                    );
                }
                let response = err.error_response();
                Box::pin(ready(Ok(req.into_response(response).map_into_right_body())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exempt_patterns_match_one_segment_per_placeholder() {
        let p = "/.well-known/appauth/{app}/jwks.json";
        assert!(route_matches(p, "/.well-known/appauth/orders/jwks.json"));
        assert!(!route_matches(p, "/.well-known/appauth//jwks.json"));
        assert!(!route_matches(p, "/.well-known/appauth/a/b/jwks.json"));
        assert!(!route_matches(p, "/.well-known/appauth/orders/jwks.json/x"));
        assert!(route_matches("/healthz", "/healthz"));
        assert!(!route_matches("/healthz", "/healthz/"));
    }

    #[test]
    fn bearer_takes_any_whitespace_and_one_token() {
        assert_eq!(bearer("Bearer a.b.c"), Ok(Some("a.b.c")));
        assert_eq!(bearer("bearer\ta.b.c"), Ok(Some("a.b.c")));
        assert_eq!(bearer("BEARER \t a.b.c "), Ok(Some("a.b.c")));
        assert_eq!(bearer("Basic Zm9v"), Ok(None));
        assert_eq!(bearer("Bearer"), Err(Rejection::NotBearer));
        assert_eq!(bearer("Bearer a.b.c x.y.z"), Err(Rejection::NotBearer));
    }

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
        // A second token behind a tab is still a second token.
        assert_eq!(
            extract_token(&headers(&[
                ("x-token", "a.b.c"),
                ("authorization", "Bearer\tx.y.z")
            ])),
            Err(Rejection::ConflictingTokens)
        );
    }
}
