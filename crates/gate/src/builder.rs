//! The few lines an app writes to add appauth: a keys directory (plus
//! optional policy, revocations, audience, cache, Redis), watched for
//! changes, turned into a [`Gate`] or into a framework adapter's middleware.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use appauth_core::{Algorithm, Clock, SystemClock, Verifier, VerifyConfig};
use prometheus_client::registry::Registry;

use crate::access::{AccessControl, ConfigFileError, DEFAULT_REVOCATIONS_FILE};
use crate::cache::TokenCache;
use crate::gate::Gate;
use crate::metrics::Metrics;
use crate::reload::{Reloadable, Reloader};
use crate::route_pattern::RoutePattern;
use crate::store::KeyStore;
use crate::watcher::{self, WatchConfig};

/// Default memory for the verified-token cache, in MiB.
pub const DEFAULT_TOKEN_CACHE_MB: u64 = 32;

/// Why the gate could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The keys directory is missing, unreadable or not a directory.
    #[error("keys directory {}: {problem}", dir.display())]
    KeysDir {
        /// The directory as given.
        dir: PathBuf,
        /// What is wrong with it, and what to do.
        problem: String,
    },
    /// No algorithm allowed.
    #[error("no algorithm allowed: allow at least RS512")]
    NoAlgorithms,
    /// The policy or revocation file is unusable.
    #[error("{}", crate::revocation::joined(.0))]
    Config(Vec<ConfigFileError>),
    /// The thread that loads the keys in the background could not start.
    #[error("cannot start the key-loading thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The Redis link could not be set up (a bad URL; an unreachable server
    /// is not an error, the gate starts in fallback mode).
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Redis(#[from] crate::shared::SharedError),
    /// The file watcher could not start.
    #[error("cannot watch {}: {source}", dir.display())]
    Watch {
        /// The keys directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: notify::Error,
    },
}

/// What [`Builder::check`] found in order: the files as the gate would use
/// them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Checked {
    /// Apps with a usable key file.
    pub apps: usize,
    /// The keys directory, resolved.
    pub keys_dir: PathBuf,
    /// The policy file, resolved, if any.
    pub policy: Option<PathBuf>,
    /// The revocation file, resolved.
    pub revocations: PathBuf,
}

/// Builds a [`Gate`] over a watched keys directory. Start with
/// [`Gate::from_dir`], or with an adapter's own `from_dir`, which builds its
/// middleware (`G`) around the gate.
#[must_use = "call .build() to get the gate"]
pub struct Builder<G = Gate> {
    keys_dir: PathBuf,
    verify: VerifyConfig,
    policy: Option<PathBuf>,
    revocations: Option<PathBuf>,
    cache_bytes: u64,
    watch: WatchConfig,
    exempt: Vec<RoutePattern>,
    access_log: bool,
    background_load: bool,
    extra: Vec<Arc<dyn Reloadable>>,
    clock: Arc<dyn Clock>,
    metrics: Option<Arc<Metrics>>,
    tracer: Option<Arc<dyn crate::DecisionTracer>>,
    #[cfg(feature = "redis")]
    redis: Option<crate::shared::RedisConfig>,
    output: PhantomData<fn() -> G>,
}

impl<G> std::fmt::Debug for Builder<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("keys_dir", &self.keys_dir)
            .field("policy", &self.policy)
            .field("revocations", &self.revocations)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate over the `<appId>_public.pem` files of `keys_dir`, watched so
    /// that key, policy and revocation changes apply within a second.
    ///
    /// ```no_run
    /// use appauth_gate::Gate;
    /// # fn main() -> Result<(), appauth_gate::BuildError> {
    /// let gate: Gate = Gate::from_dir("keys").policy("policy.toml").build()?;
    /// # Ok(()) }
    /// ```
    pub fn from_dir(keys_dir: impl Into<PathBuf>) -> Builder {
        Builder::new(keys_dir)
    }
}

impl<G> Builder<G> {
    /// A builder over `keys_dir` whose [`Builder::build`] makes a `G` (an
    /// adapter's middleware) around the gate.
    pub fn new(keys_dir: impl Into<PathBuf>) -> Self {
        Self {
            keys_dir: keys_dir.into(),
            verify: VerifyConfig::default(),
            policy: None,
            revocations: None,
            cache_bytes: DEFAULT_TOKEN_CACHE_MB * 1024 * 1024,
            watch: WatchConfig::default(),
            exempt: Vec::new(),
            access_log: false,
            background_load: false,
            extra: Vec::new(),
            clock: Arc::new(SystemClock),
            metrics: None,
            tracer: None,
            #[cfg(feature = "redis")]
            redis: None,
            output: PhantomData,
        }
    }
    /// The token rules: algorithms, leeway, maximum lifetime, audience
    /// (default: [`VerifyConfig::default`]). Keys are prepared for exactly
    /// these algorithms, so they are given once, here.
    pub fn verify(mut self, config: VerifyConfig) -> Self {
        self.verify = config;
        self
    }

