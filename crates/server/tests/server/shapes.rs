//! The server run the ways people run it: relative paths from another
//! working directory, keys that are symlinks, slow clients, leaked keys,
//! operators reading its logs and metrics.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use appauth_core::PrivateKey;
use serde_json::{Value, json};

use crate::util::{Server, add_app, eventually, metric, replace, rsa_verifications};
use crate::{claims_for, forge, now};

async fn status(url: &str, path: &str, token: &str) -> u16 {
    crate::util::status_with(url, path, token).await
}

async fn reason(url: &str, token: &str) -> String {
    let resp = reqwest::Client::new()
        .get(format!("{url}/whoami"))
        .header("x-token", token)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    body["reason"].as_str().unwrap_or("none").to_owned()
}

const SECOND: Duration = Duration::from_millis(1000);

#[tokio::test]
async fn relative_paths_from_another_working_directory_reload_within_a_second() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("deploy");
    fs::create_dir_all(work.join("keys")).unwrap();
    fs::create_dir_all(work.join("conf")).unwrap();
    let orders = add_app(&work.join("keys"), "orders");
    fs::write(
        work.join("conf/policy.toml"),
        "[default]\nallow = [\"*\"]\n",
    )
    .unwrap();
    fs::write(work.join("conf/revoked.txt"), "").unwrap();
    // Started from `deploy/`, every path relative, as keys/README.md shows.
    let server = Server::launch(
        Some(&work),
        &[],
        &[
            "--keys-dir",
            "keys",
            "--policy",
            "conf/policy.toml",
            "--revocations",
            "./conf/revoked.txt",
        ],
    );
    let url = server.url.clone();
    let t = forge(&orders, &claims_for("orders"));
    assert_eq!(status(&url, "/whoami", &t).await, 200);

    // A new key is picked up...
    let billing = add_app(&work.join("keys"), "billing");
    let b = forge(&billing, &claims_for("billing"));
    let took = eventually(SECOND, || status(&url, "/whoami", &b).then_eq(200)).await;
    assert!(
        took.is_some(),
        "new key not seen within 1 s: {}",
        server.logs()
    );

    // ...a policy change applies...
    replace(
        &work.join("conf/policy.toml"),
        "[default]\nallow = [\"GET /ping\"]\n",
    );
    let took = eventually(SECOND, || status(&url, "/whoami", &t).then_eq(403)).await;
    assert!(took.is_some(), "policy change not seen within 1 s");
    replace(
        &work.join("conf/policy.toml"),
        "[default]\nallow = [\"*\"]\n",
    );
    assert!(
        eventually(SECOND, || status(&url, "/whoami", &t).then_eq(200))
            .await
            .is_some()
    );

    // ...a revocation line too...
    fs::write(work.join("conf/revoked.txt"), "app billing\n").unwrap();
    let took = eventually(SECOND, || status(&url, "/whoami", &b).then_eq(401)).await;
    assert!(took.is_some(), "revocation not seen within 1 s");

    // ...and a removed key stops working.
    fs::remove_file(work.join("keys/orders_public.pem")).unwrap();
    let took = eventually(SECOND, || status(&url, "/whoami", &t).then_eq(401)).await;
    assert!(took.is_some(), "removed key still accepted after 1 s");
    assert_eq!(reason(&url, &t).await, "unknown_app");
}

