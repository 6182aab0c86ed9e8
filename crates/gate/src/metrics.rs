//! Prometheus metrics, served as text on `/metrics`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of `appauth_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    /// `accepted` or `rejected`.
    pub outcome: &'static str,
    /// The rejection reason, or `none`.
    pub reason: &'static str,
}

/// Labels of `appauth_in_flight`: one app.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AppLabels {
    /// The verified caller.
    pub app: String,
}

/// Labels of `appauth_accepted_total`: which app called with which key.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KeyLabels {
    /// The verified caller.
    pub app: String,
    /// The key that verified its token.
    pub kid: String,
}

/// Labels of `appauth_key_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KeyInfoLabels {
    /// The app whose bundle holds the key.
    pub app: String,
    /// The key.
    pub kid: String,
    /// `true` for the last key of the app's bundle (the one `rotate` added
    /// last), `false` for the others.
    pub newest: &'static str,
}

/// Labels of `appauth_config_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConfigLabels {
    /// `policy` or `revocations`.
    pub file: &'static str,
    /// Content hash of the version in force, or `none`.
    pub version: String,
}

/// Labels of `appauth_config_reload_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FileLabels {
    /// `policy` or `revocations`.
    pub file: &'static str,
}

/// Labels of `appauth_shared_state_mode`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ModeLabels {
    /// `global` (rate limits held in Redis) or `fallback` (Redis unreachable:
    /// the local fallback decides).
    pub mode: &'static str,
}

/// Accepted-request counters by kid, then by app (a key in two apps'
/// bundles counts apart for each).
type AcceptedKeys = crate::FastMap<Box<str>, Vec<(Box<str>, Counter)>>;

/// Every metric the gate exports, under the `appauth_` prefix.
#[derive(Debug)]
pub struct Metrics {
    /// Our own registry, when the metrics are not in a host's.
    registry: Option<Registry>,
    /// Requests on protected routes by outcome and reason.
    pub(crate) requests: Family<OutcomeLabels, Counter>,
    /// `requests{outcome="accepted"}`, resolved once: the hot path skips the
    /// family's lock and label hashing.
    accepted: Counter,
    /// Time spent verifying tokens that were not in the cache, in seconds.
    pub(crate) verify_seconds: Histogram,
    /// Apps with keys loaded.
    pub(crate) apps_loaded: Gauge,
    /// Public keys loaded across all apps.
    pub(crate) keys_loaded: Gauge,
    /// Snapshots published (one per reload that changed something).
    pub(crate) reloads: Counter,
    /// Full directory scans (start-up, periodic, Kubernetes swaps).
    pub(crate) rescans: Counter,
    /// Key files read.
    pub(crate) key_file_reads: Counter,
    /// Key files refused.
    pub(crate) key_file_errors: Counter,
    /// Private keys found in the keys directory.
    pub(crate) private_keys_found: Counter,
    /// Rules in the revocation list in force.
    pub(crate) revocation_rules: Gauge,
    /// Requests whose token was found in the verified-token cache.
    pub(crate) token_cache_hits: Counter,
    /// Requests whose token had to be verified (first sight, or stale entry).
    pub(crate) token_cache_misses: Counter,
    /// Tokens held in the verified-token cache.
    pub(crate) token_cache_entries: Gauge,
    /// Accepted requests by app and key: the rotation runbook's "the old kid
    /// no longer appears". Labels exist only for keys in the keys directory
    /// and are dropped when their key leaves it.
    accepted_by_key: Family<KeyLabels, Counter>,
    /// The counters of `accepted_by_key` by kid, then app: a cold request
    /// finds its counter with one read lock and no allocation.
    accepted_keys: parking_lot::RwLock<AcceptedKeys>,
    /// Requests held upstream by app (gateway mode); the gauge is the count
    /// the concurrency cap reads.
    in_flight: Family<AppLabels, Gauge>,
    in_flight_by_app: parking_lot::RwLock<crate::FastMap<Box<str>, Gauge>>,
    config_info: Family<ConfigLabels, Gauge>,
    key_info: Family<KeyInfoLabels, Gauge>,
    key_first_seen: Family<KeyLabels, Gauge>,
    key_not_after: Family<KeyLabels, Gauge>,
    app_newest_key_first_seen: Family<AppLabels, Gauge>,
    /// When each loaded key was first seen, and the series last set: the
    /// loader's state, so each reload sets exactly the keys it holds.
    key_lifecycle: parking_lot::Mutex<KeyLifecycle>,
    config_versions: parking_lot::Mutex<Vec<(&'static str, String)>>,
    config_reload_errors: Family<FileLabels, Counter>,
    /// With Redis: 1 for the mode this replica is in, 0 for the other.
    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "counted by the Redis link")
    )]
    pub(crate) shared_state_mode: Family<ModeLabels, Gauge>,
    /// With Redis: rate-limit budget requests sent to Redis.
    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "counted by the Redis link")
    )]
    pub(crate) shared_rate_refills: Counter,
    /// With Redis: 1 once a complete read of Redis's revocations is applied.
    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "counted by the Redis link")
    )]
    pub(crate) shared_revocations_synced: Gauge,
    /// With Redis: when the last complete read of the revocations was
    /// applied, in seconds since the epoch.
    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "counted by the Redis link")
    )]
    pub(crate) shared_revocations_read: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// With Redis: revocation rules received from Redis and in force.
    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "counted by the Redis link")
    )]
    pub(crate) shared_revocation_rules: Gauge,
}

