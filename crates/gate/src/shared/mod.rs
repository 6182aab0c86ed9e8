//! State shared by every replica through Redis (docs/spec.md §11): one
//! global rate limit per app, and revocations that reach every replica
//! within a second.
//!
//! Nothing here puts Redis on the request path. A replica draws a small
//! share of an app's budget at a time and refills it in the background
//! ([`limiter`]); revocations arrive by pub/sub into a list the request path
//! reads like the file's ([`revocations`]). When Redis cannot be reached the
//! replica says so (log line and `appauth_shared_state_mode`), decides by its
//! [`Fallback`], keeps every revocation it knows, and goes back to global
//! limits on its own once Redis answers again.

mod endpoint;
mod limiter;
mod revocations;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::metrics::{Metrics, ModeLabels};

pub use limiter::{LUA_TAKE, Verdict};
pub use revocations::{
    DEFAULT_REVOCATION_RESYNC, Stored, StoredMany, change_many, lift_revocation, list_revocations,
    store_revocation,
};

/// Default key prefix in Redis: `<prefix>:rate:<appId>`, `<prefix>:revocations`
/// (and `:lifted`, `:generation` after it).
pub const DEFAULT_REDIS_PREFIX: &str = "appauth";
/// Default bound on one Redis command; a slower answer counts as an outage.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// What a replica's rate limits do while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fallback {
    /// Each replica enforces this fraction of each app's rate on its own
    /// (`1/replicas` keeps the total near the global limit).
    Share(f64),
    /// Every request within the route policy passes; no rate is enforced.
    Open,
    /// Every rate-limited request is refused with 429 until Redis is back.
    Closed,
}

impl Fallback {
    /// Parses `share`, `share:<fraction>`, `open` or `closed`; a bare `share`
    /// is the whole rate on each replica, as without Redis.
    pub fn parse(s: &str) -> Result<Self, String> {
        let expected = "expected share, share:<fraction in (0, 1]>, open or closed";
        match s.trim() {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            "share" => Ok(Self::Share(1.0)),
            other => {
                let f = other
                    .strip_prefix("share:")
                    .and_then(|f| f.trim().parse::<f64>().ok())
                    .filter(|f| *f > 0.0 && *f <= 1.0)
                    .ok_or_else(|| format!("\"{s}\": {expected}"))?;
                Ok(Self::Share(f))
            }
        }
    }

    fn describe(self) -> String {
        match self {
            Self::Share(f) => format!("each replica enforces {f} of each rate on its own"),
            Self::Open => "rate limits are not enforced".into(),
            Self::Closed => "rate-limited apps are refused (429)".into(),
        }
    }
}

/// Trust and identity for `rediss://` URLs (feature `redis-tls`).
#[derive(Clone, Default)]
pub struct RedisTls {
    /// PEM CA certificates to trust instead of the system's roots (a Redis
    /// whose certificate a private CA signed).
    pub ca: Option<Vec<u8>>,
    /// PEM certificate chain and PEM private key this replica presents, for
    /// a Redis that asks clients for one (`tls-auth-clients yes`).
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.ca.is_some())
            .field("client", &self.client.is_some())
            .finish()
    }
}

/// How to reach Redis and what to do without it.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db`, `rediss://` for TLS (feature `redis-tls`), or
    /// `redis+sentinel://host:26379[,host:26379...]/SERVICE[/db]` for the
    /// primary Sentinel names (docs/spec.md §11).
    pub url: String,
    /// For a `rediss://` URL: whom to trust and what to present; the
    /// default trusts the system's roots and presents nothing.
    pub tls: RedisTls,
    /// Key prefix, so several deployments can share one Redis.
    pub prefix: String,
    /// What rate limits do while Redis is unreachable.
    pub fallback: Fallback,
    /// Bound on one command.
    pub timeout: Duration,
    /// How often each replica reads every revocation again, besides the
    /// messages that announce each change.
    pub revocation_resync: Duration,
    /// Whether the gate accepts tokens before its first complete read of
    /// Redis's revocations. Default `false`: until then every token is
    /// refused `503 revocations_loading` (a revoked token must not pass in a
    /// replica's first milliseconds, nor while Redis cannot be read at
    /// start). `true` serves with the file's revocations only until Redis is
    /// read: an availability choice, logged at WARN.
    pub serve_before_sync: bool,
}

