//! How refusals become HTTP responses, in one place.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use appauth_core::{AppId, Reason, Rejection};

use crate::access::Denial;
use crate::path::PathProblem;

/// The outcomes other than a token rejection, as `(outcome, reason)`; with
/// [`Reason::ALL`] they are every label [`AuthError::outcome`] returns.
const OTHER_OUTCOMES: [(&str, &str); 5] = [
    ("unavailable", "keys_loading"),
    ("bad_request", "path_not_canonical"),
    ("forbidden", "route_not_allowed"),
    ("forbidden", "path_not_canonical"),
    ("rate_limited", "rate_exceeded"),
];

/// A request the gate refuses. The response says only the reason code; the
/// details go to the log.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthError {
    /// The token was missing or did not verify: 401.
    Rejected(Rejection),
    /// The first key load has not finished: 503, try again shortly.
    NotReady,
    /// The path is not in canonical form (`path::check`): 400, refused
    /// before the token is looked at.
    NotCanonical(PathProblem),
    /// The policy does not allow this route for this app: 403.
    Forbidden {
        /// The verified caller.
        app_id: String,
        /// `route_not_allowed` or `path_not_canonical`.
        reason: &'static str,
    },
    /// Over the app's rate: 429.
    RateLimited {
        /// The verified caller.
        app_id: String,
        /// Whole seconds until a request would be allowed (at least 1).
        retry_after_secs: u64,
    },
}

impl AuthError {
    /// The refusal for a verified caller the rules turned away.
    pub fn denied(app_id: &AppId, denial: Denial) -> Self {
        let app_id = app_id.to_string();
        match denial {
            Denial::Revoked(rule) => Self::Rejected(Rejection::Revoked {
                app_id,
                rule: rule.as_str(),
            }),
            Denial::RouteNotAllowed => Self::Forbidden {
                app_id,
                reason: "route_not_allowed",
            },
            Denial::PathNotCanonical => Self::Forbidden {
                app_id,
                reason: "path_not_canonical",
            },
            Denial::RateLimited(wait) => Self::RateLimited {
                app_id,
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            },
        }
    }

    /// Every `(outcome, reason)` that [`AuthError::outcome`] can return, so
    /// metrics pre-register them all and a new reason cannot be forgotten.
    pub fn all_outcomes() -> impl Iterator<Item = (&'static str, &'static str)> {
        Reason::ALL
            .iter()
            .map(|r| ("rejected", r.as_str()))
            .chain(OTHER_OUTCOMES)
    }

    /// `(outcome, reason)` for metrics and logs.
    pub fn outcome(&self) -> (&'static str, &'static str) {
        match self {
            Self::Rejected(r) => ("rejected", r.reason().as_str()),
            Self::NotReady => ("unavailable", "keys_loading"),
            Self::NotCanonical(_) => ("bad_request", "path_not_canonical"),
            Self::Forbidden { reason, .. } => ("forbidden", reason),
            Self::RateLimited { .. } => ("rate_limited", "rate_exceeded"),
        }
    }

    /// The caller's appId, when it is known (verified, or at least
    /// grammar-checked for a rejection).
    pub fn app_id(&self) -> Option<&str> {
        match self {
            Self::Rejected(r) => r.app_id(),
            Self::NotReady | Self::NotCanonical(_) => None,
            Self::Forbidden { app_id, .. } | Self::RateLimited { app_id, .. } => Some(app_id),
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(r) => write!(f, "{r}"),
            Self::NotReady => f.write_str("keys are still loading"),
            Self::NotCanonical(problem) => write!(f, "{problem}"),
            Self::Forbidden { app_id, reason } => {
                write!(f, "app {app_id} forbidden by policy ({reason})")
            }
            Self::RateLimited {
                app_id,
                retry_after_secs,
            } => write!(
                f,
                "app {app_id} rate limited; retry after {retry_after_secs}s"
            ),
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
            Self::NotCanonical(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
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
            Self::NotCanonical(_) => resp.json(
                serde_json::json!({ "error": "bad_request", "reason": "path_not_canonical" }),
            ),
            Self::Forbidden { reason, .. } => {
                resp.json(serde_json::json!({ "error": "forbidden", "reason": reason }))
            }
            Self::RateLimited {
                retry_after_secs, ..
            } => {
                resp.insert_header((header::RETRY_AFTER, retry_after_secs.max(&1).to_string()));
                resp.json(serde_json::json!({ "error": "rate_limited", "reason": "rate_exceeded" }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_in_the_list_metrics_pre_register() {
        let app = AppId::new("a").unwrap();
        let mut errors = vec![
            AuthError::NotReady,
            AuthError::NotCanonical(PathProblem::DotSegment),
            AuthError::Rejected(Rejection::MissingToken),
        ];
        errors.extend(
            [
                Denial::Revoked(crate::revocation::RevokedBy::Kid),
                Denial::RouteNotAllowed,
                Denial::PathNotCanonical,
                Denial::RateLimited(std::time::Duration::from_millis(1500)),
            ]
            .map(|d| AuthError::denied(&app, d)),
        );
        let all: Vec<_> = AuthError::all_outcomes().collect();
        for e in &errors {
            assert!(all.contains(&e.outcome()), "{:?} missing", e.outcome());
        }
        let AuthError::RateLimited {
            retry_after_secs, ..
        } = AuthError::denied(
            &app,
            Denial::RateLimited(std::time::Duration::from_millis(1500)),
        )
        else {
            panic!()
        };
        assert_eq!(retry_after_secs, 2);
    }
}