/// What the key lifecycle series were last set from.
#[derive(Debug, Default)]
pub(crate) struct KeyLifecycle {
    loaded_once: bool,
    first_seen: std::collections::HashMap<(String, String), i64>,
    info: Vec<KeyInfoLabels>,
    apps: Vec<AppLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A metric of its default value, registered under `name`: each metric's
/// type, name and help are then written once, where it is made.
fn registered<M>(registry: &mut Registry, name: &str, help: &str) -> M
where
    M: prometheus_client::registry::Metric + Clone + Default,
{
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Every metric in a registry of its own, served by [`Metrics::render`]
    /// (what `appauth-server` does).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let mut metrics = Self::register(&mut registry);
        metrics.registry = Some(registry);
        metrics
    }

    /// Every metric registered into the host's registry, under the
    /// `appauth_` prefix, so they appear on the host's own `/metrics`.
    pub fn register(host: &mut Registry) -> Self {
        let registry = host.sub_registry_with_prefix("appauth");
        let requests: Family<OutcomeLabels, Counter> = registered(
            registry,
            "requests",
            "Requests on protected routes, by outcome and rejection reason",
        );
        // Pre-register every label so dashboards see zeros, not gaps.
        let accepted = requests
            .get_or_create(&OutcomeLabels {
                outcome: "accepted",
                reason: "none",
            })
            .clone();
        for (outcome, reason) in crate::Code::outcome_labels() {
            requests
                .get_or_create(&OutcomeLabels { outcome, reason })
                .inc_by(0);
        }
        let verify_seconds = Histogram::new([
            0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01,
        ]);
        registry.register(
            "verify_seconds",
            "Time spent verifying a token not found in the cache",
            verify_seconds.clone(),
        );
        let apps_loaded: Gauge = registered(registry, "apps_loaded", "Apps with keys loaded");
        let keys_loaded: Gauge = registered(registry, "keys_loaded", "Public keys loaded");
        let reloads: Counter = registered(registry, "key_reloads", "Key snapshots published");
        let rescans: Counter = registered(registry, "key_rescans", "Full key directory scans");
        let key_file_reads: Counter = registered(registry, "key_file_reads", "Key files read");
        let key_file_errors: Counter = registered(
            registry,
            "key_file_errors",
            "Key files refused (their apps have no keys until fixed)",
        );
        let private_keys_found: Counter = registered(
            registry,
            "private_keys_found",
            "Private key files found in the keys directory (a misconfiguration)",
        );
        let revocation_rules: Gauge = registered(
            registry,
            "revocation_rules",
            "Rules in the revocation list in force",
        );
        let token_cache_hits: Counter = registered(
            registry,
            "token_cache_hits",
            "Requests served from the verified-token cache (no RSA)",
        );
        let token_cache_misses: Counter = registered(
            registry,
            "token_cache_misses",
            "Requests whose token was verified (not in the cache, or stale)",
        );
        let token_cache_entries: Gauge = registered(
            registry,
            "token_cache_entries",
            "Tokens held in the verified-token cache",
        );
        let accepted_by_key: Family<KeyLabels, Counter> = registered(
            registry,
            "accepted",
            "Accepted requests by app and the key that verified the token",
        );
        let in_flight: Family<AppLabels, Gauge> = registered(
            registry,
            "in_flight",
            "Requests held upstream by app (gateway mode), against its concurrency",
        );
        let key_info: Family<KeyInfoLabels, Gauge> = registered(
            registry,
            "key_info",
            "1 for each key loaded, by app and kid; newest=true for the last key of the app's bundle",
        );
        let key_first_seen: Family<KeyLabels, Gauge> = registered(
            registry,
            "key_first_seen_timestamp_seconds",
            "When this server first loaded the key (for keys loaded at start: its file's modification time)",
        );
        let key_not_after: Family<KeyLabels, Gauge> = registered(
            registry,
            "key_not_after_timestamp_seconds",
            "For keys from X.509 certificates: the certificate's notAfter",
        );
        let app_newest_key_first_seen: Family<AppLabels, Gauge> = registered(
            registry,
            "app_newest_key_first_seen_timestamp_seconds",
            "When the newest key of the app's bundle was first seen: the app's last rotation (time() minus this is its age)",
        );
        let config_info: Family<ConfigLabels, Gauge> = registered(
            registry,
            "config_info",
            "Content hash of the policy and revocation list in force",
        );
        let config_reload_errors: Family<FileLabels, Counter> = registered(
            registry,
            "config_reload_errors",
            "Policy or revocation reloads refused (the previous version stays in force)",
        );
        for file in ["policy", "revocations"] {
            config_reload_errors
                .get_or_create(&FileLabels { file })
                .inc_by(0);
        }
        let shared_state_mode: Family<ModeLabels, Gauge> = registered(
            registry,
            "shared_state_mode",
            "With Redis: 1 for the mode in force (global: limits held in Redis; fallback: \
             Redis unreachable, the local fallback decides)",
        );
        let shared_rate_refills: Counter = registered(
            registry,
            "shared_rate_refills",
            "With Redis: rate-limit budget shares requested from Redis",
        );
        let shared_revocation_rules: Gauge = registered(
            registry,
            "shared_revocation_rules",
            "With Redis: revocation rules from Redis in force",
        );
        let shared_revocations_synced: Gauge = registered(
            registry,
            "shared_revocations_synced",
            "With Redis: 1 once this replica has applied a complete read of the revocations in \
             Redis (until then it accepts no token)",
        );
        let shared_revocations_read: Gauge<f64, std::sync::atomic::AtomicU64> = registered(
            registry,
            "shared_revocations_last_read_timestamp_seconds",
            "With Redis: when the last complete read of the revocations was applied (its age: \
             time() minus this)",
        );
        registry.register_collector(Box::new(RsaVerifications));
        Self {
            registry: None,
            requests,
            accepted,
            verify_seconds,
            apps_loaded,
            keys_loaded,
            reloads,
            rescans,
            key_file_reads,
            key_file_errors,
            private_keys_found,
            revocation_rules,
            token_cache_hits,
            token_cache_misses,
            token_cache_entries,
            accepted_by_key,
            accepted_keys: parking_lot::RwLock::default(),
            in_flight,
            in_flight_by_app: parking_lot::RwLock::default(),
            config_info,
            key_info,
            key_first_seen,
            key_not_after,
            app_newest_key_first_seen,
            key_lifecycle: parking_lot::Mutex::new(KeyLifecycle::default()),
            config_versions: parking_lot::Mutex::new(Vec::new()),
            config_reload_errors,
            shared_state_mode,
            shared_rate_refills,
            shared_revocation_rules,
            shared_revocations_synced,
            shared_revocations_read,
        }
    }

