//! `--admin-listen`: `/healthz`, `/readyz` and `/metrics`, without a token.
//! It signs nothing, so unlike the proxy it may listen on any address (for
//! a Prometheus outside the pod).

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::body::{self, ProxyBody};
use crate::{Keys, Metrics};

/// The admin routes.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Readiness is "a usable key is held".
    pub keys: Arc<Keys>,
    /// What `/metrics` renders.
    pub metrics: Metrics,
    /// Readiness ends when the drain begins.
    pub drain: Arc<appauth_core::drain::Drain>,
}

impl Admin {
    /// Answers one admin request.
    pub fn handle<B>(&self, req: &Request<B>) -> Response<ProxyBody> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return json(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"method_not_allowed"}"#.into(),
            );
        }
        match req.uri().path() {
            "/healthz" => json(StatusCode::OK, r#"{"status":"ok"}"#.into()),
            "/readyz" if self.drain.is_draining() => json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"status":"draining","reason":"shutting_down"}"#.into(),
            ),
            "/readyz" if self.keys.ready() => json(StatusCode::OK, r#"{"status":"ready"}"#.into()),
            "/readyz" => json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"status":"not_ready","reason":"no_signing_key"}"#.into(),
            ),
            "/metrics" => {
                let mut r = Response::new(body::full(self.metrics.render()));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                r
            }
            _ => json(StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#.into()),
        }
    }
}

fn json(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
