//! Revocations stored in Redis and pushed to every replica.
//!
//! Three keys under the prefix: the set `<prefix>:revocations` holds the
//! rules in force (the revocation file's format, one rule each), the set
//! `<prefix>:revocations:lifted` the rules lifted since Redis last lost its
//! data, and the hash `<prefix>:revocations:generation` an `id` (set once,
//! when the keys are first written), a `version` that every change
//! increments and the number of `rules` the set should hold. A change
//! publishes `<revoke|lift> <id> <version> <rule>` on the channel
//! `<prefix>:revocations`.
//!
//! Each replica subscribes, and reads the whole set when it starts, after
//! every reconnect and every [`DEFAULT_REVOCATION_RESYNC`]. The generation
//! decides what a read means:
//! - the id the replica saw, at a version no older than it saw, with as many
//!   rules as the last change left: Redis's set is the truth, and a rule
//!   missing from it was lifted;
//! - anything else (Redis restarted empty, restored from an older snapshot,
//!   replaced, a key evicted, a rule removed by hand): Redis lost something,
//!   so the replica puts back every rule it holds that was not lifted since,
//!   and tells the others. Losing Redis never lifts a revocation; at worst a
//!   lift made while Redis was losing its data comes back, and is made again.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use parking_lot::Mutex;

use super::{RedisConfig, Shared, SharedError, redacted};
use crate::revocation::{RevocationList, Rule};

/// How often a replica reads the whole set again by default, in case its
/// subscription died without notice or a rule was changed by hand.
pub const DEFAULT_REVOCATION_RESYNC: Duration = Duration::from_secs(30);

/// Records one change and announces it, atomically.
/// `KEYS`: rules, lifted, generation; `ARGV`: `revoke` or `lift`, the rule,
/// and for a lift the rule as releases before the typed `Rule` spelled it
/// (times as typed), which is removed too.
/// Returns `{changed (0 or 1), replicas listening}`.
const LUA_CHANGE: &str = r"
local t = redis.call('TIME')
redis.call('HSETNX', KEYS[3], 'id', t[1] .. '.' .. t[2])
local id = redis.call('HGET', KEYS[3], 'id')
local version = redis.call('HINCRBY', KEYS[3], 'version', 1)
local changed
if ARGV[1] == 'revoke' then
  changed = redis.call('SADD', KEYS[1], ARGV[2])
  redis.call('SREM', KEYS[2], ARGV[2])
else
  changed = redis.call('SREM', KEYS[1], ARGV[2])
  if ARGV[3] and ARGV[3] ~= ARGV[2] then
    changed = math.min(1, changed + redis.call('SREM', KEYS[1], ARGV[3]))
  end
  redis.call('SADD', KEYS[2], ARGV[2])
end
redis.call('HSET', KEYS[3], 'rules', redis.call('SCARD', KEYS[1]))
local listening = redis.call('PUBLISH', KEYS[1], ARGV[1] .. ' ' .. id .. ' ' .. version .. ' ' .. ARGV[2])
return {changed, listening}
";

/// A replica's read of the whole set.
/// `KEYS`: rules, lifted, generation; `ARGV`: the generation id the replica
/// saw (empty if none), the version it saw, then every rule it holds.
/// Returns `{id, version, rules in force, rules put back}`.
const LUA_SYNC: &str = r"
local id = redis.call('HGET', KEYS[3], 'id')
local version = tonumber(redis.call('HGET', KEYS[3], 'version') or '0')
local count = tonumber(redis.call('HGET', KEYS[3], 'rules') or '0')
if id and id == ARGV[1] and version >= tonumber(ARGV[2]) and count == redis.call('SCARD', KEYS[1]) then
  return {id, version, redis.call('SMEMBERS', KEYS[1]), {}}
end
if not id then
  local t = redis.call('TIME')
  id = t[1] .. '.' .. t[2]
  redis.call('HSET', KEYS[3], 'id', id)
end
local restored = {}
for i = 3, #ARGV do
  if redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 0 and redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    restored[#restored + 1] = ARGV[i]
  end
end
if #restored > 0 then
  version = redis.call('HINCRBY', KEYS[3], 'version', 1)
  for _, rule in ipairs(restored) do
    redis.call('PUBLISH', KEYS[1], 'revoke ' .. id .. ' ' .. version .. ' ' .. rule)
  end
end
redis.call('HSET', KEYS[3], 'rules', redis.call('SCARD', KEYS[1]))
return {id, version, redis.call('SMEMBERS', KEYS[1]), restored}
";

#[derive(Debug, Clone)]
struct Keys {
    rules: String,
    lifted: String,
    generation: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let rules = format!("{prefix}:revocations");
        Self {
            lifted: format!("{rules}:lifted"),
            generation: format!("{rules}:generation"),
            rules,
        }
    }

    fn script<'a>(&self, script: &'a redis::Script) -> redis::ScriptInvocation<'a> {
        let mut call = script.key(&self.rules);
        call.key(&self.lifted).key(&self.generation);
        call
    }
}