    /// A complete read of Redis's revocations was applied at `at`.
    #[cfg(feature = "redis")]
    pub(crate) fn shared_revocations_read(&self, at: std::time::SystemTime) {
        self.shared_revocations_synced.set(1);
        let secs = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.shared_revocations_read.set(secs);
    }

    /// Records which version of `file` is in force.
    pub(crate) fn set_config_version(&self, file: &'static str, version: &str) {
        let mut versions = self.config_versions.lock();
        versions.retain(|(f, _)| *f != file);
        versions.push((file, version.to_owned()));
        self.config_info.clear();
        for (file, version) in versions.iter() {
            self.config_info
                .get_or_create(&ConfigLabels {
                    file,
                    version: version.clone(),
                })
                .set(1);
        }
    }

    /// Counts a refused reload of `file`.
    pub(crate) fn config_reload_error(&self, file: &'static str) {
        self.config_reload_errors
            .get_or_create(&FileLabels { file })
            .inc();
    }

    /// Counts what loading or reloading the policy and revocations did.
    pub(crate) fn count_config(&self, events: &[crate::ConfigEvent]) {
        for event in events {
            match event {
                crate::ConfigEvent::InForce {
                    file,
                    version,
                    rules,
                } => {
                    self.set_config_version(file, version);
                    if let Some(rules) = rules {
                        self.revocation_rules.set(*rules as i64);
                    }
                }
                crate::ConfigEvent::Refused { file } => self.config_reload_error(file),
            }
        }
    }

