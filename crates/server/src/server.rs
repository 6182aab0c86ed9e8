//! The product assembled from the library: [`build_state`] checks the
//! configuration and starts the gate, [`configure`] mounts the routes (so
//! tests can mount them in process), and [`run`] binds and serves.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, web};
use appauth_actix::AppAuth;
use appauth_core::{Clock, SystemClock, VerifyConfig};
use appauth_gate::{BuildError, Builder, KeyStore, Metrics, WatchConfig};

use crate::proxy::{Upstream, UpstreamError};
use crate::routes;
use crate::tls::{CertReloader, TlsError};

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
    pub token_cache_bytes: u64,
    /// TLS certificate chain (PEM); with `tls_key`, serve HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Gateway mode: forward every other path here after the gate.
    pub upstream: Option<String>,
    /// Longest wait for the upstream's response headers.
    pub upstream_timeout: Duration,
    /// Longest a client may take to send a request head, on every request of
    /// a connection (slow-loris bound).
    pub request_head_timeout: Duration,
    /// Longest an idle keep-alive connection stays open between requests.
    pub keep_alive: Duration,
    /// HTTP worker threads. Default: one per core.
    pub workers: Option<usize>,
    /// After SIGTERM, how long to keep accepting and serving (with
    /// `/readyz` 503) before accepting stops.
    pub drain_delay: Duration,
    /// Once accepting stops, how long requests in flight may take (in
    /// gateway mode never less than `upstream_timeout`).
    pub shutdown_timeout: Duration,
    /// Log as JSON lines instead of text.
    pub log_json: bool,
    /// Log every accepted request (app, kid, method, path, status, time).
    pub access_log: bool,
    /// Publish each app's keys at `/.well-known/appauth/{app}/jwks.json`.
    pub serve_jwks: bool,
    /// Share rate limits and revocations with other replicas through Redis.
    pub redis: Option<appauth_gate::shared::RedisConfig>,
    /// Trace spans of gate decisions: where they go, or off.
    pub traces: crate::trace::Export,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The keys directory, policy or revocations are unusable, or the watcher
    /// could not start.
    #[error(transparent)]
    Gate(#[from] BuildError),
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
    /// The trace exporter could not start.
    #[error(transparent)]
    Trace(#[from] crate::trace::TraceError),
    /// The server stopped with an I/O error.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

impl ServerConfig {
    /// The revocation file in force.
    pub fn revocations_path(&self) -> PathBuf {
        self.revocations
            .clone()
            .unwrap_or_else(|| self.keys_dir.join(appauth_gate::DEFAULT_REVOCATIONS_FILE))
    }
}

/// What the routes need: the gate (with its store and metrics), the TLS
/// pair and the upstream, built once and shared by every worker.
#[derive(Clone)]
pub struct State {
    /// The middleware, which owns the watched store.
    pub gate: AppAuth,
    /// The key store (for `/readyz`).
    pub store: Arc<KeyStore>,
    /// The metrics (for `/metrics`).
    pub metrics: Arc<Metrics>,
    /// The TLS certificate pair, when serving HTTPS.
    pub tls: Option<Arc<CertReloader>>,
    /// The upstream, in gateway mode.
    pub upstream: Option<Upstream>,
    /// Whether the JWKS route is mounted.
    pub serve_jwks: bool,
    /// The `alg` the JWKS route advertises.
    pub jwks_algorithm: routes::JwksAlgorithm,
    /// Requests in flight, and the drain after SIGTERM.
    pub drain: Arc<crate::drain::Drain>,
    /// The trace exporter, when traces are on.
    pub tracing: Option<Arc<crate::trace::Tracing>>,
}

/// The gate as the configuration describes it: what the server starts and
/// what `--check-config` checks are one builder.
pub fn gate_builder(config: &ServerConfig) -> Builder<AppAuth> {
    let mut builder = AppAuth::from_dir(&config.keys_dir)
        .verify(config.verify.clone())
        .watch(config.watch)
        .token_cache_bytes(config.token_cache_bytes)
        .exempt(routes::exemptions(config.serve_jwks))
        .access_log(config.access_log)
        .load_in_background(true);
    if let Some(policy) = &config.policy {
        builder = builder.policy(policy);
    }
    if let Some(redis) = &config.redis {
        builder = builder.redis(redis.clone());
    }
    if let Some(revocations) = &config.revocations {
        builder = builder.revocations(revocations);
    }
    builder
}

/// Checks the configuration, loads the TLS pair, starts the gate over the
/// keys directory (keys load in the background; `/readyz` says when).
pub fn build_state(config: &ServerConfig) -> Result<State, Error> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(CertReloader::new(
            appauth_gate::files::resolve_file(cert),
            appauth_gate::files::resolve_file(key),
            SystemClock.now(),
        )?)),
        (None, None) => None,
        _ => return Err(Error::TlsHalf),
    };
    let upstream = config
        .upstream
        .as_deref()
        .map(|u| Upstream::parse(u, config.upstream_timeout))
        .transpose()?;
    let tracing = crate::trace::Tracing::start(&config.traces)?.map(Arc::new);
    let mut builder = gate_builder(config);
    if let Some(tls) = &tls {
        builder = builder.watch_also(tls.clone());
    }
    if let Some(tracing) = &tracing {
        builder = builder.tracer(tracing.decision_tracer());
    }
    let gate = builder.build()?;
    let store = gate
        .key_store()
        .cloned()
        .expect("a gate built from a directory has a store");
    let metrics = gate.metrics().clone();
    Ok(State {
        gate,
        store,
        metrics,
        tls,
        upstream,
        serve_jwks: config.serve_jwks,
        jwks_algorithm: routes::JwksAlgorithm::of(&config.verify.algorithms),
        drain: Arc::default(),
        tracing,
    })
}