impl RedisConfig {
    /// `url` with the defaults: prefix [`DEFAULT_REDIS_PREFIX`], fallback
    /// `share` (the whole rate, per replica), timeout [`DEFAULT_REDIS_TIMEOUT`],
    /// revocations read again every [`DEFAULT_REVOCATION_RESYNC`].
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls: RedisTls::default(),
            prefix: DEFAULT_REDIS_PREFIX.into(),
            fallback: Fallback::Share(1.0),
            timeout: DEFAULT_REDIS_TIMEOUT,
            revocation_resync: DEFAULT_REVOCATION_RESYNC,
            serve_before_sync: false,
        }
    }

    /// Where this URL points: one node, or a Sentinel-watched primary;
    /// nothing is connected yet.
    pub(crate) fn endpoint(&self) -> Result<endpoint::Endpoint, SharedError> {
        if let Some(problem) = endpoint::unsupported_scheme(&self.url) {
            let url = redacted(&self.url);
            return Err(SharedError::BadUrl { url, problem });
        }
        // rediss+sentinel:// and rediss+cluster:// are their plain forms
        // with TLS to every node (and sentinel).
        let (plain, tls) = match self.url.strip_prefix("rediss+") {
            Some(rest) => (format!("redis+{rest}"), Some(self.tls_settings()?)),
            None => (self.url.clone(), None),
        };
        let is = |scheme: &str| plain.starts_with(scheme);
        if (is(endpoint::CLUSTER_SCHEME) || is(endpoint::SENTINEL_SCHEME))
            && tls.is_none()
            && (self.tls.ca.is_some() || self.tls.client.is_some())
        {
            return Err(SharedError::Tls {
                url: redacted(&self.url),
                problem: "a CA or client certificate for Redis needs a rediss+ URL".into(),
            });
        }
        if is(endpoint::CLUSTER_SCHEME) {
            let url = redacted(&self.url);
            let mut spec = endpoint::ClusterSpec::parse(&plain)
                .map_err(|problem| SharedError::BadUrl { url, problem })?;
            spec.tls = tls;
            return Ok(endpoint::Endpoint::Cluster(spec));
        }
        if is(endpoint::SENTINEL_SCHEME) {
            let url = redacted(&self.url);
            let mut spec = endpoint::SentinelSpec::parse(&plain)
                .map_err(|problem| SharedError::BadUrl { url, problem })?;
            spec.tls = tls;
            return Ok(endpoint::Endpoint::Sentinel(spec));
        }
        self.client().map(endpoint::Endpoint::Node)
    }

    /// TLS for a `rediss+` URL: the configured CA and client certificate,
    /// or the system's roots; an error in a build without TLS for Redis.
    fn tls_settings(&self) -> Result<endpoint::TlsSettings, SharedError> {
        #[cfg(feature = "redis-tls")]
        {
            let custom = self.tls.ca.is_some() || self.tls.client.is_some();
            Ok(endpoint::TlsSettings {
                certs: custom.then(|| redis::TlsCertificates {
                    client_tls: self.tls.client.clone().map(|(client_cert, client_key)| {
                        redis::ClientTlsConfig {
                            client_cert,
                            client_key,
                        }
                    }),
                    root_cert: self.tls.ca.clone(),
                }),
            })
        }
        #[cfg(not(feature = "redis-tls"))]
        Err(SharedError::Tls {
            url: redacted(&self.url),
            problem: "this build has no TLS for Redis (the library's redis-tls feature)".into(),
        })
    }

    /// The client for this URL and TLS setting; nothing is connected yet.
    pub(crate) fn client(&self) -> Result<redis::Client, SharedError> {
        let url = redacted(&self.url);
        let tls_url = self.url.starts_with("rediss://");
        let custom = self.tls.ca.is_some() || self.tls.client.is_some();
        if custom && !tls_url {
            return Err(SharedError::Tls {
                url,
                problem: "a CA or client certificate for Redis needs a rediss:// URL".into(),
            });
        }
        if tls_url && !cfg!(feature = "redis-tls") {
            return Err(SharedError::Tls {
                url,
                problem: "this build has no TLS for Redis (the library's redis-tls feature)".into(),
            });
        }
        #[cfg(feature = "redis-tls")]
        if custom {
            let certificates = redis::TlsCertificates {
                client_tls: self.tls.client.clone().map(|(client_cert, client_key)| {
                    redis::ClientTlsConfig {
                        client_cert,
                        client_key,
                    }
                }),
                root_cert: self.tls.ca.clone(),
            };
            return redis::Client::build_with_tls(self.url.as_str(), certificates)
                .map_err(|source| SharedError::Url { url, source });
        }
        redis::Client::open(self.url.as_str()).map_err(|source| SharedError::Url { url, source })
    }
}

