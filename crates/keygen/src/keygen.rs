//! `new`, `rotate` and `retire`: making and changing keypairs on disk.

use std::fs;
use std::path::{Path, PathBuf};

use appauth_core::files::{private_key_file_name, public_key_file_name};
use appauth_core::{AppId, Kid, PrivateKey, parse_public_bundle};
use rayon::prelude::*;
use serde::Serialize;

use crate::Error;
use crate::lock::lock_dir;
use crate::write::{
    PRIVATE_MODE, PUBLIC_MODE, Replace, clean_leftovers, ensure_dir, ensure_work_dir, write_atomic,
};

/// Where keys go. Private and public keys may live apart: the server's
/// deployment only ever sees the public directory.
#[derive(Debug, Clone)]
pub struct KeyDirs {
    /// Directory for `<appId>_private.pem`.
    pub private: PathBuf,
    /// Directory for `<appId>_public.pem`.
    pub public: PathBuf,
    /// Put each private key in a directory of its own,
    /// `<private>/<appId>/<appId>_private.pem`, so each app's deployment can
    /// mount exactly its own key.
    pub private_per_app: bool,
}

impl KeyDirs {
    /// Both kinds of key in one directory.
    pub fn single(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            private: dir.clone(),
            public: dir,
            private_per_app: false,
        }
    }

    /// The directory holding `app`'s private key.
    pub fn private_dir(&self, app: &AppId) -> PathBuf {
        if self.private_per_app {
            self.private.join(app.as_str())
        } else {
            self.private.clone()
        }
    }

    /// The private key file of `app`.
    pub fn private_path(&self, app: &AppId) -> PathBuf {
        self.private_dir(app).join(private_key_file_name(app))
    }

    /// The public key bundle of `app`.
    pub fn public_path(&self, app: &AppId) -> PathBuf {
        self.public.join(public_key_file_name(app))
    }
}

/// What `new` does about apps that already have keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse the whole run, writing nothing (the default).
    Refuse,
    /// Leave apps with a sound pair alone and report them as skipped; a pair
    /// that is half there or unusable fails the run.
    Skip,
    /// As [`Existing::Skip`], and where a private key lost its public half
    /// (a run killed between the two writes), write the public key from it.
    Repair,
    /// Replace them with new keys.
    Replace,
}

/// What happened to one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A new keypair was written.
    Created,
    /// A sound pair existed and was kept (`--if-missing`).
    Skipped,
    /// The public key was written again from the private key (`--repair`).
    Repaired,
    /// Keys existed and were replaced (`--force`).
    Replaced,
    /// A new key was added to the bundle and the private key replaced.
    Rotated,
    /// A key was removed from the bundle.
    Retired,
}

/// The result for one app, as printed (and as `--json` emits it).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The app.
    pub app_id: AppId,
    /// What happened.
    pub status: Status,
    /// The private key file.
    pub private_key: PathBuf,
    /// The public key bundle.
    pub public_key: PathBuf,
    /// The kid of the app's current key (for `retire`: the retired kid).
    pub kid: Option<Kid>,
    /// Modulus size of the current key.
    pub bits: Option<usize>,
    /// Where the previous private key was kept (`--keep-retired` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_private_key: Option<PathBuf>,
    /// Private keys of retired or rotated-out keys this run deleted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted_private_keys: Vec<PathBuf>,
    /// The kids left in the bundle after `rotate` or `retire`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bundle: Vec<Kid>,
    /// Temporary files a killed run had left, removed by this one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cleaned_up: Vec<PathBuf>,
    /// `rotate` finished a rotation an earlier, interrupted run had begun.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}

/// One app's failure in a run that went on for the others.
#[derive(Debug, Serialize)]
pub struct AppFailure {
    /// The app.
    pub app_id: AppId,
    /// Why, as the operator reads it.
    #[serde(serialize_with = "as_text")]
    pub error: Error,
}

fn as_text<S: serde::Serializer>(e: &Error, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(e)
}

