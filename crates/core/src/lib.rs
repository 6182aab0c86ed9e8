//! appauth's shared vocabulary: the [`AppId`] grammar, key file names, RSA key
//! bundles and their RFC 7638 [`Kid`], the token [`Claims`], and the
//! [`Verifier`] that applies docs/spec.md §3 steps 1-7. The server, the client,
//! the keygen tool and the tests all use this one implementation.
//!
//! ```
//! use std::{collections::HashMap, sync::Arc};
//! use appauth_core::*;
//!
//! let key = PrivateKey::generate(2048)?;
//! let app = AppId::new("billing")?;
//! let public = parse_public_bundle(key.public_key_pem()?.as_bytes(), 0, &[Algorithm::RS512])?;
//! let keys: HashMap<AppId, Arc<[PublicKey]>> = HashMap::from([(app.clone(), public.into())]);
//!
//! let clock = Arc::new(ManualClock::new(1_700_000_000));
//! let claims = Claims {
//!     app_id: app.to_string(),
//!     iat: 1_700_000_000,
//!     exp: 1_700_000_300,
//!     nbf: None, jti: None, aud: None, iss: None,
//!     extra: Default::default(),
//! };
//! let token = sign_token(&key, Algorithm::RS512, &claims)?;
//!
//! let verifier = Verifier::with_clock(VerifyConfig::default(), clock.clone());
//! assert_eq!(verifier.verify(&token, &keys).unwrap().app_id, app);
//!
//! clock.advance(300 + 30);
//! assert_eq!(verifier.verify(&token, &keys).unwrap_err().reason(), Reason::Expired);
//! # Ok::<(), appauth_core::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod algorithm;
mod app_id;
mod claims;
mod clock;
pub mod dangerous;
pub mod drain;
mod error;
pub mod files;
mod fingerprint;
mod flat_json;
mod keys;
mod kid;
mod private_key;
mod rejection;
mod token;
mod verify;

/// The header the Node recipe, and appauth's client by default, send the
/// token in (the other is `Authorization: Bearer`).
pub const TOKEN_HEADER: &str = "x-token";

/// Whether a header (its name in lower case) describes one connection rather
/// than the message (RFC 9110 §7.6.1), so that a proxy must not forward it.
/// Names listed in a `Connection` header are hop-by-hop too; the proxy reads
/// those itself.
pub fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

pub use algorithm::Algorithm;
pub use app_id::{AppId, MAX_APP_ID_LEN, is_valid_app_id};
pub use claims::{Audience, Claims};
pub use clock::{Clock, ManualClock, SystemClock};
pub use dangerous::MAX_TOKEN_LEN;
pub use error::Error;
pub use fingerprint::{Fingerprint, read_if_changed};
pub use keys::{
    KeyFormat, MIN_RSA_BITS, PublicKey, jwk_set, parse_public_bundle, rsa_verifications,
    split_public_bundle,
};
pub use kid::Kid;
pub use private_key::{GENERATED_KEY_BITS, PrivateKey, PrivateKeyFormat};
pub use rejection::{Reason, Rejection};
pub use token::sign_token;
pub use verify::{
    DEFAULT_LEEWAY, DEFAULT_MAX_LIFETIME, KeyProvider, Verified, Verifier, VerifyConfig,
    bundle_has_key,
};