/// Why Redis could not be set up at all (an unreachable server is not an
/// error: the replica starts in fallback mode and keeps trying).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedError {
    /// The URL does not parse.
    #[error("Redis URL {url}: {source}")]
    Url {
        /// The URL as given (with any password hidden).
        url: String,
        /// Why.
        #[source]
        source: redis::RedisError,
    },
    /// The background thread could not start.
    #[error("cannot start the Redis thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A command failed (the `revoke` command line).
    #[error("Redis at {url}: {source}")]
    Command {
        /// The URL (password hidden).
        url: String,
        /// Why.
        #[source]
        source: redis::RedisError,
    },
    /// A revocation line that does not parse.
    #[error("{0}")]
    BadLine(String),
    /// A URL of a scheme appauth does not take, or a `redis+sentinel://`
    /// URL that does not parse.
    #[error("Redis URL {url}: {problem}")]
    BadUrl {
        /// The URL (password hidden).
        url: String,
        /// What is wrong, and the form expected.
        problem: String,
    },
    /// The TLS settings do not fit the URL or the build.
    #[error("Redis URL {url}: {problem}")]
    Tls {
        /// The URL (password hidden).
        url: String,
        /// What does not fit.
        problem: String,
    },
}

/// `redis://user:secret@host` → `redis://user:***@host`, for messages.
pub(crate) fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
            } else {
                url.to_owned()
            }
        }
        _ => url.to_owned(),
    }
}

/// The live link to Redis of one replica: the connection, the mode, the
/// global limiter and the revocations received.
pub struct Shared {
    config: RedisConfig,
    runtime: tokio::runtime::Handle,
    conn: arc_swap::ArcSwapOption<endpoint::Conn>,
    global: AtomicBool,
    metrics: Arc<Metrics>,
    /// Wakes the supervisor when a command fails, so it starts probing.
    trouble: Arc<tokio::sync::Notify>,
    pub(crate) limiter: limiter::GlobalLimiter,
    pub(crate) revocations: revocations::SharedRevocations,
    /// Ends the runtimes' threads when the last handle goes.
    _stop: Mutex<Vec<tokio::sync::oneshot::Sender<()>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("url", &redacted(&self.config.url))
            .field("global", &self.is_global())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Whether tokens may be accepted: Redis's revocations have been read
    /// completely once, or the configuration chose to serve before that.
    pub(crate) fn revocations_ready(&self) -> bool {
        self.config.serve_before_sync || self.revocations.synced()
    }

