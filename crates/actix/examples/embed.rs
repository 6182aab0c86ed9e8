//! An existing actix-web app (its own routes, its own Prometheus `/metrics`)
//! adding appauth in a few lines.
//!
//!     cargo run -p appauth-actix --example embed -- KEYS_DIR [127.0.0.1:8090]
//!
//! `/api/*` then needs an appauth token; `/status` and `/metrics` stay the
//! app's own and open; appauth's counters appear on the app's `/metrics`.

use std::sync::Mutex;

use actix_web::{App, HttpResponse, HttpServer, web};
use appauth_actix::{AppAuth, BuildError, Caller};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// What the app had before appauth: a registry with its own metric.
pub struct Telemetry {
    registry: Mutex<Registry>,
    orders: Counter,
}

/// The app's metrics registry, with appauth's registered into it, and the
/// gate for `/api`.
pub fn setup(keys_dir: &std::path::Path) -> Result<(web::Data<Telemetry>, AppAuth), BuildError> {
    let mut registry = Registry::default();
    let orders = Counter::default();
    registry.register("shop_orders", "Orders placed", orders.clone());
    // The whole of adding appauth: a directory, the host's registry, build.
    let gate = AppAuth::from_dir(keys_dir)
        .register_metrics(&mut registry)
        .build()?;
    let telemetry = web::Data::new(Telemetry {
        registry: Mutex::new(registry),
        orders,
    });
    Ok((telemetry, gate))
}

/// The app's routes: `/api` behind the gate, the rest its own.
pub fn routes(cfg: &mut web::ServiceConfig, telemetry: web::Data<Telemetry>, gate: AppAuth) {
    cfg.app_data(telemetry)
        .route("/status", web::get().to(|| async { "up" }))
        .route("/metrics", web::get().to(metrics))
        .service(
            web::scope("/api")
                .wrap(gate)
                .route("/orders", web::post().to(place_order)),
        );
}

async fn place_order(caller: Caller, telemetry: web::Data<Telemetry>) -> HttpResponse {
    telemetry.orders.inc();
    HttpResponse::Ok().json(serde_json::json!({ "placed_by": caller.app_id }))
}

async fn metrics(telemetry: web::Data<Telemetry>) -> HttpResponse {
    let mut out = String::new();
    let registry = telemetry.registry.lock().unwrap_or_else(|e| e.into_inner());
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(out)
}

#[allow(
    dead_code,
    reason = "the tests include this file for setup() and routes()"
)]
fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(keys_dir) = args.next() else {
        eprintln!("usage: embed KEYS_DIR [ADDR]");
        std::process::exit(2);
    };
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let (telemetry, gate) = setup(keys_dir.as_ref()).map_err(std::io::Error::other)?;
    println!("listening on http://{addr}; POST /api/orders needs a token");
    actix_web::rt::System::new().block_on(
        HttpServer::new(move || {
            App::new().configure(|cfg| routes(cfg, telemetry.clone(), gate.clone()))
        })
        .bind(&addr)?
        .run(),
    )
}
