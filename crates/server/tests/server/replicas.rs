//! Several replicas against one Redis, as a Kubernetes Deployment runs them:
//! one global rate limit, revocations everywhere within a second, and an
//! outage of Redis that costs no 5xx and lifts no revocation.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use super::util::{
    GLOBAL, Redis, Server, add_app, metric_line, revoke_with, status_with, wait_until,
};
use super::{forge, now};

const FALLBACK: &str = "appauth_shared_state_mode{mode=\"fallback\"}";

#[derive(Debug, Default)]
struct Counts {
    ok: u32,
    limited: u32,
    other: Vec<u16>,
}

/// Calls `GET /users` with `token` from 4 tasks for `secs`, round-robin
/// over the replicas.
async fn drive(urls: &[String], token: &str, secs: f64) -> Counts {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (client, urls, token) = (client.clone(), urls.to_vec(), token.to_owned());
            tokio::spawn(async move {
                let mut counts = Counts::default();
                let mut i = t;
                while Instant::now() < until {
                    let url = &urls[i % urls.len()];
                    i += 1;
                    match client
                        .get(format!("{url}/users"))
                        .header("x-token", &token)
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => counts.ok += 1,
                        Ok(r) if r.status() == 429 => counts.limited += 1,
                        Ok(r) => counts.other.push(r.status().as_u16()),
                        Err(_) => counts.other.push(0),
                    }
                }
                counts
            })
        })
        .collect();
    let mut all = Counts::default();
    for t in tasks {
        let c = t.await.unwrap();
        all.ok += c.ok;
        all.limited += c.limited;
        all.other.extend(c.other);
    }
    all
}

