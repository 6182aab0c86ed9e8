//! End-to-end tests: the real `appauth-server` binary on loopback, real key
//! files in a temp dir, the real client crate and hand-forged tokens.

mod access;
mod cache;
mod cluster;
mod conformance;
mod dashboard;
mod deploy;
mod drain;
mod flood;
mod gateway;
mod gateways;
mod h2;
mod interop;
mod limits;
mod replicas;
mod rotation;
mod sentinel;
mod shapes;
mod soak;
#[cfg(feature = "otel")]
mod traces;
mod util;

use std::fs;
use std::time::Duration;

use appauth_client::{AppAuthClient, Signer};
use appauth_core::{Algorithm, PrivateKey};
use appauth_testkit::{forge as testkit_forge, hmac_token};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use util::{Server, add_app, eventually, rsa_verifications};

pub(crate) fn now() -> i64 {
    appauth_core::Clock::now(&appauth_core::SystemClock)
}

fn signer(app: &str, key: &PrivateKey) -> Signer {
    Signer::builder(app)
        .key_pem(key.to_pkcs8_pem().unwrap())
        .build()
        .unwrap()
}

pub(crate) fn forge(key: &PrivateKey, claims: &Value) -> String {
    testkit_forge(
        key,
        Algorithm::RS512,
        &json!({"alg": "RS512", "typ": "JWT"}),
        claims,
    )
}

pub(crate) fn claims_for(app: &str) -> Value {
    json!({ "appId": app, "iat": now(), "exp": now() + 300 })
}

