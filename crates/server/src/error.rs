//! How refusals become HTTP responses, in one place.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use appauth_core::Rejection;

/// A request the gate refuses. The response says only the reason code; the
/// details go to the log.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthError {
    /// The token was missing or did not verify: 401.
    Rejected(Rejection),
    /// The first key load has not finished: 503, try again shortly.
    NotReady,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(r) => write!(f, "{r}"),
            Self::NotReady => f.write_str("keys are still loading"),
        }
    }
}

impl std::error::Error for AuthError {}

impl From<Rejection> for AuthError {
    fn from(r: Rejection) -> Self {
        Self::Rejected(r)
    }
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Rejected(_) => StatusCode::UNAUTHORIZED,
            Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        resp.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        match self {
            Self::Rejected(r) => {
                let error = r.bearer_error();
                // RFC 6750 section 3; both parts are fixed ASCII strings.
                let challenge = format!(r#"Bearer realm="appauth", error="{error}""#);
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    resp.insert_header((header::WWW_AUTHENTICATE, v));
                }
                resp.json(serde_json::json!({ "error": error, "reason": r.reason().as_str() }))
            }
            Self::NotReady => {
                resp.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
                resp.json(serde_json::json!({ "error": "not_ready", "reason": "keys_loading" }))
            }
        }
    }
}
