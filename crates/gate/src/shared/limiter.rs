//! One rate limit per app across replicas, with no Redis round trip on the
//! request path.
//!
//! Redis holds each app's GCRA state (its theoretical arrival time) and
//! hands out budget in shares: [`LUA_TAKE`] takes up to `n` requests' worth
//! at once, atomically, by Redis's own clock (so replica clocks may drift).
//! A replica spends its share locally and asks for the next one in the
//! background when half is gone. Every request a replica admits was granted
//! by Redis, with one bounded exception: while an app is under its limit, a
//! replica whose share ran out before the refill came back admits up to one
//! share on credit, which the refill pays back.
//!
//! The accuracy this gives, for an app with rate `r` and burst `b` on `R`
//! replicas, share `s` = max(1, ⌈r × 50 ms⌉) (docs/spec.md §11):
//! - over any interval, accepted ≤ what one GCRA limiter allows + `R × s`
//!   (credit spent when the limit is first reached; shares are used within
//!   [`LEASE`] of being granted, so a share moves requests by at most that);
//! - accepted ≥ what one limiter allows − `R × s` per [`LEASE`] in which a
//!   replica's share lapses unused (budget granted, then not needed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appauth_core::AppId;
use parking_lot::{Mutex, RwLock};

use super::Shared;
use crate::policy::Rate;

/// Takes up to `ARGV[1]` requests from the GCRA bucket at `KEYS[1]`, whose
/// emission interval is `ARGV[2]` µs and burst `ARGV[3]`; returns
/// `{granted, wait_us}`, where `wait_us` is how long until one more request
/// would be granted when fewer than asked were. Times are Redis's `TIME`.
pub const LUA_TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local want = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local free = math.floor((now + burst * interval - tat) / interval)
if free < 0 then free = 0 end
local granted = math.min(want, free)
tat = tat + granted * interval
if granted > 0 then
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
local wait = 0
if granted < want then wait = tat + interval - burst * interval - now end
if wait < 0 then wait = 0 end
return {granted, wait}
";

/// How long a granted share may be spent before it lapses. Budget held
/// longer than this would let a replica spend an old burst late.
pub const LEASE: Duration = Duration::from_secs(1);

/// A refill that has not come back after this long counts as a slow Redis:
/// requests that would wait for it are decided by the fallback instead of
/// being refused until the command times out. Loopback answers in well under
/// a millisecond, a network in a few.
pub const STALL: Duration = Duration::from_millis(50);

/// What the global limit says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the global limit.
    Allow,
    /// Over it: retry after this long.
    Deny(Duration),
    /// Redis is unreachable: the fallback decides.
    Fallback,
}

#[derive(Debug)]
struct Lease {
    rate: Rate,
    /// Requests left of the share; below zero, admitted on credit.
    tokens: i64,
    /// The share lapses then.
    expires: Instant,
    /// Redis said no more until then.
    blocked_until: Option<Instant>,
    /// The last refill got less than it asked: no credit until one gets all.
    saturated: bool,
    refilling: bool,
    refill_started: Instant,
}

/// The per-app shares of one replica.
#[derive(Debug)]
pub(crate) struct GlobalLimiter {
    prefix: String,
    leases: RwLock<HashMap<AppId, Arc<Mutex<Lease>>>>,
    script: redis::Script,
}

/// Budget asked of Redis at once: 50 ms of the app's rate, at least one
/// request, at most the burst.
pub(crate) fn share_of(rate: Rate) -> i64 {
    let s = (rate.per_second() * 0.05).ceil() as i64;
    s.clamp(1, i64::from(rate.burst()))
}

