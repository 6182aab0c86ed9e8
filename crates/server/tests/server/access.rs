//! Policy, rate limits and revocation with the real binary (docs/spec.md §5, §6).

use std::fs;
use std::time::Duration;

use appauth_core::PrivateKey;
use serde_json::{Value, json};

use crate::util::{Server, add_app, eventually};
use crate::{claims_for, forge, now};

async fn get(url: &str, path: &str, token: &str) -> (u16, Value, Option<String>) {
    let resp = reqwest::Client::new()
        .get(format!("{url}{path}"))
        .header("x-token", token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, resp.json().await.unwrap_or(Value::Null), retry)
}

fn write_policy(path: &std::path::Path, text: &str) {
    crate::util::replace(path, text);
}

#[tokio::test]
async fn routes_outside_allow_are_forbidden_per_app() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    fs::create_dir(&keys).unwrap();
    let reader = add_app(&keys, "reader");
    let writer = add_app(&keys, "writer");
    let policy = dir.path().join("policy.toml");
    write_policy(
        &policy,
        r#"
[default]
allow = ["GET /users"]

[apps."writer"]
allow = ["GET /users", "GET /users/*", "GET /whoami"]
"#,
    );
    let server = Server::start(&keys, &["--policy", policy.to_str().unwrap()]);
    let (r, w) = (
        forge(&reader, &claims_for("reader")),
        forge(&writer, &claims_for("writer")),
    );

    assert_eq!(get(&server.url, "/users", &r).await.0, 200);
    let (status, body, _) = get(&server.url, "/users/1", &r).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("route_not_allowed"))
    );
    assert_eq!(get(&server.url, "/users/1", &w).await.0, 200);
    for sneaky in [
        "/users/../whoami",
        "/users/%2e%2e/whoami",
        "/users/1%2F..%2Fx",
    ] {
        // Refused before the token is looked at: 400 path_not_canonical.
        let status = crate::util::raw_get(&server.url, sneaky, &format!("x-token: {w}\r\n"));
        assert_eq!(status, Some(400), "{sneaky}");
    }
    // Unauthenticated callers learn nothing about the policy.
    let (status, body, _) = get(&server.url, "/users/1", "junk").await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("malformed")));

    // A broken policy keeps the previous one in force...
    write_policy(
        &policy,
        "[default]\nallow = [\"GET /users\", \"GET /users/*\"]\nrate = \"fast\"\n",
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        get(&server.url, "/users/1", &r).await.0,
        403,
        "typo opened the API"
    );
    assert_eq!(
        get(&server.url, "/users", &r).await.0,
        200,
        "typo closed the API"
    );
    let logs = server.logs();
    assert!(logs.contains("policy.toml:3:8"), "{logs}");
    assert!(logs.contains("previous policy stays in force"), "{logs}");
    let metrics = crate::util::metrics_text(&server.url).await;
    assert!(
        metrics.contains(r#"appauth_config_reload_errors_total{file="policy"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"appauth_requests_total{outcome="forbidden",reason="route_not_allowed"} 2"#
        ),
        "{metrics}"
    );

    // ...and a fixed one is picked up.
    write_policy(
        &policy,
        "[default]\nallow = [\"GET /users\", \"GET /users/*\"]\n",
    );
    let took = eventually(Duration::from_secs(1), || async {
        get(&server.url, "/users/1", &r).await.0 == 200
    })
    .await;
    assert!(took.is_some(), "fixed policy not picked up");
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path();
    let fast = add_app(keys, "fast");
    let other = add_app(keys, "other");
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        "[default]\nallow = [\"*\"]\nrate = \"5/s\"\n\n[apps.\"other\"]\nrate = \"1000/s\"\n",
    )
    .unwrap();
    let server = Server::start(keys, &["--policy", policy.to_str().unwrap()]);
    let token = forge(&fast, &claims_for("fast"));
    let other_token = forge(&other, &claims_for("other"));

    let mut ok = 0;
    let mut limited = 0;
    let started = std::time::Instant::now();
    for _ in 0..50 {
        let (status, body, retry) = get(&server.url, "/users", &token).await;
        match status {
            200 => ok += 1,
            429 => {
                limited += 1;
                assert_eq!(body["reason"], "rate_exceeded");
                let secs: u64 = retry.expect("Retry-After").parse().unwrap();
                assert!((1..=1).contains(&secs), "Retry-After {secs}");
            }
            s => panic!("unexpected {s}"),
        }
    }
    // A burst of 5, then 5 more per second of the burst's own duration (a
    // loaded machine sends the 50 more slowly).
    let allowed = 5.0 + 5.0 * started.elapsed().as_secs_f64() + 1.0;
    assert!(f64::from(ok) <= allowed, "ok={ok} allowed={allowed:.1}");
    assert!(ok >= 5 && limited > 0, "ok={ok} limited={limited}");
    // Another app's budget is its own; and junk never spends anyone's.
    assert_eq!(get(&server.url, "/users", &other_token).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get(&server.url, "/users", &token).await.0,
        200,
        "recovers after waiting"
    );
}