/// What a replica holds from Redis, and which generation it last read.
#[derive(Debug, Default)]
struct Known {
    rules: BTreeSet<Rule>,
    id: String,
    version: u64,
    /// The generation last read from a Redis that refused the write-back (a
    /// read-only replica): followed, never trusted to lift anything.
    followed: String,
    /// The version of `followed` last read.
    followed_version: u64,
}

/// What a read of Redis's set found: its generation, the count the last
/// change left, and the rules. Read with reads only, so a read-only Redis
/// answers it too.
#[derive(Debug)]
struct Read {
    id: Option<String>,
    version: u64,
    count: u64,
    rules: Vec<String>,
}

/// What reading the set or a message changed.
#[derive(Debug, Default, PartialEq)]
struct Change {
    added: Vec<Rule>,
    lifted: Vec<Rule>,
}

#[derive(Debug)]
pub(crate) struct SharedRevocations {
    keys: Keys,
    resync: Duration,
    known: Mutex<Known>,
    list: ArcSwap<RevocationList>,
    /// Set by the first complete read; never cleared (an outage later keeps
    /// the rules already held).
    synced: std::sync::atomic::AtomicBool,
}

impl SharedRevocations {
    pub(crate) fn new(prefix: &str, resync: Duration) -> Self {
        Self {
            keys: Keys::new(prefix),
            resync,
            known: Mutex::new(Known::default()),
            list: ArcSwap::from_pointee(RevocationList::default()),
            synced: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether a complete read of Redis's set has been applied.
    pub(crate) fn synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    fn mark_synced(&self) {
        self.synced
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The rules in force from Redis.
    pub(crate) fn list(&self) -> arc_swap::Guard<Arc<RevocationList>> {
        self.list.load()
    }

    /// Adopts a read of the whole set from generation `id` at `version`.
    fn adopt(&self, id: String, version: u64, rules: Vec<String>) -> Change {
        let incoming: BTreeSet<Rule> = rules.iter().filter_map(|r| usable(r)).collect();
        let mut known = self.known.lock();
        let change = Change {
            added: incoming.difference(&known.rules).cloned().collect(),
            lifted: known.rules.difference(&incoming).cloned().collect(),
        };
        if !change.added.is_empty() || !change.lifted.is_empty() {
            self.list
                .store(Arc::new(RevocationList::from_rules(&incoming)));
        }
        known.rules = incoming;
        known.id = id;
        known.version = version;
        change
    }

    /// Whether a read is the truth: the generation this replica last
    /// adopted, no older, holding as many rules as its last change left.
    /// Anything else means Redis lost something (or this replica has not
    /// read it yet), and its rules are put back before they are believed.
    fn trusts(&self, read: &Read) -> bool {
        let known = self.known.lock();
        read.id.as_deref().is_some_and(|id| id == known.id)
            && read.version >= known.version
            && read.count == read.rules.len() as u64
    }

    /// Follows a read of a Redis that refused to take this replica's rules
    /// back (read-only, out of memory, short of an ACL permission): its rules
    /// are added, none of this replica's is lifted, and the generation is
    /// not adopted, so the write-back is tried again at the next read.
    fn follow_without_lifting(&self, read: &Read) -> Change {
        let incoming: BTreeSet<Rule> = read.rules.iter().filter_map(|r| usable(r)).collect();
        let mut known = self.known.lock();
        let added: Vec<Rule> = incoming.difference(&known.rules).cloned().collect();
        if !added.is_empty() {
            known.rules.extend(added.iter().cloned());
            self.list
                .store(Arc::new(RevocationList::from_rules(&known.rules)));
        }
        known.followed = read.id.clone().unwrap_or_default();
        known.followed_version = read.version;
        Change {
            added,
            lifted: Vec::new(),
        }
    }

    /// Applies one message; `None` when it needs no action, and
    /// `Some(true)` beside the change when it came from a generation this
    /// replica has not read (Redis lost its data): read the set now.
    fn apply(&self, message: &str) -> Option<(Change, bool)> {
        let mut parts = message.splitn(4, ' ');
        let (verb, id, version, rule) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let version: u64 = version.parse().ok()?;
        let revoke = match verb {
            "revoke" => true,
            "lift" => false,
            _ => return None,
        };
        let rule = usable(rule)?;
        let mut known = self.known.lock();
        let followed = !known.followed.is_empty() && id == known.followed;
        let foreign = id != known.id && !followed;
        if followed {
            // The generation of a read-only Redis this replica follows:
            // already part of the last read, or newer; no read is needed.
            if version <= known.followed_version {
                return None;
            }
            known.followed_version = version;
        } else if !foreign {
            if version <= known.version {
                // Already part of the last read.
                return None;
            }
            known.version = version;
        }
        let mut change = Change::default();
        // One rule changes one entry of a copy of the list: no rule is
        // parsed again.
        let mut list = RevocationList::clone(&self.list.load());
        if revoke {
            if known.rules.insert(rule.clone()) {
                list.insert(rule.clone());
                change.added.push(rule);
            }
        } else if known.rules.remove(&rule) {
            list.remove(&rule);
            change.lifted.push(rule);
        }
        if !change.added.is_empty() || !change.lifted.is_empty() {
            self.list.store(Arc::new(list));
        }
        Some((change, foreign))
    }

    fn sync_args(&self) -> (String, u64, Vec<String>) {
        let known = self.known.lock();
        (
            known.id.clone(),
            known.version,
            known.rules.iter().map(Rule::to_string).collect(),
        )
    }
}

/// Reads the generation and the set, with read commands only (MULTI/EXEC, so
/// the count and the set are of one moment): a read-only replica answers.
async fn read_set(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
) -> redis::RedisResult<Read> {
    let (id, version, count, rules): (Option<String>, Option<u64>, Option<u64>, Vec<String>) =
        redis::pipe()
            .atomic()
            .hget(&keys.generation, "id")
            .hget(&keys.generation, "version")
            .hget(&keys.generation, "rules")
            .smembers(&keys.rules)
            .query_async(conn)
            .await?;
    Ok(Read {
        id,
        version: version.unwrap_or(0),
        count: count.unwrap_or(0),
        rules,
    })
}

/// A rule from Redis, or `None` (logged) if it does not parse.
fn usable(rule: &str) -> Option<Rule> {
    match rule.parse() {
        Ok(rule) => Some(rule),
        Err(e) => {
            tracing::error!(rule, error = %e, "ignoring a revocation from Redis that does not parse");
            None
        }
    }
}

/// Subscribes, reads the set, then applies each message and reads the set
/// again every resync period; reconnects with a doubling backoff and reads
/// the set after every reconnect.
pub(crate) async fn follow(
    shared: Weak<Shared>,
    endpoint: std::sync::Arc<super::endpoint::Endpoint>,
) {
    let sync_script = redis::Script::new(LUA_SYNC);
    let mut backoff = super::Backoff::for_endpoint(&endpoint);
    // Why Redis last refused the write-back, said once.
    let mut refused_writes: Option<String> = None;
    loop {
        let Some(this) = shared.upgrade() else { return };
        let timeout = this.timeout();
        let resync_every = this.revocations.resync;
        let channel = this.revocations.keys.rules.clone();
        drop(this);
        let connected = async {
            // Resolved on every reconnection: with Sentinel, the primary now.
            let client = endpoint.client().await?;
            let addr = client.get_connection_info().addr().to_string();
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            // Subscribed first, read second: a change made in between
            // arrives both ways rather than neither.
            let conn = client.get_multiplexed_async_connection().await?;
            Ok::<_, redis::RedisError>((pubsub, conn, addr))
        };
        let Ok(Ok((pubsub, mut conn, addr))) = tokio::time::timeout(timeout * 4, connected).await
        else {
            backoff.sleep().await;
            continue;
        };
        let mut messages = pubsub.into_on_message();
        // A subscription can die without a word (a partition drops no FIN):
        // the whole set is read again now and then, and a failed read means
        // the link is gone, so it is rebuilt.
        let mut resync = tokio::time::interval(resync_every);
        let mut first = true;
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else { break };
                    let Some(this) = shared.upgrade() else { return };
                    let Ok(text) = msg.get_payload::<String>() else { continue };
                    let Some((change, foreign)) = this.revocations.apply(&text) else { continue };
                    this.report(&change, "received from Redis");
                    if foreign {
                        resync.reset_immediately();
                    }
                }
                _ = resync.tick() => {
                    // With Sentinel: still the primary? A demoted one stays
                    // readable, but write-backs belong on the new one.
                    if endpoint.moves() && !first {
                        let now = tokio::time::timeout(timeout * 4, endpoint.client()).await;
                        if let Ok(Ok(now)) = now
                            && now.get_connection_info().addr().to_string() != addr
                        {
                            tracing::info!(was = %addr, "the revocation follower moves to the new Redis primary");
                            break;
                        }
                    }
                    let Some(this) = shared.upgrade() else { return };
                    let keys = &this.revocations.keys;
                    let Ok(Ok(read)) = tokio::time::timeout(timeout, read_set(&mut conn, keys)).await else { break };
                    let change = if this.revocations.trusts(&read) {
                        this.revocations.adopt(read.id.unwrap_or_default(), read.version, read.rules)
                    } else {
                        // Put back what this replica holds, where Redis takes writes.
                        let (id, version, held) = this.revocations.sync_args();
                        let mut call = keys.script(&sync_script);
                        call.arg(&id).arg(version).arg(&held);
                        let write = call.invoke_async::<(String, u64, Vec<String>, Vec<String>)>(&mut conn);
                        match tokio::time::timeout(timeout, write).await {
                            Ok(Ok((id, version, rules, restored))) => {
                                if !restored.is_empty() {
                                    tracing::warn!(
                                        rules = restored.len(),
                                        "Redis had lost revocations this replica holds (restarted empty, restored from an older snapshot, replaced, a key evicted, or a rule removed by hand); put them back"
                                    );
                                }
                                refused_writes = None;
                                this.revocations.adopt(id, version, rules)
                            }
                            Ok(Err(e)) => {
                                let why = e.to_string();
                                if refused_writes.as_deref() != Some(why.as_str()) {
                                    tracing::warn!(
                                        error = %why,
                                        "Redis refuses to take back this replica's revocations (a read-only replica, out of memory, or an ACL without write commands); following the rules it holds, lifting none, and trying again at the next read"
                                    );
                                    refused_writes = Some(why);
                                }
                                this.revocations.follow_without_lifting(&read)
                            }
                            Err(_) => break,
                        }
                    };

                    // Only now, with the whole set applied, may tokens pass.
                    this.revocations.mark_synced();
                    this.metrics.shared_revocations_read(std::time::SystemTime::now());
                    if first {
                        backoff.reset();
                        first = false;
                        tracing::info!(
                            new = change.added.len(),
                            rules = this.revocations.list().len(),
                            "revocations loaded from Redis; following changes"
                        );
                        this.report(&Change { added: vec![], lifted: change.lifted }, "lifted while this replica was away");
                    } else {
                        this.report(&change, "found in Redis that no message announced (the subscription may have lapsed, or the set was changed by hand)");
                    }
                }
            }
        }
        tracing::debug!("Redis subscription ended; reconnecting");
        backoff.sleep().await;
    }
}