impl GlobalLimiter {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            leases: RwLock::new(HashMap::new()),
            script: redis::Script::new(LUA_TAKE),
        }
    }

    /// Takes one request from a probe bucket with room to spare: what a
    /// refill does (a script that reads Redis's clock and writes a key), so
    /// a Redis that answers PING but refuses the limiter's work (read-only
    /// after a failover, out of memory, an ACL short of a command) counts as
    /// down rather than flapping between modes.
    pub(crate) async fn probe(&self, conn: &mut super::endpoint::Conn) -> redis::RedisResult<()> {
        let mut call = self.script.key(format!("{}:probe", self.prefix));
        call.arg(1).arg(1).arg(1_000_000);
        call.invoke_async::<(i64, i64)>(conn).await.map(drop)
    }

    /// Forgets every share (after an outage: what was held is stale).
    pub(crate) fn reset(&self) {
        self.leases.write().clear();
    }

    fn lease(&self, app: &AppId, rate: Rate) -> Arc<Mutex<Lease>> {
        if let Some(l) = self.leases.read().get(app) {
            return l.clone();
        }
        self.leases
            .write()
            .entry(app.clone())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Lease {
                    rate,
                    tokens: 0,
                    expires: Instant::now(),
                    blocked_until: None,
                    saturated: false,
                    refilling: false,
                    refill_started: Instant::now(),
                }))
            })
            .clone()
    }
}

impl Shared {
    /// Spends one request of `app`'s global budget at `rate`.
    pub fn check_rate(self: &Arc<Self>, app: &AppId, rate: Rate) -> Verdict {
        if !self.is_global() {
            return Verdict::Fallback;
        }
        let lease = self.limiter.lease(app, rate);
        let mut l = lease.lock();
        let now = Instant::now();
        if l.rate != rate {
            // The policy changed the rate: start over with the new one.
            l.rate = rate;
            l.tokens = l.tokens.min(0);
            l.saturated = false;
        }
        let share = share_of(rate);
        if let Some(until) = l.blocked_until {
            if now < until {
                return Verdict::Deny(until - now);
            }
            l.blocked_until = None;
        }
        if now >= l.expires {
            // Unused budget lapses; a long-idle app may use credit again.
            l.tokens = l.tokens.min(0);
            l.saturated = false;
        }
        // A token of the share, or (under the limit) one on credit.
        let verdict = if l.tokens > 0 || (!l.saturated && -l.tokens < share) {
            l.tokens -= 1;
            Verdict::Allow
        } else if l.refilling && now.duration_since(l.refill_started) > STALL {
            // Redis is slow to answer: not a reason to refuse the app.
            Verdict::Fallback
        } else {
            Verdict::Deny(rate.emission_interval())
        };
        if l.tokens <= share / 2 && !l.refilling {
            l.refilling = true;
            l.refill_started = now;
            let want = share + (-l.tokens).max(0);
            drop(l);
            self.refill(app.clone(), lease, rate, want);
        }
        verdict
    }

    fn refill(self: &Arc<Self>, app: AppId, lease: Arc<Mutex<Lease>>, rate: Rate, want: i64) {
        let this = self.clone();
        self.metrics.shared_rate_refills.inc();
        self.runtime.spawn(async move {
            let key = format!("{}:rate:{app}", this.limiter.prefix);
            let interval = rate.emission_interval().as_micros().max(1) as i64;
            let result = match this.connection() {
                None => Err("not connected".to_owned()),
                Some(mut conn) => {
                    let mut call = this.limiter.script.key(&key);
                    call.arg(want).arg(interval).arg(i64::from(rate.burst()));
                    match tokio::time::timeout(
                        this.timeout(),
                        call.invoke_async::<(i64, i64)>(&mut conn),
                    )
                    .await
                    {
                        Ok(Ok(answer)) => Ok(answer),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!("no answer within {:?}", this.timeout())),
                    }
                }
            };
            let mut l = lease.lock();
            l.refilling = false;
            match result {
                Ok((granted, wait_us)) => {
                    let now = Instant::now();
                    l.tokens += granted;
                    l.expires = now + LEASE;
                    l.saturated = granted < want;
                    if l.saturated && l.tokens <= 0 {
                        let wait = Duration::from_micros(u64::try_from(wait_us).unwrap_or(0));
                        l.blocked_until = Some(now + wait.max(Duration::from_millis(1)));
                    }
                }
                Err(e) => {
                    drop(l);
                    this.enter_fallback(&e);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_fifty_milliseconds_of_the_rate_within_the_burst() {
        assert_eq!(share_of(Rate::parse("100/s").unwrap()), 5);
        assert_eq!(share_of(Rate::parse("1/s").unwrap()), 1);
        assert_eq!(share_of(Rate::parse("60/m").unwrap()), 1);
        assert_eq!(share_of(Rate::parse("100000/s").unwrap()), 5000);
    }
}
