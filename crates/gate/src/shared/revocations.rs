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
//! Each replica subscribes, and reads the whole set (in pages) when it
//! starts and after every reconnect. Every second, and every
//! [`DEFAULT_REVOCATION_RESYNC`], it looks at the generation alone and reads
//! the set again only when that does not match what it holds. The
//! generation decides what a read means:
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
use futures_util::{FutureExt as _, StreamExt};
use parking_lot::Mutex;

use super::{RedisConfig, Shared, SharedError, redacted};
use crate::revocation::{RevocationList, Rule};

/// How often a replica compares Redis's generation with what it holds by
/// default (reading the set on a mismatch), besides its look every second,
/// in case its subscription died without notice.
pub const DEFAULT_REVOCATION_RESYNC: Duration = Duration::from_secs(30);

/// Most rules one change script stores: a batch is several scripts in one
/// pipeline, each short enough that Redis answers others in between.
const CHANGE_CHUNK: usize = 200;

/// Most messages applied with one copy of the list.
const MAX_BATCH: usize = 10_000;

/// Records changes and announces each, atomically, in one round trip.
/// `KEYS`: rules, lifted, generation; `ARGV`: `revoke` or `lift`, then for
/// each rule two values: the rule, and the rule as releases before the typed
/// `Rule` spelled it (times as typed), which a lift removes too. Each rule
/// gets its own version and its own message, so a receiver applies every one.
/// Returns `{rules changed, replicas listening}`.
const LUA_CHANGE: &str = r"
local t = redis.call('TIME')
redis.call('HSETNX', KEYS[3], 'id', t[1] .. '.' .. t[2])
local id = redis.call('HGET', KEYS[3], 'id')
local changed, listening = 0, 0
for i = 2, #ARGV - 1, 2 do
  local rule, legacy = ARGV[i], ARGV[i + 1]
  local version = redis.call('HINCRBY', KEYS[3], 'version', 1)
  if ARGV[1] == 'revoke' then
    changed = changed + redis.call('SADD', KEYS[1], rule)
    redis.call('SREM', KEYS[2], rule)
  else
    local gone = redis.call('SREM', KEYS[1], rule)
    if legacy ~= rule then
      gone = math.min(1, gone + redis.call('SREM', KEYS[1], legacy))
    end
    changed = changed + gone
    redis.call('SADD', KEYS[2], rule)
  end
  listening = redis.call('PUBLISH', KEYS[1], ARGV[1] .. ' ' .. id .. ' ' .. version .. ' ' .. rule)
end
redis.call('HSET', KEYS[3], 'rules', redis.call('SCARD', KEYS[1]))
return {changed, listening}
";

/// Puts back rules Redis lost (a chunk of what a replica holds).
/// `KEYS`: rules, lifted, generation; `ARGV`: the rules. A rule lifted since
/// Redis last lost its data stays lifted. Each rule put back gets its own
/// version and message, so every other replica applies each one at once.
/// Creates the generation's id if Redis has none.
/// Returns `{id, rules put back}`.
const LUA_RESTORE: &str = r"
local id = redis.call('HGET', KEYS[3], 'id')
if not id then
  local t = redis.call('TIME')
  id = t[1] .. '.' .. t[2]
  redis.call('HSET', KEYS[3], 'id', id)
end
local restored = 0
for i = 1, #ARGV do
  if redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 0 and redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    local version = redis.call('HINCRBY', KEYS[3], 'version', 1)
    redis.call('PUBLISH', KEYS[1], 'revoke ' .. id .. ' ' .. version .. ' ' .. ARGV[i])
    restored = restored + 1
  end
end
redis.call('HSET', KEYS[3], 'rules', redis.call('SCARD', KEYS[1]))
return {id, restored}
";

/// Rules per SSCAN page and per restore script: each command stays well
/// under the command timeout at any size of the set.
const PAGE: usize = 1000;

#[derive(Debug, Clone)]
struct Keys {
    rules: String,
    lifted: String,
    generation: String,
}