/// Makes a keypair for each app, in parallel across cores.
///
/// Everything is checked before anything is written: with
/// [`Existing::Refuse`], one existing file fails the whole run and no file
/// (nor directory) is made; with [`Existing::Skip`], a broken pair fails the
/// whole run. Runs on overlapping apps wait for each other (one lock per
/// app), so parallel `--if-missing` runs make each key once and report it
/// made or skipped. If writing fails for some apps after others were made,
/// the error is [`Error::SomeFailed`] and carries both.
pub fn generate(
    apps: &[AppId],
    bits: usize,
    dirs: &KeyDirs,
    existing: Existing,
) -> Result<Vec<Outcome>, Error> {
    if apps.is_empty() {
        return Err(Error::NoAppIds);
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = apps.iter().find(|a| !seen.insert(*a)) {
        return Err(Error::DuplicateAppId(dup.to_string()));
    }
    // A refusal must leave no trace, not even a directory: look before
    // making anything (and again under the locks, which need directories).
    if existing == Existing::Refuse {
        refuse_clobbering(apps, dirs)?;
    }
    plan(apps, dirs, existing)?;
    ensure_dir(&dirs.private, true)?;
    ensure_dir(&dirs.public, false)?;
    for app in apps {
        ensure_dir(&dirs.private_dir(app), true)?;
    }
    let _lock = lock_dir(&dirs.public, private_dirs(apps, dirs))?;
    if existing == Existing::Refuse {
        refuse_clobbering(apps, dirs)?;
    }

    let mut todo = Vec::with_capacity(apps.len());
    let mut kept = Vec::new();
    for (app, status, key) in plan(apps, dirs, existing)? {
        let cleaned = clean_leftovers(&[&dirs.private_path(app), &dirs.public_path(app)]);
        match key {
            Some(key) => kept.push((app, status, key, cleaned)),
            None => todo.push((app, status, cleaned)),
        }
    }

    let results: Vec<(&AppId, Result<Outcome, Error>)> = todo
        .into_par_iter()
        .map(|(app, status, cleaned)| {
            let made = (|| {
                let key = PrivateKey::generate(bits).map_err(Error::Generate)?;
                let replace = if status == Status::Replaced {
                    Replace::Atomically
                } else {
                    Replace::Never
                };
                write_pair(app, &key, dirs, replace)?;
                Ok(Outcome {
                    cleaned_up: cleaned,
                    ..outcome(app, status, dirs, Some(&key))
                })
            })();
            (app, made)
        })
        .collect();

    let mut done = Vec::new();
    let mut failures = Vec::new();
    for (app, status, key, cleaned) in kept {
        let result = if status == Status::Repaired {
            let public = dirs.public_path(app);
            key.public_key_pem()
                .map_err(|source| Error::BadKeyFile {
                    path: dirs.private_path(app),
                    source,
                })
                .and_then(|pem| write_atomic(&public, pem.as_bytes(), PUBLIC_MODE, Replace::Never))
        } else {
            Ok(())
        };
        match result {
            Ok(()) => done.push(Outcome {
                cleaned_up: cleaned,
                ..outcome(app, status, dirs, Some(&key))
            }),
            Err(error) => failures.push(AppFailure {
                app_id: app.clone(),
                error,
            }),
        }
    }
    for (app, result) in results {
        match result {
            Ok(o) => done.push(o),
            Err(error) => failures.push(AppFailure {
                app_id: app.clone(),
                error,
            }),
        }
    }
    done.sort_by(|a, b| a.app_id.cmp(&b.app_id));
    if failures.is_empty() {
        Ok(done)
    } else {
        Err(Error::SomeFailed { done, failures })
    }
}

/// One app's part of a `new` run: the app, what will happen, and the key
/// that is kept (for apps skipped or repaired).
type Step<'a> = (&'a AppId, Status, Option<PrivateKey>);

