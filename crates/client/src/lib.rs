//! The calling side of appauth: a [`Signer`] that makes and caches RS512
//! tokens for one app, and an [`AppAuthClient`] that sends them with every
//! request (docs/spec.md §2 and §10).
//!
//! ```
//! use appauth_client::Signer;
//! use appauth_core::PrivateKey;
//!
//! let key = PrivateKey::generate(2048).unwrap().to_pkcs8_pem().unwrap();
//! let signer = Signer::builder("orders-service").key_pem(key).build()?;
//! let first = signer.token()?;
//! assert_eq!(first, signer.token()?); // cached: one signature
//! assert_eq!(signer.signatures_made(), 1);
//! # Ok::<(), appauth_client::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod http;
pub mod inspect;
mod signer;

pub use error::Error;
pub use http::{
    AppAuthClient, AppAuthClientBuilder, AuthedRequest, RetryPolicy, Timeouts, TokenHeader,
    same_origin_redirects,
};
pub use signer::{
    DEFAULT_TTL, IAT_BACKDATE, KeyFileCheck, SERVER_MAX_LIFETIME, Signer, SignerBuilder,
};
