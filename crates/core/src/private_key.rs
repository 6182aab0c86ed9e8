//! RSA private keys: generating, reading, writing and signing.
//!
//! Every private-key operation runs in aws-lc (constant-time, and not
//! subject to RUSTSEC-2023-0071, which concerns the pure-Rust `rsa` crate's
//! private-key operations). The `rsa` crate only decodes public halves here.

use std::fmt;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::traits::PublicKeyParts;

use crate::keys::MIN_RSA_BITS;
use crate::{Algorithm, Error, Kid};

/// The key sizes appauth generates.
pub const GENERATED_KEY_BITS: [usize; 3] = [2048, 3072, 4096];

/// How a private key was written in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrivateKeyFormat {
    /// `-----BEGIN PRIVATE KEY-----`.
    Pkcs8,
    /// `-----BEGIN RSA PRIVATE KEY-----`.
    Pkcs1,
}

impl fmt::Display for PrivateKeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pkcs8 => "PKCS#8",
            Self::Pkcs1 => "PKCS#1",
        })
    }
}

/// An RSA private key of at least 2048 bits, with its public key's `kid`.
pub struct PrivateKey {
    pair: RsaKeyPair,
    kid: Kid,
    bits: usize,
    format: PrivateKeyFormat,
}

impl PrivateKey {
    /// Generates a fresh key of `bits` (2048, 3072 or 4096).
    pub fn generate(bits: usize) -> Result<Self, Error> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            _ => return Err(Error::UnsupportedKeySize { bits }),
        };
        let pair = RsaKeyPair::generate(size).map_err(|_| Error::Crypto {
            operation: "generate a key",
        })?;
        Self::from_pair(pair, PrivateKeyFormat::Pkcs8)
    }

    /// Reads a PEM private key: PKCS#8 `PRIVATE KEY` or PKCS#1
    /// `RSA PRIVATE KEY`. Encrypted keys are refused with a hint.
    pub fn from_pem(pem_bytes: &[u8]) -> Result<Self, Error> {
        let blocks = pem::parse_many(pem_bytes).map_err(|e| Error::Pem {
            detail: e.to_string(),
        })?;
        if let Some(tag) = crate::keys::unterminated_pem_block(pem_bytes) {
            return Err(Error::TruncatedPem { tag });
        }
        let block = blocks
            .iter()
            .find(|b| b.tag().contains("PRIVATE KEY"))
            .ok_or_else(|| Error::InvalidPrivateKey {
                detail: match blocks.first() {
                    Some(b) => format!("found a \"{}\" PEM block instead", b.tag()),
                    None => "no PEM block found".into(),
                },
            })?;
        let encrypted = block
            .headers()
            .get("Proc-Type")
            .is_some_and(|v| v.contains("ENCRYPTED"));
        let pkcs8 = block.tag() == "PRIVATE KEY";
        let invalid = |e: aws_lc_rs::error::KeyRejected| match modulus_bits(block.contents(), pkcs8)
        {
            Some(bits) if bits < MIN_RSA_BITS => Error::KeyTooSmall { index: 1, bits },
            _ => Error::InvalidPrivateKey {
                detail: format!("the key does not decode as RSA ({e})"),
            },
        };
        let (pair, format) = match block.tag() {
            "ENCRYPTED PRIVATE KEY" => return Err(Error::EncryptedPrivateKey),
            _ if encrypted => return Err(Error::EncryptedPrivateKey),
            "PRIVATE KEY" => (
                RsaKeyPair::from_pkcs8(block.contents()).map_err(invalid)?,
                PrivateKeyFormat::Pkcs8,
            ),
            "RSA PRIVATE KEY" => (
                RsaKeyPair::from_der(block.contents()).map_err(invalid)?,
                PrivateKeyFormat::Pkcs1,
            ),
            other => {
                return Err(Error::InvalidPrivateKey {
                    detail: format!("a \"{other}\" block is not an RSA private key"),
                });
            }
        };
        Self::from_pair(pair, format)
    }

    fn from_pair(pair: RsaKeyPair, format: PrivateKeyFormat) -> Result<Self, Error> {
        // aws-lc exposes the public half as PKCS#1 DER.
        let public = rsa::PublicKey::from_pkcs1_der(pair.public_key().as_ref()).map_err(|e| {
            Error::InvalidPrivateKey {
                detail: e.to_string(),
            }
        })?;
        let bits = public.n().bit_width_vartime() as usize;
        if bits < MIN_RSA_BITS {
            return Err(Error::KeyTooSmall { index: 1, bits });
        }
        let kid = Kid::from_rsa_components(
            &public.n().to_be_bytes_trimmed_vartime(),
            &public.e().to_be_bytes_trimmed_vartime(),
        );
        Ok(Self {
            pair,
            kid,
            bits,
            format,
        })
    }

    /// The RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &Kid {
        &self.kid
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// How the key was read (generated keys report PKCS#8).
    pub fn format(&self) -> PrivateKeyFormat {
        self.format
    }

    /// The private key as a PKCS#8 `-----BEGIN PRIVATE KEY-----` PEM block.
    pub fn to_pkcs8_pem(&self) -> Result<String, Error> {
        let der: Pkcs8V1Der<'static> = self.pair.as_der().map_err(|_| Error::Crypto {
            operation: "encode the key as PKCS#8",
        })?;
        Ok(crate::files::encode_pem("PRIVATE KEY", der.as_ref()))
    }

    /// The public key as a `-----BEGIN PUBLIC KEY-----` (SPKI) PEM block.
    pub fn public_key_pem(&self) -> Result<String, Error> {
        let der: PublicKeyX509Der<'static> =
            self.pair.public_key().as_der().map_err(|_| Error::Crypto {
                operation: "encode the public key",
            })?;
        Ok(crate::files::encode_pem("PUBLIC KEY", der.as_ref()))
    }

    /// Signs `message` with `alg`; the result is as long as the modulus.
    pub fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, Error> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(alg.signing(), &SystemRandom::new(), message, &mut signature)
            .map_err(|_| Error::Crypto { operation: "sign" })?;
        Ok(signature)
    }
}