/// What `new` will do for each app, with the existing key for apps it keeps
/// or repairs; any app it cannot handle fails the whole run. Reads only, so
/// it runs once before anything is made (a refusal leaves no directory
/// behind) and again under the locks (another run may have changed things).
fn plan<'a>(apps: &'a [AppId], dirs: &KeyDirs, existing: Existing) -> Result<Vec<Step<'a>>, Error> {
    let mut planned = Vec::with_capacity(apps.len());
    for app in apps {
        let (private, public) = (dirs.private_path(app), dirs.public_path(app));
        let status = match (private.exists(), public.exists()) {
            (false, false) => Status::Created,
            _ if existing == Existing::Replace => Status::Replaced,
            (true, true) => Status::Skipped,
            (true, false) if existing == Existing::Repair => Status::Repaired,
            (true, false) => {
                return Err(Error::HalfPair {
                    app_id: app.to_string(),
                    existing: private,
                    missing: public,
                    repairable: true,
                });
            }
            (false, true) => {
                return Err(Error::HalfPair {
                    app_id: app.to_string(),
                    existing: public,
                    missing: private,
                    repairable: false,
                });
            }
        };
        let key = if status == Status::Skipped || status == Status::Repaired {
            // Only a pair that works is "done": an empty or garbage private
            // key, or a bundle without its public key, fails the run here.
            let key = read_private(&private)?;
            if status == Status::Skipped {
                let kids = parse_bundle(&public, &read(&public)?)?;
                if !kids.contains(key.kid()) {
                    return Err(Error::PairMismatch {
                        app_id: app.to_string(),
                        private,
                        public,
                        kid: key.kid().to_string(),
                    });
                }
            }
            Some(key)
        } else {
            None
        };
        planned.push((app, status, key));
    }
    Ok(planned)
}

fn refuse_clobbering(apps: &[AppId], dirs: &KeyDirs) -> Result<(), Error> {
    let clobbered: Vec<PathBuf> = apps
        .iter()
        .flat_map(|app| [dirs.private_path(app), dirs.public_path(app)])
        .filter(|p| p.exists())
        .collect();
    if clobbered.is_empty() {
        Ok(())
    } else {
        Err(Error::AlreadyExists { paths: clobbered })
    }
}

fn write_pair(
    app: &AppId,
    key: &PrivateKey,
    dirs: &KeyDirs,
    replace: Replace,
) -> Result<(), Error> {
    let private = dirs.private_path(app);
    let public = dirs.public_path(app);
    let bad = |source| Error::BadKeyFile {
        path: private.clone(),
        source,
    };
    let private_pem = key.to_pkcs8_pem().map_err(bad)?;
    let public_pem = key.public_key_pem().map_err(bad)?;
    write_atomic(&private, private_pem.as_bytes(), PRIVATE_MODE, replace)?;
    if let Err(e) = write_atomic(&public, public_pem.as_bytes(), PUBLIC_MODE, replace) {
        // Never leave a private key without its public half from this run.
        if replace == Replace::Never {
            let _ = fs::remove_file(&private);
        }
        return Err(e);
    }
    Ok(())
}

fn outcome(app: &AppId, status: Status, dirs: &KeyDirs, key: Option<&PrivateKey>) -> Outcome {
    Outcome {
        app_id: app.clone(),
        status,
        private_key: dirs.private_path(app),
        public_key: dirs.public_path(app),
        kid: key.map(|k| k.kid().clone()),
        bits: key.map(PrivateKey::bits),
        old_private_key: None,
        deleted_private_keys: Vec::new(),
        bundle: Vec::new(),
        cleaned_up: Vec::new(),
        resumed: false,
    }
}

