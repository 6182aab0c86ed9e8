//! The engine: one synchronous decision per request head.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use appauth_core::{KeyProvider, Verified, Verifier};
use prometheus_client::metrics::counter::Counter;

use crate::access::AccessControl;
use crate::cache::TokenCache;
use crate::metrics::Metrics;
use crate::refusal::{LogLevel, Refusal};
use crate::refusal_log::RefusalLog;
use crate::request::{RequestHead, token_bytes};
use crate::route_pattern::RoutePattern;
use crate::store::KeyStore;
use crate::trace::{Decision, DecisionRecord, DecisionTracer, Trail};
use crate::watcher::WatcherHandle;

/// A key source the gate can use: keys plus a readiness flag.
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

/// What the gate lets through.
#[derive(Debug, Clone)]
pub enum Admission {
    /// An exempt route: no token was asked for, and there is no caller.
    Exempt,
    /// A verified caller the access rules allow.
    Caller(Arc<Verified>),
}

/// The gate: verifies the token of every request, then revocation, policy
/// and rate limit (docs/spec.md §3). It does no I/O on the request path and
/// never awaits, so one gate serves every framework: an adapter hands it a
/// [`RequestHead`] and maps the answer. Cheap to clone.
///
/// ```
/// use std::{collections::HashMap, sync::Arc};
/// use appauth_core::{AppId, PublicKey, Verifier, VerifyConfig};
/// use appauth_gate::{Admission, Gate, Metrics, RequestHead};
///
/// let keys: HashMap<AppId, Arc<[PublicKey]>> = HashMap::new(); // no app has keys yet
/// let gate = Gate::new(Verifier::new(VerifyConfig::default()), Arc::new(keys), Arc::new(Metrics::new()))
///     .exempt([("GET", "/healthz")]);
/// let probe = RequestHead { method: "GET", path: "/healthz", headers: &[] };
/// assert!(matches!(gate.authenticate(&probe), Ok(Admission::Exempt)));
/// let data = RequestHead { method: "GET", path: "/data", headers: &[] };
/// let refusal = gate.authenticate(&data).unwrap_err();
/// assert_eq!((refusal.status(), refusal.reason()), (401, "missing_token"));
/// ```
#[derive(Clone)]
pub struct Gate {
    state: Arc<State>,
}

