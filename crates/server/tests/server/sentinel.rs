//! Redis behind Sentinel, failing over while replicas serve (issue: "Redis
//! as production runs it"). A primary, its replica and sentinels, all real
//! processes on loopback; the primary is killed with SIGKILL, the sentinels
//! promote the replica, and the old primary comes back empty.

use std::time::{Duration, Instant};

use serde_json::json;

use super::util::{
    Redis, Sentinel, Server, a_replica_revokes_over_tls, add_app, all_global_by, all_refuse_by,
    revoke_ok, status_with, tls_files, until_global, until_status, wait_until,
};
use super::{forge, now};

fn revoke(url: &str, rule: &str) {
    revoke_ok(&["--redis-url", url], &[rule]);
}

/// Our connections on `redis`: those without a name that are neither its
/// replication links nor the query itself (sentinels name theirs).
fn appauth_clients(redis: &Redis) -> Vec<String> {
    redis
        .command(&["CLIENT", "LIST"])
        .unwrap_or_default()
        .lines()
        // A link that has sent nothing yet (`cmd=NULL`) is not judged: the
        // sentinels' own links show so for a moment after they connect,
        // before they name themselves, and an appauth connection would be
        // seen on the next look, once it has authenticated.
        .filter(|l| l.contains(" name= ") && !l.contains("cmd=client|list"))
        .filter(|l| !l.contains("cmd=NULL"))
        .filter(|l| !l.contains("flags=M") && !l.contains("flags=S"))
        .map(str::to_owned)
        .collect()
}