    /// Counts what a key reload did, and drops the per-key series of keys
    /// that left the store.
    pub(crate) fn count_keys(&self, report: &crate::ReloadReport, store: &crate::KeyStore) {
        if report.full_scan {
            self.rescans.inc();
        }
        self.key_file_reads.inc_by(report.reads as u64);
        self.key_file_errors.inc_by(report.failed as u64);
        self.private_keys_found
            .inc_by(report.new_private_keys as u64);
        if let Some((apps, keys)) = report.published {
            self.apps_loaded.set(apps as i64);
            self.keys_loaded.set(keys as i64);
            self.reloads.inc();
            self.retain_keys(|app, kid| store.holds(app, kid));
            self.key_lifecycle(
                &store.loaded_bundles(),
                appauth_core::Clock::now(&appauth_core::SystemClock),
            );
        }
    }

    /// Sets the key lifecycle series to the keys loaded now, at `now`: a
    /// key keeps the first-seen time it had; a new one gets `now`, except in
    /// the first load, where the best bound is its file's modification time
    /// (a rotation appends to the bundle, so that is when the newest key
    /// arrived). Series of keys that left are removed, so the label set
    /// stays bounded by the keys directory.
    pub(crate) fn key_lifecycle(
        &self,
        files: &[(
            appauth_core::AppId,
            i64,
            std::sync::Arc<[appauth_core::PublicKey]>,
        )],
        now: i64,
    ) {
        let mut state = self.key_lifecycle.lock();
        let first_load = !state.loaded_once;
        state.loaded_once = true;
        let mut seen = std::collections::HashMap::new();
        let mut info = Vec::new();
        let mut apps = Vec::new();
        for (app, modified, keys) in files {
            let mut newest_first_seen = None;
            for (i, key) in keys.iter().enumerate() {
                let id = (app.to_string(), key.kid().to_string());
                let first = state.first_seen.get(&id).copied().unwrap_or(if first_load {
                    *modified
                } else {
                    now
                });
                let newest = i + 1 == keys.len();
                if newest {
                    newest_first_seen = Some(first);
                }
                info.push(KeyInfoLabels {
                    app: id.0.clone(),
                    kid: id.1.clone(),
                    newest: if newest { "true" } else { "false" },
                });
                let labels = KeyLabels {
                    app: id.0.clone(),
                    kid: id.1.clone(),
                };
                self.key_first_seen.get_or_create(&labels).set(first);
                if let Some(t) = key.not_after() {
                    self.key_not_after.get_or_create(&labels).set(t);
                }
                seen.insert(id, first);
            }
            if let Some(first) = newest_first_seen {
                let labels = AppLabels {
                    app: app.to_string(),
                };
                self.app_newest_key_first_seen
                    .get_or_create(&labels)
                    .set(first);
                apps.push(labels);
            }
        }
        for (app, kid) in state.first_seen.keys() {
            if !seen.contains_key(&(app.clone(), kid.clone())) {
                let labels = KeyLabels {
                    app: app.clone(),
                    kid: kid.clone(),
                };
                self.key_first_seen.remove(&labels);
                self.key_not_after.remove(&labels);
            }
        }
        for labels in state.info.drain(..) {
            if !info.contains(&labels) {
                self.key_info.remove(&labels);
            }
        }
        for labels in &info {
            self.key_info.get_or_create(labels).set(1);
        }
        for labels in state.apps.drain(..) {
            if !apps.contains(&labels) {
                self.app_newest_key_first_seen.remove(&labels);
            }
        }
        state.first_seen = seen;
        state.info = info;
        state.apps = apps;
    }

    /// Counts one accepted request (`accepted`/`none`).
    pub(crate) fn record_accepted(&self) {
        self.accepted.inc();
    }

    /// Counts one refusal under its code's outcome and reason.
    pub(crate) fn record(&self, code: crate::Code) {
        self.requests
            .get_or_create(&OutcomeLabels {
                outcome: code.outcome(),
                reason: code.reason(),
            })
            .inc();
    }

