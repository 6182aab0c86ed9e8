//! What the watcher drives: the key store, the policy and revocation files,
//! and any file an embedding application registers (the server registers its
//! TLS certificate pair), each re-read only when its files changed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::access::AccessControl;
use crate::files::parent_dir;
use crate::store::KeyStore;
use crate::watcher::Reload;

/// Files of an application's own that should be watched with the keys: the
/// watcher calls [`Reloadable::reload`] within a second of a change to any of
/// [`Reloadable::files`] (or a Kubernetes `..data` swap beside them), and on
/// every periodic rescan.
pub trait Reloadable: Send + Sync {
    /// The files to follow (absolute paths).
    fn files(&self) -> Vec<PathBuf>;
    /// Re-read them; keep the last good state if they do not load.
    fn reload(&self);
}

/// The key store, access control and registered files, as one watch target.
pub(crate) struct Reloader {
    pub(crate) store: Arc<KeyStore>,
    pub(crate) metrics: Arc<crate::Metrics>,
    pub(crate) access: Arc<AccessControl>,
    pub(crate) extra: Vec<Arc<dyn Reloadable>>,
}

impl Reloader {
    fn log_keys(&self, report: &crate::store::ReloadReport, why: Option<&str>) {
        self.metrics.count_keys(report, &self.store);
        if report.changed() {
            tracing::info!(
                why = why.unwrap_or("file events"),
                loaded = report.loaded,
                failed = report.failed,
                removed = report.removed,
                apps = self.store.app_count(),
                "keys reloaded"
            );
        }
    }
}

impl Reload for Reloader {
    fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.store.dir().to_path_buf()];
        dirs.extend(self.access.watched_files().into_iter().map(|(d, _)| d));
        for target in &self.extra {
            dirs.extend(target.files().iter().map(|f| parent_dir(f)));
        }
        dirs
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files = self.store.key_files();
        files.extend(
            self.access
                .watched_files()
                .into_iter()
                .map(|(d, f)| d.join(f)),
        );
        for target in &self.extra {
            files.extend(target.files());
        }
        files
    }

    fn changed(&self, dir: &Path, names: HashSet<String>) {
        let config_changed = self
            .access
            .watched_files()
            .iter()
            .any(|(d, f)| d == dir && names.contains(f));
        if dir == self.store.dir() {
            let report = self.store.reload_names(names.iter().cloned());
            self.log_keys(&report, None);
        }
        if config_changed {
            self.metrics.count_config(&self.access.reload_changed());
        }
        for target in &self.extra {
            let touched = target.files().iter().any(|f| {
                parent_dir(f) == dir
                    && f.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| names.contains(n))
            });
            if touched {
                target.reload();
            }
        }
    }

    fn rescan(&self, why: &str) {
        match self.store.full_scan() {
            Ok(report) if report.changed() => self.log_keys(&report, Some(why)),
            Ok(report) => {
                self.metrics.count_keys(&report, &self.store);
                tracing::debug!(why, "key directory rescanned: no change");
            }
            Err(e) => tracing::error!(
                dir = %self.store.dir().display(), error = %e,
                "cannot list the keys directory; keeping the keys already loaded"
            ),
        }
        self.metrics.count_config(&self.access.reload_changed());
        self.access.shrink();
        for target in &self.extra {
            target.reload();
        }
    }
}
