//! The server's own routes: health, readiness, metrics, and the protected
//! data API.

use std::sync::Arc;

use actix_web::{HttpResponse, Responder, web};

use crate::middleware::Caller;
use crate::{KeyStore, Metrics, data};

/// `GET /healthz`: the process is up.
pub async fn healthz() -> impl Responder {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 once the first key load is done.
pub async fn readyz(store: web::Data<Arc<KeyStore>>) -> impl Responder {
    if store.is_ready() {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready", "apps": store.app_count() }))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({ "status": "loading" }))
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
