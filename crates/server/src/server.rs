//! Assembling and running the API server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, web};
use appauth_core::{Clock, SystemClock, Verifier, VerifyConfig};

use crate::access::{AccessControl, ConfigFileError, DEFAULT_REVOCATIONS_FILE};
use crate::cache::TokenCache;
use crate::middleware::AppAuth;
use crate::proxy::{Upstream, UpstreamError};
use crate::reload::Reloader;
use crate::tls::{CertReloader, TlsError};
use crate::watcher::{self, WatchConfig};
use crate::{KeyStore, Metrics, routes};

/// Everything the server is started with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The watched directory of `<appId>_public.pem` files.
    pub keys_dir: PathBuf,
    /// Address to listen on. Default `127.0.0.1:8080`; port 0 picks a free
    /// port (the chosen address is logged).
    pub bind: String,
    /// Token rules: algorithms, leeway, maximum lifetime, audience.
    pub verify: VerifyConfig,
    /// Watcher timing and rescan interval.
    pub watch: WatchConfig,
    /// The TOML route policy; `None`: every verified app may call every
    /// route, with no rate limit.
    pub policy: Option<PathBuf>,
    /// The revocation list; `None`: `revoked.txt` in the keys directory.
    pub revocations: Option<PathBuf>,
    /// Memory budget of the verified-token cache in bytes; 0 turns it off.
    /// Default: 32 MiB.
    pub token_cache_bytes: u64,
    /// TLS certificate chain (PEM); with `tls_key`, serve HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Gateway mode: forward every other path here after the gate.
    pub upstream: Option<String>,
    /// Longest wait for the upstream's response headers. Default: 30 s.
    pub upstream_timeout: Duration,
    /// Longest a client may take to send a request head, on every request of
    /// a connection (slow-loris bound). Default: 5 s.
    pub request_head_timeout: Duration,
    /// Longest an idle keep-alive connection stays open between requests.
    /// Default: 15 s.
    pub keep_alive: Duration,
    /// HTTP worker threads. Default: one per core.
    pub workers: Option<usize>,
    /// Log as JSON lines instead of text.
    pub log_json: bool,
    /// Log every accepted request (app, kid, method, path, status, time).
    pub access_log: bool,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The keys directory is missing, unreadable or not a directory.
    #[error("keys directory {}: {problem}", dir.display())]
    KeysDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it, and what to do.
        problem: String,
    },
    /// No algorithm allowed.
    #[error("--algorithms is empty: allow at least RS512")]
    NoAlgorithms,
    /// The file watcher could not start.
    #[error("cannot watch {}: {source}", dir.display())]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: notify::Error,
    },
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Only one of --tls-cert and --tls-key.
    #[error("--tls-cert and --tls-key go together: give both for HTTPS, or neither for plain HTTP")]
    TlsHalf,
    /// A malformed `--upstream`.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The policy or revocation file is unusable.
    #[error("{}", list(.0))]
    Config(Vec<ConfigFileError>),
    /// The server stopped with an I/O error.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