    /// Time spent verifying one token.
    pub(crate) fn observe_verify(&self, took: std::time::Duration) {
        self.verify_seconds.observe(took.as_secs_f64());
    }

    /// A request served from the verified-token cache.
    pub(crate) fn token_cache_hit(&self) {
        self.token_cache_hits.inc();
    }

    /// A request whose token was not in the cache.
    pub(crate) fn token_cache_miss(&self) {
        self.token_cache_misses.inc();
    }

    /// Tokens now held in the cache.
    pub(crate) fn token_cache_entries(&self, entries: usize) {
        self.token_cache_entries.set(entries as i64);
    }

    /// Requests served from the verified-token cache so far.
    pub fn token_cache_hits(&self) -> u64 {
        self.token_cache_hits.get()
    }

    /// The counter of accepted requests for `app` signing with `kid`. Callers
    /// keep the handle (the token cache does), so a warm request touches no
    /// lock.
    pub(crate) fn accepted_counter(&self, app: &str, kid: &str) -> Counter {
        let known = |keys: &AcceptedKeys| {
            keys.get(kid)?
                .iter()
                .find(|(a, _)| &**a == app)
                .map(|(_, c)| c.clone())
        };
        if let Some(counter) = known(&self.accepted_keys.read()) {
            return counter;
        }
        let mut keys = self.accepted_keys.write();
        if let Some(counter) = known(&keys) {
            return counter;
        }
        let labels = KeyLabels {
            app: app.to_owned(),
            kid: kid.to_owned(),
        };
        let counter = self.accepted_by_key.get_or_create_owned(&labels);
        keys.entry(kid.into())
            .or_default()
            .push((app.into(), counter.clone()));
        counter
    }

    /// The in-flight gauge of `app`; labels exist only for verified callers,
    /// so the set is bounded by the keys directory.
    pub(crate) fn in_flight(&self, app: &str) -> Gauge {
        if let Some(g) = self.in_flight_by_app.read().get(app) {
            return g.clone();
        }
        let mut apps = self.in_flight_by_app.write();
        apps.entry(app.into())
            .or_insert_with(|| {
                self.in_flight.get_or_create_owned(&AppLabels {
                    app: app.to_owned(),
                })
            })
            .clone()
    }

    /// Drops the per-key counters of keys no longer loaded, so the label set
    /// stays bounded by the keys directory.
    pub(crate) fn retain_keys(&self, loaded: impl Fn(&str, &str) -> bool) {
        let mut keys = self.accepted_keys.write();
        keys.retain(|kid, apps| {
            apps.retain(|(app, _)| {
                let keep = loaded(app, kid);
                if !keep {
                    self.accepted_by_key.remove(&KeyLabels {
                        app: app.to_string(),
                        kid: kid.to_string(),
                    });
                }
                keep
            });
            !apps.is_empty()
        });
    }

    /// The metrics in OpenMetrics text format, when they live in a registry
    /// of their own ([`Metrics::new`]); empty when they were registered into
    /// a host's registry, which the host renders.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(registry) = &self.registry {
            // Writing to a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, registry);
        }
        out
    }
}

/// The process-wide RSA verification count kept by appauth-core.
#[derive(Debug)]
struct RsaVerifications;

