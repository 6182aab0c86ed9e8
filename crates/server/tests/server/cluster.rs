//! Redis Cluster as managed offerings run it: six real nodes (three
//! primaries, a replica each) on loopback, two appauth replicas on
//! `redis+cluster://`, a primary killed and a slot moved under load.

use std::fs;
use std::time::{Duration, Instant};

use serde_json::json;

use super::util::{
    Cluster, Server, a_replica_revokes_over_tls, add_app, all_global_by, revoke_ok, status_with,
    tls_files, until_global, until_status,
};
use super::{forge, now};

fn revoke(url: &str, rule: &str) {
    revoke_ok(&["--redis-url", url], &[rule]);
}

/// Calls `GET /users` as each token, round-robin over `urls`, for `secs`;
/// the count of 200s per token and every other status seen.
async fn drive(urls: &[String], tokens: &[String], secs: f64) -> (Vec<u32>, Vec<u16>) {
    let client = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut ok = vec![0; tokens.len()];
    let mut other = Vec::new();
    let mut i = 0;
    while Instant::now() < until {
        for (t, token) in tokens.iter().enumerate() {
            let url = &urls[i % urls.len()];
            i += 1;
            match client
                .get(format!("{url}/users"))
                .header("x-token", token)
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => ok[t] += 1,
                Ok(r) if r.status() == 429 => {}
                Ok(r) => other.push(r.status().as_u16()),
                Err(_) => other.push(0),
            }
        }
    }
    (ok, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_limits_and_revocations_through_a_cluster_and_its_failover() {
    // appauth connects as the documented ACL user (docs/spec.md §11).
    let mut cluster = Cluster::start_with(3, &appauth_testkit::documented_acl_user("acl-pw"));
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    fs::create_dir(&keys).unwrap();
    // Two apps whose rate keys live on different primaries, the first's in
    // the first 300 slots of its primary (the slots a reshard moves below).
    let names: Vec<String> = (0..2000).map(|i| format!("app{i}")).collect();
    let owner = |app: &str| cluster.owner_of(&format!("appauth:rate:{app}")).unwrap();
    let first = names
        .iter()
        .find(|n| {
            let slot = cluster.slot_of(&format!("appauth:rate:{n}")).unwrap();
            cluster
                .first_slots(owner(n))
                .iter()
                .any(|&s| (s..s + 300).contains(&slot))
        })
        .expect("an app in the first slots of its primary");
    let second = names
        .iter()
        .find(|n| owner(n) != owner(first))
        .expect("two apps on different primaries")
        .clone();
    let first = first.clone();
    let first = first.as_str();
    let apps = [first.to_owned(), second.clone()];
    let app_keys: Vec<_> = apps.iter().map(|a| add_app(&keys, a)).collect();
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        "[default]\nallow = [\"GET /users\"]\nrate = \"20/s\"\n",
    )
    .unwrap();
    let url = cluster.url_as("appauth:acl-pw");
    let args = ["--redis-url", &url, "--policy", policy.to_str().unwrap()];
    let servers = [Server::start(&keys, &args), Server::start(&keys, &args)];
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    for s in &servers {
        assert!(
            until_global(&s.url, Duration::from_secs(10))
                .await
                .is_some(),
            "{}",
            s.logs()
        );
    }
    let token = |i: usize, jti: &str| {
        forge(
            &app_keys[i],
            &json!({"appId": apps[i], "iat": now(), "exp": now() + 300, "jti": jti}),
        )
    };
    let valid = [token(0, "v0"), token(1, "v1")];

    // One limit per app across both replicas, each app's state on its own
    // primary: one limiter admits 20 + 20/s.
    let started = Instant::now();
    let (ok, other) = drive(&urls, &valid, 2.0).await;
    let one_limiter = 20.0 + 20.0 * started.elapsed().as_secs_f64();
    eprintln!("cluster: {ok:?} accepted per app; one limiter admits {one_limiter:.0}");
    assert!(other.is_empty(), "{other:?}");
    for n in &ok {
        let n = f64::from(*n);
        assert!(
            n <= one_limiter + 2.0 + 2.0 && n >= one_limiter * 0.75,
            "{n} vs {one_limiter:.0}"
        );
    }

    // A revoke through the cluster reaches both replicas within 1 s.
    let revoked = token(0, "gone");
    revoke(&url, "jti gone");
    let at = Instant::now();
    for s in &servers {
        assert!(
            until_status(&s.url, &revoked, 401, Duration::from_secs(1))
                .await
                .is_some()
        );
    }
    eprintln!(
        "cluster: a revoke refused by both within {:?}",
        at.elapsed()
    );

    // The first app's slot moves to another primary under load: redis-rs
    // follows ASK and MOVED, nothing fails, the limit stays one.
    let (from, to) = (owner(first), owner(&second));
    let driving = {
        let (urls, valid) = (urls.clone(), valid.to_vec());
        tokio::spawn(async move {
            let started = Instant::now();
            let (ok, other) = drive(&urls, &valid, 4.0).await;
            (ok, other, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let moving = Instant::now();
    cluster.reshard(from, to, 300);
    eprintln!(
        "cluster: 300 slots moved under load in {:?}",
        moving.elapsed()
    );
    assert_eq!(owner(first), to, "the slot did not move");
    let (ok, other, took) = driving.await.unwrap();
    let one_limiter = 20.0 + 20.0 * took.as_secs_f64();
    eprintln!(
        "cluster: {ok:?} accepted per app across the reshard; one limiter admits {one_limiter:.0}"
    );
    assert!(other.is_empty(), "answers during the reshard: {other:?}");
    assert!(
        f64::from(ok[0]) <= one_limiter + 4.0,
        "{ok:?} vs {one_limiter:.0}"
    );

    // The primary holding the revocations is killed: the cluster promotes
    // its replica, and both appauth replicas are global again within 10 s,
    // with no 5xx, the revocation kept, and a new one arriving within 1 s.
    let holder = cluster.owner_of("{appauth}:revocations").unwrap();
    let killed = Instant::now();
    cluster.nodes[holder].kill();
    let driving = {
        let (urls, valid) = (urls.clone(), valid.to_vec());
        tokio::spawn(async move { drive(&urls, &valid, 6.0).await })
    };
    let promoted = {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            match cluster.owner_of("{appauth}:revocations") {
                Some(now) if now != holder => break now,
                _ => {
                    assert!(
                        Instant::now() < until,
                        "the cluster never promoted a replica: {:?}",
                        cluster
                            .nodes
                            .iter()
                            .find(|n| n.port != cluster.nodes[holder].port)
                            .and_then(|n| n.command(&["CLUSTER", "NODES"]))
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    let _ = promoted;
    assert!(
        cluster.wait_ok(Duration::from_secs(20)),
        "the cluster never failed over"
    );
    eprintln!("cluster: ok again {:?} after the kill", killed.elapsed());
    let global = all_global_by(&servers, killed, Duration::from_secs(12)).await;
    eprintln!("cluster: both replicas global {global:?} after the kill");
    let after = token(1, "after");
    revoke(&url, "jti after");
    let at = Instant::now();
    for s in &servers {
        let took = until_status(&s.url, &after, 401, Duration::from_secs(5)).await;
        assert!(
            took.is_some(),
            "a revoke after the failover never arrived: {}",
            s.logs()
        );
        assert_eq!(status_with(&s.url, "/users", &revoked).await, 401);
    }
    eprintln!(
        "cluster: a revoke after the failover refused by both within {:?}",
        at.elapsed()
    );
    assert!(at.elapsed() < Duration::from_secs(1), "{:?}", at.elapsed());
    let (_, other) = driving.await.unwrap();
    assert!(other.is_empty(), "answers during the failover: {other:?}");

    for s in &servers {
        let logs = s.logs();
        assert!(
            !logs.contains("CROSSSLOT") && !logs.contains("NOSCRIPT"),
            "{logs}"
        );
    }
}

/// `rediss+cluster://`: a cluster speaking only TLS to its clients (and on
/// its bus and replication), with a private CA given by `--redis-ca`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reach_a_cluster_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca_file) = tls_files(dir.path());
    let cluster = Cluster::start_tls(3, &cert, &key, &ca_file);
    let url = cluster.url();
    assert!(url.starts_with("rediss+cluster://"), "{url}");
    a_replica_revokes_over_tls(&url, &ca_file).await;
}
