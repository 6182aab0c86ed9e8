//! What the agent counts, served on `/metrics` of `--admin-listen`
//! (OpenMetrics text, every name prefixed `appauth_agent_`).

use std::sync::Arc;

use appauth_client::Signer;
use arc_swap::ArcSwapOption;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Upstream error kinds, pre-registered so a dashboard sees zeros.
pub const UPSTREAM_ERROR_KINDS: [&str; 5] = ["connect", "tls", "timeout", "closed", "body"];
/// Why a token was signed before its scheduled refresh.
pub const REFRESH_CAUSES: [&str; 2] = ["rejected", "key_change"];

/// The agent's metrics; cheap to clone (the counters are shared).
#[derive(Debug, Clone)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    registry: Registry,
    requests: Family<Labels, Counter>,
    /// The `requests` counter of each status, looked up once: the family's
    /// own lookup allocates and hashes its labels on every call.
    by_status: Box<[std::sync::OnceLock<Counter>]>,
    upstream_errors: Family<Labels, Counter>,
    refreshes: Family<Labels, Counter>,
    key_refused: Counter,
    ready: Gauge,
    signer: Arc<Followed>,
}

/// The signer whose own counters are read at each scrape.
#[derive(Debug, Default)]
struct Followed(ArcSwapOption<Signer>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("appauth_agent");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "Requests proxied, by the status the application got (the upstream's, or 502/503/504 of the agent's own)",
            requests.clone(),
        );
        let upstream_errors = Family::<Labels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream calls that failed, by kind: connect, tls, timeout (no response head in time), closed (the connection ended before a response), body (a response body cut or stalled while streaming)",
            upstream_errors.clone(),
        );
        for kind in UPSTREAM_ERROR_KINDS {
            let _ = upstream_errors.get_or_create(&vec![("kind", kind.to_owned())]);
        }
        let refreshes = Family::<Labels, Counter>::default();
        registry.register(
            "token_refreshes",
            "Tokens signed before their scheduled refresh: rejected (the upstream said the token went stale), key_change (a rotated key file)",
            refreshes.clone(),
        );
        for cause in REFRESH_CAUSES {
            let _ = refreshes.get_or_create(&vec![("cause", cause.to_owned())]);
        }
        let key_refused = Counter::default();
        registry.register(
            "key_file_refused",
            "Changes of the key file that did not read as a key (the previous key stays in use)",
            key_refused.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 while a usable signing key is held",
            ready.clone(),
        );
        let signer = Arc::new(Followed::default());
        registry.register_collector(Box::new(signer.clone()));
        Self(Arc::new(Inner {
            registry,
            requests,
            by_status: (0..600).map(|_| std::sync::OnceLock::new()).collect(),
            upstream_errors,
            refreshes,
            key_refused,
            ready,
            signer,
        }))
    }

    /// Reads the signatures and key reloads of `signer` from now on.
    pub(crate) fn follow(&self, signer: Arc<Signer>) {
        self.0.signer.0.store(Some(signer));
        self.0.ready.set(1);
    }

    /// One request answered with `status`.
    pub(crate) fn request(&self, status: u16) {
        // http's StatusCode is 100..=999; beyond 599 is counted uncached.
        let make = || {
            self.0
                .requests
                .get_or_create(&vec![("status", status.to_string())])
                .clone()
        };
        match self.0.by_status.get(usize::from(status)) {
            Some(slot) => slot.get_or_init(make).inc(),
            None => make().inc(),
        };
    }

    /// One upstream failure of `kind` (one of [`UPSTREAM_ERROR_KINDS`]).
    pub(crate) fn upstream_error(&self, kind: &'static str) {
        self.0
            .upstream_errors
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }

    /// One early signature, for `cause` (one of [`REFRESH_CAUSES`]).
    pub(crate) fn refreshed(&self, cause: &'static str) {
        self.0
            .refreshes
            .get_or_create(&vec![("cause", cause.to_owned())])
            .inc();
    }

    /// A changed key file that was not a key.
    pub(crate) fn key_refused(&self) {
        self.0.key_refused.inc();
    }

    /// The OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }
}

impl Collector for Followed {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let signer = self.0.load();
        let (signatures, reloads) = signer
            .as_ref()
            .map_or((0, 0), |s| (s.signatures_made(), s.key_reloads()));
        for (name, help, value) in [
            ("signatures", "Tokens signed", signatures),
            (
                "key_reloads",
                "Changed key files read as a key and put in use",
                reloads,
            ),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}