#[tokio::test]
async fn a_key_file_that_links_into_another_directory_is_followed() {
    let root = tempfile::tempdir().unwrap();
    let keys = root.path().join("keys");
    let vault = root.path().join("vault");
    fs::create_dir_all(&keys).unwrap();
    fs::create_dir_all(&vault).unwrap();
    let old = PrivateKey::generate(2048).unwrap();
    fs::write(vault.join("orders.pem"), old.public_key_pem().unwrap()).unwrap();
    std::os::unix::fs::symlink(vault.join("orders.pem"), keys.join("orders_public.pem")).unwrap();
    let server = Server::start(&keys, &[]);
    let url = server.url.clone();
    let t_old = forge(&old, &claims_for("orders"));
    assert_eq!(status(&url, "/whoami", &t_old).await, 200);

    // The target is replaced in its own directory: within a second the new
    // key verifies and the old one does not.
    let new = PrivateKey::generate(2048).unwrap();
    replace(&vault.join("orders.pem"), &new.public_key_pem().unwrap());
    let t_new = forge(&new, &claims_for("orders"));
    let took = eventually(SECOND, || status(&url, "/whoami", &t_new).then_eq(200)).await;
    assert!(
        took.is_some(),
        "change to the link's target not seen within 1 s"
    );
    assert_eq!(status(&url, "/whoami", &t_old).await, 401);

    // Rewritten in place, too.
    fs::write(vault.join("orders.pem"), old.public_key_pem().unwrap()).unwrap();
    let took = eventually(SECOND, || status(&url, "/whoami", &t_old).then_eq(200)).await;
    assert!(
        took.is_some(),
        "in-place rewrite of the target not seen within 1 s"
    );
}

