//! `appauth-agent token-file`: the current token kept in a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Keys;

/// Why the token file cannot be kept.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file's directory does not exist or is not a directory.
    #[error("--out {}: the directory {} does not exist", path.display(), dir.display())]
    NoDirectory {
        /// The file asked for.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// No token could be signed (with `--once`).
    #[error("no usable signing key: nothing written to {}", .0.display())]
    NoKey(PathBuf),
    /// Writing failed.
    #[error("cannot write the token to {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Checks that `path` can be written: its directory exists.
pub fn check(path: &Path) -> Result<(), TokenFileError> {
    let dir = parent(path);
    if !dir.is_dir() {
        return Err(TokenFileError::NoDirectory {
            path: path.to_owned(),
            dir: dir.to_owned(),
        });
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `token` to `path` so that a reader sees the old token or the new
/// one, never a part: written beside under a temporary name with mode 0600,
/// flushed to disk, then renamed over `path`. No newline is added: the file
/// is the header value.
pub fn write_atomic(path: &Path, token: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = parent(path);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(token.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // The rename itself made durable; a directory that cannot be opened
    // (no read permission) still got the file.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes one token and returns (`--once`).
pub fn write_once(keys: &Keys, path: &Path) -> Result<(), TokenFileError> {
    let token = keys
        .token()
        .ok_or_else(|| TokenFileError::NoKey(path.to_owned()))?;
    write_atomic(path, &token).map_err(|source| TokenFileError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Keeps `path` holding a valid token for as long as the process runs: the
/// key file is looked at and the token asked for every
/// [`crate::KEY_CHECK_INTERVAL`], and the file is rewritten whenever the
/// token changed (at 4/5 of its lifetime, and at once after a new key).
pub async fn keep(keys: Arc<Keys>, path: PathBuf) {
    let mut every = tokio::time::interval(crate::KEY_CHECK_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written: Option<Arc<str>> = None;
    let mut failing: Option<String> = None;
    loop {
        every.tick().await;
        let (k, p, last) = (keys.clone(), path.clone(), written.clone());
        // A stat, sometimes a signature, sometimes a write and two fsyncs.
        let step = tokio::task::spawn_blocking(move || {
            k.check();
            let token = k.token()?;
            if last.as_deref() == Some(&*token) {
                return Some(Ok(token));
            }
            Some(
                write_atomic(&p, &token)
                    .map(|()| token)
                    .map_err(|e| e.to_string()),
            )
        })
        .await
        .ok()
        .flatten();
        match step {
            Some(Ok(token)) => {
                if written.as_deref() != Some(&*token) {
                    tracing::info!(path = %path.display(), "token written");
                }
                written = Some(token);
                failing = None;
            }
            Some(Err(e)) if failing.as_deref() != Some(&e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the token; trying again each second");
                failing = Some(e);
            }
            Some(Err(_)) => {}
            None => {}
        }
    }
}