/// Rotates `app`'s key: the new public key joins the bundle (so tokens of
/// both keys verify), the new private key replaces the old one, and the old
/// private key is deleted, or with `keep_retired` moved to
/// `<private dir>/retired/<appId>_private.<old kid>.pem`.
///
/// The steps run in an order where every intermediate state still verifies
/// the app's tokens, and a killed run can be finished by running it again:
/// the new private key is staged in the work directory first, then the old
/// one is set aside, then the bundle gains the new public key, then the
/// staged key is renamed into place. A re-run that finds a staged key whose
/// public key the bundle already holds completes that rotation instead of
/// starting another.
pub fn rotate(
    app: &AppId,
    bits: usize,
    dirs: &KeyDirs,
    keep_retired: bool,
) -> Result<Outcome, Error> {
    must_exist(&dirs.public_path(app))?;
    let _lock = lock_dir(&dirs.public, vec![dirs.private_dir(app)])?;
    let private = dirs.private_path(app);
    let public = dirs.public_path(app);
    let work = ensure_work_dir(&dirs.private_dir(app))?;
    let staged = work.join(format!("{}.next", private_key_file_name(app)));
    let mut cleaned = clean_leftovers(&[&private, &public, &staged]);
    let old_key = read_private(&private)?;
    let mut disposed = Disposed::default();
    // Private keys of rotations that finished: beside the key (as releases
    // before this one kept them) or in the work directory (a run killed
    // after its rename). The current key's own copy in the work directory is
    // this rotation's, set aside by a run that was killed: it is reused.
    for old in retired_copies(app, dirs) {
        let this_rotation =
            old.parent() == Some(work.as_path()) && old.ends_with(aside_name(app, old_key.kid()));
        // Keys an earlier run was asked to keep stay kept.
        let kept_on_purpose = old.parent().is_some_and(|d| d.ends_with(RETIRED_DIR));
        if !this_rotation && !kept_on_purpose {
            dispose(app, &old, dirs, keep_retired, &mut disposed)?;
        }
    }
    cleaned.append(&mut disposed.deleted);
    let bundle_text = read(&public)?;
    let bundle = parse_bundle(&public, &bundle_text)?;

    let bad = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::BadKeyFile { path, source }
    };
    let resumable = match read_private(&staged) {
        Ok(key) if bundle.contains(key.kid()) => Some(key),
        // Staged but never published: the run died before the bundle
        // changed, so nothing depends on that key.
        _ => None,
    };
    let resumed = resumable.is_some();
    let new_key = match resumable {
        Some(key) => key,
        None => {
            let key = PrivateKey::generate(bits).map_err(Error::Generate)?;
            let pem = key.to_pkcs8_pem().map_err(bad(&staged))?;
            write_atomic(&staged, pem.as_bytes(), PRIVATE_MODE, Replace::Atomically)?;
            key
        }
    };

    let aside = work.join(aside_name(app, old_key.kid()));
    match read_private(&aside) {
        // A killed run set it aside already.
        Ok(kept) if kept.kid() == old_key.kid() => {}
        _ if aside.exists() => {
            return Err(Error::AsideTaken {
                path: aside,
                kid: old_key.kid().to_string(),
            });
        }
        _ => write_atomic(&aside, &read(&private)?, PRIVATE_MODE, Replace::Never)?,
    }

    let mut kids = bundle;
    if !resumed {
        let new_public = new_key.public_key_pem().map_err(bad(&private))?;
        let mut joined = bundle_text;
        if !joined.ends_with(b"\n") {
            joined.push(b'\n');
        }
        joined.extend_from_slice(new_public.as_bytes());
        write_atomic(&public, &joined, PUBLIC_MODE, Replace::Atomically)?;
        kids.push(new_key.kid().clone());
    }
    fs::rename(&staged, &private).map_err(|source| Error::Write {
        path: private.clone(),
        source,
    })?;
    if let Ok(d) = fs::File::open(dirs.private_dir(app)) {
        let _ = d.sync_all();
    }
    // The old private key signs nothing from now on: it goes (or, asked to,
    // moves to `retired/`), so a mount of the private directory ships the
    // current key only, never one that was rotated because it leaked.
    let mut this = Disposed::default();
    dispose(app, &aside, dirs, keep_retired, &mut this)?;
    disposed.kept.append(&mut this.kept);

    Ok(Outcome {
        old_private_key: disposed.kept.pop(),
        deleted_private_keys: this.deleted,
        bundle: kids,
        cleaned_up: cleaned,
        resumed,
        ..outcome(app, Status::Rotated, dirs, Some(&new_key))
    })
}