    /// Starts the Redis link on a thread of its own (its own small runtime,
    /// so an embedding app's runtime is not involved) and returns at once:
    /// the replica is in fallback mode until Redis first answers.
    pub fn start(config: RedisConfig, metrics: Arc<Metrics>) -> Result<Arc<Self>, SharedError> {
        let endpoint = Arc::new(config.endpoint()?);
        if config.serve_before_sync {
            tracing::warn!(
                "serving before Redis's revocations are read (serve_before_sync): until the \
                 first complete read, only the revocation file's rules apply, and a token \
                 revoked in Redis is accepted"
            );
        }
        // Two threads, each with its own small runtime: the limiter's
        // refills never wait behind the revocation follower, which may have
        // a burst of thousands of changes to apply.
        let (handle, stop_limits) = runtime_thread("appauth-redis")?;
        let (revocations_runtime, stop_revocations) = runtime_thread("appauth-redis-rev")?;
        for mode in ["global", "fallback"] {
            metrics
                .shared_state_mode
                .get_or_create(&ModeLabels { mode })
                .set(0);
        }
        let shared = Arc::new(Self {
            limiter: limiter::GlobalLimiter::new(&config.prefix),
            revocations: revocations::SharedRevocations::new(
                &config.prefix,
                endpoint.is_cluster(),
                config.revocation_resync,
            ),
            config,
            runtime: handle,
            conn: arc_swap::ArcSwapOption::empty(),
            global: AtomicBool::new(false),
            metrics,
            trouble: Arc::new(tokio::sync::Notify::new()),
            _stop: Mutex::new(vec![stop_limits, stop_revocations]),
        });
        shared.show_mode(false);
        tracing::warn!(
            redis = %redacted(&shared.config.url),
            "Redis not reached yet: {} until it answers",
            shared.config.fallback.describe()
        );
        let weak = Arc::downgrade(&shared);
        shared
            .runtime
            .spawn(supervise(weak.clone(), endpoint.clone()));
        revocations_runtime.spawn(revocations::follow(weak, endpoint));
        Ok(shared)
    }

    /// True while rate limits are held in Redis.
    pub fn is_global(&self) -> bool {
        self.global.load(Ordering::Relaxed)
    }

    /// What rate limits do while Redis is unreachable.
    pub fn fallback(&self) -> Fallback {
        self.config.fallback
    }

    fn show_mode(&self, global: bool) {
        let (on, off) = if global {
            ("global", "fallback")
        } else {
            ("fallback", "global")
        };
        self.metrics
            .shared_state_mode
            .get_or_create(&ModeLabels { mode: on })
            .set(1);
        self.metrics
            .shared_state_mode
            .get_or_create(&ModeLabels { mode: off })
            .set(0);
    }

    /// Back to global limits (Redis answered).
    fn enter_global(&self) {
        if !self.global.swap(true, Ordering::AcqRel) {
            self.show_mode(true);
            self.limiter.reset();
            tracing::info!(
                redis = %redacted(&self.config.url),
                "Redis reachable: rate limits are global again"
            );
        }
    }

    /// Into fallback mode (a command failed or timed out).
    pub(crate) fn enter_fallback(&self, why: &dyn std::fmt::Display) {
        if self.global.swap(false, Ordering::AcqRel) {
            self.show_mode(false);
            tracing::warn!(
                redis = %redacted(&self.config.url),
                error = %why,
                "Redis unreachable: {}; revocations already received stay in force; retrying",
                self.config.fallback.describe()
            );
            self.trouble.notify_one();
        }
    }

    pub(crate) fn connection(&self) -> Option<endpoint::Conn> {
        self.conn.load_full().map(|c| (*c).clone())
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.config.timeout
    }
}

/// What a failed probe means, for the one log line: Redis unreachable,
/// read-only (then the connection is dropped, so the next one can reach a
/// new primary), or refusing the work for another reason (out of memory, an
/// ACL without the script's commands).
fn refusal_of(e: &redis::RedisError) -> (&'static str, bool) {
    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) {
        (
            "Redis is read-only (a replica, or a primary demoted by a failover); reconnecting",
            true,
        )
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
    {
        ("cannot reach Redis", true)
    } else {
        ("Redis refuses appauth's rate-limit script", false)
    }
}

