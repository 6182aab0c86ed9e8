//! Every way the gate turns a request away, in one type.
//!
//! A [`Refusal`] knows its HTTP status, its reason code, its metric outcome
//! label, its `WWW-Authenticate` challenge, its JSON body, its gRPC status
//! and its log level. Adapters translate it mechanically: they copy
//! [`Refusal::status`], [`Refusal::headers`] and [`Refusal::body`] into their
//! framework's response type and add nothing of their own, so every adapter
//! answers byte for byte the same.
//!
//! Adding a refusal is one line in the [`codes!`] table below plus a variant
//! of [`Refusal`] if it carries context: the compiler then points at every
//! `match` that must learn of it, and [`Code::ALL`] (from which metrics
//! pre-register their labels) grows by itself.

use std::fmt;

use appauth_core::{AppId, Reason, Rejection};

use crate::access::Denial;
use crate::path::PathProblem;

/// How loudly a refusal is logged (the log itself is bounded per reason:
/// see the refusal log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Expected in normal operation (an expired token, a rate limit).
    Info,
    /// Worth an operator's look (a bad signature, an unknown app).
    Warn,
}

/// Declares [`Code`], its `ALL` list and its columns from one table, so a
/// code cannot exist without a status, an outcome, a reason and a place in
/// `ALL`.
macro_rules! codes {
    ($(
        $(#[$doc:meta])*
        $name:ident => $status:literal, $outcome:literal, $reason:literal, $error:literal, $level:ident;
    )*) => {
        /// A refusal's stable identity: what the caller, the metrics and the
        /// log see. [`Refusal`] adds the context an operator needs.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $( $(#[$doc])* $name, )*
        }

        impl Code {
            /// Every code, in table order: metrics pre-register a series for
            /// each `(outcome, reason)`, so dashboards see zeros, not gaps.
            pub const ALL: &'static [Code] = &[ $( Code::$name, )* ];

            /// The HTTP status.
            pub const fn status(self) -> u16 {
                match self { $( Code::$name => $status, )* }
            }

            /// The metric outcome label: `rejected`, `forbidden`,
            /// `rate_limited`, `bad_request` or `unavailable`.
            pub const fn outcome(self) -> &'static str {
                match self { $( Code::$name => $outcome, )* }
            }

            /// The reason code of the body and of the metric's `reason`
            /// label (docs/spec.md §3).
            pub const fn reason(self) -> &'static str {
                match self { $( Code::$name => $reason, )* }
            }

            /// The body's `error` member (for 401s, the RFC 6750 error code
            /// of the `WWW-Authenticate` challenge).
            pub const fn error(self) -> &'static str {
                match self { $( Code::$name => $error, )* }
            }

            /// How loudly the refusal is logged.
            pub const fn log_level(self) -> LogLevel {
                match self { $( Code::$name => LogLevel::$level, )* }
            }
        }
    };
}

codes! {
    /// No token in the request.
    MissingToken => 401, "rejected", "missing_token", "invalid_request", Info;
    /// A token sent twice with different values, or an `Authorization`
    /// header that is not `Bearer <token>`.
    MalformedRequest => 401, "rejected", "malformed", "invalid_request", Warn;
    /// Not a well-formed token.
    Malformed => 401, "rejected", "malformed", "invalid_token", Warn;
    /// `alg` is not on the allow-list.
    UnsupportedAlg => 401, "rejected", "unsupported_alg", "invalid_token", Warn;
    /// No keys are loaded for the token's appId.
    UnknownApp => 401, "rejected", "unknown_app", "invalid_token", Warn;
    /// No key of the app verifies the signature.
    BadSignature => 401, "rejected", "bad_signature", "invalid_token", Warn;
    /// Past `exp` (plus leeway).
    Expired => 401, "rejected", "expired", "invalid_token", Info;
    /// Before `nbf`, or issued in the future.
    NotYetValid => 401, "rejected", "not_yet_valid", "invalid_token", Warn;
    /// `exp - iat` over the maximum.
    LifetimeTooLong => 401, "rejected", "lifetime_too_long", "invalid_token", Warn;
    /// `aud` does not name this server's audience.
    WrongAudience => 401, "rejected", "wrong_audience", "invalid_token", Warn;
    /// On the revocation list.
    Revoked => 401, "rejected", "revoked", "invalid_token", Warn;
    /// The path is not in canonical form: refused before the token is read.
    PathNotCanonical => 400, "bad_request", "path_not_canonical", "bad_request", Warn;
    /// The policy does not allow this route for this app.
    RouteNotAllowed => 403, "forbidden", "route_not_allowed", "forbidden", Info;
    /// The policy saw a path that could mean another route (the gate refuses
    /// those earlier, with 400; the policy refuses them too, standing alone).
    RoutePathNotCanonical => 403, "forbidden", "path_not_canonical", "forbidden", Warn;
    /// Over the app's rate.
    RateExceeded => 429, "rate_limited", "rate_exceeded", "rate_limited", Info;
    /// The app already has its `concurrency` of requests in flight upstream
    /// (gateway mode).
    ConcurrencyLimit => 429, "rate_limited", "concurrency_limit", "rate_limited", Info;
    /// More HTTP/2 streams at once on one connection than the server
    /// advertised (`SETTINGS_MAX_CONCURRENT_STREAMS`): a client that ignores
    /// the setting.
    TooManyStreams => 429, "rate_limited", "too_many_streams", "rate_limited", Warn;
    /// The first key load has not finished.
    KeysLoading => 503, "unavailable", "keys_loading", "not_ready", Info;
    /// With Redis: its revocations have not been read completely yet.
    RevocationsLoading => 503, "unavailable", "revocations_loading", "not_ready", Warn;
}

