//! The JWS algorithms appauth can ever be configured with: RSA only.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::signature::{self, RsaEncoding, RsaParameters};

use crate::Error;

/// An RSA JWS algorithm. Anything that is not RSA (`none`, `HS*`, `ES*`,
/// `EdDSA`) has no variant, so it cannot be put on an allow-list by mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512: appauth's default and the Node recipe's.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
}

impl Algorithm {
    /// Every algorithm that may be configured.
    pub const ALL: [Algorithm; 6] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
    ];

    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
        }
    }

    /// Maps an `alg` header value, exactly as spelled, to an algorithm.
    pub fn from_header(alg: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == alg)
    }

    /// The hash the algorithm signs.
    pub(crate) fn digest(self) -> &'static aws_lc_rs::digest::Algorithm {
        use aws_lc_rs::digest;
        match self {
            Self::RS256 | Self::PS256 => &digest::SHA256,
            Self::RS384 | Self::PS384 => &digest::SHA384,
            Self::RS512 | Self::PS512 => &digest::SHA512,
        }
    }

    pub(crate) fn verification(self) -> &'static RsaParameters {
        match self {
            Self::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Self::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Self::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Self::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Self::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        }
    }

    pub(crate) fn signing(self) -> &'static dyn RsaEncoding {
        match self {
            Self::RS256 => &signature::RSA_PKCS1_SHA256,
            Self::RS384 => &signature::RSA_PKCS1_SHA384,
            Self::RS512 => &signature::RSA_PKCS1_SHA512,
            Self::PS256 => &signature::RSA_PSS_SHA256,
            Self::PS384 => &signature::RSA_PSS_SHA384,
            Self::PS512 => &signature::RSA_PSS_SHA512,
        }
    }
}

impl FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::from_header(s.trim()).ok_or_else(|| Error::UnsupportedAlgorithm {
            name: s.chars().take(20).collect(),
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rsa_algorithms_parse() {
        for ok in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
            assert_eq!(ok.parse::<Algorithm>().unwrap().as_str(), ok);
        }
        for bad in ["none", "HS256", "HS512", "ES256", "EdDSA", "rs512", ""] {
            let err = bad.parse::<Algorithm>().unwrap_err().to_string();
            assert!(err.contains("RS256"), "{err}");
        }
    }
}
