//! Public keys: reading `<appId>_public.pem` bundles and verifying with them.
//!
//! A bundle is one or more PEM blocks (SPKI `PUBLIC KEY`, PKCS#1 `RSA PUBLIC
//! KEY`, X.509 `CERTIFICATE`). It is accepted whole or not at all, so an
//! operator never runs with half of what they wrote.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::signature::ParsedPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::pkcs8::spki::SubjectPublicKeyInfoRef;
use rsa::traits::PublicKeyParts;
use x509_cert::der::{Decode, Encode};

use crate::{Algorithm, Error, Kid};

static RSA_VERIFICATIONS: AtomicU64 = AtomicU64::new(0);

/// How many RSA signature verifications this process has run. Servers export
/// it so operators (and tests) can see that junk tokens cost none.
pub fn rsa_verifications() -> u64 {
    RSA_VERIFICATIONS.load(Ordering::Relaxed)
}

/// The smallest RSA modulus appauth accepts.
pub const MIN_RSA_BITS: usize = 2048;

const RSA_ENCRYPTION_OID: &str = "1.2.840.113549.1.1.1";

/// How a public key was written in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyFormat {
    /// `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo).
    Spki,
    /// `-----BEGIN RSA PUBLIC KEY-----` (PKCS#1).
    Pkcs1,
    /// `-----BEGIN CERTIFICATE-----` (X.509; its subject key is used).
    Certificate,
}

impl fmt::Display for KeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Spki => "SPKI",
            Self::Pkcs1 => "PKCS#1",
            Self::Certificate => "X.509 certificate",
        })
    }
}

/// An RSA public key, decoded once and kept ready for verification.
pub struct PublicKey {
    kid: Kid,
    bits: usize,
    format: KeyFormat,
    /// Certificates stop verifying at their `notAfter`, even while loaded.
    not_after: Option<i64>,
    spki_der: Box<[u8]>,
    /// The modulus and exponent, minimal big-endian (as thumbprinted), for
    /// the key's JWK.
    n: Box<[u8]>,
    e: Box<[u8]>,
    /// One parsed key per algorithm the verifier allows, so that verifying
    /// never decodes DER.
    prepared: Box<[(Algorithm, ParsedPublicKey)]>,
}

impl PublicKey {
    /// The key as an RFC 7517 JWK for signatures: `kty`, `n`, `e`, `kid`
    /// (its RFC 7638 thumbprint), `use: sig`, and `alg` when the key is for
    /// one algorithm only. What other verifiers (Envoy, Istio, PyJWT, jose)
    /// read from a JWK Set.
    pub fn to_jwk(&self, alg: Option<Algorithm>) -> serde_json::Value {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut jwk = serde_json::json!({
            "kty": "RSA",
            "n": b64.encode(&self.n),
            "e": b64.encode(&self.e),
            "kid": self.kid.as_str(),
            "use": "sig",
        });
        if let Some(alg) = alg {
            jwk["alg"] = alg.as_str().into();
        }
        jwk
    }

