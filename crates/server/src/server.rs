//! Assembling and running the API server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use appauth_core::{Clock, SystemClock, Verifier, VerifyConfig};

use crate::middleware::AppAuth;
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
    /// The server stopped with an I/O error.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
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
    // Watch before the first scan, so nothing written during it is missed.
    let watcher = watcher::watch(store.clone(), config.watch).map_err(|source| Error::Watch {
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
    );
    let store_data = web::Data::new(store.clone());
    let metrics_data = web::Data::new(metrics.clone());
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(store_data.clone())
            .app_data(metrics_data.clone())
            .route("/healthz", web::get().to(routes::healthz))
            .route("/readyz", web::get().to(routes::readyz))
            .route("/metrics", web::get().to(routes::metrics))
            .service(
                web::scope("")
                    .wrap(gate.clone())
                    .route("/whoami", web::get().to(routes::whoami))
                    .route("/users", web::get().to(routes::users))
                    .route("/users/{id}", web::get().to(routes::user))
                    .default_service(web::to(routes::not_found)),
            )
    })
    .shutdown_timeout(10)
    .client_request_timeout(Duration::from_secs(5));
    if let Some(workers) = config.workers {
        server = server.workers(workers);
    }
    let server = server.bind(&config.bind).map_err(|source| Error::Bind {
        addr: config.bind.clone(),
        source,
    })?;
    for addr in server.addrs() {
        tracing::info!(
            "appauth-server listening on http://{addr} (plain HTTP, no TLS: for local runs and \
             behind a TLS-terminating proxy)"
        );
    }
    tracing::info!(
        keys_dir = %config.keys_dir.display(),
        algorithms = ?config.verify.algorithms.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        leeway_s = config.verify.leeway,
        max_token_lifetime_s = config.verify.max_lifetime,
        audience = config.verify.audience.as_deref().unwrap_or("-"),
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
