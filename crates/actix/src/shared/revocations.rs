//! Revocations stored in Redis and pushed to every replica.
//!
//! `appauth-server revoke` adds a line (the revocation file's format) to the
//! set `<prefix>:revocations` and publishes it on the channel of the same
//! name. Each replica subscribes, and loads the whole set when it starts and
//! after every reconnect, so one that missed a message converges. What a
//! replica has learnt it keeps: Redis restarted empty, or unreachable, never
//! lifts a revocation (to lift one, remove it from the set and restart the
//! replicas).

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use parking_lot::Mutex;

use super::{Shared, SharedError, redacted};
use crate::revocation::RevocationList;

#[derive(Debug)]
pub(crate) struct SharedRevocations {
    key: String,
    lines: Mutex<BTreeSet<String>>,
    list: ArcSwap<RevocationList>,
}

impl SharedRevocations {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            key: revocations_key(prefix),
            lines: Mutex::new(BTreeSet::new()),
            list: ArcSwap::from_pointee(RevocationList::default()),
        }
    }

    /// The rules in force from Redis.
    pub(crate) fn list(&self) -> arc_swap::Guard<Arc<RevocationList>> {
        self.list.load()
    }

    /// Adds lines (never removes): returns how many were new.
    fn learn(&self, incoming: impl IntoIterator<Item = String>) -> usize {
        let mut lines = self.lines.lock();
        let mut added = 0;
        for line in incoming {
            let line = line.trim().to_owned();
            if line.is_empty() || lines.contains(&line) {
                continue;
            }
            if let Err(e) = RevocationList::parse("redis", &line) {
                let detail = e.iter().map(ToString::to_string).collect::<Vec<_>>();
                tracing::error!(line, error = %detail.join("; "), "ignoring a revocation from Redis that does not parse");
                continue;
            }
            lines.insert(line);
            added += 1;
        }
        if added > 0 {
            let text = lines.iter().cloned().collect::<Vec<_>>().join("\n");
            if let Ok(list) = RevocationList::parse("redis", &text) {
                self.list.store(Arc::new(list));
            }
        }
        added
    }
}

/// How often a replica reads the whole set again, in case its subscription
/// died without notice.
const RESYNC: Duration = Duration::from_secs(30);

fn revocations_key(prefix: &str) -> String {
    format!("{prefix}:revocations")
}

/// Subscribes, loads the set, then applies each message; reconnects with a
/// doubling backoff and loads the set again after every reconnect.
pub(crate) async fn follow(shared: Weak<Shared>, client: redis::Client) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(this) = shared.upgrade() else { return };
        let timeout = this.timeout();
        let key = this.revocations.key.clone();
        drop(this);
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&key).await?;
            // Subscribed first, loaded second: a line published in between
            // arrives both ways rather than neither.
            let mut conn = client.get_multiplexed_async_connection().await?;
            let all: Vec<String> = redis::cmd("SMEMBERS")
                .arg(&key)
                .query_async(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>((pubsub, conn, all))
        };
        let (pubsub, mut conn, all) = match tokio::time::timeout(timeout * 4, connected).await {
            Ok(Ok(ok)) => ok,
            _ => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if let Some(this) = shared.upgrade() {
            let added = this.revocations.learn(all);
            this.metrics
                .shared_revocation_rules
                .set(this.revocations.list().len() as i64);
            tracing::info!(
                new = added,
                rules = this.revocations.list().len(),
                "revocations loaded from Redis; following changes"
            );
        }
        let mut messages = pubsub.into_on_message();
        // A subscription can die without a word (a partition drops no FIN):
        // the whole set is read again now and then, and a failed read means
        // the link is gone, so it is rebuilt.
        let mut resync = tokio::time::interval(RESYNC);
        resync.tick().await;
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else { break };
                    let Some(this) = shared.upgrade() else { return };
                    if let Ok(line) = msg.get_payload::<String>()
                        && this.revocations.learn([line.clone()]) > 0
                    {
                        this.metrics
                            .shared_revocation_rules
                            .set(this.revocations.list().len() as i64);
                        tracing::info!(rule = line, "revocation received from Redis");
                    }
                }
                _ = resync.tick() => {
                    let mut cmd = redis::cmd("SMEMBERS");
                    cmd.arg(&key);
                    let read = cmd.query_async::<Vec<String>>(&mut conn);
                    let Ok(Ok(all)) = tokio::time::timeout(timeout, read).await else { break };
                    let Some(this) = shared.upgrade() else { return };
                    if this.revocations.learn(all) > 0 {
                        this.metrics
                            .shared_revocation_rules
                            .set(this.revocations.list().len() as i64);
                        tracing::warn!("revocations found in Redis that no message announced; the subscription may have lapsed");
                    }
                }
            }
        }
        // The stream ended: Redis went away. Try again.
        tracing::debug!("Redis subscription ended; reconnecting");
    }
}

/// Stores `line` (the revocation file's format) in Redis and notifies every
/// replica; returns how many replicas were listening.
pub fn store_revocation(url: &str, prefix: &str, line: &str) -> Result<usize, SharedError> {
    let line = line.trim();
    RevocationList::parse("the command line", line).map_err(|e| {
        SharedError::BadLine(
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    if line.is_empty() || line.starts_with('#') {
        return Err(SharedError::BadLine(
            "the rule is empty; give one line such as 'jti <id>', 'kid <thumbprint>', \
             'app <appId> before <RFC 3339 time>' or 'app <appId>'"
                .into(),
        ));
    }
    let mut conn = sync_connection(url)?;
    let key = revocations_key(prefix);
    let err = |source| SharedError::Command {
        url: redacted(url),
        source,
    };
    redis::cmd("SADD")
        .arg(&key)
        .arg(line)
        .query::<i64>(&mut conn)
        .map_err(err)?;
    redis::cmd("PUBLISH")
        .arg(&key)
        .arg(line)
        .query::<usize>(&mut conn)
        .map_err(err)
}

/// The revocation lines stored in Redis, sorted.
pub fn list_revocations(url: &str, prefix: &str) -> Result<Vec<String>, SharedError> {
    let mut conn = sync_connection(url)?;
    let mut lines: Vec<String> = redis::cmd("SMEMBERS")
        .arg(revocations_key(prefix))
        .query(&mut conn)
        .map_err(|source| SharedError::Command {
            url: redacted(url),
            source,
        })?;
    lines.sort();
    Ok(lines)
}

fn sync_connection(url: &str) -> Result<redis::Connection, SharedError> {
    let client = redis::Client::open(url).map_err(|source| SharedError::Url {
        url: redacted(url),
        source,
    })?;
    client
        .get_connection_with_timeout(Duration::from_secs(5))
        .map_err(|source| SharedError::Command {
            url: redacted(url),
            source,
        })
}
