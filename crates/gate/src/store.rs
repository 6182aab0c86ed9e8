//! The key store: every app's public keys in memory, swapped atomically.
//!
//! Requests read a snapshot (`ArcSwap` load, no lock, no disk). Reloads run
//! on the watcher's thread: they stat files, re-read only the ones whose
//! fingerprint changed, and publish a new snapshot in one store, so a request
//! never sees half of a reload.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use appauth_core::files::{KeyFileName, classify_file_name};
use appauth_core::{Algorithm, AppId, Clock, KeyProvider, PublicKey, parse_public_bundle};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rayon::prelude::*;

use appauth_core::Fingerprint;

type Snapshot = crate::FastMap<AppId, Arc<[PublicKey]>>;

/// One `<appId>_public.pem` as last read.
struct FileState {
    app: AppId,
    fingerprint: Fingerprint,
    /// `None` when the file failed to parse: the app then has no keys.
    keys: Option<Arc<[PublicKey]>>,
}

/// What a reload did: the store reports, its caller counts (metrics, logs).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// A full scan of the directory (not only the entries events named).
    pub full_scan: bool,
    /// Key files read (accepted or refused).
    pub reads: usize,
    /// Private key files found for the first time (each is warned about once).
    pub new_private_keys: usize,
    /// The snapshot published, when the keys in service changed:
    /// `(apps, keys)`.
    pub published: Option<(usize, usize)>,
    /// Files read and accepted.
    pub loaded: usize,
    /// Files read and refused (their apps now have no keys).
    pub failed: usize,
    /// Files that disappeared (their apps now have no keys).
    pub removed: usize,
    /// What is wrong in the directory, one `file: problem` line each: refused
    /// key files, private keys, key-like names with an invalid appId.
    pub problems: Vec<String>,
}

impl ReloadReport {
    /// Whether the set of keys in service changed.
    pub fn changed(&self) -> bool {
        self.loaded + self.failed + self.removed > 0
    }
}