/// Removes the key `kid` from `app`'s bundle. Refuses to remove the last key,
/// and (unless `force`) the app's current key: the one of its private key
/// when that file is at hand (also in a per-app subdirectory), or else the
/// newest key of the bundle, which `rotate` always appends.
pub fn retire(
    app: &AppId,
    kid: &str,
    dirs: &KeyDirs,
    force: bool,
    keep_retired: bool,
) -> Result<Outcome, Error> {
    let kid = Kid::parse(kid).ok_or_else(|| Error::MalformedKid(kid.chars().take(60).collect()))?;
    must_exist(&dirs.public_path(app))?;
    let _lock = lock_dir(&dirs.public, vec![dirs.private_dir(app)])?;
    let public = dirs.public_path(app);
    let cleaned = clean_leftovers(&[&public]);
    let text = read(&public)?;
    let now = appauth_core::Clock::now(&appauth_core::SystemClock);
    let blocks =
        appauth_core::split_public_bundle(&text, now).map_err(|source| Error::BadKeyFile {
            path: public.clone(),
            source,
        })?;
    let mut kept = Vec::new();
    let mut kept_kids = Vec::new();
    let mut found = false;
    let newest = blocks.last().map(|(key, _)| key.kid().clone());
    for (key, one) in blocks {
        if *key.kid() == kid {
            found = true;
        } else {
            kept.push(one);
            kept_kids.push(key.kid().clone());
        }
    }
    if !found {
        return Err(Error::UnknownKid {
            path: public,
            kid: kid.to_string(),
            present: kept_kids.iter().map(ToString::to_string).collect(),
        });
    }
    if kept.is_empty() {
        return Err(Error::LastKey { path: public });
    }
    let private = dirs.private_path(app);
    if !force {
        let places = private_key_places(app, dirs);
        match places.iter().find(|p| p.exists()) {
            Some(found) => {
                let current = read_private(found)?;
                if *current.kid() == kid {
                    return Err(Error::RetiringCurrentKey {
                        kid: kid.to_string(),
                        private: found.clone(),
                    });
                }
            }
            None if newest.as_ref() == Some(&kid) => {
                return Err(Error::RetiringNewestKey {
                    kid: kid.to_string(),
                    looked: places,
                });
            }
            None => {}
        }
    }
    write_atomic(
        &public,
        kept.concat().as_bytes(),
        PUBLIC_MODE,
        Replace::Atomically,
    )?;
    // A copy of the retired key's private half, wherever keygen kept one
    // (beside the key in older releases, `retired/` when asked): the key no
    // longer verifies anything, so nothing needs it.
    let mut disposed = Disposed::default();
    for old in retired_copies(app, dirs) {
        if read_private(&old).is_ok_and(|k| *k.kid() == kid) {
            if keep_retired && old.parent().is_some_and(|d| d.ends_with(RETIRED_DIR)) {
                continue;
            }
            dispose(app, &old, dirs, keep_retired, &mut disposed)?;
        }
    }
    Ok(Outcome {
        app_id: app.clone(),
        status: Status::Retired,
        private_key: private,
        public_key: public,
        kid: Some(kid),
        bits: None,
        old_private_key: disposed.kept.pop(),
        deleted_private_keys: disposed.deleted,
        bundle: kept_kids,
        cleaned_up: cleaned,
        resumed: false,
    })
}

/// Where `--keep-retired` keeps retired private keys: a subdirectory of the
/// private directory, which a mount or `kubectl create secret --from-file`
/// of that directory does not take (they take its files only).
pub const RETIRED_DIR: &str = "retired";

/// What became of retired private keys.
#[derive(Debug, Default)]
struct Disposed {
    deleted: Vec<PathBuf>,
    kept: Vec<PathBuf>,
}

/// The name a rotation gives the old private key while it is set aside.
fn aside_name(app: &AppId, kid: &Kid) -> String {
    format!("{app}_private.{kid}.pem.old")
}

