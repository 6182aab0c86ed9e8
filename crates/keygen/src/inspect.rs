//! `inspect`: what is in a key file.

use std::path::{Path, PathBuf};

use appauth_core::files::{KeyFileName, classify_file_name};
use appauth_core::{Clock, Kid, PrivateKey, SystemClock, parse_public_bundle};
use serde::Serialize;

use crate::Error;
use crate::keygen::read;

/// One key found in a file.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// `public` or `private`.
    pub kind: &'static str,
    /// `spki`, `pkcs1`, `certificate` or `pkcs8`.
    pub format: String,
    /// Modulus size.
    pub bits: usize,
    /// RFC 7638 thumbprint.
    pub kid: Kid,
}

/// What `inspect` reports for one file.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The file.
    pub file: PathBuf,
    /// The appId its name implies, when it follows the naming scheme.
    pub app_id: Option<String>,
    /// Every key in it, in file order.
    pub keys: Vec<KeyInfo>,
}

/// Reads `path` as a private key or a public key bundle.
pub fn inspect(path: &Path) -> Result<Inspection, Error> {
    let bytes = read(path)?;
    let bad = |source| Error::BadKeyFile {
        path: path.to_path_buf(),
        source,
    };
    let is_private = pem::parse_many(&bytes)
        .map(|blocks| blocks.iter().any(|b| b.tag().contains("PRIVATE KEY")))
        .unwrap_or(false);
    let keys = if is_private {
        let key = PrivateKey::from_pem(&bytes).map_err(bad)?;
        vec![KeyInfo {
            kind: "private",
            format: serde_plain(key.format()),
            bits: key.bits(),
            kid: key.kid().clone(),
        }]
    } else {
        parse_public_bundle(&bytes, SystemClock.now(), &[])
            .map_err(bad)?
            .iter()
            .map(|k| KeyInfo {
                kind: "public",
                format: serde_plain(k.format()),
                bits: k.bits(),
                kid: k.kid().clone(),
            })
            .collect()
    };
    let app_id =
        path.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| match classify_file_name(n) {
                KeyFileName::Public(app) | KeyFileName::Private(app) => Some(app.to_string()),
                _ => None,
            });
    Ok(Inspection {
        file: path.to_path_buf(),
        app_id,
        keys,
    })
}

fn serde_plain(v: impl Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// An RFC 7517 JWK Set of every key in `files` (public bundles), each
/// marked for RS512 signatures: what a JWT gateway reads for one issuer.
pub fn jwks_of_files(files: &[PathBuf]) -> Result<serde_json::Value, Error> {
    let now = SystemClock.now();
    let mut keys = Vec::new();
    for path in files {
        let bytes = read(path)?;
        keys.extend(
            parse_public_bundle(&bytes, now, &[]).map_err(|source| Error::BadKeyFile {
                path: path.clone(),
                source,
            })?,
        );
    }
    Ok(appauth_core::jwk_set(
        &keys,
        Some(appauth_core::Algorithm::RS512),
    ))
}

/// The JWK Set of each app in a keys directory, by appId (only `app`'s when
/// given): `{"<appId>": {"keys": [...]}, ...}`, read as the server reads the
/// directory.
pub fn jwks_of_dir(
    dir: &Path,
    app: Option<&appauth_core::AppId>,
) -> Result<serde_json::Value, Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut sets = serde_json::Map::new();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let KeyFileName::Public(found) = classify_file_name(&name)
            && app.is_none_or(|a| *a == found)
        {
            sets.insert(found.to_string(), jwks_of_files(&[entry.path()])?);
        }
    }
    Ok(serde_json::Value::Object(sets))
}
