//! What the watcher drives: the key store, the policy and revocation files,
//! and the TLS certificate, each re-read only when its files changed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use appauth_core::SystemClock;

use crate::KeyStore;
use crate::access::AccessControl;
use crate::files::parent_dir as parent;
use crate::tls::CertReloader;
use crate::watcher::Reload;

/// What the watcher reloads: keys, revocations and policy.
pub(crate) struct Reloader {
    pub(crate) store: Arc<KeyStore>,
    pub(crate) access: Arc<AccessControl>,
    pub(crate) tls: Option<Arc<CertReloader>>,
}

impl Reload for Reloader {
    fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.store.dir().to_path_buf()];
        dirs.extend(self.access.watched_files().into_iter().map(|(d, _)| d));
        if let Some(tls) = &self.tls {
            dirs.extend(tls.files().iter().map(|f| parent(f)));
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
        if let Some(tls) = &self.tls {
            files.extend(tls.files().iter().map(|f| f.to_path_buf()));
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
            if report.changed() {
                tracing::info!(
                    loaded = report.loaded,
                    failed = report.failed,
                    removed = report.removed,
                    apps = self.store.app_count(),
                    "keys reloaded"
                );
            }
        }
        if config_changed {
            self.access.reload_changed();
        }
        if let Some(tls) = &self.tls {
            let touched = tls.files().iter().any(|f| {
                parent(f) == dir
                    && f.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| names.contains(n))
            });
            // Kubernetes swaps come as ..data events, handled by rescan().
            if touched {
                tls.reload_if_changed(appauth_core::Clock::now(&SystemClock));
            }
        }
    }

    fn rescan(&self, why: &str) {
        match self.store.full_scan() {
            Ok(report) if report.changed() => tracing::info!(
                why,
                loaded = report.loaded,
                failed = report.failed,
                removed = report.removed,
                apps = self.store.app_count(),
                "key directory rescanned"
            ),
            Ok(_) => tracing::debug!(why, "key directory rescanned: no change"),
            Err(e) => tracing::error!(
                dir = %self.store.dir().display(), error = %e,
                "cannot list the keys directory; keeping the keys already loaded"
            ),
        }
        self.access.reload_changed();
        self.access.shrink();
        if let Some(tls) = &self.tls {
            tls.reload_if_changed(appauth_core::Clock::now(&SystemClock));
        }
    }
}