/// The modulus size of a PKCS#8 or PKCS#1 RSA private key, read from its
/// structure alone (no key operation), to explain a rejection.
fn modulus_bits(der: &[u8], pkcs8: bool) -> Option<usize> {
    use rsa::pkcs1::der::Decode;
    let pkcs1 = if pkcs8 {
        rsa::pkcs8::PrivateKeyInfoRef::try_from(der)
            .ok()?
            .private_key
            .as_bytes()
    } else {
        der
    };
    let key = rsa::pkcs1::RsaPrivateKeyRef::from_der(pkcs1).ok()?;
    let n = key.modulus.as_bytes();
    let lead = n.first().copied().unwrap_or(0);
    Some(n.len() * 8 - lead.leading_zeros() as usize)
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key material.
        f.debug_struct("PrivateKey")
            .field("kid", &self.kid)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::parse_public_bundle;

    #[test]
    fn generated_key_round_trips_through_pem_with_the_same_kid() {
        let key = PrivateKey::generate(2048).unwrap();
        let again = PrivateKey::from_pem(key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
        assert_eq!(key.kid(), again.kid());
        assert_eq!(again.bits(), 2048);
        let public = key.public_key_pem().unwrap();
        let bundle = parse_public_bundle(public.as_bytes(), 0, &[Algorithm::RS512]).unwrap();
        assert_eq!(bundle[0].kid(), key.kid());
    }

    #[test]
    fn signatures_verify_with_the_public_key_and_not_after_tampering() {
        let key = PrivateKey::generate(2048).unwrap();
        let public = key.public_key_pem().unwrap();
        let bundle = parse_public_bundle(public.as_bytes(), 0, &Algorithm::ALL).unwrap();
        for alg in Algorithm::ALL {
            let sig = key.sign(alg, b"hello").unwrap();
            assert!(bundle[0].verify(alg, b"hello", &sig, 0), "{alg}");
            assert!(!bundle[0].verify(alg, b"hellp", &sig, 0), "{alg}");
        }
    }

    #[test]
    fn unsupported_sizes_and_encrypted_keys_are_refused() {
        assert!(PrivateKey::generate(1024).is_err());
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(matches!(
            PrivateKey::from_pem(enc.as_bytes()),
            Err(Error::EncryptedPrivateKey)
        ));
        let public = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            PrivateKey::from_pem(public.as_bytes()),
            Err(Error::InvalidPrivateKey { .. })
        ));
    }
}
