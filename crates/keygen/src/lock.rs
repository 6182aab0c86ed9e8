//! One run at a time changes an app's files.
//!
//! Build pipelines run keygen in parallel: a `rotate` that reads the bundle
//! while a `retire` rewrites it would put a retired key back. Every command
//! takes an advisory lock per app before it reads anything, so any
//! interleaving of runs equals some order of them, one after another.

use std::fs;
use std::path::Path;

use appauth_core::AppId;

use crate::Error;
use crate::write::ensure_work_dir;

/// Held while a run changes one app's files; the lock is released when the
/// file is closed, also when the process is killed.
#[derive(Debug)]
pub(crate) struct AppLock {
    _file: fs::File,
}

/// Locks `apps` (sorted, so two runs over overlapping sets cannot deadlock),
/// waiting for any other run that holds one of them.
///
/// The lock files live in the work directory of `dir`. They are never
/// deleted: removing a lock file while another run waits on it would let a
/// third run lock a new file beside it.
pub(crate) fn lock_apps(dir: &Path, apps: &[&AppId]) -> Result<Vec<AppLock>, Error> {
    let work = ensure_work_dir(dir)?;
    let mut sorted: Vec<&AppId> = apps.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
        .into_iter()
        .map(|app| {
            let path = work.join(format!("{app}.lock"));
            let err = |source| Error::Lock {
                path: path.clone(),
                source,
            };
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(err)?;
            file.lock().map_err(err)?;
            Ok(AppLock { _file: file })
        })
        .collect()
}
