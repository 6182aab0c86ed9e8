//! The key id: the RFC 7638 JWK SHA-256 thumbprint of an RSA public key.

use std::fmt;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// An RFC 7638 thumbprint, base64url without padding (43 characters).
///
/// Always computed from the key, never configured, so a `kid` cannot
/// disagree with the key it names.
// Shared text: each verified caller carries its key's kid, cloned by a
// reference count rather than copied.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kid(std::sync::Arc<str>);

impl Kid {
    /// Computes the thumbprint of the RSA public key `(n, e)`, both unsigned
    /// big-endian. Leading zero bytes are stripped first, as RFC 7518 section
    /// 6.3.1 requires for the JWK members the hash is taken over.
    pub fn from_rsa_components(n: &[u8], e: &[u8]) -> Self {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        // RFC 7638 section 3.2: the required members in lexicographic order,
        // no whitespace. base64url output needs no JSON escaping.
        let mut canonical = String::with_capacity(n.len() * 4 / 3 + 64);
        canonical.push_str(r#"{"e":""#);
        URL_SAFE_NO_PAD.encode_string(e, &mut canonical);
        canonical.push_str(r#"","kty":"RSA","n":""#);
        URL_SAFE_NO_PAD.encode_string(n, &mut canonical);
        canonical.push_str(r#""}"#);
        let hash = digest::digest(&digest::SHA256, canonical.as_bytes());
        Self(URL_SAFE_NO_PAD.encode(hash.as_ref()).into())
    }

    /// The thumbprint as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a thumbprint given by an operator (for `retire --kid`) after
    /// checking that it has the shape of one.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == 43
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.into()))
    }
}

fn strip_leading_zeros(mut b: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    b
}

impl fmt::Display for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kid({})", self.0)
    }
}

impl std::borrow::Borrow<str> for Kid {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for Kid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 section 3.1: the example RSA key and its thumbprint.
    #[test]
    fn rfc7638_section_3_1_example() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let n = URL_SAFE_NO_PAD.decode(n).unwrap();
        let kid = Kid::from_rsa_components(&n, &[1, 0, 1]);
        assert_eq!(kid.as_str(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn leading_zeros_do_not_change_the_thumbprint() {
        let a = Kid::from_rsa_components(&[0x80, 1, 2], &[1, 0, 1]);
        let b = Kid::from_rsa_components(&[0, 0x80, 1, 2], &[0, 1, 0, 1]);
        assert_eq!(a, b);
    }

    #[test]
    fn parse_accepts_only_thumbprint_shapes() {
        assert!(Kid::parse("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs").is_some());
        assert!(Kid::parse("short").is_none());
        assert!(Kid::parse("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9X=").is_none());
    }
}
