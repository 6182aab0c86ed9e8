//! What the client can refuse or fail at.

use std::path::PathBuf;

/// An appauth-client error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- sending ------------------------------------------------------------
    /// A signed token is not a valid HTTP header value (a bug: tokens are
    /// base64url and dots).
    #[error("the signed token is not a valid HTTP header value")]
    TokenNotAHeaderValue,

    // --- building a signer -------------------------------------------------
    /// The appId breaks the grammar.
    #[error(transparent)]
    InvalidAppId(appauth_core::Error),

    /// No private key was given to the builder.
    #[error("no private key given: call key_file() or key_pem() on the signer builder")]
    NoKey,

    /// The private key file cannot be read.
    #[error("cannot read private key {}: {source}", path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The private key is unusable (encrypted, not RSA, too small, damaged).
    #[error("private key{}: {source}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    BadKey {
        /// The file, when the key came from one.
        path: Option<PathBuf>,
        /// What is wrong.
        #[source]
        source: appauth_core::Error,
    },

    /// A token lifetime outside what servers accept.
    #[error(
        "token lifetime {ttl}s is out of range: use 1..={max}s (the lifetime plus the {backdate}s \
         iat backdating must stay within the server's maximum token lifetime of {server_max}s; if \
         the server runs with a larger --max-token-lifetime, give the signer the same value)"
    )]
    InvalidTtl {
        /// The lifetime asked for.
        ttl: u64,
        /// The largest allowed.
        max: u64,
        /// The iat backdating in force.
        backdate: u64,
        /// The server's maximum lifetime the signer was told of.
        server_max: u64,
    },

    /// A claim the signer sets itself was passed as an extra claim.
    #[error("claim \"{0}\" is set by the signer and cannot be overridden")]
    ReservedClaim(String),

    /// A CA file given to the client cannot be read.
    #[error("cannot read CA file {}: {source}", path.display())]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A CA file holds no usable certificate.
    #[error("CA file {}: {detail}", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    // --- signing and calling -----------------------------------------------
    /// Signing failed in the crypto library.
    #[error("signing failed: {0}")]
    Sign(#[source] appauth_core::Error),

    /// The HTTP request failed; the message carries every cause (a refused
    /// connection says so, not only "error sending request").
    #[error("request failed: {}", causes(.0))]
    Http(#[from] reqwest::Error),
}

/// An error and its causes, `: `-separated.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // hyper and reqwest sometimes repeat their inner error's text.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