impl Code {
    /// The code of a token rejection. An exhaustive match: a new [`Reason`]
    /// in core does not compile until it has a code here.
    pub fn of(rejection: &Rejection) -> Self {
        match rejection.reason() {
            Reason::MissingToken => Self::MissingToken,
            Reason::Malformed if rejection.bearer_error() == "invalid_request" => {
                Self::MalformedRequest
            }
            Reason::Malformed => Self::Malformed,
            Reason::UnsupportedAlg => Self::UnsupportedAlg,
            Reason::UnknownApp => Self::UnknownApp,
            Reason::BadSignature => Self::BadSignature,
            Reason::Expired => Self::Expired,
            Reason::NotYetValid => Self::NotYetValid,
            Reason::LifetimeTooLong => Self::LifetimeTooLong,
            Reason::WrongAudience => Self::WrongAudience,
            Reason::Revoked => Self::Revoked,
        }
    }

    /// The gRPC status code for a gRPC caller (the `grpc-status` trailer):
    /// 16 UNAUTHENTICATED, 7 PERMISSION_DENIED, 8 RESOURCE_EXHAUSTED,
    /// 3 INVALID_ARGUMENT or 14 UNAVAILABLE.
    pub const fn grpc_status(self) -> u8 {
        match self.status() {
            401 => 16,
            403 => 7,
            429 => 8,
            400 => 3,
            _ => 14,
        }
    }

    /// Every distinct `(outcome, reason)` metric label pair.
    pub fn outcome_labels() -> impl Iterator<Item = (&'static str, &'static str)> {
        let mut seen: Vec<(&'static str, &'static str)> = Vec::new();
        for code in Self::ALL {
            let pair = (code.outcome(), code.reason());
            if !seen.contains(&pair) {
                seen.push(pair);
            }
        }
        seen.into_iter()
    }
}

/// A request the gate refuses. The response says only the reason code; the
/// details ([`fmt::Display`]) go to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The token was missing or did not verify, or is revoked: 401.
    Rejected(Rejection),
    /// The path is not canonical: 400, before the token is looked at.
    NotCanonical(PathProblem),
    /// The policy does not allow this route for this app: 403.
    RouteNotAllowed {
        /// The verified caller.
        app_id: String,
    },
    /// The policy refused a non-canonical path: 403.
    RoutePathNotCanonical {
        /// The verified caller.
        app_id: String,
    },
    /// Over the app's rate: 429.
    RateLimited {
        /// The verified caller.
        app_id: String,
        /// Whole seconds until a request would be allowed (at least 1).
        retry_after_secs: u64,
    },
    /// The app's requests in flight upstream are at its limit: 429.
    ConcurrencyLimited {
        /// The verified caller.
        app_id: String,
        /// Its limit.
        limit: u32,
    },
    /// More streams at once on one HTTP/2 connection than advertised: 429.
    TooManyStreams {
        /// The advertised limit.
        limit: u32,
    },
    /// The first key load has not finished: 503, try again shortly.
    NotReady,
    /// With Redis, its revocations have not been read completely yet: 503,
    /// try again shortly (or another replica).
    RevocationsNotLoaded,
}

impl Refusal {
    /// The refusal for a verified caller the access rules turned away.
    pub fn denied(app_id: &AppId, denial: Denial) -> Self {
        let app_id = app_id.to_string();
        match denial {
            Denial::Revoked(rule) => Self::Rejected(Rejection::Revoked {
                app_id,
                rule: rule.as_str(),
            }),
            Denial::RouteNotAllowed => Self::RouteNotAllowed { app_id },
            Denial::PathNotCanonical => Self::RoutePathNotCanonical { app_id },
            Denial::RateLimited(wait) => Self::RateLimited {
                app_id,
                retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
            },
        }
    }

    /// The refusal's code: status, reason, outcome, body and log level.
    pub fn code(&self) -> Code {
        match self {
            Self::Rejected(r) => Code::of(r),
            Self::NotCanonical(_) => Code::PathNotCanonical,
            Self::RouteNotAllowed { .. } => Code::RouteNotAllowed,
            Self::RoutePathNotCanonical { .. } => Code::RoutePathNotCanonical,
            Self::RateLimited { .. } => Code::RateExceeded,
            Self::ConcurrencyLimited { .. } => Code::ConcurrencyLimit,
            Self::TooManyStreams { .. } => Code::TooManyStreams,
            Self::NotReady => Code::KeysLoading,
            Self::RevocationsNotLoaded => Code::RevocationsLoading,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.code().status()
    }

    /// The reason code sent to the caller.
    pub fn reason(&self) -> &'static str {
        self.code().reason()
    }

