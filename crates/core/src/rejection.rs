//! Why a token was refused: a precise variant for logs, a stable reason code
//! for the caller.

use std::fmt;

/// The machine-readable reason sent to a refused caller (docs/spec.md §3).
///
/// Deliberately exhaustive: the reasons are the wire protocol, and a new one
/// must fail to compile wherever a refusal is mapped (the gate's code table)
/// until it is mapped there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// No token in the request.
    MissingToken,
    /// Not a well-formed token, or a token sent twice with different values.
    Malformed,
    /// `alg` is not on the allow-list.
    UnsupportedAlg,
    /// No keys are loaded for the token's appId.
    UnknownApp,
    /// No key of the app verifies the signature.
    BadSignature,
    /// Past `exp` (plus leeway).
    Expired,
    /// Before `nbf`, or `iat` in the future (beyond leeway).
    NotYetValid,
    /// `exp - iat` exceeds the configured maximum.
    LifetimeTooLong,
    /// `aud` does not name this server's audience.
    WrongAudience,
    /// On the revocation list.
    Revoked,
}

impl Reason {
    /// Every reason, for pre-registering metrics.
    pub const ALL: [Reason; 10] = [
        Self::MissingToken,
        Self::Malformed,
        Self::UnsupportedAlg,
        Self::UnknownApp,
        Self::BadSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::LifetimeTooLong,
        Self::WrongAudience,
        Self::Revoked,
    ];

    /// The wire form, e.g. `bad_signature`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::Malformed => "malformed",
            Self::UnsupportedAlg => "unsupported_alg",
            Self::UnknownApp => "unknown_app",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::WrongAudience => "wrong_audience",
            Self::Revoked => "revoked",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused token, with the context an operator needs to see in the log.
/// No variant holds the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    // --- transport ---------------------------------------------------------
    /// The request carried no token.
    #[error("no token in x-token or Authorization: Bearer")]
    MissingToken,
    /// `x-token` and `Authorization: Bearer` both carried a token, and they differ.
    #[error("x-token and Authorization: Bearer carry different tokens")]
    ConflictingTokens,
    /// The `Authorization` header is present but not `Bearer <token>`.
    #[error("the Authorization header is not \"Bearer <token>\"")]
    NotBearer,

    // --- token shape -------------------------------------------------------
    /// Longer than the limit.
    #[error("token is {len} bytes, over the {max}-byte limit")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not three dot-separated parts.
    #[error("token is not three dot-separated parts")]
    NotThreeParts,
    /// A part is empty, padded or has characters outside base64url.
    #[error("token {part} is not strict base64url")]
    BadBase64 {
        /// `header`, `payload` or `signature`.
        part: &'static str,
    },
    /// The header is not the JSON object expected.
    #[error("token header does not parse: {detail}")]
    BadHeader {
        /// The parser's complaint (never the header's content).
        detail: String,
    },
    /// The header has a `crit` member, which appauth understands none of.
    #[error("token header has a crit member")]
    CriticalHeader,
    /// `alg` is not allowed.
    #[error("algorithm \"{alg}\" is not allowed")]
    UnsupportedAlgorithm {
        /// The `alg` as sent, cut to 16 printable characters.
        alg: String,
    },
    /// The payload is not the JSON object expected.
    #[error("token claims do not parse: {detail}")]
    BadClaims {
        /// The parser's complaint.
        detail: String,
    },
    /// The appId claim breaks the grammar.
    #[error("appId claim is not a valid appId")]
    InvalidAppId,

    // --- keys and signature --------------------------------------------------
    /// No keys are loaded for the appId.
    #[error("no keys loaded for app {app_id}")]
    UnknownApp {
        /// The (grammar-checked) appId.
        app_id: String,
    },
    /// The token's `kid` names no key of the app.
    #[error("app {app_id} has no key with kid {kid}")]
    UnknownKid {
        /// The appId.
        app_id: String,
        /// The kid as sent, cut to 64 printable characters.
        kid: String,
    },
    /// No key of the app verifies the signature.
    #[error("signature does not verify with any key of app {app_id}")]
    BadSignature {
        /// The appId.
        app_id: String,
    },

