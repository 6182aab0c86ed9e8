//! The server's own routes: health, readiness, metrics, and (outside
//! gateway mode) the protected demo data API.

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{HttpResponse, Responder, Route, web};

use appauth_actix::Caller;
use appauth_gate::{Gate, KeyStore, Metrics};

use crate::{data, proxy};

/// One operational endpoint: served without a token, for [`OPEN_METHOD`]
/// only, and never forwarded in gateway mode.
#[derive(Debug, Clone, Copy)]
pub struct OpenRoute {
    /// The exact path.
    pub path: &'static str,
    route: fn() -> Route,
}

/// The method the operational endpoints serve (probes and scrapers GET).
pub const OPEN_METHOD: Method = Method::GET;

/// The operational endpoints. The gate's exemptions are made from this same
/// table, so an endpoint cannot be mounted open without being exempt, or
/// exempt without being mounted.
pub const OPEN_ROUTES: [OpenRoute; 3] = [
    OpenRoute {
        path: "/healthz",
        route: || web::get().to(healthz),
    },
    OpenRoute {
        path: "/readyz",
        route: || web::get().to(readyz),
    },
    OpenRoute {
        path: "/metrics",
        route: || web::get().to(metrics),
    },
];

/// With `--serve-jwks`: each app's public keys as a JWK Set, open like the
/// operational endpoints (public data, for JWT gateways that verify appauth
/// tokens themselves).
pub const JWKS_ROUTE: OpenRoute = OpenRoute {
    path: "/.well-known/appauth/{app}/jwks.json",
    route: || web::get().to(jwks),
};

/// The open routes in force.
fn open_routes(serve_jwks: bool) -> impl Iterator<Item = OpenRoute> {
    OPEN_ROUTES
        .into_iter()
        .chain(serve_jwks.then_some(JWKS_ROUTE))
}

/// What the gate lets through without a token.
pub fn exemptions(serve_jwks: bool) -> impl Iterator<Item = (Method, &'static str)> {
    open_routes(serve_jwks).map(|r| (OPEN_METHOD, r.path))
}

/// Mounts the server's routes. In gateway mode only the operational
/// endpoints are the server's own: every other path, `/users` included, goes
/// to the upstream, so the demo data can never shadow a real route.
pub fn configure(cfg: &mut web::ServiceConfig, gateway: bool, serve_jwks: bool) {
    for open in open_routes(serve_jwks) {
        cfg.route(open.path, (open.route)());
    }
    if gateway {
        cfg.default_service(web::to(proxy::forward));
        return;
    }
    cfg.route("/ping", web::get().to(ping))
        .route("/whoami", web::get().to(whoami))
        .route("/users", web::get().to(users))
        .route("/users/{id}", web::get().to(user))
        .default_service(web::to(not_found));
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> impl Responder {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 once the gate can accept tokens (the first key load
/// done and, with Redis, its revocations read); 503 with the reason before.
pub async fn readyz(
    store: web::Data<Arc<KeyStore>>,
    gate: web::Data<Gate>,
    drain: web::Data<Arc<crate::drain::Drain>>,
) -> impl Responder {
    if drain.is_draining() {
        // Endpoints drop the pod; /healthz stays 200 so it is not restarted.
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "draining", "reason": "shutting_down" }))
    } else if gate.is_ready() {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready", "apps": store.app_count() }))
    } else {
        let reason = if store.is_ready() {
            "revocations_loading"
        } else {
            "keys_loading"
        };
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "loading", "reason": reason }))
    }
}

/// The `alg` the JWKS route advertises: the one algorithm the server
/// accepts, or none when it accepts several (a JWK names at most one).
#[derive(Debug, Clone, Copy)]
pub struct JwksAlgorithm(pub Option<appauth_core::Algorithm>);

impl JwksAlgorithm {
    /// The advertised `alg` for the algorithms accepted.
    pub fn of(algorithms: &[appauth_core::Algorithm]) -> Self {
        match algorithms {
            [one] => Self(Some(*one)),
            _ => Self(None),
        }
    }
}

/// `GET /.well-known/appauth/{app}/jwks.json`: the app's keys as served to
/// verifiers right now (the same snapshot requests are checked against), or
/// 404 for an app without keys.
pub async fn jwks(
    store: web::Data<Arc<KeyStore>>,
    alg: web::Data<JwksAlgorithm>,
    app: web::Path<String>,
) -> HttpResponse {
    let keys = appauth_core::AppId::new(app.as_str())
        .ok()
        .and_then(|app| appauth_core::KeyProvider::keys_for(store.as_ref().as_ref(), &app));
    match keys {
        Some(keys) => HttpResponse::Ok()
            .insert_header(("cache-control", "no-cache"))
            .content_type("application/jwk-set+json")
            .body(appauth_core::jwk_set(&keys, alg.0).to_string()),
        None => HttpResponse::NotFound().json(serde_json::json!({ "error": "not_found" })),
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(metrics: web::Data<Arc<Metrics>>) -> impl Responder {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(metrics.render())
}

/// `GET /ping`: the cheapest protected route, the same answer as `/healthz`
/// behind the gate. Callers use it to check their credentials; the load
/// benchmark uses it so that its ratio to `/healthz` measures the gate alone.
pub async fn ping(_caller: Caller) -> impl Responder {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `GET /whoami`: the caller's identity as the server sees it.
pub async fn whoami(caller: Caller) -> impl Responder {
    HttpResponse::Ok().json(serde_json::json!({
        "appId": caller.app_id,
        "kid": caller.kid,
        "alg": caller.alg.as_str(),
        "claims": caller.claims,
    }))
}

/// `GET /users`.
pub async fn users(_caller: Caller) -> impl Responder {
    HttpResponse::Ok().json(data::USERS)
}

/// `GET /users/{id}`.
pub async fn user(_caller: Caller, id: web::Path<String>) -> impl Responder {
    match id.parse().ok().and_then(data::user) {
        Some(u) => HttpResponse::Ok().json(u),
        None => HttpResponse::NotFound().json(serde_json::json!({ "error": "not_found" })),
    }
}

/// Any other path, after authentication.
pub async fn not_found(_caller: Caller) -> impl Responder {
    HttpResponse::NotFound().json(serde_json::json!({ "error": "not_found" }))
}
