//! One run at a time changes a keys directory's files.
//!
//! Build pipelines run keygen in parallel: a `rotate` that reads the bundle
//! while a `retire` rewrites it would put a retired key back. Every command
//! takes an advisory lock on the public keys directory itself before it
//! reads anything, so any interleaving of runs equals some order of them,
//! one after another. Locking the directory, not a file in it, leaves
//! nothing behind in the directory the server watches and operators ship.

use std::fs;
use std::path::{Path, PathBuf};

use appauth_core::files::KEYGEN_WORK_DIR;

use crate::Error;

/// Held while a run changes a directory's files; the lock is released when
/// the directory handle closes, also when the process is killed. Dropping it
/// first removes the run's work directories, when they are empty (a killed
/// run's leftovers keep one until the next run cleans them).
#[derive(Debug)]
pub(crate) struct DirLock {
    work_dirs: Vec<PathBuf>,
    _dir: fs::File,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        for dir in &self.work_dirs {
            let work = dir.join(KEYGEN_WORK_DIR);
            // Lock files of releases that locked per app, in the work
            // directory: this release never uses them.
            if let Ok(entries) = fs::read_dir(&work) {
                for entry in entries.flatten() {
                    if entry.file_name().to_string_lossy().ends_with(".lock") {
                        let _ = fs::remove_file(entry.path());
                    }
                }
            }
            // Fails, harmlessly, while anything is left in it.
            let _ = fs::remove_dir(&work);
        }
    }
}

/// Locks the keys directory `public`, waiting for any other run that holds
/// it; `work_dirs` are the directories whose keygen work directory the run
/// may create, removed (when empty) as the lock is released.
pub(crate) fn lock_dir(public: &Path, work_dirs: Vec<PathBuf>) -> Result<DirLock, Error> {
    let err = |source| Error::Lock {
        path: public.to_path_buf(),
        source,
    };
    let dir = fs::File::open(public).map_err(err)?;
    dir.lock().map_err(err)?;
    let mut work_dirs = work_dirs;
    work_dirs.push(public.to_path_buf());
    work_dirs.sort();
    work_dirs.dedup();
    Ok(DirLock {
        work_dirs,
        _dir: dir,
    })
}