/// Every app's keys, loaded from one flat directory.
pub struct KeyStore {
    dir: PathBuf,
    algorithms: Vec<Algorithm>,
    clock: Arc<dyn Clock>,
    published: ArcSwap<Snapshot>,
    /// Only the loader touches this; requests never do.
    files: Mutex<HashMap<String, FileState>>,
    warned_private: Mutex<HashSet<String>>,
    /// Files of no key-file name, by fingerprint: whether each holds a
    /// private key (read again only when it changes).
    others: Mutex<HashMap<String, (Fingerprint, bool)>>,
    ready: AtomicBool,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("dir", &self.dir)
            .field("apps", &self.published.load().len())
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// An empty store for `dir`; call [`KeyStore::full_scan`] to load it.
    /// Keys are prepared for `algorithms`, the verifier's allow-list.
    pub fn new(dir: impl Into<PathBuf>, algorithms: Vec<Algorithm>, clock: Arc<dyn Clock>) -> Self {
        Self {
            dir: dir.into(),
            algorithms,
            clock,
            published: ArcSwap::from_pointee(Snapshot::default()),
            files: Mutex::new(HashMap::new()),
            warned_private: Mutex::new(HashSet::new()),
            others: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
        }
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key files last seen, as paths (the watcher follows the ones that
    /// are symlinks into other directories).
    pub fn key_files(&self) -> Vec<PathBuf> {
        self.files.lock().keys().map(|n| self.dir.join(n)).collect()
    }

    /// Whether the first full load has finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// How many apps have keys.
    pub fn app_count(&self) -> usize {
        self.published.load().len()
    }

    /// Reads the whole directory, re-reading only files whose fingerprint
    /// changed since the last read. Marks the store ready.
    pub fn full_scan(&self) -> std::io::Result<ReloadReport> {
        let mut names = HashSet::new();
        for entry in fs::read_dir(&self.dir)? {
            let Ok(entry) = entry else { continue };
            if let Some(name) = entry.file_name().to_str() {
                names.insert(name.to_owned());
            }
        }
        // Files we knew that are gone.
        names.extend(self.files.lock().keys().cloned());
        let mut report = self.reload(names);
        report.full_scan = true;
        self.ready.store(true, Ordering::Release);
        Ok(report)
    }

    /// Re-examines the named directory entries (from file-system events).
    pub fn reload_names(&self, names: impl IntoIterator<Item = String>) -> ReloadReport {
        self.reload(names.into_iter().collect())
    }

    fn reload(&self, names: HashSet<String>) -> ReloadReport {
        let mut files = self.files.lock();
        let mut report = ReloadReport::default();
        let mut to_read = Vec::new();
        for name in names {
            let kind = classify_file_name(&name);
            // Whatever its name (`<app>_private.<kid>.pem.old`, a copy, a
            // note), a file that holds a private key is one.
            let private_inside = matches!(kind, KeyFileName::Other | KeyFileName::InvalidAppId(_))
                && self.holds_private_key(&name);
            match kind {
                _ if private_inside => self.private_key_found(&name, true, &mut report),
                KeyFileName::Public(app) => {
                    let path = self.dir.join(&name);
                    match fs::metadata(&path) {
                        Ok(meta) if meta.is_file() => {
                            let fp = Fingerprint::of(&meta);
                            if files.get(&name).map(|f| f.fingerprint) != Some(fp) {
                                to_read.push((name, app, fp, path));
                            }
                        }
                        _ => {
                            if files.remove(&name).is_some() {
                                tracing::info!(file = %name, app_id = %app, "key file removed: app has no keys now");
                                report.removed += 1;
                            }
                        }
                    }
                }
                kind @ (KeyFileName::Private(_) | KeyFileName::KeygenLeftover)
                    if self.dir.join(&name).exists() =>
                {
                    let private = matches!(kind, KeyFileName::Private(_));
                    self.private_key_found(&name, private, &mut report);
                }
                KeyFileName::InvalidAppId(name) if self.dir.join(&name).exists() => {
                    tracing::warn!(file = %name, "ignoring key file: its name is not a valid appId");
                    report.problems.push(format!(
                        "{}: the name is not <appId>_public.pem with a valid appId",
                        self.dir.join(&name).display()
                    ));
                }
                KeyFileName::Private(_)
                | KeyFileName::InvalidAppId(_)
                | KeyFileName::KeygenLeftover
                | KeyFileName::Other => {}
            }
        }

        let now = self.clock.now();
        let read: Vec<_> = to_read
            .into_par_iter()
            .map(|(name, app, fp, path)| {
                let result = read_bundle(&path, now, &self.algorithms);
                (name, app, fp, path, result)
            })
            .collect();
        for (name, app, fingerprint, path, result) in read {
            report.reads += 1;
            let keys = match result {
                Ok(keys) => {
                    tracing::debug!(file = %path.display(), app_id = %app, keys = keys.len(), "loaded key file");
                    report.loaded += 1;
                    Some(Arc::from(keys))
                }
                Err(reason) => {
                    tracing::error!(
                        file = %path.display(), app_id = %app, %reason,
                        "refusing key file: this app's requests are rejected until it is fixed"
                    );
                    report.failed += 1;
                    report
                        .problems
                        .push(format!("{}: {reason}", path.display()));
                    None
                }
            };
            files.insert(
                name,
                FileState {
                    app,
                    fingerprint,
                    keys,
                },
            );
        }
        if report.changed() {
            report.published = Some(self.publish(&files));
        }
        report
    }

    /// Every key file that loaded: its app, its modification time (seconds
    /// since the epoch) and its keys in file order. For the key lifecycle
    /// metrics; the loader's own state, never read by a request.
    pub fn loaded_bundles(&self) -> Vec<(AppId, i64, Arc<[PublicKey]>)> {
        self.files
            .lock()
            .values()
            .filter_map(|f| {
                let keys = f.keys.clone()?;
                Some((f.app.clone(), f.fingerprint.modified_secs(), keys))
            })
            .collect()
    }

    /// Whether `app` currently holds the key `kid` (in date or not): which
    /// per-key metric series still belong to the keys directory.
    pub fn holds(&self, app: &str, kid: &str) -> bool {
        self.published
            .load()
            .get(app)
            .is_some_and(|keys| keys.iter().any(|k| k.kid().as_str() == kid))
    }

    /// A file that holds (or, for a keygen leftover, may hold) a private key:
    /// a problem every scan, a warning once.
    fn private_key_found(&self, name: &str, private: bool, report: &mut ReloadReport) {
        let (problem, warning) = if private {
            (
                "a private key does not belong in the server's keys directory",
                "PRIVATE KEY in the server's keys directory: the server needs public keys \
                 only; move this file out and give it only to its app (or delete it, if it \
                 is a retired key)",
            )
        } else {
            (
                "a temporary file of an interrupted appauth-keygen run",
                "a temporary file an interrupted appauth-keygen run left in the keys \
                 directory: it may hold a PRIVATE KEY; delete it (the next keygen \
                 run of a current release cleans up after itself)",
            )
        };
        let path = self.dir.join(name);
        report
            .problems
            .push(format!("{}: {problem}", path.display()));
        if self.warned_private.lock().insert(name.to_owned()) {
            tracing::warn!(file = %path.display(), "{warning}");
            report.new_private_keys += usize::from(private);
        }
    }

    /// Whether the directory entry `name`, a regular file, holds a PEM
    /// private key block; remembered by fingerprint.
    fn holds_private_key(&self, name: &str) -> bool {
        let path = self.dir.join(name);
        let mut others = self.others.lock();
        let Some(fingerprint) = Fingerprint::of_path(&path).filter(|_| path.is_file()) else {
            others.remove(name);
            return false;
        };
        if let Some((seen, private)) = others.get(name)
            && *seen == fingerprint
        {
            return *private;
        }
        let private =
            appauth_core::files::read_key_file(&path).is_ok_and(|bytes| holds_private_pem(&bytes));
        others.insert(name.to_owned(), (fingerprint, private));
        private
    }

    fn publish(&self, files: &HashMap<String, FileState>) -> (usize, usize) {
        let snapshot: Snapshot = files
            .values()
            .filter_map(|f| f.keys.clone().map(|k| (f.app.clone(), k)))
            .collect();
        let keys: usize = snapshot.values().map(|k| k.len()).sum();
        let apps = snapshot.len();
        self.published.store(Arc::new(snapshot));
        (apps, keys)
    }
}

fn read_bundle(path: &Path, now: i64, algorithms: &[Algorithm]) -> Result<Vec<PublicKey>, String> {
    let bytes = appauth_core::files::read_key_file(path).map_err(|e| e.to_string())?;
    parse_public_bundle(&bytes, now, algorithms).map_err(|e| e.to_string())
}

/// Whether `bytes` hold a PEM private key of any kind (`PRIVATE KEY`, `RSA
/// PRIVATE KEY`, `EC PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`, ...).
fn holds_private_pem(bytes: &[u8]) -> bool {
    const BEGIN: &[u8] = b"-----BEGIN ";
    bytes
        .windows(BEGIN.len())
        .enumerate()
        .filter(|(_, w)| *w == BEGIN)
        .any(|(i, _)| {
            let label = &bytes[i + BEGIN.len()..];
            let line = label.split(|&b| b == b'\n').next().unwrap_or_default();
            line.trim_ascii_end().ends_with(b"PRIVATE KEY-----")
        })
}

impl KeyProvider for KeyStore {
    fn keys_for(&self, app: &AppId) -> Option<Arc<[PublicKey]>> {
        self.published.load().get(app).cloned()
    }

    fn app_keys(&self, app: &str) -> Option<(AppId, Arc<[PublicKey]>)> {
        self.published.load().app_keys(app)
    }

    fn has_key(&self, app: &AppId, kid: &appauth_core::Kid, now: i64) -> bool {
        // A guard, not a clone: no shared reference count is touched.
        self.published
            .load()
            .get(app)
            .is_some_and(|keys| appauth_core::bundle_has_key(keys, kid, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appauth_core::{PrivateKey, SystemClock};

    fn store(dir: &Path) -> KeyStore {
        KeyStore::new(dir, vec![Algorithm::RS512], Arc::new(SystemClock))
    }

    fn app(s: &str) -> AppId {
        AppId::new(s).unwrap()
    }

    #[test]
    fn a_keygen_temp_file_in_the_keys_directory_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".appauth-keygen-Xy12.tmp"), "secret").unwrap();
        let report = store(dir.path()).full_scan().unwrap();
        assert!(
            report.problems.iter().any(|p| p.contains("appauth-keygen")),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn a_private_key_is_reported_whatever_the_file_is_called() {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKey::generate(2048).unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        let kid = key.kid().to_string();
        // What `rotate` left behind in older releases, a stray copy, and a
        // traditional RSA key under a harmless name.
        fs::write(
            dir.path().join(format!("orders_private.{kid}.pem.old")),
            &pem,
        )
        .unwrap();
        fs::write(dir.path().join("backup.pem"), &pem).unwrap();
        fs::write(
            dir.path().join("notes.txt"),
            "see below\n-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap();
        // Neither a public key nor prose mentioning private keys is one.
        fs::write(
            dir.path().join("a_public.pem"),
            key.public_key_pem().unwrap(),
        )
        .unwrap();
        fs::write(dir.path().join("README"), "never put a PRIVATE KEY here\n").unwrap();
        let s = store(dir.path());
        let report = s.full_scan().unwrap();
        let mut flagged: Vec<_> = report
            .problems
            .iter()
            .filter(|p| p.contains("a private key does not belong"))
            .map(|p| {
                p.rsplit('/')
                    .next()
                    .unwrap()
                    .split(':')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        flagged.sort();
        assert_eq!(
            flagged,
            [
                "backup.pem",
                "notes.txt",
                &format!("orders_private.{kid}.pem.old")
            ],
            "{:?}",
            report.problems
        );
        assert_eq!(report.new_private_keys, 3);
        // Reported on every scan, counted once.
        let again = s.full_scan().unwrap();
        assert_eq!(again.problems.len(), 3, "{:?}", again.problems);
        assert_eq!(again.new_private_keys, 0);
        assert!(s.keys_for(&app("a")).is_some());
    }

    #[test]
    fn a_bad_file_fails_closed_for_its_app_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKey::generate(2048)
            .unwrap()
            .public_key_pem()
            .unwrap();
        fs::write(dir.path().join("good_public.pem"), &key).unwrap();
        fs::write(dir.path().join("bad_public.pem"), "garbage").unwrap();
        fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let s = store(dir.path());
        let report = s.full_scan().unwrap();
        assert_eq!((report.loaded, report.failed), (1, 1));
        assert!(s.keys_for(&app("good")).is_some());
        assert!(s.keys_for(&app("bad")).is_none());
        assert!(s.is_ready());

        // A scan with nothing changed reads nothing.
        let nothing = ReloadReport {
            full_scan: true,
            ..ReloadReport::default()
        };
        assert_eq!(s.full_scan().unwrap(), nothing);

        // Replacing the good file with garbage removes its keys.
        fs::write(dir.path().join("good_public.pem"), "garbage!").unwrap();
        s.reload_names(["good_public.pem".to_owned()]);
        assert!(s.keys_for(&app("good")).is_none());

        fs::remove_file(dir.path().join("good_public.pem")).unwrap();
        assert_eq!(s.reload_names(["good_public.pem".to_owned()]).removed, 1);
    }
}
