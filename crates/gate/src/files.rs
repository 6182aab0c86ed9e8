//! Where the configured files are: every path resolved once, at start-up.
//!
//! File-system events name absolute paths, so a watcher that compared them
//! with `keys` or `./policy.toml` as typed would drop every event. Resolving
//! the directories (symlinks included, as the kernel reports them) makes the
//! comparison exact, and makes the server independent of later `chdir`s.

use std::io;
use std::path::{Path, PathBuf};

/// The directory holding `path`: its parent, or `.` for a bare file name.
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A directory, resolved to its canonical absolute path.
pub fn resolve_dir(dir: &Path) -> io::Result<PathBuf> {
    dir.canonicalize()
}

/// A file, as its canonical directory plus its own name. The file itself is
/// not resolved: it may not exist yet (a revocation list), and when it is a
/// symlink (a Kubernetes ConfigMap entry) the link is what gets swapped.
/// When the directory cannot be resolved, the path is made absolute as it
/// is, and reading it later reports the real problem.
pub fn resolve_file(path: &Path) -> PathBuf {
    let resolved = path.file_name().and_then(|name| {
        parent_dir(path)
            .canonicalize()
            .ok()
            .map(|dir| dir.join(name))
    });
    resolved.unwrap_or_else(|| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_canonical_absolute_ones() {
        let dir = tempfile::tempdir().unwrap();
        let canonical = dir.path().canonicalize().unwrap();
        std::fs::create_dir(canonical.join("keys")).unwrap();
        let relative = canonical.join("keys").join("..").join("keys");
        assert_eq!(resolve_dir(&relative).unwrap(), canonical.join("keys"));
        assert_eq!(
            resolve_file(&relative.join("revoked.txt")),
            canonical.join("keys").join("revoked.txt")
        );
        assert_eq!(parent_dir(Path::new("policy.toml")), PathBuf::from("."));
        assert!(resolve_file(Path::new("policy.toml")).is_absolute());
    }
}
