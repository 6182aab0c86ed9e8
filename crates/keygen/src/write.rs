//! Atomic, no-clobber file writes: a crash never leaves half a key, and an
//! existing key is never replaced unless the caller says so.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use appauth_core::files::{KEYGEN_WORK_DIR, LEGACY_KEYGEN_TEMP_PREFIX};

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

/// Writes `bytes` to `path` through a temporary file in the directory's
/// keygen work directory (so never in a directory a server loads keys from),
/// fsynced, then renamed (or linked, for [`Replace::Never`]) into place.
///
/// The temporary file is named after its target, `<file name>.<random>.tmp`,
/// so that the next run holding the app's lock can remove what a killed run
/// left ([`clean_leftovers`]).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, replace: Replace) -> Result<(), Error> {
    let dir = parent(path);
    let werr = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let work = ensure_work_dir(&dir)?;
    let mut builder = tempfile::Builder::new();
    let prefix = format!("{}.", file_name(path));
    builder.prefix(&prefix).suffix(".tmp");
    // The mode is set when the file is created, so a private key is never
    // readable by others, not even for a moment.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = builder.tempfile_in(&work).map_err(werr)?;
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

/// The keygen work directory of `dir`, made (0700) if missing; a file staged
/// in a work directory has its temporary copies there too.
pub(crate) fn ensure_work_dir(dir: &Path) -> Result<PathBuf, Error> {
    if dir.file_name() == Some(std::ffi::OsStr::new(KEYGEN_WORK_DIR)) {
        return Ok(dir.to_path_buf());
    }
    let work = dir.join(KEYGEN_WORK_DIR);
    ensure_dir(&work, true)?;
    Ok(work)
}

/// Removes what a killed run left for `targets` (temporary copies in the work
/// directory), and temporary files of older releases in the directory itself
/// that are over a minute old. Call it holding the targets' app lock: no live
/// run of this release can then be writing them.
pub(crate) fn clean_leftovers(targets: &[&Path]) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let mut dirs_seen = Vec::new();
    for target in targets {
        let dir = parent(target);
        let prefix = format!("{}.", file_name(target));
        let work = if dir.file_name() == Some(std::ffi::OsStr::new(KEYGEN_WORK_DIR)) {
            dir.clone()
        } else {
            dir.join(KEYGEN_WORK_DIR)
        };
        removed.extend(remove_matching(&work, |name, _| {
            name.starts_with(&prefix) && name.ends_with(".tmp")
        }));
        if !dirs_seen.contains(&dir) {
            // An older release put its temporary files beside the keys, with
            // no app in the name: only age tells they are not being written.
            removed.extend(remove_matching(&dir, |name, meta| {
                name.starts_with(LEGACY_KEYGEN_TEMP_PREFIX)
                    && name.ends_with(".tmp")
                    && meta
                        .modified()
                        .ok()
                        .and_then(|m| m.elapsed().ok())
                        .is_some_and(|age| age > std::time::Duration::from_secs(60))
            }));
            dirs_seen.push(dir);
        }
    }
    removed
}

fn remove_matching(dir: &Path, doomed: impl Fn(&str, &fs::Metadata) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let meta = entry.metadata().ok().filter(fs::Metadata::is_file)?;
            doomed(&name, &meta).then(|| entry.path())
        })
        .filter(|path| fs::remove_file(path).is_ok())
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
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
        // No temp file is left behind, beside the key or in the work directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
        assert_eq!(
            fs::read_dir(dir.path().join(KEYGEN_WORK_DIR))
                .unwrap()
                .count(),
            0
        );
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
        let work = fs::metadata(dir.path().join(KEYGEN_WORK_DIR)).unwrap();
        assert_eq!(work.permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn leftovers_of_the_app_go_and_others_stay() {
        let dir = tempfile::tempdir().unwrap();
        let work = ensure_work_dir(dir.path()).unwrap();
        let mine = work.join("a_private.pem.X1y2.tmp");
        let other_app = work.join("ab_private.pem.X1y2.tmp");
        let fresh_legacy = dir.path().join(".appauth-keygen-Q9.tmp");
        for f in [&mine, &other_app, &fresh_legacy] {
            fs::write(f, "secret").unwrap();
        }
        let removed = clean_leftovers(&[&dir.path().join("a_private.pem")]);
        assert_eq!(removed, vec![mine.clone()]);
        assert!(!mine.exists() && other_app.exists());
        // A legacy temp file may be a run of an older release still writing:
        // it goes only once it is a minute old.
        assert!(fresh_legacy.exists());
    }
}