/// The one retry rhythm of every Redis task: 100 ms, doubling to 5 s, back
/// to 100 ms once a try succeeds. Fast enough that a Redis back from a
/// restart is in use within a second; slow enough that a dead one costs a
/// connection attempt every 5 s per task. Through Sentinel or to a cluster
/// the delay stops at 500 ms: a failover takes seconds, each try asks the
/// sentinels or the surviving nodes (not a dead primary), and a follower
/// back late misses revocations made meanwhile until it reads the set.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);
    const MAX_SENTINEL: Duration = Duration::from_millis(500);

    /// The rhythm for `endpoint`.
    pub(crate) fn for_endpoint(endpoint: &endpoint::Endpoint) -> Self {
        Self {
            next: Self::FIRST,
            max: if endpoint.moves() || endpoint.is_cluster() {
                Self::MAX_SENTINEL
            } else {
                Self::MAX
            },
        }
    }

    /// Waits the current delay, then doubles it (up to the maximum).
    pub(crate) async fn sleep(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }

    /// Back to the first delay, after a success.
    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Self::FIRST,
            max: Self::MAX,
        }
    }
}

/// Connects, then watches: while in fallback mode, probes with a doubling
/// backoff (100 ms to 5 s) and returns to global mode when the limiter's own
/// script runs again ([`limiter::GlobalLimiter::probe`]).
async fn supervise(shared: std::sync::Weak<Shared>, endpoint: Arc<endpoint::Endpoint>) {
    let mut backoff = Backoff::for_endpoint(&endpoint);
    // Why Redis cannot be used, said once at WARN (a wrong CA or password, a
    // read-only replica, a missing ACL permission: causes an operator must
    // see), then at DEBUG while it stays the same.
    let mut said: Option<String> = None;
    let tell = |said: &mut Option<String>, what: &str, why: String| {
        if said.as_deref() == Some(&why) {
            tracing::debug!(error = %why, "{what}");
        } else {
            tracing::warn!(error = %why, "{what}; retrying");
            *said = Some(why);
        }
    };
    const CONNECT: &str = "cannot connect to Redis";
    // With Sentinel: the primary connected to, and when the sentinels named it.
    let mut primary: Option<(String, std::time::Instant)> = None;
    // In a cluster: when its map was last learnt.
    let mut mapped = std::time::Instant::now();
    loop {
        let Some(this) = shared.upgrade() else { return };
        let timeout = this.timeout();
        if this.conn.load().is_none() {
            // Resolved on every connection: with Sentinel, the primary now.
            let connect = endpoint.managed(manager_config(timeout), timeout);
            match tokio::time::timeout(timeout * 4, connect).await {
                Ok(Ok((conn, addr))) => {
                    if endpoint.moves() {
                        let moved = primary.as_ref().is_some_and(|(was, _)| *was != addr);
                        if moved || primary.is_none() {
                            tracing::info!(primary = %addr, "Sentinel names the Redis primary");
                        }
                        primary = Some((addr, std::time::Instant::now()));
                    }
                    this.conn.store(Some(Arc::new(conn)));
                    said = None;
                }
                Ok(Err(e)) => tell(&mut said, CONNECT, e.to_string()),
                Err(_) => tell(
                    &mut said,
                    CONNECT,
                    format!("no connection within {:?}", timeout * 4),
                ),
            }
        }
        let healthy = match this.connection() {
            Some(mut conn) => {
                match tokio::time::timeout(timeout, this.limiter.probe(&mut conn)).await {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        let (what, reconnect) = refusal_of(&e);
                        tell(&mut said, what, e.to_string());
                        // A connection that answers READONLY is to a primary
                        // demoted by a failover: a new one, to a re-pointed
                        // endpoint (DNS name, managed endpoint, Service),
                        // reaches the new primary. Nothing else would drop it.
                        if reconnect {
                            this.conn.store(None);
                        }
                        false
                    }
                    Err(_) => false,
                }
            }
            None => false,
        };
        // A working connection to a Sentinel-named primary is checked now and
        // then: a failover that leaves the old primary writable (a partition
        // that heals late) would otherwise never be noticed.
        if healthy
            && let Some((addr, at)) = &primary
            && at.elapsed() >= endpoint::SENTINEL_RECHECK
        {
            match tokio::time::timeout(timeout * 4, endpoint.primary()).await {
                Ok(Ok(now)) if now != *addr => {
                    tracing::warn!(
                        was = %addr,
                        %now,
                        "Sentinel names a new Redis primary; reconnecting"
                    );
                    this.conn.store(None);
                    primary = None;
                    continue;
                }
                _ => primary = Some((addr.clone(), std::time::Instant::now())),
            }
        }
        // A cluster's map is learnt again now and then, besides on MOVED,
        // ASK and errors (redis-rs's own): a replacement connection is made
        // first and swapped in, so no refill ever finds none.
        if healthy && endpoint.is_cluster() && mapped.elapsed() >= endpoint::CLUSTER_REMAP {
            if let Ok(Ok((conn, _))) = tokio::time::timeout(
                timeout * 4,
                endpoint.managed(manager_config(timeout), timeout),
            )
            .await
            {
                this.conn.store(Some(Arc::new(conn)));
            }
            mapped = std::time::Instant::now();
        }
        if healthy {
            said = None;
            this.enter_global();
            backoff.reset();
            // Sleep until a request's command fails, or re-check now and
            // then so a silent outage is noticed without traffic.
            let trouble = this.trouble.clone();
            drop(this);
            let _ = tokio::time::timeout(Duration::from_secs(1), trouble.notified()).await;
        } else {
            this.enter_fallback(&"the probe failed");
            drop(this);
            backoff.sleep().await;
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for stop in self._stop.lock().drain(..) {
            let _ = stop.send(());
        }
    }
}

