//! A throwaway certificate authority for tests that speak TLS: the server's
//! own listener, Redis over TLS, the agent's upstream.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A CA: its key signs certificates; `pem` is what clients trust.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A new CA.
pub fn ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    // OpenSSL (Redis's TLS) matches an issuer by name: an empty one matches
    // nothing.
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "appauth test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

/// A server certificate for 127.0.0.1 signed by `ca`, written to `dir`.
pub fn issue(ca: &Ca, dir: &Path, serial: u64, not_after_year: i32) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params.serial_number = Some(serial.into());
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    fs::write(&c, cert.pem()).unwrap();
    fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// A CA and a certificate for 127.0.0.1 signed by it, in `dir`:
/// `(certificate, key, CA file)`.
pub fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = ca();
    let (cert, key) = issue(&ca, dir, 1, 2090);
    let ca_file = dir.join("ca.pem");
    fs::write(&ca_file, &ca.pem).unwrap();
    (cert, key, ca_file)
}