/// Reads until the peer closes or `within` passes; returns whether it closed.
fn closed_within(sock: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn every_request_head_on_a_connection_has_the_same_bound() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let server = Server::start(
        dir.path(),
        &[
            "--request-head-timeout-ms",
            "1000",
            "--keep-alive-ms",
            "1500",
        ],
    );
    let addr = server.url.strip_prefix("http://").unwrap().to_owned();
    let token = forge(&key, &claims_for("orders"));

    // First request whole, then the second one a byte every 300 ms: cut
    // within the head bound (plus scheduling slack), not after minutes.
    let mut sock = TcpStream::connect(&addr).unwrap();
    write!(
        sock,
        "GET /ping HTTP/1.1\r\nhost: x\r\nx-token: {token}\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 12];
    sock.read_exact(&mut first).unwrap();
    assert_eq!(&first[9..12], b"200");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let second = format!("GET /ping HTTP/1.1\r\nhost: x\r\nx-token: {token}\r\n\r\n");
    let mut cut = false;
    for byte in second.bytes() {
        if sock.write_all(&[byte]).is_err() {
            cut = true;
            break;
        }
        if closed_within(&mut sock, Duration::from_millis(300)) {
            cut = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    assert!(
        cut,
        "a trickled second request head was still open after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // A third request on a fresh connection, sent at once, is served: the
    // bound is on slowness, not on keep-alive.
    let mut sock = TcpStream::connect(&addr).unwrap();
    for _ in 0..3 {
        write!(
            sock,
            "GET /ping HTTP/1.1\r\nhost: x\r\nx-token: {token}\r\n\r\n"
        )
        .unwrap();
        let mut head = [0u8; 12];
        sock.read_exact(&mut head).unwrap();
        assert_eq!(&head[9..12], b"200");
        // Drain the rest of this small response.
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut rest = [0u8; 1024];
        let _ = sock.read(&mut rest);
        std::thread::sleep(Duration::from_millis(400));
    }
    // An idle keep-alive connection is closed after --keep-alive-ms.
    assert!(
        closed_within(&mut sock, Duration::from_secs(4)),
        "idle connection kept open"
    );
}

#[tokio::test]
async fn claims_no_signer_makes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let server = Server::start(dir.path(), &[]);
    let inverted = forge(
        &key,
        &json!({ "appId": "orders", "iat": now() + 20, "exp": now() + 10 }),
    );
    assert_eq!(reason(&server.url, &inverted).await, "malformed");
    let crit_null = appauth_testkit::forge(
        &key,
        appauth_core::Algorithm::RS512,
        &json!({"alg": "RS512", "typ": "JWT", "crit": null}),
        &claims_for("orders"),
    );
    assert_eq!(reason(&server.url, &crit_null).await, "malformed");
}

#[tokio::test]
async fn tokens_condemned_by_their_claims_cost_no_rsa() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let server = Server::start(dir.path(), &["--token-cache-mb", "0"]);
    let url = &server.url;
    let before = rsa_verifications(url).await;
    let expired = forge(
        &key,
        &json!({ "appId": "orders", "iat": now() - 900, "exp": now() - 600 }),
    );
    let too_long = forge(
        &key,
        &json!({ "appId": "orders", "iat": now(), "exp": now() + 86_400 }),
    );
    let future = forge(
        &key,
        &json!({ "appId": "orders", "iat": now() + 600, "exp": now() + 700 }),
    );
    for _ in 0..50 {
        assert_eq!(reason(url, &expired).await, "expired");
        assert_eq!(reason(url, &too_long).await, "lifetime_too_long");
        assert_eq!(reason(url, &future).await, "not_yet_valid");
    }
    assert_eq!(rsa_verifications(url).await, before);
    // The refusals name the app the token claims.
    assert!(
        server.logs().contains("app_id=\"orders\"") || server.logs().contains("app_id=orders"),
        "{}",
        server.logs()
    );
}

#[tokio::test]
async fn a_leaked_key_is_stopped_by_its_kid_and_an_app_by_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let leaked = add_app(dir.path(), "orders");
    let revoked = dir.path().join("revoked.txt");
    let server = Server::start(dir.path(), &[]);
    let url = server.url.clone();

    // `app ... before now` ends existing sessions, but whoever holds the
    // key signs a fresh token after the cut-off: that is why the runbook
    // revokes the kid.
    let cut_off = jiff::Timestamp::from_second(now()).unwrap();
    fs::write(&revoked, format!("app orders before {cut_off}\n")).unwrap();
    let old = forge(
        &leaked,
        &json!({ "appId": "orders", "iat": now() - 60, "exp": now() + 200 }),
    );
    assert!(
        eventually(SECOND, || status(&url, "/whoami", &old).then_eq(401))
            .await
            .is_some()
    );
    let fresh = forge(
        &leaked,
        &json!({ "appId": "orders", "iat": now() + 1, "exp": now() + 200 }),
    );
    assert_eq!(status(&url, "/whoami", &fresh).await, 200);

    let kid = leaked.kid().clone();
    fs::write(&revoked, format!("kid {kid}\n")).unwrap();
    assert!(
        eventually(SECOND, || status(&url, "/whoami", &fresh).then_eq(401))
            .await
            .is_some()
    );
    assert_eq!(reason(&url, &fresh).await, "revoked");

    // `app <appId>` blocks every token of the app, whatever its key.
    let other = add_app(dir.path(), "billing");
    let b = forge(&other, &claims_for("billing"));
    assert!(
        eventually(SECOND, || status(&url, "/whoami", &b).then_eq(200))
            .await
            .is_some()
    );
    fs::write(&revoked, "app billing\n").unwrap();
    assert!(
        eventually(SECOND, || status(&url, "/whoami", &b).then_eq(401))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn operators_get_plain_text_in_pipes_and_typed_json_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let keys = dir.path().to_str().unwrap();
    // Text to a pipe: no colour codes.
    let text = Server::launch(None, &[], &["--keys-dir", keys]);
    assert!(!text.logs().contains('\u{1b}'), "{}", text.logs());
    drop(text);

    // Booleans as compose files write them.
    for (json, access) in [("1", "yes"), ("true", "on"), ("yes", "1")] {
        let server = Server::launch(
            None,
            &[("APPAUTH_LOG_JSON", json), ("APPAUTH_ACCESS_LOG", access)],
            &["--keys-dir", keys],
        );
        let t = forge(&key, &claims_for("orders"));
        assert_eq!(status(&server.url, "/whoami", &t).await, 200);
        let logs = server.logs();
        let lines: Vec<Value> = logs
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let start = lines
            .iter()
            .find(|l| l["fields"]["message"] == "verifying tokens")
            .unwrap();
        assert_eq!(start["fields"]["algorithms"], json!(["RS512"]));
        assert_eq!(start["fields"]["leeway_s"], 30);
        let access_line = eventually(SECOND, || {
            let logs = server.logs();
            async move { logs.contains("\"target\":\"appauth::access\"") }
        })
        .await;
        assert!(access_line.is_some(), "{}", server.logs());
    }
    let off = Server::launch(None, &[("APPAUTH_LOG_JSON", "0")], &["--keys-dir", keys]);
    assert!(!off.logs().starts_with('{'));
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_appauth-server"))
        .args(["--keys-dir", keys])
        .env("APPAUTH_LOG_JSON", "maybe")
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[tokio::test]
async fn accepted_requests_are_counted_per_key_and_logged_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let kid = key.kid().clone();
    let server = Server::start(dir.path(), &["--access-log"]);
    let t = forge(&key, &claims_for("orders"));
    for _ in 0..3 {
        assert_eq!(status(&server.url, "/ping", &t).await, 200);
    }
    let series = format!("appauth_accepted_total{{app=\"orders\",kid=\"{kid}\"}}");
    assert_eq!(metric(&server.url, &series).await, 3);
    let logged = eventually(SECOND, || {
        let logs = server.logs();
        async move {
            logs.lines()
                .filter(|l| {
                    l.contains("appauth::access")
                        && l.contains("path=\"/ping\"")
                        && l.contains("status=200")
                })
                .count()
                == 3
        }
    })
    .await;
    assert!(logged.is_some(), "{}", server.logs());
    assert!(server.logs().contains(&format!("kid={kid}")));

    // The key retired: its series goes, so labels stay bounded by the keys
    // directory.
    fs::remove_file(dir.path().join("orders_public.pem")).unwrap();
    let url = server.url.clone();
    let gone = eventually(SECOND, || {
        let url = url.clone();
        let series = series.clone();
        async move {
            let text = crate::util::metrics_text(&url).await;
            !text.contains(&series)
        }
    })
    .await;
    assert!(gone.is_some());
}

#[tokio::test]
async fn a_junk_flood_is_counted_in_full_but_logged_in_brief() {
    let dir = tempfile::tempdir().unwrap();
    add_app(dir.path(), "orders");
    let server = Server::start(dir.path(), &[]);
    let http = reqwest::Client::new();
    for i in 0..300 {
        let resp = http
            .get(format!("{}/whoami", server.url))
            .header("x-token", format!("junk{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let counted = metric(
        &server.url,
        "appauth_requests_total{outcome=\"rejected\",reason=\"malformed\"}",
    )
    .await;
    assert_eq!(counted, 300);
    let logged = server
        .logs()
        .lines()
        .filter(|l| l.contains("request refused"))
        .count();
    // One line per reason per second, however fast the flood.
    assert!(
        (1..=15).contains(&logged),
        "{logged} refusal lines for 300 refusals"
    );
}

#[test]
fn check_config_lists_every_problem_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    add_app(dir.path(), "orders");
    fs::write(
        dir.path().join("revoked.txt"),
        "jti fine\ndeny x\nkid short\napp orders before yesterday\n",
    )
    .unwrap();
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        "[default]\nallow = [\"GET /a\", \"get /b\", \"GET c\"]\nrate = \"fast\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_appauth-server"))
        .args(["--check-config", "--keys-dir"])
        .arg(dir.path())
        .arg("--policy")
        .arg(&policy)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for place in [
        "revoked.txt:2:1:",
        "revoked.txt:3:5:",
        "revoked.txt:4:19:",
        "policy.toml:2:20:",
        "policy.toml:2:30:",
        "policy.toml:3:8:",
    ] {
        assert!(err.contains(place), "{place} missing from:\n{err}");
    }
}

/// A small helper so polling reads as a sentence.
trait ThenEq {
    fn then_eq(self, want: u16) -> impl std::future::Future<Output = bool>;
}

impl<F: std::future::Future<Output = u16>> ThenEq for F {
    async fn then_eq(self, want: u16) -> bool {
        self.await == want
    }
}