/// Every copy of a private key of `app` that keygen set aside or kept:
/// `<app>_private.<kid>.pem.old` beside the key or in the work directory,
/// and `retired/<app>_private.<kid>.pem`.
fn retired_copies(app: &AppId, dirs: &KeyDirs) -> Vec<PathBuf> {
    let dir = dirs.private_dir(app);
    let prefix = format!("{app}_private.");
    let mut found = Vec::new();
    for (place, suffix) in [
        (dir.clone(), ".pem.old"),
        (dir.join(appauth_core::files::KEYGEN_WORK_DIR), ".pem.old"),
        (dir.join(RETIRED_DIR), ".pem"),
    ] {
        let Ok(entries) = fs::read_dir(&place) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix)
                && name.ends_with(suffix)
                && name != private_key_file_name(app)
            {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// Deletes the retired private key `path`, or with `keep` moves it to
/// `retired/<app>_private.<kid>.pem` (0700 directory, 0600 file).
fn dispose(
    app: &AppId,
    path: &Path,
    dirs: &KeyDirs,
    keep: bool,
    out: &mut Disposed,
) -> Result<(), Error> {
    let werr = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    if !keep {
        fs::remove_file(path).map_err(werr)?;
        out.deleted.push(path.to_path_buf());
        return Ok(());
    }
    let key = read_private(path)?;
    let retired = dirs.private_dir(app).join(RETIRED_DIR);
    ensure_dir(&retired, true)?;
    let target = retired.join(format!("{app}_private.{}.pem", key.kid()));
    if path != target {
        fs::rename(path, &target).map_err(werr)?;
    }
    out.kept.push(target);
    Ok(())
}

/// The private directories `apps` write to, whose work directories a run
/// may make.
fn private_dirs(apps: &[AppId], dirs: &KeyDirs) -> Vec<PathBuf> {
    apps.iter().map(|app| dirs.private_dir(app)).collect()
}

/// Fails as a read would, before a refused run makes a lock file.
fn must_exist(path: &Path) -> Result<(), Error> {
    fs::metadata(path).map(drop).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Where `app`'s private key may be: as `dirs` says, and (when they do not
/// say per-app subdirectories) in the subdirectory `--private-subdirs` makes.
fn private_key_places(app: &AppId, dirs: &KeyDirs) -> Vec<PathBuf> {
    let mut places = vec![dirs.private_path(app)];
    if !dirs.private_per_app {
        places.push(
            dirs.private
                .join(app.as_str())
                .join(private_key_file_name(app)),
        );
    }
    places
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, Error> {
    appauth_core::files::read_key_file(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn read_private(path: &Path) -> Result<PrivateKey, Error> {
    PrivateKey::from_pem(&read(path)?).map_err(|source| Error::BadKeyFile {
        path: path.to_path_buf(),
        source,
    })
}

/// The kids of a bundle, in file order. Certificates are read as of now.
fn parse_bundle(path: &Path, text: &[u8]) -> Result<Vec<Kid>, Error> {
    let now = appauth_core::Clock::now(&appauth_core::SystemClock);
    parse_public_bundle(text, now, &[])
        .map(|keys| keys.iter().map(|k| k.kid().clone()).collect())
        .map_err(|source| Error::BadKeyFile {
            path: path.to_path_buf(),
            source,
        })
}

/// A fresh random appId shaped like `kjh2-vt23-s23t-poq2-xsw8-p09o-qw12`:
/// seven groups of four lowercase letters and digits, about 144 bits.
pub fn random_app_id() -> AppId {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(34);
    let mut buf = [0u8; 64];
    let mut produced = 0;
    while produced < 28 {
        aws_lc_rs::rand::fill(&mut buf).expect("the system random source failed");
        for &b in &buf {
            // 252 = 7 * 36: rejecting the rest keeps every character equally likely.
            if b < 252 && produced < 28 {
                if produced > 0 && produced % 4 == 0 {
                    out.push('-');
                }
                out.push(char::from(ALPHABET[usize::from(b % 36)]));
                produced += 1;
            }
        }
    }
    AppId::new(&out).expect("generated appIds match the grammar")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_app_ids_match_the_grammar_and_differ() {
        let a = random_app_id();
        let b = random_app_id();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 34);
        assert_eq!(a.as_str().split('-').count(), 7);
    }
}