    // --- claims --------------------------------------------------------------
    /// Expired.
    #[error("token of app {app_id} expired at {exp}, now is {now}")]
    Expired {
        /// The appId the token claims.
        app_id: String,
        /// The `exp` claim.
        exp: i64,
        /// The verifier's clock.
        now: i64,
    },
    /// Before `nbf`.
    #[error("token of app {app_id} not valid before {nbf}, now is {now}")]
    NotYetValid {
        /// The appId the token claims.
        app_id: String,
        /// The `nbf` claim.
        nbf: i64,
        /// The verifier's clock.
        now: i64,
    },
    /// `iat` in the future.
    #[error(
        "token of app {app_id} issued in the future ({iat}), now is {now}: check the caller's clock"
    )]
    IssuedInFuture {
        /// The appId the token claims.
        app_id: String,
        /// The `iat` claim.
        iat: i64,
        /// The verifier's clock.
        now: i64,
    },
    /// `iat` after `exp`: no signer makes such a token.
    #[error("token of app {app_id} was issued ({iat}) after it expires ({exp})")]
    IssuedAfterExpiry {
        /// The appId the token claims.
        app_id: String,
        /// The `iat` claim.
        iat: i64,
        /// The `exp` claim.
        exp: i64,
    },
    /// `exp - iat` above the limit.
    #[error("token of app {app_id} has a lifetime of {lifetime}s, over the {max}s maximum")]
    LifetimeTooLong {
        /// The appId the token claims.
        app_id: String,
        /// `exp - iat`.
        lifetime: i64,
        /// The limit.
        max: u64,
    },
    /// `aud` does not name the configured audience.
    #[error("token of app {app_id} is not for audience {expected}")]
    WrongAudience {
        /// The appId the token claims.
        app_id: String,
        /// The configured audience.
        expected: String,
    },
    /// On the revocation list.
    #[error("token of app {app_id} is revoked (rule: {rule})")]
    Revoked {
        /// The appId.
        app_id: String,
        /// Which rule matched, e.g. `jti`, `app before`, `kid`.
        rule: &'static str,
    },
}

impl Rejection {
    /// The reason code sent to the caller.
    pub fn reason(&self) -> Reason {
        match self {
            Self::MissingToken => Reason::MissingToken,
            Self::ConflictingTokens
            | Self::NotBearer
            | Self::TooLong { .. }
            | Self::NotThreeParts
            | Self::BadBase64 { .. }
            | Self::BadHeader { .. }
            | Self::CriticalHeader
            | Self::IssuedAfterExpiry { .. }
            | Self::BadClaims { .. }
            | Self::InvalidAppId => Reason::Malformed,
            Self::UnsupportedAlgorithm { .. } => Reason::UnsupportedAlg,
            Self::UnknownApp { .. } => Reason::UnknownApp,
            Self::UnknownKid { .. } | Self::BadSignature { .. } => Reason::BadSignature,
            Self::Expired { .. } => Reason::Expired,
            Self::NotYetValid { .. } | Self::IssuedInFuture { .. } => Reason::NotYetValid,
            Self::LifetimeTooLong { .. } => Reason::LifetimeTooLong,
            Self::WrongAudience { .. } => Reason::WrongAudience,
            Self::Revoked { .. } => Reason::Revoked,
        }
    }

    /// The RFC 6750 `error` code: `invalid_request` for a missing or doubled
    /// token, `invalid_token` otherwise.
    pub fn bearer_error(&self) -> &'static str {
        match self {
            Self::MissingToken | Self::ConflictingTokens | Self::NotBearer => "invalid_request",
            _ => "invalid_token",
        }
    }

    /// The appId the token claimed, once it passed the grammar check (for
    /// the claim checks and revocation, the app is also known to have keys).
    pub fn app_id(&self) -> Option<&str> {
        match self {
            Self::UnknownApp { app_id }
            | Self::UnknownKid { app_id, .. }
            | Self::BadSignature { app_id }
            | Self::Expired { app_id, .. }
            | Self::NotYetValid { app_id, .. }
            | Self::IssuedInFuture { app_id, .. }
            | Self::IssuedAfterExpiry { app_id, .. }
            | Self::LifetimeTooLong { app_id, .. }
            | Self::WrongAudience { app_id, .. }
            | Self::Revoked { app_id, .. } => Some(app_id),
            _ => None,
        }
    }
}