#[tokio::test]
async fn revocation_rules_apply_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path();
    let key = add_app(keys, "svc");
    let server = Server::start(keys, &[]);
    let url = server.url.clone();

    let mk = |jti: &str, iat: i64| {
        forge(
            &key,
            &json!({ "appId": "svc", "iat": iat, "exp": now() + 300, "jti": jti }),
        )
    };
    let (leaked, fine) = (mk("leaked-1", now()), mk("fine-1", now()));
    assert_eq!(get(&url, "/whoami", &leaked).await.0, 200);

    fs::write(keys.join("revoked.txt"), "# incident 42\njti leaked-1\n").unwrap();
    let took = eventually(Duration::from_secs(1), || async {
        get(&url, "/whoami", &leaked).await.0 == 401
    })
    .await;
    assert!(took.is_some(), "jti not revoked within 1 s");
    let (_, body, _) = get(&url, "/whoami", &leaked).await;
    assert_eq!(body["reason"], "revoked");
    assert_eq!(get(&url, "/whoami", &fine).await.0, 200, "only that token");

    // app ... before T: older tokens revoked, newer not.
    let old = mk("old", now() - 100);
    let new = mk("new", now() + 5);
    let cutoff = jiff::Timestamp::from_second(now()).unwrap();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(keys.join("revoked.txt"))
        .unwrap();
    std::io::Write::write_all(&mut f, format!("app svc before {cutoff}\n").as_bytes()).unwrap();
    drop(f);
    let took = eventually(Duration::from_secs(1), || async {
        get(&url, "/whoami", &old).await.0 == 401
    })
    .await;
    assert!(took.is_some(), "app-before rule not applied within 1 s");
    assert_eq!(get(&url, "/whoami", &new).await.0, 200);

    // kid: every token of the key.
    fs::write(keys.join("revoked.txt"), format!("kid {}\n", key.kid())).unwrap();
    let took = eventually(Duration::from_secs(1), || async {
        get(&url, "/whoami", &new).await.0 == 401
    })
    .await;
    assert!(took.is_some());

    // A bad line keeps the previous list; removing the file un-revokes.
    fs::write(keys.join("revoked.txt"), "revoke everything\n").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get(&url, "/whoami", &new).await.0, 401, "typo un-revoked");
    assert!(
        server
            .logs()
            .contains("revoked.txt:1:1: unknown rule \"revoke\"")
    );
    fs::remove_file(keys.join("revoked.txt")).unwrap();
    let took = eventually(Duration::from_secs(1), || async {
        get(&url, "/whoami", &new).await.0 == 200
    })
    .await;
    assert!(took.is_some());
}

#[test]
fn check_config_reports_every_problem_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    fs::create_dir(&keys).unwrap();
    let good = add_app(&keys, "good");
    fs::write(keys.join("bad_public.pem"), "nope").unwrap();
    fs::write(keys.join("stray_private.pem"), "secret").unwrap();
    // A retired key as older releases of `rotate` kept it, under a name no
    // rule matches: its contents give it away.
    let old = format!("good_private.{}.pem.old", good.kid());
    fs::write(keys.join(&old), good.to_pkcs8_pem().unwrap()).unwrap();
    fs::write(keys.join("revoked.txt"), "jti ok\nkid nope\n").unwrap();
    let policy = dir.path().join("policy.toml");
    fs::write(&policy, "[default]\nallow = [\"GET users\"]\n").unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_appauth-server"))
            .args(["--check-config", "--keys-dir", keys.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--policy", policy.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad_public.pem: no PEM block found"), "{err}");
    assert!(
        err.contains("stray_private.pem: a private key does not belong"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{old}: a private key does not belong")),
        "{err}"
    );
    assert!(
        err.contains("revoked.txt:2:5: \"nope\" is not a key thumbprint"),
        "{err}"
    );
    assert!(
        err.contains("policy.toml:2:10: path \"users\" must start with '/'"),
        "{err}"
    );

    fs::remove_file(keys.join("bad_public.pem")).unwrap();
    fs::remove_file(keys.join("stray_private.pem")).unwrap();
    fs::remove_file(keys.join(&old)).unwrap();
    fs::write(keys.join("revoked.txt"), "jti ok\n").unwrap();
    fs::write(&policy, "[default]\nallow = [\"GET /users\"]\n").unwrap();
    let out = run(&["--policy", policy.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: 1 app key file(s)"));

    // The server itself refuses to start on a broken policy.
    fs::write(&policy, "[default]\nrate = \"0/s\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_appauth-server"))
        .args([
            "--keys-dir",
            keys.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("a rate must be at least 1"));
    let _ = PrivateKey::generate;
}

#[tokio::test]
async fn a_revocation_file_elsewhere_is_followed_too() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let etc = dir.path().join("etc");
    fs::create_dir(&keys).unwrap();
    fs::create_dir(&etc).unwrap();
    let key = add_app(&keys, "svc");
    let list = etc.join("revocations.txt");
    fs::write(&list, "# none yet\n").unwrap();
    let server = Server::start(&keys, &["--revocations", list.to_str().unwrap()]);
    let token = forge(
        &key,
        &json!({ "appId": "svc", "iat": now(), "exp": now() + 300, "jti": "t-1" }),
    );
    assert_eq!(get(&server.url, "/whoami", &token).await.0, 200);
    // The default location is not consulted when another is given.
    fs::write(keys.join("revoked.txt"), "jti t-1\n").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(&server.url, "/whoami", &token).await.0, 200);
    fs::write(&list, "jti t-1\n").unwrap();
    let took = eventually(Duration::from_secs(1), || async {
        get(&server.url, "/whoami", &token).await.0 == 401
    })
    .await;
    assert!(took.is_some(), "--revocations file not followed");
}
