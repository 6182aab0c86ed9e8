//! appauth-agent: appauth for callers that have no JWT code (docs/spec.md
//! §12).
//!
//! Two modes, both on [`appauth_client::Signer`], so the key file is
//! followed through a rotation and the token is cached and refreshed before
//! expiry exactly as the Rust client does:
//!
//! - [`proxy`]: a reverse proxy on loopback (or a Unix socket). The
//!   application calls `http://127.0.0.1:PORT/any/path`; the agent forwards
//!   to the upstream with its token added, streaming bodies both ways.
//! - [`token_file`]: the current token kept in a file (mode 0600, replaced
//!   by rename), for applications that read a header value from a file.
//!
//! The binary (`src/main.rs`) is flags only; everything it runs is here.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
mod body;
pub mod keys;
pub mod listen;
pub mod metrics;
pub mod proxy;
pub mod token_file;
pub mod upstream;

pub use keys::{KeySettings, Keys};
pub use listen::Listen;
pub use metrics::Metrics;

/// How often the key file is looked at (one `stat`): a rotation is in use
/// within this long, and so is a key that appears after a start with
/// `--wait-for-key`.
pub const KEY_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// A JSON error body in the server's shape: `{"error":..,"reason":..}`.
pub(crate) fn error_body(error: &str, reason: &str) -> bytes::Bytes {
    serde_json::json!({ "error": error, "reason": reason })
        .to_string()
        .into()
}
