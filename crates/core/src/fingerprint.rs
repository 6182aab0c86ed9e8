//! Telling whether a file changed without reading it, and the one way every
//! hot-reloaded file (key bundles, the policy, the revocation list, a TLS
//! pair) is re-read: fingerprint first, then read, and the fingerprint taken
//! *before* the read is the one remembered. A write that lands during the
//! read then changes the fingerprint after it, and the next event or rescan
//! reads the file again; remembering a fingerprint taken after the read
//! would mark that write as seen and lose it.

use std::fs;
use std::io;
use std::path::Path;

/// What identifies a file's contents without reading it. Taken through
/// symlinks, so a Kubernetes `..data` swap shows up as a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// Reads `path` with `read` unless its fingerprint is still `seen`;
/// returns what was read and the fingerprint to remember once it is
/// accepted (see the module's documentation for why it is taken first).
pub fn read_if_changed<T>(
    path: &Path,
    seen: Option<Fingerprint>,
    read: impl FnOnce(&Path) -> io::Result<T>,
) -> io::Result<Option<(T, Fingerprint)>> {
    let fingerprint = Fingerprint::of(&fs::metadata(path)?);
    if seen == Some(fingerprint) {
        return Ok(None);
    }
    Ok(Some((read(path)?, fingerprint)))
}

impl Fingerprint {
    /// The fingerprint of the file at `path`, through symlinks; `None` when
    /// it cannot be looked at (which counts as a change from any file).
    pub fn of_path(path: &Path) -> Option<Self> {
        fs::metadata(path).ok().map(|m| Self::of(&m))
    }

    /// The file's modification time, in whole seconds since the epoch.
    pub fn modified_secs(&self) -> i64 {
        i64::try_from(self.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(i64::MAX)
    }

    /// The fingerprint of a file's metadata (taken with `fs::metadata`).
    pub fn of(meta: &fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Self {
                dev: meta.dev(),
                ino: meta.ino(),
                len: meta.len(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            }
        }
        #[cfg(not(unix))]
        {
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            Self {
                dev: 0,
                ino: 0,
                len: meta.len(),
                mtime_ns: mtime,
                ctime_ns: 0,
            }
        }
    }
}
