//! Steps 8-10 of docs/spec.md §3: revocation, route policy, rate limits, each
//! from a hot-reloaded file. A reload that fails keeps the last good state: a
//! typo must neither open nor close the API.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use appauth_core::Verified;
use arc_swap::{ArcSwap, ArcSwapOption};
use aws_lc_rs::digest;
use parking_lot::Mutex;

use crate::policy::{Decision, Policy};
use crate::revocation::{ConfigError, RevocationList, RevokedBy, joined};
use appauth_core::Fingerprint;

/// The default revocation file name, in the keys directory.
pub const DEFAULT_REVOCATIONS_FILE: &str = "revoked.txt";

/// Why a policy or revocation file could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error(transparent)]
    Parse(#[from] crate::revocation::ConfigError),
}

/// Why the rules turn away a caller whose token verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// A revocation rule matched the token.
    Revoked(RevokedBy),
    /// The policy allows the app no such route.
    RouteNotAllowed,
    /// The path could mean another route (the gate refuses these earlier;
    /// the policy refuses them too, to stand on its own).
    PathNotCanonical,
    /// Over the app's rate; a request would be allowed after this long.
    RateLimited(std::time::Duration),
}

/// What loading or reloading the policy and revocation files did: access
/// control reports, its caller counts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigEvent {
    /// `file` (`policy` or `revocations`) is in force at `version` (a
    /// content hash, or `none` when there is no file); `rules` counts a
    /// revocation list's rules.
    InForce {
        /// `policy` or `revocations`.
        file: &'static str,
        /// [`content_version`] of the text, or `none`.
        version: String,
        /// Rules in a revocation list.
        rules: Option<usize>,
    },
    /// A reload of `file` was refused; the previous version stays in force.
    Refused {
        /// `policy` or `revocations`.
        file: &'static str,
    },
}

/// The policy's decision as the gate's: the one place the two meet.
fn verdict(decision: Decision) -> Result<(), Denial> {
    match decision {
        Decision::Allow => Ok(()),
        Decision::NotAllowed => Err(Denial::RouteNotAllowed),
        Decision::NotCanonical => Err(Denial::PathNotCanonical),
        Decision::RateLimited(wait) => Err(Denial::RateLimited(wait)),
    }
}

/// Revocations and policy in force, swapped atomically on reload.
pub struct AccessControl {
    revocations_path: PathBuf,
    policy_path: Option<PathBuf>,
    revocations: ArcSwap<RevocationList>,
    policy: ArcSwapOption<Policy>,
    seen: Mutex<Seen>,
    /// Of each rate, what this replica's own limiters enforce (1 without
    /// Redis; the fallback share with it).
    local_share: f64,
    #[cfg(feature = "redis")]
    shared: Option<Arc<crate::shared::Shared>>,
}

#[derive(Default)]
struct Seen {
    revocations: Option<Fingerprint>,
    policy: Option<Fingerprint>,
}

impl std::fmt::Debug for AccessControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessControl")
            .field("revocations", &self.revocations_path)
            .field("policy", &self.policy_path)
            .finish_non_exhaustive()
    }
}