/// One primary, one replica, three sentinels (down-after 1 s) and two
/// appauth replicas on `redis+sentinel://`, with an app driven at its limit
/// through both. The primary is killed (SIGKILL), the sentinels promote the
/// replica, and the old primary is restarted empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_a_sentinel_failover_with_no_restart() {
    // appauth connects to the Redis nodes as the documented ACL user
    // (docs/spec.md §11); replication and the sentinels use the default one.
    let acl = appauth_testkit::documented_acl_user("acl-pw");
    let acl: Vec<&str> = acl.iter().map(String::as_str).collect();
    let mut primary = Redis::start_with(&acl);
    let primary_port = primary.port.to_string();
    let mut replica_args = acl.clone();
    replica_args.extend(["--replicaof", "127.0.0.1", &primary_port]);
    let replica = Redis::start_with(&replica_args);
    let linked = wait_until(Duration::from_secs(10), || {
        replica
            .command(&["INFO", "replication"])
            .is_some_and(|r| r.contains("master_link_status:up"))
    });
    assert!(linked.is_some(), "the replica never synced");
    let sentinels = Sentinel::start_group(primary.port, 3);
    let ready = wait_until(Duration::from_secs(20), || {
        sentinels.iter().all(|s| {
            s.command(&["SENTINEL", "replicas", Sentinel::SERVICE])
                .is_some_and(|r| r.contains(&replica.port.to_string()))
                && s.command(&["SENTINEL", "sentinels", Sentinel::SERVICE])
                    .is_some_and(|r| r.matches("127.0.0.1").count() >= 2)
        })
    });
    assert!(
        ready.is_some(),
        "the sentinels never saw the replica and each other"
    );

    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "svc");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[default]\nallow = [\"GET /users\"]\nrate = \"100/s\"\n",
    )
    .unwrap();
    let url = Sentinel::group_url(&sentinels)
        .replace("redis+sentinel://", "redis+sentinel://appauth:acl-pw@");
    let args = [
        "--redis-url",
        &url,
        "--policy",
        policy.to_str().unwrap(),
        "--redis-resync-ms",
        "60000",
    ];
    let servers = [
        Server::start(dir.path(), &args),
        Server::start(dir.path(), &args),
    ];
    for s in &servers {
        assert!(
            until_global(&s.url, Duration::from_secs(10))
                .await
                .is_some(),
            "{}",
            s.logs()
        );
    }
    let token = |jti: &str| {
        forge(
            &key,
            &json!({"appId": "svc", "iat": now(), "exp": now() + 300, "jti": jti}),
        )
    };
    let (before, after, valid) = (token("before"), token("after"), token("valid"));

    revoke(&url, "jti before");
    for s in &servers {
        let took = until_status(&s.url, &before, 401, Duration::from_secs(2)).await;
        assert!(took.is_some(), "a revoke through Sentinel did not arrive");
    }

    // The app is driven through both replicas the whole time: 200s and
    // 429s, never a 5xx.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let admitted_so_far = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let driver = {
        let (urls, valid, stop, admitted_so_far) = (
            servers.iter().map(|s| s.url.clone()).collect::<Vec<_>>(),
            valid.clone(),
            stop.clone(),
            admitted_so_far.clone(),
        );
        tokio::spawn(async move {
            let started = Instant::now();
            let client = reqwest::Client::new();
            // Four callers at once: faster than the limit allows.
            let callers: Vec<_> = (0..4)
                .map(|i| {
                    let (client, urls, valid, stop, admitted_so_far) = (
                        client.clone(),
                        urls.clone(),
                        valid.clone(),
                        stop.clone(),
                        admitted_so_far.clone(),
                    );
                    tokio::spawn(async move {
                        let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
                        let mut n = i;
                        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                            let url = format!("{}/users", urls[n % urls.len()]);
                            n += 1;
                            let status =
                                match client.get(url).header("x-token", &valid).send().await {
                                    Ok(r) => r.status().as_u16(),
                                    Err(_) => 0,
                                };
                            if status == 200 {
                                admitted_so_far.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            *statuses.entry(status).or_default() += 1;
                        }
                        statuses
                    })
                })
                .collect();
            let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
            for c in callers {
                for (status, n) in c.await.unwrap() {
                    *statuses.entry(status).or_default() += n;
                }
            }
            (statuses, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    let killed = Instant::now();
    let admitted_at_kill = admitted_so_far.load(std::sync::atomic::Ordering::SeqCst);
    primary.kill();
    // The timeline: the one log line that says Redis is gone, the promotion,
    // the return to global limits, and what was admitted in between.
    let noticed = wait_until(Duration::from_secs(10), || {
        servers
            .iter()
            .all(|s| s.logs().contains("Redis unreachable"))
    });
    assert!(noticed.is_some(), "no replica said Redis was gone");
    let promoted = wait_until(Duration::from_secs(30), || {
        sentinels
            .iter()
            .all(|s| s.primary_port() == Some(replica.port))
    });
    assert!(
        promoted.is_some(),
        "the sentinels never promoted the replica"
    );
    eprintln!("sentinels promoted the replica {promoted:?} after the kill");

    // A revoke made after the failover (through Sentinel: on the new
    // primary) reaches both replicas within 1 s, and both are global again
    // within 10 s of the kill, their limits held on the new primary.
    revoke(&url, "jti after");
    let revoked_at = Instant::now();
    let took = all_refuse_by(&servers, &after, revoked_at, Duration::from_secs(1)).await;
    eprintln!("a revoke after the failover refused by both within {took:?}");
    let fallback = all_global_by(&servers, killed, Duration::from_secs(10)).await;
    let admitted_meanwhile =
        admitted_so_far.load(std::sync::atomic::Ordering::SeqCst) - admitted_at_kill;
    eprintln!(
        "Sentinel failover timeline: the kill logged by both replicas after {noticed:?}, \
         promoted after {promoted:?}, both global after {fallback:?}; {admitted_meanwhile} \
         admitted meanwhile"
    );
    // Each replica on its own (a burst and the rate) for that time, plus
    // what it held of Redis's budget and its credit (two shares of 5), plus
    // one more burst from Redis for the replica back in global mode first.
    let window = 2.0 * (100.0 + 100.0 * fallback.as_secs_f64()) + 2.0 * 2.0 * 5.0 + 100.0;
    assert!(
        f64::from(admitted_meanwhile) <= window,
        "{admitted_meanwhile} > {window:.0}"
    );
    eprintln!("both replicas global again {fallback:?} after the kill");
    let keys_on_new_primary = wait_until(Duration::from_secs(5), || {
        replica
            .command(&["KEYS", "appauth:rate:*"])
            .is_some_and(|r| r.contains("svc"))
    });
    assert!(
        keys_on_new_primary.is_some(),
        "the limiter does not write to the new primary"
    );

    // The old primary comes back empty, briefly a master on its own, until
    // the sentinels make it a replica: no appauth replica connects to it,
    // and nothing changes for callers.
    primary.restart();
    let rejoined = Instant::now();
    while rejoined.elapsed() < Duration::from_secs(3) {
        let ours = appauth_clients(&primary);
        assert!(
            ours.is_empty(),
            "an appauth replica talks to the restarted old primary: {ours:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for s in &servers {
        for t in [&before, &after] {
            assert_eq!(status_with(&s.url, "/users", t).await, 401);
        }
    }

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (statuses, driven) = driver.await.unwrap();
    eprintln!("valid calls through the failover: {statuses:?} over {driven:?}");
    assert!(
        statuses.keys().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    // The documented bound (docs/spec.md §11): while global, one limiter
    // (a burst of 100, then 100/s) plus a share and its credit (5 each) per
    // replica; for the
    // failover's length F (kill to global again), each replica enforces the
    // rate on its own (`share`, the default), a burst and 100/s each; back
    // in global mode the bucket in Redis may be full again (one more burst).
    let (rate, burst, replicas, share) = (100.0, 100.0, 2.0, 5.0);
    let f = fallback.as_secs_f64();
    let global = (driven.as_secs_f64() - f).max(0.0);
    let bound =
        burst + rate * global + replicas * 2.0 * share + replicas * (burst + rate * f) + burst;
    let admitted = f64::from(statuses.get(&200).copied().unwrap_or(0));
    eprintln!("admitted {admitted} over the whole run; the documented bound is {bound:.0}");
    assert!(admitted <= bound, "{admitted} > {bound:.0}");
    assert!(
        statuses.contains_key(&429),
        "the limit was never reached: {statuses:?}"
    );
    for s in &servers {
        let logs = s.logs();
        assert!(logs.contains("Sentinel names the Redis primary"), "{logs}");
    }

    let denied = replica.command(&["ACL", "LOG"]).unwrap_or_default();
    assert!(
        !denied.contains("appauth"),
        "the ACL refused appauth something: {denied}"
    );

    // A replica started after the failover reads every rule from the new
    // primary before it serves.
    let late = Server::start(dir.path(), &args);
    for t in [&before, &after] {
        assert_eq!(status_with(&late.url, "/users", t).await, 401);
    }
}

/// `rediss+sentinel://`: the sentinels and the nodes speak TLS (the
/// sentinels to the nodes too), with a private CA given by `--redis-ca`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reach_the_primary_through_sentinels_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca_file) = tls_files(dir.path());
    let primary = Redis::start_tls_with(&cert, &key, &ca_file, false, &[]);
    let primary_tls = primary.tls_port.unwrap().to_string();
    let replica = Redis::start_tls_with(
        &cert,
        &key,
        &ca_file,
        false,
        &[
            "--replicaof",
            "127.0.0.1",
            &primary_tls,
            "--tls-replication",
            "yes",
        ],
    );
    let linked = wait_until(Duration::from_secs(10), || {
        replica
            .command(&["INFO", "replication"])
            .is_some_and(|r| r.contains("master_link_status:up"))
    });
    assert!(linked.is_some(), "the replica never synced over TLS");
    let sentinel = Sentinel::start_tls(primary.tls_port.unwrap(), &cert, &key, &ca_file);
    let url = Sentinel::group_url(std::slice::from_ref(&sentinel));
    assert!(url.starts_with("rediss+sentinel://"), "{url}");
    a_replica_revokes_over_tls(&url, &ca_file).await;
}
