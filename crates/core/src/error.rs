//! What can go wrong outside a token: appIds, algorithms and key material.
//!
//! Token rejections have their own type, [`crate::Rejection`], because they are
//! answers to callers rather than failures of the system.

/// An error from appauth-core. Each message says what is wrong and, where it
/// is not obvious, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- names -----------------------------------------------------------
    /// A string that is not a valid appId.
    #[error(
        "invalid appId \"{shown}\": {problem} (an appId is 1-128 characters of \
         A-Z a-z 0-9 . _ - starting with a letter or digit)"
    )]
    InvalidAppId {
        /// The offending input, escaped and cut to 40 characters.
        shown: String,
        /// Which rule it breaks.
        problem: &'static str,
    },

    /// An algorithm name that appauth cannot be configured with.
    #[error(
        "unsupported algorithm \"{name}\": only RS256, RS384, RS512, PS256, PS384 and PS512 \
         may be configured"
    )]
    UnsupportedAlgorithm {
        /// The name as given, cut to 20 characters.
        name: String,
    },

    // --- PEM and public keys ---------------------------------------------
    /// The bytes are not PEM at all, or a PEM block is damaged.
    #[error("not a valid PEM file: {detail}")]
    Pem {
        /// The PEM parser's complaint.
        detail: String,
    },

    /// A PEM block that begins and never ends: a file cut short, or read
    /// while it was being written.
    #[error(
        "the \"{tag}\" PEM block begins but never ends (no -----END {tag}-----): the file is \
         truncated, or was read while being written"
    )]
    TruncatedPem {
        /// The block's label.
        tag: String,
    },

    /// A file with no PEM block in it.
    #[error("no PEM block found (expected -----BEGIN PUBLIC KEY----- or similar)")]
    NoPemBlock,

    /// A PEM block of a kind that does not belong in this file.
    #[error(
        "PEM block {index} is \"{tag}\"; a public key file holds only PUBLIC KEY, \
         RSA PUBLIC KEY or CERTIFICATE blocks"
    )]
    UnexpectedPemBlock {
        /// 1-based position of the block in the file.
        index: usize,
        /// The block's label.
        tag: String,
    },

    /// A key that is not an RSA key.
    #[error("key {index} is not an RSA key ({kind}); appauth accepts RSA keys only")]
    NotRsa {
        /// 1-based position of the block in the file.
        index: usize,
        /// What it is instead, as far as it can be told.
        kind: String,
    },

    /// An RSA key whose modulus is under 2048 bits.
    #[error("key {index} has {bits} bits; appauth requires RSA keys of at least 2048 bits")]
    KeyTooSmall {
        /// 1-based position of the block in the file.
        index: usize,
        /// The modulus size.
        bits: usize,
    },

    /// A block that claims to be a key but does not decode as one.
    #[error("key {index} is damaged: {detail}")]
    InvalidKey {
        /// 1-based position of the block in the file.
        index: usize,
        /// The decoder's complaint.
        detail: String,
    },

    /// A certificate that does not decode.
    #[error("certificate {index} is damaged: {detail}")]
    InvalidCertificate {
        /// 1-based position of the block in the file.
        index: usize,
        /// The decoder's complaint.
        detail: String,
    },

    /// A certificate whose validity period has ended.
    #[error("certificate {index} expired at unix time {not_after}; issue a new one")]
    CertificateExpired {
        /// 1-based position of the block in the file.
        index: usize,
        /// End of validity, seconds since the epoch.
        not_after: i64,
    },

    /// A certificate whose validity period has not begun.
    #[error("certificate {index} is not valid before unix time {not_before}")]
    CertificateNotYetValid {
        /// 1-based position of the block in the file.
        index: usize,
        /// Start of validity, seconds since the epoch.
        not_before: i64,
    },

    // --- private keys ----------------------------------------------------
    /// A password-protected private key.
    #[error(
        "the private key is encrypted; appauth needs an unencrypted PKCS#8 or PKCS#1 key \
         (decrypt it with `openssl pkey -in KEY -out KEY.plain`)"
    )]
    EncryptedPrivateKey,

    /// A file that holds no usable RSA private key.
    #[error("not an RSA private key: {detail}")]
    InvalidPrivateKey {
        /// What was found or what the decoder said.
        detail: String,
    },

    // --- making keys and tokens -------------------------------------------
    /// A key size appauth does not generate.
    #[error("cannot generate a {bits}-bit key: use 2048, 3072 or 4096")]
    UnsupportedKeySize {
        /// The size asked for.
        bits: usize,
    },
    /// The crypto library failed an operation on a good key (generating,
    /// encoding, signing): not something the caller can fix by changing input.
    #[error("the crypto library failed to {operation}")]
    Crypto {
        /// What it was doing, e.g. `sign`.
        operation: &'static str,
    },
    /// The claims could not be serialized as JSON (a custom claim that
    /// serde_json refuses).
    #[error("the token claims do not serialize as JSON: {detail}")]
    Claims {
        /// serde_json's complaint.
        detail: String,
    },
}