/// Mounts the server's routes and shared data; the gate is wrapped around
/// the whole app by [`run`] (or by a test).
pub fn configure(cfg: &mut web::ServiceConfig, state: &State) {
    cfg.app_data(web::Data::new(state.store.clone()))
        .app_data(web::Data::new(state.metrics.clone()))
        .app_data(web::Data::new(state.jwks_algorithm))
        .app_data(web::Data::new(state.gate.gate().clone()))
        .app_data(web::Data::new(state.drain.clone()));
    if let Some(upstream) = &state.upstream {
        cfg.app_data(web::Data::new(upstream.clone()))
            .app_data(web::Data::new(crate::proxy::client()));
    }
    routes::configure(cfg, state.upstream.is_some(), state.serve_jwks);
}

/// Runs the server until SIGINT or SIGTERM, then drains in-flight requests.
pub async fn run(config: ServerConfig) -> Result<(), Error> {
    let state = build_state(&config)?;
    let app_state = state.clone();
    // The gate wraps the whole app, so every route, including ones added
    // later and the 404 default, is protected unless exempted.
    let app = move || {
        let state = app_state.clone();
        let gate = state.gate.gate().clone();
        let drain = state.drain.clone();
        App::new()
            .wrap(state.gate.clone())
            // Outermost: a stream past the connection's limit is refused
            // before its token costs anything.
            .wrap_fn(move |req, srv| {
                use actix_web::dev::Service as _;
                // Counted until the last byte of the response is out.
                let in_flight = drain.track();
                let drain = drain.clone();
                let slot = req
                    .conn_data::<crate::listen::StreamSlots>()
                    .map(crate::listen::StreamSlots::take);
                let call = match slot {
                    Some(None) => {
                        let head = appauth_gate::RequestHead {
                            method: req.method().as_str(),
                            path: req.path(),
                            headers: &[],
                        };
                        let limit = crate::listen::H2_MAX_CONCURRENT_STREAMS;
                        Err(gate.refuse(appauth_gate::Refusal::TooManyStreams { limit }, &head))
                    }
                    _ => Ok(srv.call(req)),
                };
                async move {
                    let response = match call {
                        Ok(call) => call.await,
                        Err(refusal) => Err(appauth_actix::Rejected(refusal).into()),
                    };
                    drop(slot);
                    match response {
                        Ok(response) => Ok(response.map_body(|head, body| {
                            // Draining: keep-alive clients move elsewhere.
                            if drain.is_draining() {
                                head.set_connection_type(actix_http::ConnectionType::Close);
                            }
                            crate::drain::Tracked::new(body, in_flight)
                        })),
                        Err(e) => {
                            in_flight.finish();
                            Err(e)
                        }
                    }
                }
            })
            .configure(move |cfg| configure(cfg, &state))
    };
    // Limits, set deliberately (README, "Limits"): every request head, on
    // every request of a connection, must arrive within request_head_timeout
    // (actix also caps a head at 128 KiB and 96 headers); idle keep-alive
    // connections close after keep_alive (15 s); a client that stops reading
    // is dropped 1 s after the response; at most 256 TLS handshakes at once
    // per worker.
    let limits = crate::listen::Limits {
        head_timeout: config.request_head_timeout,
        keep_alive: config.keep_alive,
        disconnect_timeout: Duration::from_secs(1),
        max_tls_handshakes: 256,
        tls_hello_timeout: crate::listen::TLS_HELLO_TIMEOUT,
        tls_handshake_timeout: config.request_head_timeout,
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
    // In gateway mode a request may rightly take the upstream timeout; the
    // shutdown does not cut it short.
    let shutdown_timeout = match config.upstream {
        Some(_) => config.shutdown_timeout.max(config.upstream_timeout),
        None => config.shutdown_timeout,
    };
    let server = crate::listen::serve(
        app,
        listeners,
        state.tls.as_ref().map(|t| t.server_config()),
        config.workers,
        limits,
        shutdown_timeout,
    )
    .map_err(bind_err)?;
    let handle = server.handle();
    actix_web::rt::spawn(crate::drain::on_signals(
        state.drain.clone(),
        config.drain_delay,
        shutdown_timeout,
        move || handle.stop(true),
    ));
    for addr in addrs {
        match &state.tls {
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
        keys_dir = %state.store.dir().display(),
        algorithms = ?config.verify.algorithms.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        leeway_s = config.verify.leeway,
        max_token_lifetime_s = config.verify.max_lifetime,
        audience = config.verify.audience.as_deref().unwrap_or("-"),
        policy = %config.policy.as_ref().map_or("none (every app may call every route)".into(), |p| p.display().to_string()),
        revocations = %config.revocations_path().display(),
        token_cache_mb = config.token_cache_bytes / (1024 * 1024),
        traces = %config.traces.describe(),
        "verifying tokens"
    );
    let served = server.await;
    crate::drain::log_stopped(&state.drain);
    if let Some(tracing) = &state.tracing {
        tracing.shutdown();
    }
    served?;
    drop(state);
    tracing::info!("appauth-server stopped");
    Ok(())
}
