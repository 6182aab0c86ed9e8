//! Making tokens: the compact JWS serialization of a set of claims.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{Algorithm, Claims, Error, PrivateKey};

/// Signs `claims` with `key` as `{"alg":..,"typ":"JWT","kid":<thumbprint>}`.
pub fn sign_token(key: &PrivateKey, alg: Algorithm, claims: &Claims) -> Result<String, Error> {
    // The header has no user-controlled text except the kid, which is
    // base64url and so needs no JSON escaping.
    let header = format!(
        r#"{{"alg":"{}","typ":"JWT","kid":"{}"}}"#,
        alg.as_str(),
        key.kid()
    );
    let payload = serde_json::to_vec(claims).map_err(|e| Error::Claims {
        detail: e.to_string(),
    })?;
    let mut token = String::with_capacity(header.len() * 2 + payload.len() * 2 + 700);
    URL_SAFE_NO_PAD.encode_string(header.as_bytes(), &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.sign(alg, token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}