    /// Accepted algorithms (default RS512 only).
    pub fn algorithms(mut self, algorithms: impl Into<Vec<Algorithm>>) -> Self {
        self.verify.algorithms = algorithms.into();
        self
    }

    /// Requires `aud` to name this audience.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.verify.audience = Some(audience.into());
        self
    }

    /// The TOML route policy and rate limits, hot-reloaded.
    pub fn policy(mut self, path: impl Into<PathBuf>) -> Self {
        self.policy = Some(path.into());
        self
    }

    /// The revocation list (default: `revoked.txt` in the keys directory).
    pub fn revocations(mut self, path: impl Into<PathBuf>) -> Self {
        self.revocations = Some(path.into());
        self
    }

    /// Memory for the verified-token cache in bytes; 0 turns it off
    /// (default [`DEFAULT_TOKEN_CACHE_MB`] MiB).
    pub fn token_cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Watcher timing and the full rescan interval.
    pub fn watch(mut self, config: WatchConfig) -> Self {
        self.watch = config;
        self
    }

    /// Lets these methods and paths through without a token (see
    /// [`Gate::exempt`] for the patterns). Each call adds to the routes
    /// already exempt.
    ///
    /// # Panics
    /// On a pattern that does not parse.
    pub fn exempt<I, M, S>(mut self, routes: I) -> Self
    where
        I: IntoIterator<Item = (M, S)>,
        M: AsRef<str>,
        S: AsRef<str>,
    {
        self.exempt.extend(crate::gate::exempt_patterns(routes));
        self
    }

    /// Logs every accepted request (see [`Gate::access_log`]).
    pub fn access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }

    /// Loads the keys on a thread of their own: `build` returns at once and
    /// requests get `503 keys_loading` until the load is done. Default:
    /// `build` returns once the keys are loaded.
    pub fn load_in_background(mut self, on: bool) -> Self {
        self.background_load = on;
        self
    }

    /// Also watches the application's own files (a TLS certificate, say).
    pub fn watch_also(mut self, target: Arc<dyn Reloadable>) -> Self {
        self.extra.push(target);
        self
    }

    /// Registers the metrics into the host's registry (under `appauth_`), so
    /// they appear on its existing `/metrics`. Default: a registry of their
    /// own, rendered by [`Metrics::render`].
    pub fn register_metrics(mut self, registry: &mut Registry) -> Self {
        self.metrics = Some(Arc::new(Metrics::register(registry)));
        self
    }

    /// Shares rate limits and revocations with the other replicas through
    /// Redis (docs/spec.md §11). Without it, everything stays in process.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, config: crate::shared::RedisConfig) -> Self {
        self.redis = Some(config);
        self
    }

    /// Hands every decision about a caller to `tracer`, for trace spans
    /// (see [`Gate::with_tracer`]). Default: none, at no cost.
    pub fn tracer(mut self, tracer: Arc<dyn crate::DecisionTracer>) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// Uses another clock (tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The paths in force, each resolved once against the working directory
    /// (file events name absolute paths; see [`crate::files`]).
    fn resolve(&mut self) -> Result<(), BuildError> {
        let dir = self.keys_dir.clone();
        let problem = |problem: String| BuildError::KeysDir {
            dir: dir.clone(),
            problem,
        };
        match std::fs::metadata(&self.keys_dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(problem("is not a directory".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(problem("does not exist; create it or pass another".into()));
            }
            Err(e) => {
                return Err(problem(format!(
                    "{e}; it must be readable and listable (check the permissions of it and \
                     every directory above it)"
                )));
            }
        }
        self.keys_dir = crate::files::resolve_dir(&self.keys_dir)
            .map_err(|e| problem(format!("cannot resolve the path: {e}")))?;
        let file = |p: &Option<PathBuf>| p.as_deref().map(crate::files::resolve_file);
        self.policy = file(&self.policy);
        self.revocations = Some(
            file(&self.revocations).unwrap_or_else(|| self.keys_dir.join(DEFAULT_REVOCATIONS_FILE)),
        );
        Ok(())
    }

    /// Checks the files, starts the watcher and (unless in the background)
    /// loads the keys. The watcher runs as long as any clone of the returned
    /// gate lives.
    pub fn build(mut self) -> Result<G, BuildError>
    where
        G: From<Gate>,
    {
        if self.verify.algorithms.is_empty() {
            return Err(BuildError::NoAlgorithms);
        }
        self.resolve()?;
        let local_share = self.local_share();
        let metrics = self.metrics.unwrap_or_else(|| Arc::new(Metrics::new()));
        let store = Arc::new(KeyStore::new(
            &self.keys_dir,
            self.verify.algorithms.clone(),
            self.clock.clone(),
        ));
        let revocations = self.revocations.clone().unwrap_or_default();
        let (access, events) =
            AccessControl::load_with_local_share(self.policy.clone(), revocations, local_share)
                .map_err(BuildError::Config)?;
        metrics.count_config(&events);
        #[cfg(feature = "redis")]
        let access = match self.redis.take() {
            Some(config) => {
                access.with_shared(crate::shared::Shared::start(config, metrics.clone())?)
            }
            None => access,
        };
        let access = Arc::new(access);
        // Watch before the first scan, so nothing written during it is missed.
        let reloader = Arc::new(Reloader {
            store: store.clone(),
            metrics: metrics.clone(),
            access: access.clone(),
            extra: self.extra,
        });
        let watcher = watcher::watch(reloader, self.watch).map_err(|source| BuildError::Watch {
            dir: self.keys_dir.clone(),
            source,
        })?;
        if self.background_load {
            let (loader, counter) = (store.clone(), metrics.clone());
            std::thread::Builder::new()
                .name("appauth-initial-load".into())
                .spawn(move || initial_load(&loader, &counter))
                .map_err(BuildError::Thread)?;
        } else {
            initial_load(&store, &metrics);
        }
        let mut gate = Gate::new(
            Verifier::with_clock(self.verify, self.clock),
            store.clone(),
            metrics,
        )
        .with_access(access)
        .with_store(store, watcher)
        .with_exempt(self.exempt)
        .access_log(self.access_log);
        if self.cache_bytes > 0 {
            gate = gate.with_cache(Arc::new(TokenCache::new(self.cache_bytes)));
        }
        if let Some(tracer) = self.tracer {
            gate = gate.with_tracer(tracer);
        }
        Ok(G::from(gate))
    }

    /// Reads the keys directory, the policy and the revocation file exactly
    /// as [`Builder::build`] would (the same path resolution, the same rate
    /// share), starts nothing, and reports every problem at once.
    pub fn check(mut self) -> Result<Checked, Vec<String>> {
        if self.verify.algorithms.is_empty() {
            return Err(vec![BuildError::NoAlgorithms.to_string()]);
        }
        self.resolve().map_err(|e| vec![e.to_string()])?;
        let store = KeyStore::new(
            &self.keys_dir,
            self.verify.algorithms.clone(),
            self.clock.clone(),
        );
        let (mut problems, apps) = match store.full_scan() {
            Ok(mut report) => {
                report.problems.sort();
                (report.problems, store.app_count())
            }
            Err(e) => (
                vec![format!("keys directory {}: {e}", self.keys_dir.display())],
                0,
            ),
        };
        let revocations = self.revocations.clone().unwrap_or_default();
        if let Err(errors) = AccessControl::load_with_local_share(
            self.policy.clone(),
            revocations.clone(),
            self.local_share(),
        ) {
            problems.extend(errors.iter().map(ToString::to_string));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Checked {
            apps,
            keys_dir: self.keys_dir,
            policy: self.policy,
            revocations,
        })
    }

    /// Of each rate, what this replica's own limiters enforce: the whole
    /// rate alone, the fallback share with Redis.
    fn local_share(&self) -> f64 {
        #[cfg(feature = "redis")]
        if let Some(crate::shared::Fallback::Share(f)) = self.redis.as_ref().map(|r| r.fallback) {
            return f;
        }
        1.0
    }

    /// The keys directory (resolved once `build` has run).
    pub fn keys_dir(&self) -> &Path {
        &self.keys_dir
    }
}

fn initial_load(store: &KeyStore, metrics: &Metrics) {
    let started = std::time::Instant::now();
    match store.full_scan() {
        Ok(r) => {
            metrics.count_keys(&r, store);
            tracing::info!(
                apps = store.app_count(),
                refused = r.failed,
                ms = started.elapsed().as_millis() as u64,
                "keys loaded; ready"
            );
        }
        Err(e) => tracing::error!(error = %e, "cannot read the keys directory"),
    }
}