#[derive(Clone)]
struct State {
    verifier: Verifier,
    keys: Arc<dyn KeySource>,
    metrics: Arc<Metrics>,
    access: Option<Arc<AccessControl>>,
    cache: Option<Arc<TokenCache>>,
    exempt: Vec<RoutePattern>,
    access_log: bool,
    refusals: Arc<RefusalLog>,
    tracer: Option<Arc<dyn DecisionTracer>>,
    /// The watched store and its watcher, when built from a directory: the
    /// watcher stops when the last clone of the gate is dropped.
    store: Option<(Arc<KeyStore>, Arc<WatcherHandle>)>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.state;
        f.debug_struct("Gate")
            .field("verifier", &s.verifier)
            .field("access", &s.access.is_some())
            .field("cache", &s.cache)
            .field("exempt", &s.exempt)
            .field("access_log", &s.access_log)
            .field("tracer", &s.tracer.is_some())
            .field("store", &s.store.as_ref().map(|(store, _)| store))
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate verifying with `verifier` against `keys`, counting in
    /// `metrics`. Over a watched directory, start with [`Gate::from_dir`].
    pub fn new(verifier: Verifier, keys: Arc<dyn KeySource>, metrics: Arc<Metrics>) -> Self {
        Self {
            state: Arc::new(State {
                verifier,
                keys,
                metrics,
                access: None,
                cache: None,
                exempt: Vec::new(),
                access_log: false,
                refusals: Arc::new(RefusalLog::default()),
                tracer: None,
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

    /// Lets requests for these methods and paths through without a token,
    /// so the gate can wrap a whole app while health probes stay open. Each
    /// path is a pattern of the one route language (`*` or `{name}` for one
    /// segment, a trailing `/**` for a subtree; see
    /// [`crate::route_pattern`]), matched exactly: `/healthz/` is not
    /// `/healthz`. Only the method given is exempt: `POST /healthz` still
    /// needs a token. Each call adds to the routes already exempt.
    ///
    /// # Panics
    /// On a pattern that does not parse: exemptions are written in code, and
    /// a typo must not silently protect (or open) a route.
    pub fn exempt<I, M, S>(self, routes: I) -> Self
    where
        I: IntoIterator<Item = (M, S)>,
        M: AsRef<str>,
        S: AsRef<str>,
    {
        let routes = exempt_patterns(routes);
        self.rebuild(|s| s.exempt.extend(routes))
    }

    pub(crate) fn with_exempt(self, routes: Vec<RoutePattern>) -> Self {
        self.rebuild(|s| s.exempt.extend(routes))
    }

    /// Logs every accepted request (app, kid, method, path, status and time
    /// to the response head) at INFO under the `appauth::access` target.
    /// Off by default: refusals are always logged, acceptances only on demand.
    pub fn access_log(self, on: bool) -> Self {
        self.rebuild(|s| s.access_log = on)
    }

    /// Hands every decision about a caller to `tracer` (docs/spec.md §13):
    /// [`Gate::decide`] then answers the `traceparent` it returns.
    pub fn with_tracer(self, tracer: Arc<dyn DecisionTracer>) -> Self {
        self.rebuild(|s| s.tracer = Some(tracer))
    }

    fn rebuild(self, change: impl FnOnce(&mut State)) -> Self {
        let mut state = State::clone(&self.state);
        change(&mut state);
        Self {
            state: Arc::new(state),
        }
    }

    /// The watched key store, for a gate made by [`Gate::from_dir`]
    /// (readiness probes read it).
    pub fn key_store(&self) -> Option<&Arc<KeyStore>> {
        self.state.store.as_ref().map(|(s, _)| s)
    }

    /// The metrics the gate counts in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }

    /// Whether the gate can accept tokens: keys loaded and, with Redis, its
    /// revocations read (what a readiness probe should report).
    pub fn is_ready(&self) -> bool {
        let s = &self.state;
        s.keys.is_ready() && s.access.as_ref().is_none_or(|a| a.ready())
    }

    /// Whether accepted requests are to be logged ([`Gate::log_accepted`]).
    pub fn access_log_enabled(&self) -> bool {
        self.state.access_log
    }

    /// Decides a request from its head (docs/spec.md §3): the path's form
    /// first, for every route; then the exemptions; then readiness, the
    /// token, revocation, policy and rate limit. Counts the outcome in the
    /// metrics and logs a refusal (at most one line per reason a second).
    /// Synchronous and free of I/O.
    pub fn authenticate(&self, head: &RequestHead<'_>) -> Result<Admission, Refusal> {
        self.decide(head).result
    }

    /// [`Gate::authenticate`], and the trace context the decision leaves
    /// when a tracer is set ([`Gate::with_tracer`]): what adapters call, so
    /// a gateway can forward the decision's `traceparent`.
    #[inline]
    pub fn decide(&self, head: &RequestHead<'_>) -> Decision {
        let Some(tracer) = &self.state.tracer else {
            let result = self.decide_untraced(head, &mut Trail::default());
            return Decision {
                result,
                trace: None,
            };
        };
        let (started, clock) = (SystemTime::now(), Instant::now());
        let mut trail = Trail::default();
        let result = self.decide_untraced(head, &mut trail);
        let outcome = match &result {
            Ok(Admission::Exempt) => {
                return Decision {
                    result,
                    trace: None,
                };
            }
            Ok(Admission::Caller(verified)) => Ok(verified.as_ref()),
            Err(refusal) => Err(refusal),
        };
        let trace = tracer.record(&DecisionRecord {
            head,
            outcome,
            cache_hit: trail.cache_hit,
            verify_time: trail.verify_time,
            started,
            took: clock.elapsed(),
        });
        Decision { result, trace }
    }

    #[inline]
    fn decide_untraced(
        &self,
        head: &RequestHead<'_>,
        trail: &mut Trail,
    ) -> Result<Admission, Refusal> {
        let s = &self.state;
        // Step 0, before any route, exempt ones included: one resource, one
        // spelling, whatever sits in front of or behind the gate.
        if let Err(problem) = crate::path::check(head.path) {
            return Err(self.refused(Refusal::NotCanonical(problem), head));
        }
        if s.exempt
            .iter()
            .any(|p| p.matches_exactly(head.method, head.path))
        {
            return Ok(Admission::Exempt);
        }
        match self.verify(head, trail) {
            Ok((verified, accepted)) => {
                s.metrics.record_accepted();
                accepted.inc();
                Ok(Admission::Caller(verified))
            }
            Err(refusal) => Err(self.refused(refusal, head)),
        }
    }

    /// Logs an accepted request, when the access log is on: adapters call it
    /// with the response's status once the service answered.
    pub fn log_accepted(
        &self,
        caller: &Verified,
        method: &str,
        path: &str,
        status: u16,
        took: Duration,
    ) {
        if self.state.access_log {
            tracing::info!(
                target: "appauth::access",
                app_id = %caller.app_id,
                kid = %caller.kid,
                method,
                path,
                status,
                micros = took.as_micros() as u64,
                "request"
            );
        }
    }

    /// Takes one of `caller`'s in-flight slots for a request held upstream
    /// (what the gateway does around each proxied request), or refuses it
    /// 429 `concurrency_limit` when the app already holds its policy's
    /// `concurrency` (default [`crate::DEFAULT_CONCURRENCY`]). Keep the
    /// [`crate::Held`] until the response body is done. Synchronous.
    pub fn hold(&self, caller: &Verified, head: &RequestHead<'_>) -> Result<crate::Held, Refusal> {
        let limit = self
            .state
            .access
            .as_ref()
            .and_then(|a| a.concurrency(&caller.app_id))
            .map_or(crate::DEFAULT_CONCURRENCY, std::num::NonZeroU32::get);
        let gauge = self.state.metrics.in_flight(caller.app_id.as_str());
        crate::Held::take(gauge, limit).ok_or_else(|| {
            self.refused(
                Refusal::ConcurrencyLimited {
                    app_id: caller.app_id.to_string(),
                    limit,
                },
                head,
            )
        })
    }

    /// Counts and logs a refusal its host made itself (a connection-level
    /// limit, say), as [`Gate::authenticate`] does its own, and hands it
    /// back to be answered.
    pub fn refuse(&self, refusal: Refusal, head: &RequestHead<'_>) -> Refusal {
        self.refused(refusal, head)
    }

    fn refused(&self, refusal: Refusal, head: &RequestHead<'_>) -> Refusal {
        let code = refusal.code();
        let (outcome, reason) = (code.outcome(), code.reason());
        self.state.metrics.record(code);
        // The metrics count every refusal; the log says one line per reason
        // per second, so a junk flood is not a log flood.
        if let Some(suppressed) = self.state.refusals.admit(outcome, reason) {
            let app_id = refusal.app_id().unwrap_or("-");
            let (method, path) = (head.method, head.path);
            match code.log_level() {
                LogLevel::Warn => tracing::warn!(
                    app_id, outcome, reason, detail = %refusal, method, path, suppressed,
                    "request refused"
                ),
                LogLevel::Info => tracing::info!(
                    app_id, outcome, reason, detail = %refusal, method, path, suppressed,
                    "request refused"
                ),
            }
        }
        refusal
    }

    fn verify(
        &self,
        head: &RequestHead<'_>,
        trail: &mut Trail,
    ) -> Result<(Arc<Verified>, Counter), Refusal> {
        let s = &self.state;
        if !s.keys.is_ready() {
            return Err(Refusal::NotReady);
        }
        if s.access.as_ref().is_some_and(|a| !a.ready()) {
            return Err(Refusal::RevocationsNotLoaded);
        }
        // The header's bytes, which are checked as text only where they
        // fail to verify: see `token_bytes` and `Verifier::verify_bytes`.
        let token = token_bytes(head.headers)?;
        let keys = s.keys.as_ref();
        let mut verify = || {
            let started = Instant::now();
            let result = s.verifier.verify_bytes(token, keys);
            let took = started.elapsed();
            s.metrics.observe_verify(took);
            trail.verify_time = Some(took);
            result.map(Arc::new)
        };
        let counter = |v: &Verified| {
            s.metrics
                .accepted_counter(v.app_id.as_str(), v.kid.as_str())
        };
        let (verified, accepted) = match &s.cache {
            None => {
                let verified = verify()?;
                let accepted = counter(&verified);
                (verified, accepted)
            }
            Some(cache) => {
                let now = s.verifier.clock().now();
                match cache.get(token, keys, &s.verifier, now) {
                    Some(hit) => {
                        s.metrics.token_cache_hit();
                        trail.cache_hit = Some(true);
                        hit
                    }
                    None => {
                        s.metrics.token_cache_miss();
                        trail.cache_hit = Some(false);
                        let verified = verify()?;
                        let accepted = counter(&verified);
                        cache.insert(token, verified.clone(), accepted.clone());
                        s.metrics.token_cache_entries(cache.len());
                        (verified, accepted)
                    }
                }
            }
        };
        if let Some(access) = &s.access {
            access
                .check(&verified, head.method, head.path)
                .map_err(|denial| Refusal::denied(&verified.app_id, denial))?;
        }
        Ok((verified, accepted))
    }
}

/// Exemptions as patterns; a pattern that does not parse is a programming
/// error in the embedding app.
pub(crate) fn exempt_patterns<I, M, S>(routes: I) -> Vec<RoutePattern>
where
    I: IntoIterator<Item = (M, S)>,
    M: AsRef<str>,
    S: AsRef<str>,
{
    routes
        .into_iter()
        .map(|(m, p)| {
            let (m, p) = (m.as_ref(), p.as_ref());
            RoutePattern::of(m, p)
                .unwrap_or_else(|e| panic!("exempt route \"{m} {p}\" does not parse: {e}"))
        })
        .collect()
}
