//! Assembling and running the API server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use appauth_core::{Clock, SystemClock, Verifier, VerifyConfig};

use crate::access::{AccessControl, ConfigFileError, DEFAULT_REVOCATIONS_FILE};
use crate::cache::TokenCache;
use crate::middleware::AppAuth;
use crate::proxy::{self, Upstream, UpstreamError};
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
    /// Longest a client may take to send a request head (slow-loris bound).
    /// Default: 5 s.
    pub request_head_timeout: Duration,
    /// HTTP worker threads. Default: one per core.
    pub workers: Option<usize>,
    /// Log as JSON lines instead of text.
    pub log_json: bool,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The keys directory is missing or not a directory.
    #[error("keys directory {} {problem}; create it or pass --keys-dir", dir.display())]
    KeysDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        problem: &'static str,
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

/// Runs the server until SIGINT or SIGTERM, then drains in-flight requests.
pub async fn run(config: ServerConfig) -> Result<(), Error> {
    match std::fs::metadata(&config.keys_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::KeysDir {
                dir: config.keys_dir,
                problem: "is not a directory",
            });
        }
        Err(_) => {
            return Err(Error::KeysDir {
                dir: config.keys_dir,
                problem: "does not exist",
            });
        }
    }
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
    let gate = gate.exempt(["/healthz", "/readyz", "/metrics"]);
    let upstream_data = upstream.clone().map(web::Data::new);
    let mut server = HttpServer::new(move || {
        let fallback = match &upstream_data {
            Some(_) => web::to(proxy::forward),
            None => web::to(routes::not_found),
        };
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
        app.route("/healthz", web::get().to(routes::healthz))
            .route("/readyz", web::get().to(routes::readyz))
            .route("/metrics", web::get().to(routes::metrics))
            .route("/ping", web::get().to(routes::ping))
            .route("/whoami", web::get().to(routes::whoami))
            .route("/users", web::get().to(routes::users))
            .route("/users/{id}", web::get().to(routes::user))
            .default_service(fallback)
    })
    // Limits, set deliberately (README, "Limits"): a request head must arrive
    // within request_head_timeout (408 otherwise; actix also caps a head at
    // 128 KiB and 96 headers); idle keep-alive connections close after 15 s;
    // a client that stops reading is dropped 1 s after the response; at most
    // 256 TLS handshakes per second per worker.
    .shutdown_timeout(10)
    .client_request_timeout(config.request_head_timeout)
    .client_disconnect_timeout(Duration::from_secs(1))
    .keep_alive(Duration::from_secs(15))
    .max_connection_rate(256);
    if let Some(workers) = config.workers {
        server = server.workers(workers);
    }
    let bind_err = |source| Error::Bind {
        addr: config.bind.clone(),
        source,
    };
    let server = match &tls {
        Some(tls) => server
            .bind_rustls_0_23(&config.bind, tls.server_config())
            .map_err(bind_err)?,
        None => server.bind(&config.bind).map_err(bind_err)?,
    };
    for addr in server.addrs() {
        match &tls {
            Some(_) => tracing::info!("appauth-server listening on https://{addr}"),
            None => tracing::info!(
                "appauth-server listening on http://{addr} (plain HTTP, no TLS: for local runs \
                 and behind a TLS-terminating proxy)"
            ),
        }
    }
    if let Some(u) = &config.upstream {
        tracing::info!(upstream = %u, timeout_s = config.upstream_timeout.as_secs(), "gateway mode: forwarding other paths");
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
    server.run().await?;
    drop(watcher);
    tracing::info!("appauth-server stopped");
    Ok(())
}

/// Sets up logging to stderr; `RUST_LOG` overrides the `info` default.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