async fn all_in_mode(servers: &[Server], mode: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let mut all = true;
        for s in servers {
            all &= metric_line(&s.url, mode).await == Some(1.0);
        }
        if all {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn in_mode(server: &Server, mode: &str, within: Duration) -> bool {
    all_in_mode(std::slice::from_ref(server), mode, within).await
}

/// Waits until every replica answers `status` to `token` on `/users`, and
/// says how long that took; panics after `within`.
async fn all_answer(urls: &[String], token: &str, status: u16, within: Duration) -> Duration {
    let client = reqwest::Client::new();
    let since = Instant::now();
    for u in urls {
        loop {
            let got = client
                .get(format!("{u}/users"))
                .header("x-token", token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            if got == status {
                break;
            }
            assert!(
                since.elapsed() < within,
                "{u} still answers {got}, not {status}, after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    since.elapsed()
}

fn revoke(redis: &Redis, args: &[&str]) -> std::process::Output {
    revoke_with(&["--redis-url", &redis.url()], args)
}

/// A keys directory holding `app` and a policy file with `policy`, and one
/// replica on them with `args` added; the directory lives as long as the
/// returned guard.
fn replica_with_policy(
    app: &str,
    policy: &str,
    args: &[&str],
) -> (tempfile::TempDir, appauth_core::PrivateKey, Server) {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), app);
    let path = dir.path().join("policy.toml");
    fs::write(&path, policy).unwrap();
    let mut all = vec!["--policy", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let server = Server::start(dir.path(), &all);
    (dir, key, server)
}

/// Five calls a minute for `reports`, the app the limit tests drive.
const REPORTS_5_PER_MINUTE: &str =
    "[default]\nallow = [\"GET /users\"]\n\n[apps.reports]\nrate = \"5/m\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_limit_and_revocations_and_outlive_redis() {
    let mut redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    fs::create_dir(&keys).unwrap();
    let orders = add_app(&keys, "orders");
    let reports = add_app(&keys, "reports");
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        "[default]\nallow = [\"GET /users\", \"GET /users/*\"]\n\n[apps.orders]\nrate = \"20/s\"\n",
    )
    .unwrap();
    let url = redis.url();
    let replicas: Vec<Server> = (0..3)
        .map(|_| {
            Server::start(
                &keys,
                &[
                    "--policy",
                    policy.to_str().unwrap(),
                    "--redis-url",
                    &url,
                    "--redis-fallback",
                    "share:0.34",
                ],
            )
        })
        .collect();
    let urls: Vec<String> = replicas.iter().map(|s| s.url.clone()).collect();
    assert!(
        all_in_mode(&replicas, GLOBAL, Duration::from_secs(5)).await,
        "replicas never reported global mode"
    );
    let token = forge(
        &orders,
        &json!({ "appId": "orders", "iat": now(), "exp": now() + 300 }),
    );

    // One global limit: a burst of 20 and 20/s, whichever replica is asked.
    // Three limiters of their own would admit about three times as much.
    let started = Instant::now();
    let counts = drive(&urls, &token, 3.0).await;
    let secs = started.elapsed().as_secs_f64();
    let one_limiter = 20.0 + 20.0 * secs;
    eprintln!("global: {counts:?} over {secs:.2} s; one limiter admits {one_limiter:.0}");
    assert!(
        counts.other.is_empty(),
        "non-200/429 answers: {:?}",
        counts.other
    );
    let ok = f64::from(counts.ok);
    assert!(
        ok <= one_limiter * 1.15 && ok >= one_limiter * 0.75,
        "accepted {ok}, one limiter would accept {one_limiter:.0}"
    );

    // Redis goes away: no 5xx, every replica says it fell back, and each
    // enforces its share (0.34 x 20/s) on its own.
    redis.kill();
    let counts = drive(&urls, &token, 1.0).await;
    assert!(
        counts.other.is_empty(),
        "answers during the outage: {:?}",
        counts.other
    );
    assert!(counts.ok > 0, "fallback share admitted nothing: {counts:?}");
    assert!(
        all_in_mode(&replicas, FALLBACK, Duration::from_secs(3)).await,
        "replicas did not report fallback mode"
    );
    let counts = drive(&urls, &token, 2.0).await;
    assert!(
        counts.other.is_empty(),
        "answers during the outage: {:?}",
        counts.other
    );
    assert!(
        replicas
            .iter()
            .all(|s| s.logs().contains("Redis unreachable")),
        "no log line at the transition"
    );

    // Back: global limits again, on their own.
    redis.restart();
    assert!(
        all_in_mode(&replicas, GLOBAL, Duration::from_secs(8)).await,
        "replicas did not return to global mode"
    );
    assert!(
        replicas
            .iter()
            .all(|s| s.logs().contains("rate limits are global again"))
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let counts = drive(&urls, &token, 2.0).await;
    let one_limiter = 20.0 + 20.0 * started.elapsed().as_secs_f64();
    eprintln!("after restart: {counts:?}; one limiter admits {one_limiter:.0}");
    assert!(counts.other.is_empty(), "{:?}", counts.other);
    assert!(f64::from(counts.ok) <= one_limiter * 1.15);

    // A revocation through one command reaches every replica within 1 s.
    let jti = "leaked-42";
    let revoked = forge(
        &reports,
        &json!({ "appId": "reports", "iat": now(), "exp": now() + 300, "jti": jti }),
    );
    for u in &urls {
        assert_eq!(status_with(u, "/users", &revoked).await, 200);
    }
    let out = revoke(&redis, &[&format!("jti {jti}")]);
    assert!(out.status.success(), "{out:?}");
    // Success on stdout, for scripts; stderr stays empty.
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("3 subscriber(s) received it"), "{said}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let took = all_answer(&urls, &revoked, 401, Duration::from_secs(1)).await;
    eprintln!("revocation seen by all 3 replicas in {took:?}");
    let listed = revoke(&redis, &["--list"]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        format!("jti {jti}")
    );
    let bad = revoke(&redis, &["jti"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected a token id"));

    // A mistaken revocation is lifted everywhere within 1 s, with no restart,
    // and a lift of a rule Redis does not hold says so.
    let out = revoke(&redis, &["--remove", &format!("jti {jti}")]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("lifted") && said.contains("3 subscriber(s) received it"),
        "{said}"
    );
    let took = all_answer(&urls, &revoked, 200, Duration::from_secs(1)).await;
    eprintln!("lift seen by all 3 replicas in {took:?}");
    let out = revoke(&redis, &["--remove", "jti never-revoked"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was not among the rules in Redis"),
        "{out:?}"
    );
    assert!(revoke(&redis, &[&format!("jti {jti}")]).status.success());
    all_answer(&urls, &revoked, 401, Duration::from_secs(1)).await;

    // Losing Redis, even restarting it empty, lifts nothing.
    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for u in &urls {
        assert_eq!(status_with(u, "/users", &revoked).await, 401);
    }
    redis.restart();
    assert!(all_in_mode(&replicas, GLOBAL, Duration::from_secs(8)).await);
    for u in &urls {
        assert_eq!(status_with(u, "/users", &revoked).await, 401);
    }
    // The replicas wrote back what the empty Redis lost.
    let since = Instant::now();
    loop {
        let listed = revoke(&redis, &["--list"]);
        if String::from_utf8_lossy(&listed.stdout).trim() == format!("jti {jti}") {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the rule was not written back to the restarted Redis: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A replica started while Redis is down accepts no token until it has read
/// Redis's revocations: tokens get 503 revocations_loading and `/readyz` is
/// 503 with that reason (a revoked token must not pass in the meantime).
/// Once Redis is up, it reads, turns ready, and refuses the rule stored
/// while it was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_without_redis_waits_for_the_revocations() {
    let mut redis = Redis::start();
    let url = redis.url();
    redis.kill();
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "svc");
    let server = Server::start_unready(&[
        "--keys-dir",
        dir.path().to_str().unwrap(),
        "--redis-url",
        &url,
    ]);
    let revoked = forge(
        &key,
        &json!({ "appId": "svc", "iat": now(), "exp": now() + 300, "jti": "t-1" }),
    );
    let fresh = forge(
        &key,
        &json!({ "appId": "svc", "iat": now(), "exp": now() + 300 }),
    );
    let since = Instant::now();
    while since.elapsed() < Duration::from_millis(1500) {
        assert_eq!(status_with(&server.url, "/users", &fresh).await, 503);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = reqwest::get(format!("{}/readyz", server.url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["reason"], "revocations_loading", "{body}");
    let refused = reqwest::Client::new()
        .get(format!("{}/users", server.url))
        .header("x-token", &fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["reason"], "revocations_loading");

    redis.restart();
    assert!(revoke(&redis, &["jti t-1"]).status.success());
    let up = Instant::now();
    loop {
        let r = reqwest::get(format!("{}/readyz", server.url))
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(up.elapsed() < Duration::from_secs(8), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The first token it accepts comes after the rule: never a 200 for it.
    assert_eq!(status_with(&server.url, "/users", &revoked).await, 401);
    assert_eq!(status_with(&server.url, "/users", &fresh).await, 200);
    let synced = metric_line(&server.url, "appauth_shared_revocations_synced").await;
    assert_eq!(synced, Some(1.0));
}

/// With `--redis-serve-before-sync`, a replica started while Redis is down
/// serves at once (the revocation file's rules only, a WARN says so) in
/// fallback mode, and joins the global limit when Redis comes up, loading
/// the revocations stored while it was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_told_to_serve_before_the_sync_serves_and_converges() {
    let mut redis = Redis::start();
    let url = redis.url();
    redis.kill();
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "svc");
    let server = Server::start(
        dir.path(),
        &["--redis-url", &url, "--redis-serve-before-sync"],
    );
    assert!(
        server
            .logs()
            .contains("serving before Redis's revocations are read")
    );
    let token = forge(
        &key,
        &json!({ "appId": "svc", "iat": now(), "exp": now() + 300, "jti": "t-1" }),
    );
    let get = || status_with(&server.url, "/users", &token);
    assert_eq!(get().await, 200);
    assert_eq!(metric_line(&server.url, FALLBACK).await, Some(1.0));
    assert!(server.logs().contains("Redis not reached yet"));

    redis.restart();
    let out = revoke(&redis, &["jti t-1"]);
    assert!(out.status.success(), "{out:?}");
    let up = Instant::now();
    while get().await != 401 {
        assert!(
            up.elapsed() < Duration::from_secs(8),
            "the replica never loaded the revocation stored while it was away"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The limiter's probe backs off to 5 s between tries while Redis is down,
    // so global mode may come a little after the subscription.
    while metric_line(&server.url, GLOBAL).await != Some(1.0) {
        assert!(
            up.elapsed() < Duration::from_secs(8),
            "never returned to global mode"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The revocation file applies beside Redis's rules: a rule in each, both
    // in force.
    let file_revoked = forge(
        &key,
        &json!({ "appId": "svc", "iat": now(), "exp": now() + 300, "jti": "t-2" }),
    );
    assert_eq!(status_with(&server.url, "/users", &file_revoked).await, 200);
    super::util::replace(&dir.path().join("revoked.txt"), "jti t-2\n");
    let written = Instant::now();
    while status_with(&server.url, "/users", &file_revoked).await != 401 {
        assert!(
            written.elapsed() < Duration::from_secs(2),
            "the file's rule never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get().await,
        401,
        "Redis's rule still in force beside the file's"
    );
}

/// A Redis that hangs (frozen, connections open, no answers) slows no
/// request and causes no 5xx: the request path never waits for Redis; the
/// replica falls back once a command has waited the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_slows_no_request_and_is_left_for_the_fallback() {
    let redis = Redis::start();
    let (_dir, key, server) = replica_with_policy(
        "svc",
        "[default]\nallow = [\"GET /users\"]\nrate = \"50/s\"\n",
        &[
            "--redis-url",
            &redis.url(),
            "--redis-fallback",
            "open",
            // Long, so that a request that waited on Redis would show.
            "--redis-timeout-ms",
            "2000",
        ],
    );
    assert!(in_mode(&server, GLOBAL, Duration::from_secs(5)).await);
    let token = forge(
        &key,
        &json!({ "appId": "svc", "iat": now(), "exp": now() + 300 }),
    );
    redis.pause();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut statuses = std::collections::BTreeMap::new();
    while started.elapsed() < Duration::from_secs(3) {
        let t0 = Instant::now();
        let status = status_with(&server.url, "/users", &token).await;
        slowest = slowest.max(t0.elapsed());
        *statuses.entry(status).or_insert(0) += 1;
    }
    eprintln!("while Redis hung: {statuses:?}, slowest {slowest:?}");
    assert!(
        statuses.keys().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    // Far below the 2 s command timeout: no request waited on Redis.
    assert!(
        slowest < Duration::from_secs(1),
        "a request took {slowest:?}"
    );
    assert!(in_mode(&server, FALLBACK, Duration::from_secs(4)).await);
    // Fallback "open": the rate is not enforced while Redis is away, nor
    // while a refill has waited past the stall bound (50 ms), so the app is
    // not refused for the whole command timeout.
    let accepted = statuses.get(&200).copied().unwrap_or(0);
    let refused = statuses.get(&429).copied().unwrap_or(0);
    assert!(accepted > 10 * refused, "{statuses:?}");
    redis.resume();
    assert!(in_mode(&server, GLOBAL, Duration::from_secs(8)).await);
}

/// Managed Redis services speak TLS (some only TLS). A replica and the
/// revoke command reach a Redis that asks for a client certificate, through
/// a private CA. Without the CA the replica serves in fallback mode and says
/// why, the command fails naming the certificate problem, and a CA given
/// with a plain URL stops the server at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_the_revoke_command_reach_redis_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = super::deploy::ca();
    let (server_dir, client_dir) = (dir.path().join("server"), dir.path().join("client"));
    fs::create_dir(&server_dir).unwrap();
    fs::create_dir(&client_dir).unwrap();
    let (cert, key) = super::deploy::issue(&ca, &server_dir, 1, 2090);
    let (client_cert, client_key) = super::deploy::issue(&ca, &client_dir, 2, 2090);
    let ca_file = dir.path().join("ca.pem");
    fs::write(&ca_file, &ca.pem).unwrap();
    let redis = Redis::start_tls(&cert, &key, &ca_file);
    let keys = dir.path().join("keys");
    fs::create_dir(&keys).unwrap();
    let app_key = add_app(&keys, "svc");
    let url = redis.tls_url();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (ca_arg, cert_arg, key_arg) = (path(&ca_file), path(&client_cert), path(&client_key));
    let client_args = [
        "--redis-client-cert",
        cert_arg.as_str(),
        "--redis-client-key",
        key_arg.as_str(),
    ];
    let mut tls_args = vec!["--redis-url", url.as_str(), "--redis-ca", ca_arg.as_str()];
    tls_args.extend(client_args);

    let server = Server::start(&keys, &tls_args);
    assert!(
        in_mode(&server, GLOBAL, Duration::from_secs(8)).await,
        "{}",
        server.logs()
    );
    let out = revoke_with(&tls_args, &["jti t-1"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 subscriber(s) received it"));
    let token = forge(
        &app_key,
        &json!({ "appId": "svc", "iat": now(), "exp": now() + 300, "jti": "t-1" }),
    );
    all_answer(
        std::slice::from_ref(&server.url),
        &token,
        401,
        Duration::from_secs(1),
    )
    .await;

    // Without the CA: the system's roots do not know it.
    let mut no_ca = vec!["--redis-url", url.as_str()];
    no_ca.extend(client_args);
    let out = revoke_with(&no_ca, &["--list"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("certificate"), "{said}");
    let mut serving = no_ca.clone();
    serving.push("--redis-serve-before-sync");
    let untrusting = Server::start(&keys, &serving);
    let fresh = forge(
        &app_key,
        &json!({ "appId": "svc", "iat": now(), "exp": now() + 300 }),
    );
    assert_eq!(status_with(&untrusting.url, "/users", &fresh).await, 200);
    assert!(in_mode(&untrusting, FALLBACK, Duration::from_secs(1)).await);
    let since = Instant::now();
    while !(untrusting.logs().contains("cannot connect to Redis")
        && untrusting.logs().contains("certificate"))
    {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "the certificate problem is not logged: {}",
            untrusting.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A CA for a plain URL is a mistake worth stopping for.
    let out = Command::new(env!("CARGO_BIN_EXE_appauth-server"))
        .args([
            "--keys-dir",
            keys.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ])
        .args(["--redis-url", &redis.url(), "--redis-ca", &ca_arg])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a rediss:// URL"));
}

/// A Redis with a password: the password in the URL (from a Secret, through
/// `APPAUTH_REDIS_URL`) is used, and neither it nor a wrong one is ever
/// written to the log, which says why the replica cannot connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_is_used_and_never_logged() {
    let redis = Redis::start_with(&["--requirepass", "s3cret-pw"]);
    let dir = tempfile::tempdir().unwrap();
    add_app(dir.path(), "svc");
    let url = |password: &str| format!("redis://:{password}@127.0.0.1:{}", redis.port);

    let right = Server::launch(
        None,
        &[("APPAUTH_REDIS_URL", &url("s3cret-pw"))],
        &["--keys-dir", dir.path().to_str().unwrap()],
    );
    assert!(
        in_mode(&right, GLOBAL, Duration::from_secs(8)).await,
        "{}",
        right.logs()
    );
    let out = revoke_with(&["--redis-url", &url("s3cret-pw")], &["jti t-1"]);
    assert!(out.status.success(), "{out:?}");

    let wrong = Server::launch(
        None,
        &[("APPAUTH_REDIS_URL", &url("not-the-pw"))],
        &[
            "--keys-dir",
            dir.path().to_str().unwrap(),
            "--redis-serve-before-sync",
        ],
    );
    let since = Instant::now();
    while !wrong.logs().contains("cannot connect to Redis") {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "no reason logged: {}",
            wrong.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(in_mode(&wrong, FALLBACK, Duration::from_secs(1)).await);
    let out = revoke_with(&["--redis-url", &url("not-the-pw")], &["--list"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    for log in [right.logs(), wrong.logs(), said.into_owned()] {
        assert!(
            !log.contains("s3cret-pw") && !log.contains("not-the-pw"),
            "a password in a message: {log}"
        );
    }
    eprintln!(
        "{}",
        wrong
            .logs()
            .lines()
            .find(|l| l.contains("cannot connect"))
            .unwrap()
    );
}

/// A Redis shared with other teams: appauth as an ACL user that reaches only
/// its own prefix, with exactly the permissions docs/spec.md §11 lists (read
/// from there, so the documentation cannot drift from what was run). The
/// global limit, a revocation through the command, and the replica's reads
/// all work; a key outside the prefix is refused to that user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_acl_user_is_enough() {
    let acl = appauth_testkit::documented_acl_user("acl-pw");
    let mut args = vec!["--user", "default", "off"];
    args.extend(acl.iter().map(String::as_str));
    // The test's own connection (PING, ACL LOG) goes through an admin user.
    args.extend(["--user", "admin", "on", ">admin-pw", "~*", "&*", "+@all"]);
    let redis = Redis::start_with(&args);
    let url = format!("redis://appauth:acl-pw@127.0.0.1:{}", redis.port);

    let (_dir, key, server) =
        replica_with_policy("reports", REPORTS_5_PER_MINUTE, &["--redis-url", &url]);
    assert!(
        in_mode(&server, GLOBAL, Duration::from_secs(8)).await,
        "{}",
        server.logs()
    );
    // The global limit: a burst of 5, then 429, decided in Redis.
    let token = forge(
        &key,
        &json!({ "appId": "reports", "iat": now(), "exp": now() + 300, "jti": "t-1" }),
    );
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(status_with(&server.url, "/users", &token).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        metric_line(&server.url, GLOBAL).await,
        Some(1.0),
        "{}",
        server.logs()
    );
    // A revocation through the command, as the same user.
    let out = revoke_with(&["--redis-url", &url], &["jti t-2"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 subscriber(s) received it"));
    let listed = revoke_with(&["--redis-url", &url], &["--list"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "jti t-2");
    let denied = redis
        .command_as("admin", "admin-pw", &["ACL", "LOG"])
        .unwrap();
    assert!(
        !denied.contains("appauth"),
        "the ACL refused appauth something: {denied}"
    );
    // And the user is confined: another key is refused.
    let other = redis
        .command_as("appauth", "acl-pw", &["GET", "billing:secret"])
        .unwrap();
    assert!(other.contains("NOPERM"), "{other}");
}

/// A Redis that answers PING but refuses to write (out of memory here; a
/// read-only replica after a failover looks the same) is an outage: the
/// replica stays in fallback, says why, and its local limiter holds the app
/// to its burst, rather than flapping between modes and admitting one
/// request on credit at each flap. When Redis can write again, the replica
/// returns to global limits by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_answers_but_refuses_writes_is_an_outage() {
    let redis = Redis::start();
    let (_dir, key, server) = replica_with_policy(
        "reports",
        REPORTS_5_PER_MINUTE,
        &["--redis-url", &redis.url()],
    );
    assert!(in_mode(&server, GLOBAL, Duration::from_secs(8)).await);
    assert!(
        redis
            .command(&["CONFIG", "SET", "maxmemory", "1"])
            .unwrap()
            .contains("OK")
    );
    let token = forge(
        &key,
        &json!({ "appId": "reports", "iat": now(), "exp": now() + 300 }),
    );
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(status_with(&server.url, "/users", &token).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    // The local burst of 5, plus at most the one request admitted on credit
    // before the first refill came back refused.
    assert!(accepted <= 6, "{accepted} accepted: {statuses:?}");
    assert_eq!(metric_line(&server.url, FALLBACK).await, Some(1.0));
    assert!(server.logs().contains("OOM"), "{}", server.logs());
    assert!(
        redis
            .command(&["CONFIG", "SET", "maxmemory", "0"])
            .unwrap()
            .contains("OK")
    );
    assert!(in_mode(&server, GLOBAL, Duration::from_secs(8)).await);
}

/// `revoke --file` with `n` rules `jti <prefix>-<i>`; its stdout.
fn revoke_file(redis: &Redis, dir: &std::path::Path, prefix: &str, n: usize) -> String {
    let path = dir.join(format!("{prefix}.txt"));
    let text: String = (0..n).map(|i| format!("jti {prefix}-{i}\n")).collect();
    fs::write(&path, text).unwrap();
    let out = revoke(redis, &["--file", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn jti_token(key: &appauth_core::PrivateKey, app: &str, jti: &str) -> String {
    forge(
        key,
        &json!({ "appId": app, "iat": now(), "exp": now() + 300, "jti": jti }),
    )
}

/// Finding 2: a burst of revocations stalled every replica (the next revoke
/// took 4.2 s after 5,000), and a 100/s limit driven meanwhile admitted
/// 2,375-3,201 requests in 10 s. Now: 5,000 rules in one `revoke --file`,
/// then one more revoke, reaches both replicas within 1 s, and the limit
/// driven through both during the burst admits at most 1.2x one limiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_revocations_stalls_neither_revokes_nor_limits() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    fs::create_dir(&keys).unwrap();
    let key = add_app(&keys, "svc");
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        "[default]\nallow = [\"GET /users\"]\nrate = \"100/s\"\n",
    )
    .unwrap();
    let url = redis.url();
    let args = ["--policy", policy.to_str().unwrap(), "--redis-url", &url];
    let replicas = [Server::start(&keys, &args), Server::start(&keys, &args)];
    assert!(all_in_mode(&replicas, GLOBAL, Duration::from_secs(5)).await);
    let urls: Vec<String> = replicas.iter().map(|s| s.url.clone()).collect();
    let valid = jti_token(&key, "svc", "valid");

    let driving = {
        let (urls, valid) = (urls.clone(), valid.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let counts = drive(&urls, &valid, 3.0).await;
            (counts, started.elapsed().as_secs_f64())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let said = revoke_file(&redis, dir.path(), "burst", 5000);
    assert!(
        said.contains("stored 5000 rule(s)") && said.contains("2 subscriber(s) received it"),
        "{said}"
    );
    let last = jti_token(&key, "svc", "last");
    let out = revoke(&redis, &["jti last"]);
    assert!(out.status.success());
    let took = all_answer(&urls, &last, 401, Duration::from_secs(5)).await;
    eprintln!("one revoke after a burst of 5,000 refused by both replicas in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    let (counts, secs) = driving.await.unwrap();
    let one_limiter = 100.0 + 100.0 * secs;
    eprintln!(
        "100/s during the burst: {counts:?} over {secs:.2} s; one limiter admits {one_limiter:.0}"
    );
    assert!(counts.other.is_empty(), "{:?}", counts.other);
    assert!(
        f64::from(counts.ok) <= 1.2 * one_limiter,
        "{} > 1.2 x {one_limiter:.0}",
        counts.ok
    );
    // Every rule of the burst is in force, and logged as a summary.
    for s in &replicas {
        assert_eq!(
            status_with(&s.url, "/users", &jti_token(&key, "svc", "burst-4999")).await,
            401
        );
        let logs = s.logs();
        let lines = logs.lines().filter(|l| l.contains("burst-")).count();
        assert!(lines < 50, "{lines} log lines for 5,000 rules");
    }
}

/// `revoke --file` checks every line first: a bad one stores nothing and
/// names its line.
#[test]
fn revoke_file_stores_nothing_when_a_line_is_bad() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.txt");
    fs::write(&path, "# incident 42\njti a\n\nkid\njti b\n").unwrap();
    let out = revoke(&redis, &["--file", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 4") && err.contains("nothing was stored"),
        "{err}"
    );
    assert!(
        redis
            .command(&["SCARD", "appauth:revocations"])
            .unwrap()
            .contains(":0")
    );
    fs::write(&path, "# incident 42\njti a  # leaked\n\njti b\n").unwrap();
    let out = revoke(&redis, &["--file", path.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("stored 2 rule(s)") && said.contains("(0 already were)"),
        "{said}"
    );
    let out = revoke(&redis, &["--remove", "--file", path.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("lifted 2 rule(s)"));
    assert!(
        redis
            .command(&["SCARD", "appauth:revocations"])
            .unwrap()
            .contains(":0")
    );
}

/// Finding 3: a replica started while Redis was empty accepted restored
/// rules until its own resync (the write-back published them all under one
/// version, and a receiver applied only the first), and Redis stayed empty
/// for 28 s after a FLUSHALL. Now the replica that holds the rules sees the
/// flush within a second, puts them back with a version each, and the new
/// replica refuses every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_flushall_a_replica_started_in_the_empty_window_refuses_every_restored_rule() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    fs::create_dir(&keys).unwrap();
    let key = add_app(&keys, "svc");
    let url = redis.url();
    let args = ["--redis-url", &url];
    let holder = Server::start(&keys, &args);
    assert!(in_mode(&holder, GLOBAL, Duration::from_secs(5)).await);
    revoke_file(&redis, dir.path(), "kept", 50);
    let tokens: Vec<String> = (0..50)
        .map(|i| jti_token(&key, "svc", &format!("kept-{i}")))
        .collect();
    all_answer(
        std::slice::from_ref(&holder.url),
        &tokens[49],
        401,
        Duration::from_secs(2),
    )
    .await;

    assert!(redis.command(&["FLUSHALL"]).unwrap().contains("OK"));
    let flushed = Instant::now();
    let fresh = Server::start(&keys, &args);
    let started = flushed.elapsed();
    let restored = wait_until(Duration::from_secs(5), || {
        redis
            .command(&["SCARD", "appauth:revocations"])
            .is_some_and(|r| r.contains(":50"))
    });
    let restored = restored.expect("the rules were never put back in Redis");
    eprintln!(
        "Redis flushed: the fresh replica up after {started:?}, rules back in Redis after {restored:?}"
    );
    assert!(restored < Duration::from_millis(2500), "{restored:?}");
    // The restore's last rule is its last message: once it is refused,
    // every rule must be.
    let took = all_answer(
        std::slice::from_ref(&fresh.url),
        &tokens[49],
        401,
        Duration::from_secs(1),
    )
    .await;
    eprintln!(
        "the fresh replica refuses the last restored rule {took:?} after the restore was seen"
    );
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(status_with(&fresh.url, "/users", t).await, 401, "kept-{i}");
        assert_eq!(status_with(&holder.url, "/users", t).await, 401, "kept-{i}");
    }
}

/// Finding 5: with 100k rules a full read (SMEMBERS of the whole set in one
/// command, inside one command timeout) was at the mercy of its size, and a
/// restart of Redis meant one script with every rule. Now the set moves in
/// pages under the timeout: a replica loads 100k rules, resyncs every 2 s
/// without a reconnect, takes a revoke within 1 s, puts all 100k back after
/// Redis restarts empty, and says so in a few log lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_rules_load_resync_and_outlive_a_redis_restart() {
    let mut redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    fs::create_dir(&keys).unwrap();
    let key = add_app(&keys, "svc");
    let stored = Instant::now();
    revoke_file(&redis, dir.path(), "big", 100_000);
    eprintln!(
        "100,000 rules stored by revoke --file in {:?}",
        stored.elapsed()
    );
    let url = redis.url();
    let started = Instant::now();
    let server = Server::start(&keys, &["--redis-url", &url, "--redis-resync-ms", "2000"]);
    eprintln!(
        "a replica ready with 100,000 rules after {:?}",
        started.elapsed()
    );
    let revoked = jti_token(&key, "svc", "big-99999");
    assert_eq!(status_with(&server.url, "/users", &revoked).await, 401);
    let valid = jti_token(&key, "svc", "valid");
    assert_eq!(status_with(&server.url, "/users", &valid).await, 200);

    // Three resyncs of the whole set, and a revoke among them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = revoke(&redis, &["jti one-more"]);
    assert!(out.status.success());
    let took = all_answer(
        std::slice::from_ref(&server.url),
        &jti_token(&key, "svc", "one-more"),
        401,
        Duration::from_secs(2),
    )
    .await;
    eprintln!("a revoke beside 100,000 rules refused in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(in_mode(&server, GLOBAL, Duration::from_secs(1)).await);

    // Redis restarts empty: the replica puts every rule back, in pages.
    redis.restart();
    let restarted = Instant::now();
    let back = wait_until(Duration::from_secs(20), || {
        redis
            .command(&["SCARD", "appauth:revocations"])
            .is_some_and(|r| r.contains(":100001"))
    });
    let back = back.expect("the rules were never all put back");
    eprintln!("Redis restarted empty: 100,001 rules back after {back:?}");
    assert_eq!(status_with(&server.url, "/users", &revoked).await, 401);
    assert_eq!(status_with(&server.url, "/users", &valid).await, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = restarted;
    let logs = server.logs();
    let lines = logs.lines().count();
    eprintln!("{lines} log lines in all");
    assert!(lines < 60, "{lines} log lines:\n{logs}");
    assert!(!logs.contains("big-5"), "rules named one by one:\n{logs}");
}