/// The limiter's connection: redis-rs reconnects it on its own, within the
/// command timeout.
fn manager_config(timeout: Duration) -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2))
}

/// A current-thread runtime on a thread of its own, named `name`, running
/// until the sender is used or dropped. The runtime is dropped on its own
/// thread: dropping it inside another runtime (an actix worker) would panic.
fn runtime_thread(
    name: &str,
) -> Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>), SharedError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SharedError::Thread)?;
    let handle = runtime.handle().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            runtime.block_on(async {
                let _ = stop_rx.await;
            });
        })
        .map_err(SharedError::Thread)?;
    Ok((handle, stop_tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_parses_its_three_modes() {
        assert_eq!(Fallback::parse("open"), Ok(Fallback::Open));
        assert_eq!(Fallback::parse("closed"), Ok(Fallback::Closed));
        assert_eq!(Fallback::parse("share"), Ok(Fallback::Share(1.0)));
        assert_eq!(Fallback::parse("share:0.34"), Ok(Fallback::Share(0.34)));
        for bad in ["share:0", "share:1.5", "share:x", "local", ""] {
            assert!(Fallback::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_settings_must_fit_the_url_and_the_build() {
        let mut plain = RedisConfig::new("redis://127.0.0.1:1");
        plain.tls.ca = Some(b"-----BEGIN CERTIFICATE-----".to_vec());
        let err = plain.client().unwrap_err().to_string();
        assert!(err.contains("needs a rediss:// URL"), "{err}");
        let tls = RedisConfig::new("rediss://127.0.0.1:1");
        assert_eq!(tls.client().is_ok(), cfg!(feature = "redis-tls"));
    }

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(
            redacted("redis://app:s3cret@redis:6379/0"),
            "redis://app:***@redis:6379/0"
        );
        assert_eq!(redacted("redis://redis:6379"), "redis://redis:6379");
    }
}