impl Keys {
    /// The key names under `prefix`. In a cluster the three share the hash
    /// tag `{prefix}`, since one script touches all three (one slot, one
    /// node); elsewhere they keep the names earlier releases wrote.
    fn new(prefix: &str, cluster: bool) -> Self {
        let rules = if cluster {
            format!("{{{prefix}}}:revocations")
        } else {
            format!("{prefix}:revocations")
        };
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
    /// How many members Redis's set had at the last read, as the messages
    /// since moved it (unparseable ones included, which `rules` leaves out):
    /// a set of another size, whatever the generation says, was changed
    /// behind this replica's back (by hand, or repaired by another replica).
    size: u64,
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
    pub(crate) fn new(prefix: &str, cluster: bool, resync: Duration) -> Self {
        Self {
            keys: Keys::new(prefix, cluster),
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
        known.size = rules.len() as u64;
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
        known.size = read.rules.len() as u64;
        Change {
            added,
            lifted: Vec::new(),
        }
    }

    /// Applies one message; `None` when it needs no action, and
    /// `Some(true)` beside the change when it came from a generation this
    /// replica has not read (Redis lost its data): read the set now.
    #[cfg(test)]
    fn apply(&self, message: &str) -> Option<(Change, bool)> {
        let (change, foreign, acted) = self.apply_batch([message]);
        acted.then_some((change, foreign))
    }

    /// Applies messages in order, publishing the list in force once for all
    /// of them: a burst of thousands of changes costs one copy of the list,
    /// not one per change. Says what changed, whether any came from a
    /// generation this replica has not read (read the set now), and whether
    /// any needed action.
    fn apply_batch<'a>(&self, messages: impl IntoIterator<Item = &'a str>) -> (Change, bool, bool) {
        let mut known = self.known.lock();
        let mut list: Option<RevocationList> = None;
        let mut change = Change::default();
        let (mut foreign_any, mut acted) = (false, false);
        for message in messages {
            let Some((revoke, id, version, rule)) = parse_message(message) else {
                continue;
            };
            let followed = !known.followed.is_empty() && id == known.followed;
            let foreign = id != known.id && !followed;
            if followed {
                // The generation of a read-only Redis this replica follows:
                // already part of the last read, or newer; no read is needed.
                if version <= known.followed_version {
                    continue;
                }
                known.followed_version = version;
            } else if !foreign {
                if version <= known.version {
                    // Already part of the last read.
                    continue;
                }
                known.version = version;
            }
            acted = true;
            foreign_any |= foreign;
            // One rule changes one entry of the list: no rule is parsed again.
            if revoke {
                if known.rules.insert(rule.clone()) {
                    known.size += 1;
                    list.get_or_insert_with(|| RevocationList::clone(&self.list.load()))
                        .insert(rule.clone());
                    change.added.push(rule);
                }
            } else if known.rules.remove(&rule) {
                known.size = known.size.saturating_sub(1);
                list.get_or_insert_with(|| RevocationList::clone(&self.list.load()))
                    .remove(&rule);
                change.lifted.push(rule);
            }
        }
        if let Some(list) = list {
            self.list.store(Arc::new(list));
        }
        (change, foreign_any, acted)
    }

    /// Whether a cheap look at the generation (id, version, the count the
    /// last change left, and the set's size) shows this replica in step.
    /// `behind_at` is the version Redis showed at the last look if this
    /// replica was behind it then: still behind the same version a second
    /// later means a message was lost, not that it is on its way.
    fn in_step(&self, look: &Look, behind_at: &mut Option<u64>) -> bool {
        let known = self.known.lock();
        let (id, version) =
            if !known.followed.is_empty() && look.id.as_deref() == Some(&known.followed) {
                (known.followed.as_str(), known.followed_version)
            } else {
                (known.id.as_str(), known.version)
            };
        if look.id.as_deref() != Some(id)
            || look.count != look.size
            || look.version < version
            || (look.version == version && look.size != known.size)
        {
            *behind_at = None;
            return false;
        }
        if look.version == version {
            *behind_at = None;
            return true;
        }
        let lost = *behind_at == Some(look.version);
        *behind_at = Some(look.version);
        !lost
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

/// A message's parts: revoke (or lift), generation id, version, rule.
fn parse_message(message: &str) -> Option<(bool, &str, u64, Rule)> {
    let mut parts = message.splitn(4, ' ');
    let (verb, id, version, rule) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let version: u64 = version.parse().ok()?;
    let revoke = match verb {
        "revoke" => true,
        "lift" => false,
        _ => return None,
    };
    Some((revoke, id, version, usable(rule)?))
}

/// The generation at a glance, without the rules.
#[derive(Debug)]
struct Look {
    id: Option<String>,
    version: u64,
    count: u64,
    size: u64,
}

/// How often a follower looks at the generation (four fields, no rules):
/// what notices within a second a Redis flushed, restarted empty, edited by
/// hand or a message lost, where the whole set is read only every resync.
const GENERATION_LOOK: Duration = Duration::from_secs(1);

async fn look(conn: &mut super::endpoint::Conn, keys: &Keys) -> redis::RedisResult<Look> {
    let (id, version, count, size): (Option<String>, Option<u64>, Option<u64>, u64) = redis::pipe()
        .atomic()
        .hget(&keys.generation, "id")
        .hget(&keys.generation, "version")
        .hget(&keys.generation, "rules")
        .scard(&keys.rules)
        .query_async(conn)
        .await?;
    Ok(Look {
        id,
        version: version.unwrap_or(0),
        count: count.unwrap_or(0),
        size,
    })
}

/// Why a read of the set is not to be used.
#[derive(Debug)]
enum ReadFailed {
    /// A command failed or took longer than the timeout: the link is gone.
    Link,
    /// The generation moved while the pages were read: read again soon.
    Moved,
}

/// Reads the generation and the set, with read commands only (a read-only
/// replica answers): the generation, then the set page by page (SSCAN, each
/// page under `timeout`), then the generation again. A set that changed
/// meanwhile is not used; the messages carry the change, and the set is
/// read again shortly.
async fn read_set(
    conn: &mut super::endpoint::Conn,
    keys: &Keys,
    timeout: Duration,
) -> Result<Read, ReadFailed> {
    let before = match tokio::time::timeout(timeout, look(conn, keys)).await {
        Ok(Ok(v)) => v,
        _ => return Err(ReadFailed::Link),
    };
    let mut rules: Vec<String> = Vec::with_capacity(before.size as usize);
    let mut cursor: u64 = 0;
    loop {
        let mut scan = redis::cmd("SSCAN");
        scan.arg(&keys.rules).arg(cursor).arg("COUNT").arg(PAGE);
        let page = scan.query_async::<(u64, Vec<String>)>(conn);
        let (next, page) = match tokio::time::timeout(timeout, page).await {
            Ok(Ok(v)) => v,
            _ => return Err(ReadFailed::Link),
        };
        rules.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let after = match tokio::time::timeout(timeout, look(conn, keys)).await {
        Ok(Ok(v)) => v,
        _ => return Err(ReadFailed::Link),
    };
    if after.id != before.id || after.version != before.version {
        return Err(ReadFailed::Moved);
    }
    // SSCAN may return a member twice.
    rules.sort_unstable();
    rules.dedup();
    Ok(Read {
        id: after.id,
        version: after.version,
        count: after.count,
        rules,
    })
}

/// Puts back `held` in pages; how many rules Redis lacked.
async fn restore(
    conn: &mut super::endpoint::Conn,
    keys: &Keys,
    script: &redis::Script,
    held: &[String],
    timeout: Duration,
) -> redis::RedisResult<u64> {
    let mut restored = 0;
    // At least one call, so a Redis without a generation gets its id.
    let pages: Vec<&[String]> = if held.is_empty() {
        vec![&[]]
    } else {
        held.chunks(PAGE).collect()
    };
    for page in pages {
        let mut call = keys.script(script);
        call.arg(page);
        let (_, n) =
            match tokio::time::timeout(timeout, call.invoke_async::<(String, u64)>(conn)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "no answer within the command timeout",
                    )));
                }
            };
        restored += n;
    }
    Ok(restored)
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
    let restore_script = redis::Script::new(LUA_RESTORE);
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
            let (mut pubsub, conn, addr) = endpoint.follower(timeout).await?;
            // Subscribed first, read second: a change made in between
            // arrives both ways rather than neither.
            pubsub.subscribe(&channel).await?;
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
        let mut glance = tokio::time::interval(GENERATION_LOOK);
        glance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut behind_at = None;
        // A read asked for (by a look, a foreign message or a moved set),
        // rather than the periodic one.
        let mut read_now = false;
        let mut first = true;
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else {
                        tracing::debug!("the subscription ended");
                        break;
                    };
                    // Everything already arrived is applied together.
                    let mut texts: Vec<String> = msg.get_payload().into_iter().collect();
                    let mut ended = false;
                    while texts.len() < MAX_BATCH {
                        match messages.next().now_or_never() {
                            Some(Some(more)) => texts.extend(more.get_payload::<String>().ok()),
                            Some(None) => {
                                ended = true;
                                break;
                            }
                            None => break,
                        }
                    }
                    let Some(this) = shared.upgrade() else { return };
                    if texts.len() == MAX_BATCH {
                        tracing::warn!(
                            messages = texts.len(),
                            "this replica is behind on Redis's revocation messages (a burst); applying them together"
                        );
                    }
                    let (change, foreign, _) = this.revocations.apply_batch(texts.iter().map(String::as_str));
                    this.report(&change, "received from Redis");
                    if foreign {
                        read_now = true;
                        resync.reset_immediately();
                    }
                    if ended {
                        break;
                    }
                }
                _ = glance.tick(), if !first => {
                    let Some(this) = shared.upgrade() else { return };
                    let keys = &this.revocations.keys;
                    // A look that fails is tried again a second later; only a
                    // read or a message stream that fails ends the link.
                    let look = match tokio::time::timeout(timeout, look(&mut conn, keys)).await {
                        Ok(Ok(look)) => look,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "a look at the generation failed");
                            continue;
                        }
                        Err(_) => {
                            tracing::debug!("a look at the generation took longer than the timeout");
                            continue;
                        }
                    };
                    if !this.revocations.in_step(&look, &mut behind_at) {
                        read_now = true;
                        resync.reset_immediately();
                    }
                }
                _ = resync.tick() => {
                    // With Sentinel: still the primary? A demoted one stays
                    // readable, but write-backs belong on the new one.
                    if endpoint.moves() && !first {
                        let now = tokio::time::timeout(timeout * 4, endpoint.primary()).await;
                        if let Ok(Ok(now)) = now
                            && now != addr
                        {
                            tracing::info!(was = %addr, "the revocation follower moves to the new Redis primary");
                            break;
                        }
                    }
                    let Some(this) = shared.upgrade() else { return };
                    let keys = &this.revocations.keys;
                    // The periodic resync compares the generation first, and
                    // moves rules only when it does not match.
                    if !first && !std::mem::take(&mut read_now) {
                        let Ok(Ok(look)) = tokio::time::timeout(timeout, look(&mut conn, keys)).await else { break };
                        if this.revocations.in_step(&look, &mut None) {
                            this.metrics.shared_revocations_read(std::time::SystemTime::now());
                            continue;
                        }
                    }
                    let read = match read_set(&mut conn, keys, timeout).await {
                        Ok(read) => read,
                        Err(ReadFailed::Link) => break,
                        Err(ReadFailed::Moved) => {
                            read_now = true;
                            resync.reset_after(Duration::from_millis(200));
                            continue;
                        }
                    };
                    let change = if this.revocations.trusts(&read) {
                        this.revocations.adopt(read.id.unwrap_or_default(), read.version, read.rules)
                    } else {
                        // Put back what this replica holds, where Redis takes
                        // writes, then read what Redis holds now.
                        let (_, _, held) = this.revocations.sync_args();
                        match restore(&mut conn, keys, &restore_script, &held, timeout).await {
                            Ok(restored) => {
                                if restored > 0 {
                                    tracing::warn!(
                                        rules = restored,
                                        "Redis had lost revocations this replica holds (restarted empty, flushed, restored from an older snapshot, replaced, a key evicted, or a rule removed by hand); put them back"
                                    );
                                }
                                refused_writes = None;
                                match read_set(&mut conn, keys, timeout).await {
                                    Ok(now) => this.revocations.adopt(now.id.unwrap_or_default(), now.version, now.rules),
                                    Err(ReadFailed::Link) => break,
                                    Err(ReadFailed::Moved) => {
                                        read_now = true;
                                        resync.reset_after(Duration::from_millis(200));
                                        continue;
                                    }
                                }
                            }
                            Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => break,
                            Err(e) => {
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
    /// Logs a change of the rules from Redis, in one line for the rules
    /// added and one for those lifted (naming at most a few), and updates
    /// the gauge: a burst of thousands is two lines, not thousands.
    fn report(&self, change: &Change, how: &str) {
        const NAMED: usize = 5;
        let named = |rules: &[Rule]| {
            let mut s: Vec<String> = rules.iter().take(NAMED).map(Rule::to_string).collect();
            if rules.len() > NAMED {
                s.push(format!("and {} more", rules.len() - NAMED));
            }
            s.join(", ")
        };
        match change.added.len() {
            0 => {}
            1 => tracing::info!(rule = %change.added[0], "revocation {how}"),
            n => tracing::info!(count = n, rules = %named(&change.added), "revocations {how}"),
        }
        match change.lifted.len() {
            0 => {}
            1 => tracing::warn!(rule = %change.lifted[0], "revocation lifted: {how}"),
            n => {
                tracing::warn!(count = n, rules = %named(&change.lifted), "revocations lifted: {how}")
            }
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
    change_one(config, "revoke", rule)
}

/// Lifts `rule` from Redis's revocations and notifies every replica. A rule
/// a replica also has in its revocation file stays in force there.
pub fn lift_revocation(config: &RedisConfig, rule: &str) -> Result<Stored, SharedError> {
    change_one(config, "lift", rule)
}

/// What storing or lifting many rules at once did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMany {
    /// Rules sent.
    pub rules: usize,
    /// Rules Redis did not already hold (revoke) or held (lift).
    pub changed: usize,
    /// How many replicas were listening when the last change was announced;
    /// the others converge when they next read the set.
    pub listening: usize,
}

/// Stores every rule of `lines` (the revocation file's format: one rule a
/// line, `#` comments and blank lines skipped) in one round trip, or lifts
/// them with `lift`. Every line is checked first: one that does not parse
/// stores nothing, and the error names its line.
pub fn change_many(
    config: &RedisConfig,
    lines: &str,
    lift: bool,
) -> Result<StoredMany, SharedError> {
    let mut rules = Vec::new();
    for (n, line) in lines.lines().enumerate() {
        let text = line.split('#').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        let (rule, legacy) =
            spellings(line).map_err(|e| SharedError::BadLine(format!("line {}: {e}", n + 1)))?;
        rules.push((rule, legacy));
    }
    let (changed, listening) = change(config, if lift { "lift" } else { "revoke" }, &rules)?;
    Ok(StoredMany {
        rules: rules.len(),
        changed,
        listening,
    })
}

/// A rule's one spelling, and its words as typed (how releases before the
/// typed rule stored it).
fn spellings(rule: &str) -> Result<(String, String), String> {
    let typed: Rule = rule.parse()?;
    let legacy = rule
        .split('#')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Ok((typed.to_string(), legacy))
}

fn change_one(config: &RedisConfig, verb: &str, rule: &str) -> Result<Stored, SharedError> {
    let (rule, legacy) = spellings(rule).map_err(SharedError::BadLine)?;
    let (changed, listening) = change(config, verb, &[(rule.clone(), legacy)])?;
    Ok(Stored {
        rule,
        changed: changed == 1,
        listening,
    })
}

fn change(
    config: &RedisConfig,
    verb: &str,
    rules: &[(String, String)],
) -> Result<(usize, usize), SharedError> {
    if rules.is_empty() {
        return Ok((0, 0));
    }
    let failed = |source| SharedError::Command {
        url: redacted(&config.url),
        source,
    };
    // One pipeline of scripts of at most CHANGE_CHUNK rules each: one round
    // trip, and Redis serves other clients (the replicas' rate limits)
    // between two scripts instead of stalling for the whole batch. EVAL,
    // with the script's text: no node, in a cluster or after a restart, can
    // answer NOSCRIPT.
    blocking(async {
        let (mut conn, keys) = cli_connection(config).await?;
        let mut pipe = redis::pipe();
        for chunk in rules.chunks(CHANGE_CHUNK) {
            let call = pipe
                .cmd("EVAL")
                .arg(LUA_CHANGE)
                .arg(3)
                .arg(&keys.rules)
                .arg(&keys.lifted)
                .arg(&keys.generation)
                .arg(verb);
            for (rule, legacy) in chunk {
                call.arg(rule).arg(legacy);
            }
        }
        let replies: Vec<(usize, usize)> = pipe.query_async(&mut conn).await.map_err(failed)?;
        let changed = replies.iter().map(|(c, _)| c).sum();
        let listening = replies.last().map_or(0, |(_, l)| *l);
        Ok((changed, listening))
    })
}

/// The revocation rules stored in Redis, sorted.
pub fn list_revocations(config: &RedisConfig) -> Result<Vec<String>, SharedError> {
    blocking(async {
        let (mut conn, keys) = cli_connection(config).await?;
        let mut lines: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&keys.rules)
            .query_async(&mut conn)
            .await
            .map_err(|source| SharedError::Command {
                url: redacted(&config.url),
                source,
            })?;
        lines.sort();
        Ok(lines)
    })
}

/// Runs `work` to completion on a runtime of its own, on a thread of its
/// own: the blocking API works from plain code and from inside another
/// runtime alike.
fn blocking<T: Send>(
    work: impl std::future::Future<Output = Result<T, SharedError>> + Send,
) -> Result<T, SharedError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(SharedError::Thread)?
                    .block_on(work)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A connection for the `revoke` command line, and the key names of this
/// kind of Redis.
async fn cli_connection(
    config: &RedisConfig,
) -> Result<(super::endpoint::Conn, Keys), SharedError> {
    let endpoint = config.endpoint()?;
    let keys = Keys::new(&config.prefix, endpoint.is_cluster());
    // Through Sentinel, a command run during a failover may ask while the
    // sentinels still agree on the new primary: asked again for a few
    // seconds, so an operator's revoke in an incident goes through.
    let mut tries = if endpoint.moves() { 10 } else { 1 };
    loop {
        tries -= 1;
        // 5 s to connect; a minute for the answer to a batch.
        let attempt = match tokio::time::timeout(
            Duration::from_secs(5),
            endpoint.commands(Duration::from_secs(60)),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no connection within 5 s",
            ))),
        };
        match attempt {
            Ok(conn) => return Ok((conn, keys)),
            Err(source) if tries == 0 => {
                return Err(SharedError::Command {
                    url: redacted(&config.url),
                    source,
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
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
        let r = SharedRevocations::new("p", false, DEFAULT_REVOCATION_RESYNC);
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
        let r = SharedRevocations::new("p", false, DEFAULT_REVOCATION_RESYNC);
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
        let r = SharedRevocations::new("p", false, DEFAULT_REVOCATION_RESYNC);
        assert_eq!(r.apply("revoke g1 x jti a"), None);
        assert_eq!(r.apply("revoke g1 1 nonsense"), None);
        assert_eq!(r.apply("jti a"), None);
        assert_eq!(r.apply("unrevoke g1 1 jti a"), None);
        let change = r.adopt("g1".into(), 1, strings(&["jti a", "bogus rule"]));
        assert_eq!(change.added, rules(&["jti a"]));
    }
}
