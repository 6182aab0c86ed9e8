//! Atomic, no-clobber file writes: a crash never leaves half a key, and an
//! existing key is never replaced unless the caller says so.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Error;

/// What to do when the target file exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Fail, leaving the existing file untouched.
    Never,
    /// Replace it atomically.
    Atomically,
}

/// Unix mode for private keys: owner read/write only.
pub const PRIVATE_MODE: u32 = 0o600;
/// Unix mode for public keys.
pub const PUBLIC_MODE: u32 = 0o644;

/// Writes `bytes` to `path` through a temporary file in the same directory,
/// fsynced, then renamed (or linked, for [`Replace::Never`]) into place.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, replace: Replace) -> Result<(), Error> {
    let dir = parent(path);
    let werr = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".appauth-keygen-").suffix(".tmp");
    // The mode is set when the file is created, so a private key is never
    // readable by others, not even for a moment.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = builder.tempfile_in(&dir).map_err(werr)?;
    tmp.write_all(bytes).map_err(werr)?;
    tmp.as_file().sync_all().map_err(werr)?;
    match replace {
        Replace::Never => tmp.persist_noclobber(path).map_err(|e| werr(e.error))?,
        Replace::Atomically => tmp.persist(path).map_err(|e| werr(e.error))?,
    };
    // Make the rename itself durable.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates `dir` (and parents) if missing; private key directories get 0700.
pub fn ensure_dir(dir: &Path, private: bool) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    let err = |source| Error::CreateDir {
        dir: dir.to_path_buf(),
        source,
    };
    // Only the private-key directory itself is 0700: directories above it
    // (`out/` of `out/private`, shared with `out/public`) must stay
    // traversable by a server that runs as another user.
    if let Some(up) = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.is_dir())
    {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o755);
        }
        builder.create(up).map_err(err)?;
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(if private { 0o700 } else { 0o755 });
    }
    #[cfg(not(unix))]
    let _ = private;
    match builder.create(dir) {
        // Another pipeline made it a moment ago: that is what we wanted.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other.map_err(err),
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_replace_leaves_the_existing_file_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        fs::write(&path, b"original").unwrap();
        let err = write_atomic(&path, b"new", PRIVATE_MODE, Replace::Never).unwrap_err();
        assert!(matches!(err, Error::Write { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"original");
        // No temp file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn private_mode_is_0600_from_the_first_byte() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_atomic(&path, b"secret", PRIVATE_MODE, Replace::Never).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        write_atomic(&path, b"again", PUBLIC_MODE, Replace::Atomically).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"again");
    }
}