async fn call(url: &str, token: Option<&str>) -> (StatusCode, String, Value) {
    let mut req = reqwest::Client::new().get(format!("{url}/whoami"));
    if let Some(t) = token {
        req = req.header("x-token", t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, challenge, body)
}

#[tokio::test]
async fn a_real_client_calls_the_data_api() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let server = Server::start(dir.path(), &[]);
    let client = AppAuthClient::builder(signer("orders", &key))
        .build()
        .unwrap();

    let who: Value = client
        .get(format!("{}/whoami", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["appId"], "orders");
    assert_eq!(who["kid"], key.kid().as_str());
    assert_eq!(who["claims"]["appId"], "orders");

    let users: Value = client
        .get(format!("{}/users", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users.as_array().unwrap().len(), 5);
    let one = client
        .get(format!("{}/users/2", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    assert_eq!(one.json::<Value>().await.unwrap()["name"], "Grace Hopper");
    let none = client
        .get(format!("{}/users/99", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);

    // Unauthenticated routes.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = reqwest::get(format!("{}{path}", server.url)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // Bearer is accepted too; unknown paths need a token before they 404.
    let token = client.signer().token().unwrap();
    let bearer = reqwest::Client::new()
        .get(format!("{}/users", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let (status, _, _) = call(&format!("{}/nowhere/..", server.url), None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn every_bad_input_is_refused_with_status_reason_and_header() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let _other_app = add_app(dir.path(), "billing");
    let attacker = PrivateKey::generate(2048).unwrap();
    let public_pem = key.public_key_pem().unwrap();
    fs::write(
        dir.path().join("stray_private.pem"),
        attacker.to_pkcs8_pem().unwrap(),
    )
    .unwrap();
    let server = Server::start(dir.path(), &["--audience", "data-api"]);
    let url = &server.url;

    let good_claims =
        json!({ "appId": "orders", "iat": now(), "exp": now() + 300, "aud": "data-api" });
    let good = forge(&key, &good_claims);
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let with = |extra: Value| {
        let mut c = good_claims.clone();
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let without = |name: &str| {
        let mut c = good_claims.clone();
        c.as_object_mut().unwrap().remove(name);
        c
    };

    let junk: Vec<(&str, String, &str)> = vec![
        ("junk", "junk".into(), "malformed"),
        ("two parts", format!("{h}.{p}"), "malformed"),
        ("64 KiB", "a".repeat(64 * 1024), "malformed"),
        (
            "alg none",
            format!("{}.{p}.", b64(r#"{"alg":"none"}"#)),
            "malformed",
        ),
        (
            "alg none, signature kept",
            format!("{}.{p}.{s}", b64(r#"{"alg":"none"}"#)),
            "unsupported_alg",
        ),
        (
            "HS256 with the public key",
            hmac_token("HS256", public_pem.as_bytes(), &good_claims),
            "unsupported_alg",
        ),
        (
            "HS512 with the public key",
            hmac_token("HS512", public_pem.as_bytes(), &good_claims),
            "unsupported_alg",
        ),
        (
            "RS256",
            testkit_forge(
                &key,
                Algorithm::RS256,
                &json!({"alg":"RS256"}),
                &good_claims,
            ),
            "unsupported_alg",
        ),
        (
            "crit",
            testkit_forge(
                &key,
                Algorithm::RS512,
                &json!({"alg":"RS512","crit":["x"]}),
                &good_claims,
            ),
            "malformed",
        ),
        (
            "path traversal",
            forge(&key, &with(json!({"appId": "../orders"}))),
            "malformed",
        ),
        (
            "NUL",
            forge(&key, &with(json!({"appId": "ord\u{0}ers"}))),
            "malformed",
        ),
        (
            "300 characters",
            forge(&key, &with(json!({"appId": "a".repeat(300)}))),
            "malformed",
        ),
        (
            "appId not a string",
            forge(&key, &with(json!({"appId": ["orders"]}))),
            "malformed",
        ),
        (
            "unknown app",
            forge(&key, &with(json!({"appId": "nobody"}))),
            "unknown_app",
        ),
        (
            "private key file is not a public key",
            forge(&attacker, &with(json!({"appId": "stray"}))),
            "unknown_app",
        ),
    ];
    let rsa_before = rsa_verifications(url).await;
    for (name, token, reason) in &junk {
        let (status, challenge, body) = call(url, Some(token)).await;
        assert_eq!(status, 401, "{name}");
        assert_eq!(body["reason"], *reason, "{name}: {body}");
        assert_eq!(
            challenge, r#"Bearer realm="appauth", error="invalid_token""#,
            "{name}"
        );
    }
    assert_eq!(
        rsa_verifications(url).await,
        rsa_before,
        "junk cost an RSA verification"
    );

    let signed: Vec<(&str, String, &str)> = vec![
        (
            "embedded jwk/jku/x5u of the attacker",
            testkit_forge(
                &attacker,
                Algorithm::RS512,
                &json!({"alg":"RS512","jwk":{"kty":"RSA","e":"AQAB","n":"AQAB"},"jku":"http://127.0.0.1:1/jwks","x5u":"http://127.0.0.1:1/x5u"}),
                &good_claims,
            ),
            "bad_signature",
        ),
        (
            "key of another app",
            forge(&attacker, &with(json!({"appId": "billing"}))),
            "bad_signature",
        ),
        (
            "expired",
            forge(&key, &with(json!({"iat": now() - 600, "exp": now() - 300}))),
            "expired",
        ),
        ("missing exp", forge(&key, &without("exp")), "malformed"),
        ("missing iat", forge(&key, &without("iat")), "malformed"),
        (
            "future iat",
            forge(&key, &with(json!({"iat": now() + 600, "exp": now() + 900}))),
            "not_yet_valid",
        ),
        (
            "future nbf",
            forge(&key, &with(json!({"nbf": now() + 600}))),
            "not_yet_valid",
        ),
        (
            "lifetime too long",
            forge(&key, &with(json!({"exp": now() + 7200}))),
            "lifetime_too_long",
        ),
        (
            "wrong audience",
            forge(&key, &with(json!({"aud": "billing-api"}))),
            "wrong_audience",
        ),
        (
            "no audience",
            forge(&key, &without("aud")),
            "wrong_audience",
        ),
    ];
    for (name, token, reason) in &signed {
        let (status, challenge, body) = call(url, Some(token)).await;
        assert_eq!(
            (status.as_u16(), body["reason"].as_str()),
            (401, Some(*reason)),
            "{name}: {body}"
        );
        assert!(challenge.contains(r#"error="invalid_token""#), "{name}");
    }

    // Missing and doubled tokens are invalid_request.
    let (status, challenge, body) = call(url, None).await;
    assert_eq!(
        (status.as_u16(), body["reason"].as_str()),
        (401, Some("missing_token"))
    );
    assert!(challenge.contains(r#"error="invalid_request""#));
    let other = forge(&key, &good_claims.clone());
    let doubled = reqwest::Client::new()
        .get(format!("{url}/whoami"))
        .header("x-token", &good)
        .bearer_auth(format!("{other}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(doubled.status(), 401);
    assert!(
        doubled.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_request")
    );

    // Valid callers were served throughout.
    let (status, _, body) = call(url, Some(&good)).await;
    assert_eq!(
        (status.as_u16(), body["appId"].as_str()),
        (200, Some("orders"))
    );

    // Neither bodies nor logs ever carry a token; every rejection is logged.
    let logs = server.logs();
    for (name, token, _) in junk.iter().chain(signed.iter()) {
        if token.len() > 40 {
            let sig = token.rsplit('.').next().unwrap();
            let needle = if sig.len() > 20 { sig } else { &token[..40] };
            assert!(!logs.contains(needle), "{name}: token in the log");
        }
    }
    assert!(
        logs.contains("reason=\"bad_signature\"") || logs.contains("reason=bad_signature"),
        "{logs}"
    );
    assert!(
        logs.contains("PRIVATE KEY in the server's keys directory"),
        "{logs}"
    );
}

async fn status_of(url: &str, token: &str) -> (u16, String) {
    let (status, _, body) = call(url, Some(token)).await;
    (
        status.as_u16(),
        body["reason"].as_str().unwrap_or("").to_owned(),
    )
}

const WITHIN: Duration = Duration::from_secs(1);

async fn becomes(url: &str, token: &str, want: (u16, &str)) -> bool {
    let seen = eventually(WITHIN, || async {
        status_of(url, token).await == (want.0, want.1.to_owned())
    })
    .await;
    seen.is_some()
}

#[tokio::test]
async fn hot_reload_follows_every_kind_of_change_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path();
    let a = add_app(keys, "app-a");
    let server = Server::start(keys, &[]);
    let url = server.url.clone();
    let token_a = forge(&a, &claims_for("app-a"));
    assert_eq!(status_of(&url, &token_a).await, (200, String::new()));

    // Create.
    let b = PrivateKey::generate(2048).unwrap();
    let token_b = forge(&b, &claims_for("app-b"));
    assert_eq!(status_of(&url, &token_b).await.1, "unknown_app");
    fs::write(keys.join("app-b_public.pem"), b.public_key_pem().unwrap()).unwrap();
    assert!(becomes(&url, &token_b, (200, "")).await, "create");

    // Replace in place (truncate and write) with another key.
    let b2 = PrivateKey::generate(2048).unwrap();
    let token_b2 = forge(&b2, &claims_for("app-b"));
    fs::write(keys.join("app-b_public.pem"), b2.public_key_pem().unwrap()).unwrap();
    assert!(
        becomes(&url, &token_b2, (200, "")).await,
        "replace in place"
    );
    assert!(
        becomes(&url, &token_b, (401, "bad_signature")).await,
        "old key gone"
    );

    // Replace by atomic rename.
    let b3 = PrivateKey::generate(2048).unwrap();
    let token_b3 = forge(&b3, &claims_for("app-b"));
    fs::write(keys.join(".tmp-new"), b3.public_key_pem().unwrap()).unwrap();
    fs::rename(keys.join(".tmp-new"), keys.join("app-b_public.pem")).unwrap();
    assert!(becomes(&url, &token_b3, (200, "")).await, "rename");

    // A two-key rotation bundle: both keys verify.
    let bundle = format!(
        "{}{}",
        b3.public_key_pem().unwrap(),
        b2.public_key_pem().unwrap()
    );
    fs::write(keys.join("app-b_public.pem"), bundle).unwrap();
    assert!(
        becomes(&url, &token_b2, (200, "")).await,
        "bundle, second key"
    );
    assert_eq!(status_of(&url, &token_b3).await.0, 200, "bundle, first key");

    // Garbage, written in place, fails closed for that app only, and is
    // counted once: the watcher reads a file its writer still holds only
    // once it is closed, so the moment between the truncation and the
    // bytes is never read (or counted) as an empty file.
    let errors = "appauth_key_file_errors_total";
    let refused_before = util::metric(&url, errors).await;
    fs::write(
        keys.join("app-b_public.pem"),
        "-----BEGIN PUBLIC KEY-----\ngarbage\n",
    )
    .unwrap();
    assert!(
        becomes(&url, &token_b3, (401, "unknown_app")).await,
        "garbage"
    );
    assert_eq!(
        status_of(&url, &token_a).await.0,
        200,
        "other apps untouched"
    );
    let refused = util::metric(&url, errors).await;
    assert_eq!(refused, refused_before + 1);

    // Delete.
    fs::remove_file(keys.join("app-a_public.pem")).unwrap();
    assert!(
        becomes(&url, &token_a, (401, "unknown_app")).await,
        "delete"
    );

    // The refused file is remembered by its fingerprint: what follows does
    // not read it, or count it, again.
    assert_eq!(util::metric(&url, errors).await, refused);
    assert!(server.logs().contains("refusing key file"));
}

/// Kubernetes mounts Secrets and ConfigMaps as `name -> ..data/name`
/// symlinks, and updates them by swapping the `..data` symlink atomically.
#[tokio::test]
async fn kubernetes_data_symlink_swap_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path();
    let v1 = PrivateKey::generate(2048).unwrap();
    let v2 = PrivateKey::generate(2048).unwrap();
    let write_version = |name: &str, key: &PrivateKey| {
        let d = keys.join(name);
        fs::create_dir(&d).unwrap();
        fs::write(d.join("svc_public.pem"), key.public_key_pem().unwrap()).unwrap();
    };
    write_version("..2026_01_01_v1", &v1);
    std::os::unix::fs::symlink("..2026_01_01_v1", keys.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/svc_public.pem", keys.join("svc_public.pem")).unwrap();

    let server = Server::start(keys, &[]);
    let t1 = forge(&v1, &claims_for("svc"));
    let t2 = forge(&v2, &claims_for("svc"));
    assert_eq!(status_of(&server.url, &t1).await.0, 200);

    // What kubelet's atomic writer does.
    write_version("..2026_01_02_v2", &v2);
    std::os::unix::fs::symlink("..2026_01_02_v2", keys.join("..data_tmp")).unwrap();
    fs::rename(keys.join("..data_tmp"), keys.join("..data")).unwrap();
    fs::remove_dir_all(keys.join("..2026_01_01_v1")).unwrap();

    assert!(becomes(&server.url, &t2, (200, "")).await, "..data swap");
    assert_eq!(status_of(&server.url, &t1).await.1, "bad_signature");
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    add_app(dir.path(), "a");
    let mut server = Server::start(dir.path(), &[]);
    appauth_testkit::send_signal(server.pid(), "TERM");
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn start_up_errors_are_one_clear_line() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_appauth-server"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--keys-dir", "/nonexistent/keys"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("keys directory /nonexistent/keys: does not exist"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().to_str().unwrap();
    let out = run(&["--keys-dir", keys, "--algorithms", "HS256"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported algorithm"));
    let out = run(&["--keys-dir", keys, "--bind", "256.0.0.1:1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on 256.0.0.1:1"));
}