    /// The RFC 7638 thumbprint.
    pub fn kid(&self) -> &Kid {
        &self.kid
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// How the key was written.
    pub fn format(&self) -> KeyFormat {
        self.format
    }

    /// End of a certificate's validity (seconds since the epoch), if the key
    /// came from a certificate.
    pub fn not_after(&self) -> Option<i64> {
        self.not_after
    }

    /// The key as DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key as a `-----BEGIN PUBLIC KEY-----` PEM block.
    pub fn to_spki_pem(&self) -> String {
        crate::files::encode_pem("PUBLIC KEY", &self.spki_der)
    }

    /// Whether `signature` is a valid `alg` signature of `message` by this
    /// key at time `now`. `false` also when `alg` was not prepared.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8], now: i64) -> bool {
        if self.not_after.is_some_and(|t| now > t) {
            return false;
        }
        self.prepared
            .iter()
            .find(|(a, _)| *a == alg)
            .is_some_and(|(_, key)| {
                RSA_VERIFICATIONS.fetch_add(1, Ordering::Relaxed);
                // Hashed here, then verified against the digest: aws-lc's
                // streaming verification allocates (and wipes on free) a
                // digest context on the heap for every call, which the
                // one-shot hash on the stack does not. aws-lc-rs refuses a
                // digest of another algorithm than the key was prepared for.
                let digest = aws_lc_rs::digest::digest(alg.digest(), message);
                key.verify_digest_sig(&digest, signature).is_ok()
            })
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("bits", &self.bits)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// An RFC 7517 JWK Set of `keys`, each for signatures with `alg` (`None`:
/// no `alg` member, for keys accepted with several algorithms).
pub fn jwk_set(keys: &[PublicKey], alg: Option<Algorithm>) -> serde_json::Value {
    serde_json::json!({ "keys": keys.iter().map(|k| k.to_jwk(alg)).collect::<Vec<_>>() })
}

/// Reads a public key bundle.
///
/// `now` (seconds since the epoch) decides whether certificates are in their
/// validity period; `algorithms` are the ones the keys are prepared for.
/// Duplicate keys in one bundle are kept once.
pub fn parse_public_bundle(
    pem_bytes: &[u8],
    now: i64,
    algorithms: &[Algorithm],
) -> Result<Vec<PublicKey>, Error> {
    let mut keys: Vec<PublicKey> = Vec::new();
    for (index, block) in pem_blocks(pem_bytes)?.iter().enumerate() {
        let key = parse_block(index + 1, block, now, algorithms)?;
        if !keys.iter().any(|k| k.kid == key.kid) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Splits a public key bundle into its keys, each with its own PEM block, in
/// file order (duplicates kept): for tools that rewrite a bundle key by key.
/// Refused as a whole, like [`parse_public_bundle`], if any block is bad.
pub fn split_public_bundle(pem_bytes: &[u8], now: i64) -> Result<Vec<(PublicKey, String)>, Error> {
    pem_blocks(pem_bytes)?
        .iter()
        .enumerate()
        .map(|(i, block)| {
            let key = parse_block(i + 1, block, now, &[])?;
            Ok((key, crate::files::encode_pem(block.tag(), block.contents())))
        })
        .collect()
}

fn pem_blocks(pem_bytes: &[u8]) -> Result<Vec<pem::Pem>, Error> {
    let blocks = pem::parse_many(pem_bytes).map_err(|e| Error::Pem {
        detail: e.to_string(),
    })?;
    if let Some(tag) = unterminated_pem_block(pem_bytes) {
        return Err(Error::TruncatedPem { tag });
    }
    if blocks.is_empty() {
        return Err(Error::NoPemBlock);
    }
    Ok(blocks)
}

/// The label of the last PEM block that begins and is never ended, if any:
/// the PEM parser skips such a block silently, which would report a file cut
/// short as "no key" or as the wrong kind of key.
pub(crate) fn unterminated_pem_block(pem_bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(pem_bytes);
    let begin = text.rfind("-----BEGIN ")?;
    let rest = &text[begin + "-----BEGIN ".len()..];
    let tag = rest.split("-----").next()?.trim().to_owned();
    let end = format!("-----END {tag}-----");
    (!rest.contains(&end)).then_some(tag)
}

fn parse_block(
    index: usize,
    block: &pem::Pem,
    now: i64,
    algorithms: &[Algorithm],
) -> Result<PublicKey, Error> {
    match block.tag() {
        "PUBLIC KEY" => from_spki(index, block.contents(), KeyFormat::Spki, None, algorithms),
        "RSA PUBLIC KEY" => from_pkcs1(index, block.contents(), algorithms),
        "CERTIFICATE" => from_certificate(index, block.contents(), now, algorithms),
        other => Err(Error::UnexpectedPemBlock {
            index,
            tag: other.chars().take(40).collect(),
        }),
    }
}

fn from_spki(
    index: usize,
    der: &[u8],
    format: KeyFormat,
    not_after: Option<i64>,
    algorithms: &[Algorithm],
) -> Result<PublicKey, Error> {
    let info = SubjectPublicKeyInfoRef::try_from(der).map_err(|e| Error::InvalidKey {
        index,
        detail: e.to_string(),
    })?;
    let oid = info.algorithm.oid.to_string();
    if oid != RSA_ENCRYPTION_OID {
        return Err(Error::NotRsa {
            index,
            kind: describe_oid(&oid),
        });
    }
    let key = rsa::PublicKey::from_public_key_der(der).map_err(|e| Error::InvalidKey {
        index,
        detail: e.to_string(),
    })?;
    prepare(index, &key, format, not_after, algorithms)
}

fn from_pkcs1(index: usize, der: &[u8], algorithms: &[Algorithm]) -> Result<PublicKey, Error> {
    let key = rsa::PublicKey::from_pkcs1_der(der).map_err(|e| Error::InvalidKey {
        index,
        detail: e.to_string(),
    })?;
    prepare(index, &key, KeyFormat::Pkcs1, None, algorithms)
}

fn from_certificate(
    index: usize,
    der: &[u8],
    now: i64,
    algorithms: &[Algorithm],
) -> Result<PublicKey, Error> {
    let bad = |e: x509_cert::der::Error| Error::InvalidCertificate {
        index,
        detail: e.to_string(),
    };
    let cert = x509_cert::Certificate::from_der(der).map_err(bad)?;
    let validity = &cert.tbs_certificate.validity;
    let not_before = unix(validity.not_before.to_unix_duration());
    let not_after = unix(validity.not_after.to_unix_duration());
    if now > not_after {
        return Err(Error::CertificateExpired { index, not_after });
    }
    if now < not_before {
        return Err(Error::CertificateNotYetValid { index, not_before });
    }
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(bad)?;
    from_spki(
        index,
        &spki,
        KeyFormat::Certificate,
        Some(not_after),
        algorithms,
    )
}

fn unix(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn prepare(
    index: usize,
    key: &rsa::PublicKey,
    format: KeyFormat,
    not_after: Option<i64>,
    algorithms: &[Algorithm],
) -> Result<PublicKey, Error> {
    // Public values: variable time is fine, and the trimmed (minimal)
    // big-endian form is what RFC 7638 thumbprints.
    let bits = key.n().bit_width_vartime() as usize;
    if bits < MIN_RSA_BITS {
        return Err(Error::KeyTooSmall { index, bits });
    }
    let n = key.n().to_be_bytes_trimmed_vartime();
    let e = key.e().to_be_bytes_trimmed_vartime();
    let kid = Kid::from_rsa_components(&n, &e);
    let (n, e) = (Box::<[u8]>::from(&n[..]), Box::<[u8]>::from(&e[..]));
    let spki_der = rsa::pkcs8::EncodePublicKey::to_public_key_der(key)
        .map_err(|e| Error::InvalidKey {
            index,
            detail: e.to_string(),
        })?
        .into_vec()
        .into_boxed_slice();
    let prepared = algorithms
        .iter()
        .map(|&alg| {
            ParsedPublicKey::new(alg.verification(), &spki_der)
                .map(|k| (alg, k))
                .map_err(|e| Error::InvalidKey {
                    index,
                    detail: e.to_string(),
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(PublicKey {
        kid,
        bits,
        format,
        not_after,
        spki_der,
        n,
        e,
        prepared,
    })
}

fn describe_oid(oid: &str) -> String {
    match oid {
        "1.2.840.10045.2.1" => "an elliptic-curve key".into(),
        "1.3.101.112" => "an Ed25519 key".into(),
        "1.3.101.113" => "an Ed448 key".into(),
        "1.2.840.113549.1.1.10" => "an RSASSA-PSS-restricted key".into(),
        "1.2.840.10040.4.1" => "a DSA key".into(),
        other => format!("algorithm OID {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RS512: &[Algorithm] = &[Algorithm::RS512];

    #[test]
    fn rejects_non_pem_and_empty_input() {
        assert!(matches!(
            parse_public_bundle(b"", 0, RS512),
            Err(Error::NoPemBlock)
        ));
        assert!(matches!(
            parse_public_bundle(b"hello", 0, RS512),
            Err(Error::NoPemBlock)
        ));
        let cut = b"-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n";
        assert!(matches!(
            parse_public_bundle(cut, 0, RS512),
            Err(Error::TruncatedPem { tag }) if tag == "PUBLIC KEY"
        ));
    }

    #[test]
    fn rejects_private_key_blocks_in_a_public_file() {
        let pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = parse_public_bundle(pem.as_bytes(), 0, RS512).unwrap_err();
        assert!(
            matches!(err, Error::UnexpectedPemBlock { index: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn garbage_inside_a_valid_pem_envelope_is_a_damaged_key() {
        let pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let err = parse_public_bundle(pem.as_bytes(), 0, RS512).unwrap_err();
        assert!(matches!(err, Error::InvalidKey { index: 1, .. }), "{err}");
    }
}