impl Collector for RsaVerifications {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(appauth_core::rsa_verifications());
        let metric = encoder.encode_descriptor(
            "rsa_verifications",
            "RSA signature verifications run (junk tokens must not add to it)",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the one line of `text` that starts with `appauth_` and
    /// `prefix`.
    fn line(text: &str, prefix: &str) -> Option<i64> {
        text.lines().find_map(|l| {
            l.strip_prefix("appauth_")?
                .strip_prefix(prefix)?
                .trim()
                .parse()
                .ok()
        })
    }

    #[test]
    fn key_lifecycle_series_follow_a_rotation_and_a_retirement() {
        use appauth_core::{Algorithm, AppId, PrivateKey, PublicKey, parse_public_bundle};
        let bundle = |keys: &[&PrivateKey]| -> std::sync::Arc<[PublicKey]> {
            let pem: String = keys.iter().map(|k| k.public_key_pem().unwrap()).collect();
            parse_public_bundle(pem.as_bytes(), 0, &[Algorithm::RS512])
                .unwrap()
                .into()
        };
        let (old, new) = (
            PrivateKey::generate(2048).unwrap(),
            PrivateKey::generate(2048).unwrap(),
        );
        let (o, n) = (old.kid().as_str(), new.kid().as_str());
        let app = AppId::new("orders").unwrap();
        let m = Metrics::new();
        let first =
            |kid: &str| format!(r#"key_first_seen_timestamp_seconds{{app="orders",kid="{kid}"}}"#);
        let info = |kid: &str, newest: bool| {
            format!(r#"key_info{{app="orders",kid="{kid}",newest="{newest}"}}"#)
        };
        let newest = || r#"app_newest_key_first_seen_timestamp_seconds{app="orders"}"#.to_owned();
        // What the rendered text holds of each series asked for, beside
        // what was expected of it: one comparison per phase.
        let check = |want: &[(String, Option<i64>)]| {
            let t = m.render();
            let got: Vec<_> = want.iter().map(|(s, _)| (s.clone(), line(&t, s))).collect();
            assert_eq!(got, want, "{t}");
            t
        };
        // Loaded at start: the file's modification time is the best bound.
        m.key_lifecycle(&[(app.clone(), 1_000, bundle(&[&old]))], 5_000);
        check(&[
            (first(o), Some(1_000)),
            (info(o, true), Some(1)),
            (newest(), Some(1_000)),
        ]);
        // Rotated while running: the new key is first seen now, the old
        // keeps its time and is no longer the newest.
        m.key_lifecycle(&[(app.clone(), 6_000, bundle(&[&old, &new]))], 6_001);
        check(&[
            (first(o), Some(1_000)),
            (first(n), Some(6_001)),
            (info(o, false), Some(1)),
            (info(o, true), None),
            (info(n, true), Some(1)),
            (newest(), Some(6_001)),
        ]);
        // Retired: its series go; an app that leaves takes its own along.
        m.key_lifecycle(&[(app.clone(), 7_000, bundle(&[&new]))], 7_001);
        let t = check(&[(first(n), Some(6_001))]);
        assert!(!t.contains(o), "the retired key is still in {t}");
        m.key_lifecycle(&[], 8_000);
        let t = m.render();
        assert!(!t.contains("orders"), "{t}");
        // A certificate's notAfter.
        let cert = std::fs::read(appauth_testkit::fixture_path("keys/node-app_cert.pem")).unwrap();
        let keys: std::sync::Arc<[PublicKey]> =
            parse_public_bundle(&cert, 1_900_000_000, &[Algorithm::RS512])
                .unwrap()
                .into();
        let kid = keys[0].kid().to_string();
        m.key_lifecycle(&[(AppId::new("node-app").unwrap(), 9_000, keys)], 9_001);
        // notAfter=Oct 30 16:32:10 2126 GMT
        check(&[(
            format!(r#"key_not_after_timestamp_seconds{{app="node-app",kid="{kid}"}}"#),
            Some(4_949_051_530),
        )]);
    }

    #[test]
    fn per_key_counters_are_shared_kept_apart_by_app_and_dropped_with_their_key() {
        let m = Metrics::new();
        let a = m.accepted_counter("orders", "k1");
        m.accepted_counter("orders", "k1").inc();
        a.inc();
        // The same key in another app's bundle counts apart.
        m.accepted_counter("billing", "k1").inc();
        let text = m.render();
        assert!(
            text.contains(r#"appauth_accepted_total{app="orders",kid="k1"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"appauth_accepted_total{app="billing",kid="k1"} 1"#),
            "{text}"
        );
        // orders' k1 leaves the directory: its series goes, billing's stays.
        m.retain_keys(|app, kid| !(app == "orders" && kid == "k1"));
        let text = m.render();
        assert!(!text.contains(r#"app="orders",kid="k1""#), "{text}");
        assert!(
            text.contains(r#"appauth_accepted_total{app="billing",kid="k1"} 1"#),
            "{text}"
        );
        // Back again, it starts from zero.
        m.accepted_counter("orders", "k1").inc();
        assert!(
            m.render()
                .contains(r#"appauth_accepted_total{app="orders",kid="k1"} 1"#)
        );
    }

    #[test]
    fn every_code_is_pre_registered_at_zero() {
        let text = Metrics::new().render();
        for code in crate::Code::ALL {
            let series = format!(
                r#"appauth_requests_total{{outcome="{}",reason="{}"}} 0"#,
                code.outcome(),
                code.reason()
            );
            assert!(text.contains(&series), "{series} missing");
        }
    }
}
