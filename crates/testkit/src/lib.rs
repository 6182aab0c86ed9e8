//! Helpers the test suites of several appauth crates share: the path of the
//! known-answer fixtures, and tokens forged by hand (any header, any claims,
//! any key), which the real signer would never make.
//!
//! ```
//! use appauth_core::{Algorithm, PrivateKey};
//! let key = PrivateKey::generate(2048).unwrap();
//! let token = appauth_testkit::forge(
//!     &key,
//!     Algorithm::RS512,
//!     &serde_json::json!({"alg": "RS512", "crit": ["x"]}),
//!     &serde_json::json!({"appId": "a"}),
//! );
//! assert_eq!(token.split('.').count(), 3);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::PathBuf;

use appauth_core::{Algorithm, PrivateKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// `tests/fixtures/<rel>` at the top of the workspace.
pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

/// The bytes of a fixture; panics naming the file when it is missing.
pub fn fixture(rel: &str) -> Vec<u8> {
    let p = fixture_path(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A compact JWS of exactly `header` and `claims`, signed with `key`.
pub fn forge(key: &PrivateKey, alg: Algorithm, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let sig = key.sign(alg, input.as_bytes()).expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// An `HS256` or `HS512` token MACed with `secret`: the classic attack of
/// using an RSA public key as an HMAC secret.
pub fn hmac_token(alg: &str, secret: &[u8], claims: &Value) -> String {
    use aws_lc_rs::hmac;
    let input = signing_input(&serde_json::json!({ "alg": alg, "typ": "JWT" }), claims);
    let algorithm = if alg == "HS256" {
        hmac::HMAC_SHA256
    } else {
        hmac::HMAC_SHA512
    };
    let tag = hmac::sign(&hmac::Key::new(algorithm, secret), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag))
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}
