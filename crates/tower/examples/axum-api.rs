//! An axum service with appauth in front of its API: `/healthz`, `/readyz`
//! and `/metrics` open, `/ping`, `/whoami` and `/users` behind the layer,
//! appauth's metrics on the service's own registry, keys, policy and
//! revocations hot-reloaded.
//!
//!     cargo run -p appauth-tower --features axum --example axum-api -- \
//!         --keys-dir keys --bind 127.0.0.1:8091 [--policy FILE] [--revocations FILE] [--audience AUD]
//!         [--token-cache-mb 32]

use std::sync::{Arc, Mutex};

use appauth_tower::{AppAuthLayer, Caller};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use prometheus_client::registry::Registry;
use serde_json::json;

/// The example's flags.
#[derive(Parser)]
pub struct Args {
    /// The directory of `<appId>_public.pem` files.
    #[arg(long)]
    pub keys_dir: std::path::PathBuf,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8091")]
    pub bind: String,
    /// The route policy (TOML).
    #[arg(long)]
    pub policy: Option<std::path::PathBuf>,
    /// The revocation list.
    #[arg(long)]
    pub revocations: Option<std::path::PathBuf>,
    /// Require `aud` to name this audience.
    #[arg(long)]
    pub audience: Option<String>,
    /// Memory for the verified-token cache, MiB (0: off; the benchmark's
    /// cold run).
    #[arg(long, default_value_t = appauth_tower::DEFAULT_TOKEN_CACHE_MB)]
    pub token_cache_mb: u64,
}

/// What the handlers share: the app's registry (appauth's metrics inside)
/// and the gate (for readiness).
#[derive(Clone)]
struct App {
    registry: Arc<Mutex<Registry>>,
    auth: AppAuthLayer,
}

#[allow(dead_code, reason = "the tests include this file for `app` alone")]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let app = app(&args)?;
    let listener = tokio::net::TcpListener::bind(&args.bind).await?;
    tracing::info!("axum-api listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// The service's routes, with appauth in front of the API.
pub fn app(args: &Args) -> Result<Router, appauth_tower::BuildError> {
    let mut registry = Registry::default();

    // The whole of adding appauth: a directory, the open routes, the host's
    // registry, the optional files, build; then `.layer(auth)` below.
    let mut builder = AppAuthLayer::from_dir(&args.keys_dir)
        .exempt([("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")])
        .register_metrics(&mut registry)
        .token_cache_bytes(args.token_cache_mb * 1024 * 1024);
    if let Some(policy) = &args.policy {
        builder = builder.policy(policy);
    }
    if let Some(revocations) = &args.revocations {
        builder = builder.revocations(revocations);
    }
    if let Some(audience) = &args.audience {
        builder = builder.audience(audience);
    }
    let auth = builder.build()?;

    let state = App {
        registry: Arc::new(Mutex::new(registry)),
        auth: auth.clone(),
    };
    Ok(Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/ping",
            get(|_: Caller| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/whoami", get(whoami))
        .route("/users", get(users))
        .with_state(state)
        .layer(auth))
}

async fn readyz(State(app): State<App>) -> impl IntoResponse {
    let store = app.auth.gate().key_store().expect("built from a directory");
    // Keys loaded and, with Redis, its revocations read.
    if app.auth.gate().is_ready() {
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "apps": store.app_count() })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "loading" })),
        )
    }
}

async fn metrics(State(app): State<App>) -> impl IntoResponse {
    let mut out = String::new();
    let registry = app.registry.lock().unwrap_or_else(|e| e.into_inner());
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
}

async fn whoami(caller: Caller) -> impl IntoResponse {
    Json(json!({
        "appId": caller.app_id,
        "kid": caller.kid,
        "alg": caller.alg.as_str(),
        "claims": caller.claims,
    }))
}

async fn users(_: Caller) -> impl IntoResponse {
    Json(json!([
        { "id": 1, "name": "Ada Lovelace", "email": "ada@example.com" },
        { "id": 2, "name": "Alan Turing", "email": "alan@example.com" },
    ]))
}