impl Shared {
    /// Logs a change of the rules from Redis and updates the gauge.
    fn report(&self, change: &Change, how: &str) {
        for rule in &change.added {
            tracing::info!(%rule, "revocation {how}");
        }
        for rule in &change.lifted {
            tracing::warn!(%rule, "revocation lifted: {how}");
        }
        self.metrics
            .shared_revocation_rules
            .set(self.revocations.list().len() as i64);
    }
}

/// What storing or lifting a rule did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The rule as stored (comment dropped, single spaces).
    pub rule: String,
    /// False when Redis already held the rule (revoke) or did not hold it
    /// (lift).
    pub changed: bool,
    /// How many replicas were listening and applied it at once; the others
    /// converge when they next read the set.
    pub listening: usize,
}

/// Stores `rule` (the revocation file's format) in the Redis of `config`
/// and notifies every replica.
pub fn store_revocation(config: &RedisConfig, rule: &str) -> Result<Stored, SharedError> {
    change(config, "revoke", rule)
}

/// Lifts `rule` from Redis's revocations and notifies every replica. A rule
/// a replica also has in its revocation file stays in force there.
pub fn lift_revocation(config: &RedisConfig, rule: &str) -> Result<Stored, SharedError> {
    change(config, "lift", rule)
}

fn change(config: &RedisConfig, verb: &str, rule: &str) -> Result<Stored, SharedError> {
    let typed: Rule = rule.parse().map_err(SharedError::BadLine)?;
    // How releases before the typed rule stored it: its words as typed.
    let legacy = rule
        .split('#')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let rule = typed.to_string();
    let mut conn = sync_connection(config)?;
    let script = redis::Script::new(LUA_CHANGE);
    let mut call = Keys::new(&config.prefix).script(&script);
    call.arg(verb).arg(&rule);
    if verb == "lift" {
        call.arg(&legacy);
    }
    let (changed, listening): (i64, usize) =
        call.invoke(&mut conn)
            .map_err(|source| SharedError::Command {
                url: redacted(&config.url),
                source,
            })?;
    Ok(Stored {
        rule,
        changed: changed == 1,
        listening,
    })
}