/// A short, stable identity of a file's contents, for `/metrics`.
pub fn content_version(bytes: &[u8]) -> String {
    let hash = digest::digest(&digest::SHA256, bytes);
    hash.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads `path` unless its fingerprint is still `known`.
fn read_if_changed(
    path: &Path,
    known: Option<Fingerprint>,
) -> Result<Option<(String, Fingerprint)>, std::io::Error> {
    appauth_core::read_if_changed(path, known, |p| fs::read_to_string(p))
}

/// One of the files access control follows: what differs between them.
/// Reading, fingerprints, versions and keeping the last good state are
/// written once, in [`read_rules`] and [`AccessControl::reload`].
trait RulesFile: Sized {
    /// Its name in events and metrics.
    const FILE: &'static str;
    /// Its name in log lines.
    const WHAT: &'static str;
    /// What to do about it when it cannot be read (for the log line).
    const UNREADABLE: &'static str;
    /// What its removal means, when [`RulesFile::absent`] allows it.
    const REMOVED: &'static str;
    fn parse(name: &str, text: &str, local_share: f64) -> Result<Self, Vec<ConfigError>>;
    /// What no file means, if anything: no revocations, or (for a policy
    /// that was named) nothing, which is an error.
    fn absent() -> Option<Self>;
    /// How many rules it holds, where that is worth a metric.
    fn rules(&self) -> Option<usize>;
}

impl RulesFile for RevocationList {
    const FILE: &'static str = "revocations";
    const WHAT: &'static str = "revocation list";
    const UNREADABLE: &'static str = "the previous list stays in force";
    const REMOVED: &'static str = "revocation file removed: no token is revoked now";
    fn parse(name: &str, text: &str, _: f64) -> Result<Self, Vec<ConfigError>> {
        RevocationList::parse(name, text)
    }
    fn absent() -> Option<Self> {
        Some(RevocationList::default())
    }
    fn rules(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl RulesFile for Policy {
    const FILE: &'static str = "policy";
    const WHAT: &'static str = "policy";
    const UNREADABLE: &'static str = "the previous policy stays in force \
        (to run without a policy, restart without one)";
    const REMOVED: &'static str = "policy file removed";
    fn parse(name: &str, text: &str, local_share: f64) -> Result<Self, Vec<ConfigError>> {
        Policy::parse_with_local_share(name, text, local_share)
    }
    fn absent() -> Option<Self> {
        None
    }
    fn rules(&self) -> Option<usize> {
        None
    }
}

/// What reading one rules file gave.
enum Read<T> {
    /// The same file as at `seen`, or still no file.
    Unchanged,
    /// Rules to put in force, and the event that says so.
    Loaded(T, ConfigEvent),
    /// No file: its [`RulesFile::absent`] rules, and the event.
    Gone(T, ConfigEvent),
    /// The file does not parse: every problem.
    Invalid(Vec<ConfigError>),
    /// The file cannot be read.
    Unreadable(std::io::Error),
}

/// A first read, where every problem is an error.
fn strictly<T>(
    read: Read<T>,
    path: &Path,
    events: &mut Vec<ConfigEvent>,
    errors: &mut Vec<ConfigFileError>,
) -> Option<T> {
    match read {
        Read::Loaded(value, event) | Read::Gone(value, event) => {
            events.push(event);
            Some(value)
        }
        Read::Unchanged => None,
        Read::Invalid(e) => {
            errors.extend(e.into_iter().map(ConfigFileError::from));
            None
        }
        Read::Unreadable(source) => {
            errors.push(ConfigFileError::Read {
                path: path.to_owned(),
                source,
            });
            None
        }
    }
}

/// Reads the rules at `path` unless `seen` says they are unchanged, and
/// moves `seen` on. A file that is gone is its [`RulesFile::absent`] rules
/// once (the first time it is found gone), or unreadable when it has none.
fn read_rules<T: RulesFile>(
    path: &Path,
    seen: &mut Option<Fingerprint>,
    first: bool,
    local_share: f64,
) -> Read<T> {
    match read_if_changed(path, *seen) {
        Ok(None) => Read::Unchanged,
        Ok(Some((text, fp))) => {
            *seen = Some(fp);
            match T::parse(&path.display().to_string(), &text, local_share) {
                Ok(value) => {
                    let event = ConfigEvent::InForce {
                        file: T::FILE,
                        version: content_version(text.as_bytes()),
                        rules: value.rules(),
                    };
                    Read::Loaded(value, event)
                }
                Err(e) => Read::Invalid(e),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match T::absent() {
            Some(value) if seen.take().is_some() || first => {
                let event = ConfigEvent::InForce {
                    file: T::FILE,
                    version: "none".into(),
                    rules: value.rules(),
                };
                Read::Gone(value, event)
            }
            Some(_) => Read::Unchanged,
            None => Read::Unreadable(e),
        },
        Err(e) => Read::Unreadable(e),
    }
}

impl AccessControl {
    /// Loads both files strictly: any problem is an error, for start-up and
    /// `--check-config`. A missing revocation file is an empty list; a
    /// missing policy file (when one is named) is an error.
    pub fn load(
        policy_path: Option<PathBuf>,
        revocations_path: PathBuf,
    ) -> Result<(Self, Vec<ConfigEvent>), Vec<ConfigFileError>> {
        Self::load_with_local_share(policy_path, revocations_path, 1.0)
    }

    /// As [`AccessControl::load`], with this replica's own rate limiters set
    /// to `local_share` of each rate (see [`Policy::parse_with_local_share`]).
    pub fn load_with_local_share(
        policy_path: Option<PathBuf>,
        revocations_path: PathBuf,
        local_share: f64,
    ) -> Result<(Self, Vec<ConfigEvent>), Vec<ConfigFileError>> {
        let mut errors = Vec::new();
        let mut events = Vec::new();
        let mut seen = Seen::default();
        let read = read_rules::<RevocationList>(
            &revocations_path,
            &mut seen.revocations,
            true,
            local_share,
        );
        let revocations = strictly(read, &revocations_path, &mut events, &mut errors);
        let policy = match &policy_path {
            None => {
                events.push(ConfigEvent::InForce {
                    file: Policy::FILE,
                    version: "none".into(),
                    rules: None,
                });
                None
            }
            Some(path) => {
                let read = read_rules::<Policy>(path, &mut seen.policy, true, local_share);
                strictly(read, path, &mut events, &mut errors).map(Arc::new)
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let access = Self {
            revocations_path,
            policy_path,
            revocations: ArcSwap::from_pointee(revocations.unwrap_or_default()),
            policy: ArcSwapOption::new(policy),
            seen: Mutex::new(seen),
            local_share,
            #[cfg(feature = "redis")]
            shared: None,
        };
        Ok((access, events))
    }

    /// The files to follow: `(directory, file name)`.
    pub fn watched_files(&self) -> Vec<(PathBuf, String)> {
        [Some(&self.revocations_path), self.policy_path.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    crate::files::parent_dir(p),
                    p.file_name()?.to_str()?.to_owned(),
                ))
            })
            .collect()
    }

    /// Re-reads whichever of the two files changed since last read, and
    /// says what changed.
    pub fn reload_changed(&self) -> Vec<ConfigEvent> {
        let mut seen = self.seen.lock();
        let mut events = Vec::new();
        events.extend(self.reload(
            &self.revocations_path,
            &mut seen.revocations,
            |list: RevocationList| self.revocations.store(Arc::new(list)),
        ));
        if let Some(path) = &self.policy_path {
            events.extend(self.reload(path, &mut seen.policy, |policy: Policy| {
                self.policy.store(Some(Arc::new(policy)));
            }));
        }
        events
    }

    /// Reloads one file: puts its rules in force with `store`, or keeps the
    /// last good ones and says why.
    fn reload<T: RulesFile>(
        &self,
        path: &Path,
        seen: &mut Option<Fingerprint>,
        store: impl FnOnce(T),
    ) -> Option<ConfigEvent> {
        let file = T::FILE;
        match read_rules::<T>(path, seen, false, self.local_share) {
            Read::Unchanged => None,
            Read::Loaded(value, event) => {
                tracing::info!(file = %path.display(), rules = value.rules(), "{} reloaded", T::WHAT);
                store(value);
                Some(event)
            }
            Read::Gone(value, event) => {
                tracing::warn!(file = %path.display(), "{}", T::REMOVED);
                store(value);
                Some(event)
            }
            Read::Invalid(e) => {
                tracing::error!(error = %joined(&e), "{} NOT reloaded; the previous {} stays in force", T::WHAT, T::WHAT);
                Some(ConfigEvent::Refused { file })
            }
            Read::Unreadable(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot read the {} file; {}", T::WHAT, T::UNREADABLE);
                Some(ConfigEvent::Refused { file })
            }
        }
    }

    /// Adds the state shared with other replicas: its revocations apply with
    /// the file's, and its global limits replace the local ones while Redis
    /// answers.
    #[cfg(feature = "redis")]
    pub fn with_shared(mut self, shared: Arc<crate::shared::Shared>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Whether every revocation source is loaded: with Redis, its first
    /// complete read (unless the configuration serves before it).
    pub fn ready(&self) -> bool {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            return shared.revocations_ready();
        }
        true
    }

    /// Steps 8-10 for a verified caller: a domain decision, which
    /// [`crate::Refusal::denied`] turns into a response.
    pub fn check(&self, caller: &Verified, method: &str, path: &str) -> Result<(), Denial> {
        if let Some(rule) = self.revocations.load().check(caller) {
            return Err(Denial::Revoked(rule));
        }
        #[cfg(feature = "redis")]
        if let Some(rule) = self
            .shared
            .as_ref()
            .and_then(|s| s.revocations.list().check(caller))
        {
            return Err(Denial::Revoked(rule));
        }
        let policy = self.policy.load();
        let Some(policy) = policy.as_ref() else {
            return Ok(());
        };
        let rate = match policy.route(&caller.app_id, method, path) {
            Ok(rate) => rate,
            Err(refused) => return verdict(refused),
        };
        let Some(_rate) = rate else {
            return Ok(());
        };
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            use crate::shared::{Fallback, Verdict};
            match shared.check_rate(&caller.app_id, _rate) {
                Verdict::Allow => return Ok(()),
                Verdict::Deny(wait) => return Err(Denial::RateLimited(wait)),
                Verdict::Fallback => match shared.fallback() {
                    Fallback::Open => return Ok(()),
                    Fallback::Closed => {
                        return Err(Denial::RateLimited(std::time::Duration::from_secs(1)));
                    }
                    // The local limiters were built with the share.
                    Fallback::Share(_) => {}
                },
            }
        }
        verdict(match policy.local_limit(&caller.app_id) {
            Some(wait) => Decision::RateLimited(wait),
            None => Decision::Allow,
        })
    }

    /// The policy's `concurrency` for `app`, if it sets one.
    pub fn concurrency(&self, app: &appauth_core::AppId) -> Option<std::num::NonZeroU32> {
        self.policy.load().as_ref().and_then(|p| p.concurrency(app))
    }

    /// Lets idle rate-limit buckets go (called on the periodic rescan).
    pub fn shrink(&self) {
        if let Some(p) = self.policy.load().as_ref() {
            p.shrink();
        }
    }
}
