//! `new`, `rotate` and `retire`: making and changing keypairs on disk.

use std::fs;
use std::path::{Path, PathBuf};

use appauth_core::files::{private_key_file_name, public_key_file_name};
use appauth_core::{AppId, Kid, PrivateKey, parse_public_bundle};
use rayon::prelude::*;
use serde::Serialize;

use crate::Error;
use crate::write::{PRIVATE_MODE, PUBLIC_MODE, Replace, ensure_dir, write_atomic};

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
    /// Leave those apps' keys alone and report them as skipped.
    Skip,
    /// Replace them with new keys.
    Replace,
}

/// What happened to one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A new keypair was written.
    Created,
    /// Keys existed and were kept (`--if-missing`).
    Skipped,
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
    /// Where `rotate` put the previous private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_private_key: Option<PathBuf>,
    /// The kids left in the bundle after `rotate` or `retire`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bundle: Vec<Kid>,
}

/// Makes a keypair for each app, in parallel across cores.
///
/// Everything is checked before anything is written: with
/// [`Existing::Refuse`], one existing file fails the whole run and no file is
/// written.
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
    ensure_dir(&dirs.private, true)?;
    ensure_dir(&dirs.public, false)?;
    for app in apps {
        ensure_dir(&dirs.private_dir(app), true)?;
    }

    let mut todo = Vec::with_capacity(apps.len());
    let mut skipped = Vec::new();
    let mut clobbered = Vec::new();
    for app in apps {
        let (private, public) = (dirs.private_path(app), dirs.public_path(app));
        match (private.exists(), public.exists()) {
            (false, false) => todo.push((app, Status::Created)),
            (_, _) if existing == Existing::Replace => todo.push((app, Status::Replaced)),
            (true, true) if existing == Existing::Skip => skipped.push(app),
            (true, false) | (false, true) if existing == Existing::Skip => {
                let (existing, missing) = if private.exists() {
                    (private, public)
                } else {
                    (public, private)
                };
                return Err(Error::HalfPair {
                    app_id: app.to_string(),
                    existing,
                    missing,
                });
            }
            (p, q) => {
                clobbered.extend(p.then_some(private));
                clobbered.extend(q.then_some(public));
            }
        }
    }
    if !clobbered.is_empty() {
        return Err(Error::AlreadyExists { paths: clobbered });
    }

    let created: Vec<Outcome> = todo
        .par_iter()
        .map(|&(app, status)| {
            let key = PrivateKey::generate(bits).map_err(Error::Generate)?;
            let replace = if status == Status::Replaced {
                Replace::Atomically
            } else {
                Replace::Never
            };
            write_pair(app, &key, dirs, replace)?;
            Ok(outcome(app, status, dirs, Some(&key)))
        })
        .collect::<Result<_, Error>>()?;

    let mut all = created;
    all.extend(skipped.into_iter().map(|app| {
        let key = read_private(&dirs.private_path(app)).ok();
        outcome(app, Status::Skipped, dirs, key.as_ref())
    }));
    all.sort_by(|a, b| a.app_id.cmp(&b.app_id));
    Ok(all)
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
        bundle: Vec::new(),
    }
}

/// Rotates `app`'s key: the new public key joins the bundle (so tokens of
/// both keys verify), the new private key replaces the old one, and the old
/// private key is kept aside as `<appId>_private.<old kid>.pem.old`.
///
/// The steps run in an order where every intermediate state still verifies
/// the app's tokens: bundle first, then the private key.
pub fn rotate(app: &AppId, bits: usize, dirs: &KeyDirs) -> Result<Outcome, Error> {
    let private = dirs.private_path(app);
    let public = dirs.public_path(app);
    let old_key = read_private(&private)?;
    let bundle_text = read(&public)?;
    let bundle = parse_bundle(&public, &bundle_text)?;

    let new_key = PrivateKey::generate(bits).map_err(Error::Generate)?;
    let bad = |source| Error::BadKeyFile {
        path: private.clone(),
        source,
    };
    let new_public = new_key.public_key_pem().map_err(bad)?;
    let new_private = new_key.to_pkcs8_pem().map_err(bad)?;

    let aside = dirs
        .private_dir(app)
        .join(format!("{app}_private.{}.pem.old", old_key.kid()));
    let old_private_bytes = read(&private)?;
    write_atomic(&aside, &old_private_bytes, PRIVATE_MODE, Replace::Never)?;

    let mut joined = bundle_text;
    if !joined.ends_with(b"\n") {
        joined.push(b'\n');
    }
    joined.extend_from_slice(new_public.as_bytes());
    write_atomic(&public, &joined, PUBLIC_MODE, Replace::Atomically)?;
    write_atomic(
        &private,
        new_private.as_bytes(),
        PRIVATE_MODE,
        Replace::Atomically,
    )?;

    let mut kids: Vec<Kid> = bundle.into_iter().collect();
    kids.push(new_key.kid().clone());
    Ok(Outcome {
        old_private_key: Some(aside),
        bundle: kids,
        ..outcome(app, Status::Rotated, dirs, Some(&new_key))
    })
}

/// Removes the key `kid` from `app`'s bundle. Refuses to remove the last key,
/// and (unless `force`) the key of the app's current private key when that
/// file is at hand.
pub fn retire(app: &AppId, kid: &str, dirs: &KeyDirs, force: bool) -> Result<Outcome, Error> {
    let kid = Kid::parse(kid).ok_or_else(|| Error::MalformedKid(kid.chars().take(60).collect()))?;
    let public = dirs.public_path(app);
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
    if !force
        && let Ok(current) = read_private(&private)
        && *current.kid() == kid
    {
        return Err(Error::RetiringCurrentKey {
            kid: kid.to_string(),
            private,
        });
    }
    write_atomic(
        &public,
        kept.concat().as_bytes(),
        PUBLIC_MODE,
        Replace::Atomically,
    )?;
    Ok(Outcome {
        app_id: app.clone(),
        status: Status::Retired,
        private_key: private,
        public_key: public,
        kid: Some(kid),
        bits: None,
        old_private_key: None,
        bundle: kept_kids,
    })
}

/// A key file is at most this long (the server refuses longer bundles too):
/// reading `/dev/zero` must fail, not fill the memory.
const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    fs::File::open(path)
        .map_err(err)?
        .take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(err(std::io::Error::other(format!(
            "over the {MAX_KEY_FILE_BYTES}-byte limit for a key file"
        ))));
    }
    Ok(bytes)
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
