//! The few lines an existing actix-web app writes to add appauth: a keys
//! directory (plus optional policy, revocations, audience, cache), watched
//! for changes, turned into the [`AppAuth`] middleware.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::http::Method;
use appauth_core::{Algorithm, Clock, SystemClock, Verifier, VerifyConfig};
use prometheus_client::registry::Registry;

use crate::access::{AccessControl, ConfigFileError, DEFAULT_REVOCATIONS_FILE};
use crate::cache::TokenCache;
use crate::metrics::Metrics;
use crate::middleware::AppAuth;
use crate::reload::{Reloadable, Reloader};
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

/// Builds an [`AppAuth`] over a watched keys directory. Start with
/// [`AppAuth::from_dir`].
#[must_use = "call .build() to get the middleware"]
pub struct Builder {
    keys_dir: PathBuf,
    verify: VerifyConfig,
    policy: Option<PathBuf>,
    revocations: Option<PathBuf>,
    cache_bytes: u64,
    watch: WatchConfig,
    exempt: Vec<(Method, String)>,
    access_log: bool,
    background_load: bool,
    extra: Vec<Arc<dyn Reloadable>>,
    clock: Arc<dyn Clock>,
    metrics: Option<Arc<Metrics>>,
    #[cfg(feature = "redis")]
    redis: Option<crate::shared::RedisConfig>,
}

impl AppAuth {
    /// A gate over the `<appId>_public.pem` files of `keys_dir`, watched so
    /// that key, policy and revocation changes apply within a second.
    ///
    /// ```no_run
    /// use actix_web::{App, HttpServer, web};
    /// use appauth_actix::{AppAuth, Caller};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let gate = AppAuth::from_dir("keys").policy("policy.toml").build()?;
    /// HttpServer::new(move || {
    ///     App::new().service(
    ///         web::scope("/api")
    ///             .wrap(gate.clone())
    ///             .route("/hello", web::get().to(|c: Caller| async move { format!("hello, {}", c.app_id) })),
    ///     )
    /// })
    /// .bind("127.0.0.1:8080")?
    /// .run()
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn from_dir(keys_dir: impl Into<PathBuf>) -> Builder {
        Builder {
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
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
}

impl Builder {
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

    /// Lets these exact methods and paths through without a token.
    pub fn exempt<I: IntoIterator<Item = (Method, S)>, S: Into<String>>(
        mut self,
        routes: I,
    ) -> Self {
        self.exempt
            .extend(routes.into_iter().map(|(m, p)| (m, p.into())));
        self
    }

    /// Logs every accepted request (see [`AppAuth::access_log`]).
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
    pub fn build(mut self) -> Result<AppAuth, BuildError> {
        if self.verify.algorithms.is_empty() {
            return Err(BuildError::NoAlgorithms);
        }
        self.resolve()?;
        let metrics = self.metrics.unwrap_or_else(|| Arc::new(Metrics::new()));
        let store = Arc::new(KeyStore::new(
            &self.keys_dir,
            self.verify.algorithms.clone(),
            self.clock.clone(),
        ));
        let revocations = self.revocations.clone().unwrap_or_default();
        #[cfg(feature = "redis")]
        let local_share = match self.redis.as_ref().map(|r| r.fallback) {
            Some(crate::shared::Fallback::Share(f)) => f,
            _ => 1.0,
        };
        #[cfg(not(feature = "redis"))]
        let local_share = 1.0;
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
        let mut gate = AppAuth::new(
            Verifier::with_clock(self.verify, self.clock),
            store.clone(),
            metrics,
        )
        .with_access(access)
        .with_store(store, watcher)
        .exempt(self.exempt)
        .access_log(self.access_log);
        if self.cache_bytes > 0 {
            gate = gate.with_cache(Arc::new(TokenCache::new(self.cache_bytes)));
        }
        Ok(gate)
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