/// The revocation rules stored in Redis, sorted.
pub fn list_revocations(config: &RedisConfig) -> Result<Vec<String>, SharedError> {
    let mut conn = sync_connection(config)?;
    let mut lines: Vec<String> = redis::cmd("SMEMBERS")
        .arg(Keys::new(&config.prefix).rules)
        .query(&mut conn)
        .map_err(|source| SharedError::Command {
            url: redacted(&config.url),
            source,
        })?;
    lines.sort();
    Ok(lines)
}

fn sync_connection(config: &RedisConfig) -> Result<redis::Connection, SharedError> {
    let url = || redacted(&config.url);
    let endpoint = config.endpoint()?;
    let connect = || {
        endpoint
            .client_blocking()?
            .get_connection_with_timeout(Duration::from_secs(5))
    };
    // Through Sentinel, a command run during a failover may ask while the
    // sentinels still agree on the new primary: asked again for a few
    // seconds, so an operator's revoke in an incident goes through.
    let mut tries = if endpoint.moves() { 10 } else { 1 };
    loop {
        tries -= 1;
        match connect() {
            Ok(conn) => return Ok(conn),
            Err(source) if tries == 0 => return Err(SharedError::Command { url: url(), source }),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn rules(v: &[&str]) -> Vec<Rule> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_rule_has_one_spelling() {
        let spelled = |s: &str| s.parse::<Rule>().map(|r| r.to_string());
        assert_eq!(spelled("  jti   a-1  # leaked").unwrap(), "jti a-1");
        assert_eq!(
            spelled("app\tbilling before 2026-01-01T00:00:00Z").unwrap(),
            "app billing before 2026-01-01T00:00:00Z"
        );
        // One instant, one spelling, whatever the offset it was typed in.
        assert_eq!(
            spelled("app billing before 2026-01-01T02:00:00+02:00").unwrap(),
            "app billing before 2026-01-01T00:00:00Z"
        );
        for bad in ["", "# only a comment", "jti", "jti a\njti b", "nonsense x"] {
            assert!(spelled(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_read_is_the_truth_and_messages_older_than_it_are_ignored() {
        let r = SharedRevocations::new("p", DEFAULT_REVOCATION_RESYNC);
        let change = r.adopt("g1".into(), 2, strings(&["jti a", "jti b"]));
        assert_eq!(change.added, rules(&["jti a", "jti b"]));
        assert_eq!(r.list().len(), 2);
        // A message the read already reflected (version 2) changes nothing,
        // even a lift that the read has already undone by a later revoke.
        assert_eq!(r.apply("lift g1 2 jti a"), None);
        assert_eq!(r.list().len(), 2);
        // A newer one applies.
        let (change, foreign) = r.apply("lift g1 3 jti a").unwrap();
        assert_eq!((change.lifted, foreign), (rules(&["jti a"]), false));
        let (change, _) = r.apply("revoke g1 4 jti c").unwrap();
        assert_eq!(change.added, rules(&["jti c"]));
        // A later read drops what is gone from Redis.
        let change = r.adopt("g1".into(), 5, strings(&["jti c"]));
        assert_eq!(change.lifted, rules(&["jti b"]));
        assert_eq!(r.list().len(), 1);
    }

    #[test]
    fn a_message_from_another_generation_applies_and_asks_for_a_read() {
        let r = SharedRevocations::new("p", DEFAULT_REVOCATION_RESYNC);
        r.adopt("g1".into(), 7, strings(&["jti a"]));
        let (change, foreign) = r.apply("revoke g2 1 jti b").unwrap();
        assert_eq!((change.added, foreign), (rules(&["jti b"]), true));
        // The version seen in g1 is kept, so the next read, of g2, puts back
        // what Redis lost rather than trusting it.
        assert_eq!(
            r.sync_args(),
            ("g1".into(), 7, strings(&["jti a", "jti b"]))
        );
    }

    #[test]
    fn garbage_from_redis_is_ignored() {
        let r = SharedRevocations::new("p", DEFAULT_REVOCATION_RESYNC);
        assert_eq!(r.apply("revoke g1 x jti a"), None);
        assert_eq!(r.apply("revoke g1 1 nonsense"), None);
        assert_eq!(r.apply("jti a"), None);
        assert_eq!(r.apply("unrevoke g1 1 jti a"), None);
        let change = r.adopt("g1".into(), 1, strings(&["jti a", "bogus rule"]));
        assert_eq!(change.added, rules(&["jti a"]));
    }
}