fn list(errors: &[ConfigFileError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ServerConfig {
    /// The revocation file in force.
    pub fn revocations_path(&self) -> PathBuf {
        self.revocations
            .clone()
            .unwrap_or_else(|| self.keys_dir.join(DEFAULT_REVOCATIONS_FILE))
    }
}

/// Checks the keys directory and resolves every configured path to an
/// absolute one, once, so that file events (which name absolute paths) match
/// them however they were typed and whatever the working directory.
pub fn resolve_paths(mut config: ServerConfig) -> Result<ServerConfig, Error> {
    let dir = config.keys_dir.clone();
    let keys_dir_error = |problem: String| Error::KeysDir {
        dir: dir.clone(),
        problem,
    };
    match std::fs::metadata(&config.keys_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(keys_dir_error(
                "is not a directory; pass --keys-dir DIR".into(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(keys_dir_error(
                "does not exist; create it or pass --keys-dir".into(),
            ));
        }
        Err(e) => {
            return Err(keys_dir_error(format!(
                "{e}; the server needs to read and list it (check the permissions of it and \
                 every directory above it)"
            )));
        }
    }
    config.keys_dir = crate::files::resolve_dir(&config.keys_dir)
        .map_err(|e| keys_dir_error(format!("cannot resolve the path: {e}")))?;
    let file = |p: &Option<PathBuf>| p.as_deref().map(crate::files::resolve_file);
    config.policy = file(&config.policy);
    config.revocations = file(&config.revocations);
    config.tls_cert = file(&config.tls_cert);
    config.tls_key = file(&config.tls_key);
    Ok(config)
}

/// Runs the server until SIGINT or SIGTERM, then drains in-flight requests.
pub async fn run(config: ServerConfig) -> Result<(), Error> {
    let config = resolve_paths(config)?;
    if config.verify.algorithms.is_empty() {
        return Err(Error::NoAlgorithms);
    }

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(KeyStore::new(
        &config.keys_dir,
        config.verify.algorithms.clone(),
        clock.clone(),
        metrics.clone(),
    ));
    let access = Arc::new(
        AccessControl::load(
            config.policy.clone(),
            config.revocations_path(),
            metrics.clone(),
        )
        .map_err(Error::Config)?,
    );
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(CertReloader::new(
            cert.clone(),
            key.clone(),
            clock.now(),
        )?)),
        (None, None) => None,
        _ => return Err(Error::TlsHalf),
    };
    let upstream = config
        .upstream
        .as_deref()
        .map(|u| Upstream::parse(u, config.upstream_timeout))
        .transpose()?;
    // Watch before the first scan, so nothing written during it is missed.
    let reloader = Arc::new(Reloader {
        store: store.clone(),
        access: access.clone(),
        tls: tls.clone(),
    });
    let watcher = watcher::watch(reloader, config.watch).map_err(|source| Error::Watch {
        dir: config.keys_dir.clone(),
        source,
    })?;
    let loader = store.clone();
    std::thread::Builder::new()
        .name("appauth-initial-load".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            match loader.full_scan() {
                Ok(r) => tracing::info!(
                    apps = loader.app_count(),
                    refused = r.failed,
                    ms = started.elapsed().as_millis() as u64,
                    "keys loaded; ready"
                ),
                Err(e) => tracing::error!(error = %e, "cannot read the keys directory"),
            }
        })?;

    let gate = AppAuth::new(
        Verifier::with_clock(config.verify.clone(), clock),
        store.clone(),
        metrics.clone(),
    )
    .with_access(access);
    let gate = if config.token_cache_bytes > 0 {
        gate.with_cache(Arc::new(TokenCache::new(config.token_cache_bytes)))
    } else {
        gate
    };
    let store_data = web::Data::new(store.clone());
    let metrics_data = web::Data::new(metrics.clone());
    // The gate wraps the whole app, so every route, including ones added
    // later and the 404 default, is protected unless exempted by name.
    let gate = gate
        .exempt(routes::exemptions())
        .access_log(config.access_log);
    let upstream_data = upstream.clone().map(web::Data::new);
    let app = move || {
        let mut app = App::new()
            .wrap(gate.clone())
            .app_data(store_data.clone())
            .app_data(metrics_data.clone());
        if let Some(upstream) = &upstream_data {
            // awc clients are per worker (not Send); redirects are the
            // caller's business, not the gateway's.
            let client = awc::Client::builder().disable_redirects().finish();
            app = app
                .app_data(upstream.clone())
                .app_data(web::Data::new(client));
        }
        let gateway = upstream_data.is_some();
        app.configure(|cfg| routes::configure(cfg, gateway))
    };
    // Limits, set deliberately (README, "Limits"): every request head, on
    // every request of a connection, must arrive within request_head_timeout
    // (actix also caps a head at 128 KiB and 96 headers); idle keep-alive
    // connections close after keep_alive (15 s); a client that stops reading is dropped
    // 1 s after the response; at most 256 TLS handshakes at once per worker.
    let limits = crate::listen::Limits {
        head_timeout: config.request_head_timeout,
        keep_alive: config.keep_alive,
        disconnect_timeout: Duration::from_secs(1),
        max_tls_handshakes: 256,
    };
    let bind_err = |source| Error::Bind {
        addr: config.bind.clone(),
        source,
    };
    let listeners = crate::listen::bind(&config.bind).map_err(bind_err)?;
    let addrs: Vec<_> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let server = crate::listen::serve(
        app,
        listeners,
        tls.as_ref().map(|t| t.server_config()),
        config.workers,
        limits,
    )
    .map_err(bind_err)?;
    for addr in addrs {
        match &tls {
            Some(_) => tracing::info!("appauth-server listening on https://{addr}"),
            None => tracing::info!(
                "appauth-server listening on http://{addr} (plain HTTP, no TLS: for local runs \
                 and behind a TLS-terminating proxy)"
            ),
        }
    }
    if let Some(u) = &config.upstream {
        tracing::info!(
            upstream = %u,
            timeout_s = config.upstream_timeout.as_secs(),
            "gateway mode: every path but /healthz, /readyz and /metrics goes upstream"
        );
    }
    tracing::info!(
        keys_dir = %config.keys_dir.display(),
        algorithms = ?config.verify.algorithms.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        leeway_s = config.verify.leeway,
        max_token_lifetime_s = config.verify.max_lifetime,
        audience = config.verify.audience.as_deref().unwrap_or("-"),
        policy = %config.policy.as_ref().map_or("none (every app may call every route)".into(), |p| p.display().to_string()),
        revocations = %config.revocations_path().display(),
        token_cache_mb = config.token_cache_bytes / (1024 * 1024),
        "verifying tokens"
    );
    server.await?;
    drop(watcher);
    tracing::info!("appauth-server stopped");
    Ok(())
}