    /// The response headers besides `content-type`: `cache-control`, and
    /// `www-authenticate` (401) or `retry-after` (429, 503). Names are lower
    /// case; values are ASCII.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, String)> {
        let code = self.code();
        let extra = match self {
            // RFC 6750 section 3; both parts are fixed ASCII strings.
            Self::Rejected(_) => Some((
                "www-authenticate",
                format!(r#"Bearer realm="appauth", error="{}""#, code.error()),
            )),
            Self::RateLimited {
                retry_after_secs, ..
            } => Some(("retry-after", retry_after_secs.max(&1).to_string())),
            Self::NotReady
            | Self::RevocationsNotLoaded
            | Self::ConcurrencyLimited { .. }
            | Self::TooManyStreams { .. } => Some(("retry-after", "1".to_owned())),
            Self::NotCanonical(_)
            | Self::RouteNotAllowed { .. }
            | Self::RoutePathNotCanonical { .. } => None,
        };
        std::iter::once(("cache-control", "no-store".to_owned())).chain(extra)
    }

    /// The `content-type` of [`Refusal::body`].
    pub const CONTENT_TYPE: &'static str = "application/json";

    /// The JSON body: `{"error":"…","reason":"…"}`.
    pub fn body(&self) -> String {
        let code = self.code();
        // Both members are fixed ASCII identifiers from the table: no
        // escaping is ever needed.
        format!(
            r#"{{"error":"{}","reason":"{}"}}"#,
            code.error(),
            code.reason()
        )
    }

    /// The caller's appId, when it is known (verified, or at least
    /// grammar-checked for a rejection).
    pub fn app_id(&self) -> Option<&str> {
        match self {
            Self::Rejected(r) => r.app_id(),
            Self::NotReady
            | Self::RevocationsNotLoaded
            | Self::NotCanonical(_)
            | Self::TooManyStreams { .. } => None,
            Self::RouteNotAllowed { app_id }
            | Self::ConcurrencyLimited { app_id, .. }
            | Self::RoutePathNotCanonical { app_id }
            | Self::RateLimited { app_id, .. } => Some(app_id),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(r) => write!(f, "{r}"),
            Self::NotReady => f.write_str("keys are still loading"),
            Self::RevocationsNotLoaded => {
                f.write_str("the revocations in Redis have not been read yet (is Redis reachable?)")
            }
            Self::NotCanonical(problem) => write!(f, "{problem}"),
            Self::RouteNotAllowed { app_id } => {
                write!(f, "app {app_id} forbidden by policy (route_not_allowed)")
            }
            Self::RoutePathNotCanonical { app_id } => {
                write!(f, "app {app_id} forbidden by policy (path_not_canonical)")
            }
            Self::ConcurrencyLimited { app_id, limit } => write!(
                f,
                "app {app_id} already has {limit} requests in flight upstream (its concurrency)"
            ),
            Self::TooManyStreams { limit } => write!(
                f,
                "more than {limit} HTTP/2 streams at once on one connection (the advertised \
                 SETTINGS_MAX_CONCURRENT_STREAMS)"
            ),
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

impl std::error::Error for Refusal {}

impl From<Rejection> for Refusal {
    fn from(r: Rejection) -> Self {
        Self::Rejected(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_code_with_its_wire_form() {
        // Core's reasons and the table agree on the spelling.
        for reason in Reason::ALL {
            let code = Code::ALL
                .iter()
                .find(|c| c.status() == 401 && c.reason() == reason.as_str());
            assert!(code.is_some(), "{reason} has no 401 code");
        }
    }

    #[test]
    fn labels_are_distinct_pairs_and_cover_every_code() {
        let labels: Vec<_> = Code::outcome_labels().collect();
        for code in Code::ALL {
            assert!(labels.contains(&(code.outcome(), code.reason())));
        }
        let mut sorted = labels.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), labels.len());
    }

    #[test]
    fn bodies_and_headers_are_the_documented_ones() {
        let r = Refusal::Rejected(Rejection::MissingToken);
        assert_eq!(
            r.body(),
            r#"{"error":"invalid_request","reason":"missing_token"}"#
        );
        let headers: Vec<_> = r.headers().collect();
        assert_eq!(
            headers,
            [
                ("cache-control", "no-store".to_owned()),
                (
                    "www-authenticate",
                    r#"Bearer realm="appauth", error="invalid_request""#.to_owned()
                )
            ]
        );
        let app = AppId::new("a").unwrap();
        let limited = Refusal::denied(
            &app,
            Denial::RateLimited(std::time::Duration::from_millis(1500)),
        );
        assert_eq!(limited.status(), 429);
        assert!(limited.headers().any(|h| h == ("retry-after", "2".into())));
        assert_eq!(Refusal::NotReady.code().grpc_status(), 14);
        assert_eq!(limited.code().grpc_status(), 8);
    }
}
