//! TLS with rustls: the certificate and key are read from PEM files, checked
//! (present, readable, matching, in date), and hot-reloaded like the keys. A
//! renewed certificate that fails to load keeps the old one in service.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use x509_cert::der::Decode;

use appauth_core::Fingerprint;
use appauth_core::{Clock, SystemClock};
use appauth_gate::Reloadable;

/// Why a certificate or key cannot be used. Each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file cannot be read.
    #[error("TLS file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No certificate in the certificate file.
    #[error("TLS certificate {}: no PEM CERTIFICATE block found", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The certificate does not decode.
    #[error("TLS certificate {}: {detail}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No usable private key in the key file.
    #[error("TLS key {}: {detail}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The certificate has expired.
    #[error("TLS certificate {} expired at unix time {not_after}; renew it", path.display())]
    Expired {
        /// The file.
        path: PathBuf,
        /// End of validity.
        not_after: i64,
    },
    /// The key does not belong to the certificate.
    #[error(
        "TLS key {} does not match certificate {}: {detail}",
        key.display(),
        cert.display()
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' complaint.
        detail: String,
    },
}

/// Reads and checks a certificate chain and its key.
pub fn load_certified_key(cert: &Path, key: &Path, now: i64) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert.to_path_buf(),
            detail: e.to_string(),
        })?;
    let leaf = chain.first().ok_or_else(|| TlsError::NoCertificate {
        path: cert.to_path_buf(),
    })?;
    let parsed = x509_cert::Certificate::from_der(leaf).map_err(|e| TlsError::BadCertificate {
        path: cert.to_path_buf(),
        detail: e.to_string(),
    })?;
    let not_after = i64::try_from(
        parsed
            .tbs_certificate
            .validity
            .not_after
            .to_unix_duration()
            .as_secs(),
    )
    .unwrap_or(i64::MAX);
    if now > not_after {
        return Err(TlsError::Expired {
            path: cert.to_path_buf(),
            not_after,
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadKey {
        path: key.to_path_buf(),
        detail: format!("{e} (expected a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"),
    })?;
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    CertifiedKey::from_der(chain, private, &provider).map_err(|e| TlsError::Mismatch {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Serves the current certificate and swaps in renewed ones.
#[derive(Debug)]
pub struct CertReloader {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
    seen: Mutex<(Option<Fingerprint>, Option<Fingerprint>)>,
}

impl CertReloader {
    /// Loads the pair strictly (start-up).
    pub fn new(cert: PathBuf, key: PathBuf, now: i64) -> Result<Self, TlsError> {
        // Stamped before the read (see `appauth_core::read_if_changed`): a
        // renewal written while the pair loads is picked up by the next event.
        let seen = (stamp(&cert), stamp(&key));
        let loaded = load_certified_key(&cert, &key, now)?;
        Ok(Self {
            cert,
            key,
            current: ArcSwap::from_pointee(loaded),
            seen: Mutex::new(seen),
        })
    }

    /// The certificate and key files.
    pub fn files(&self) -> [&Path; 2] {
        [&self.cert, &self.key]
    }

    /// Re-reads the pair if either file changed; on failure the old pair
    /// stays in service. Returns whether a new certificate was installed.
    pub fn reload_if_changed(&self, now: i64) -> bool {
        let mut seen = self.seen.lock();
        let stamps = (stamp(&self.cert), stamp(&self.key));
        if stamps == *seen {
            return false;
        }
        match load_certified_key(&self.cert, &self.key, now) {
            Ok(loaded) => {
                *seen = stamps;
                self.current.store(Arc::new(loaded));
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                // Not remembered as seen: the next event (the rest of a
                // two-file renewal) tries again.
                tracing::error!(error = %e, "renewed TLS certificate NOT loaded; the previous one stays in service");
                false
            }
        }
    }

    /// A rustls server configuration that always presents the current pair.
    pub fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

fn stamp(path: &Path) -> Option<Fingerprint> {
    Fingerprint::of_path(path)
}

/// The library's watcher re-reads the pair when either file changes.
impl Reloadable for CertReloader {
    fn files(&self) -> Vec<PathBuf> {
        vec![self.cert.clone(), self.key.clone()]
    }

    fn reload(&self) {
        self.reload_if_changed(SystemClock.now());
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
