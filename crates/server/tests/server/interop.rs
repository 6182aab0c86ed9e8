//! appauth's keys and tokens read by someone else's code: PyJWT verifies a
//! token using nothing but the server's JWKS URL.

use std::fs;
use std::time::Duration;

use appauth_client::Signer;
use appauth_core::PrivateKey;

use crate::util::{Server, add_app, eventually, replace};

fn jwks_url(server: &Server, app: &str) -> String {
    format!("{}/.well-known/appauth/{app}/jwks.json", server.url)
}

async fn kids(url: &str) -> Option<Vec<String>> {
    let resp = reqwest::get(url).await.unwrap();
    if resp.status() != 200 {
        return None;
    }
    let set: serde_json::Value = resp.json().await.unwrap();
    Some(
        set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect(),
    )
}

#[tokio::test]
async fn pyjwt_verifies_a_token_from_the_jwks_url_alone() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let server = Server::start(dir.path(), &["--serve-jwks"]);
    let url = jwks_url(&server, "orders");

    let signer = Signer::builder("orders")
        .key_pem(key.to_pkcs8_pem().unwrap())
        .app_as_issuer(true)
        .build()
        .unwrap();
    let token = signer.token().unwrap();
    let script = appauth_testkit::fixture_path("../interop/pyjwt_remote_jwks.py");
    let run = |token: &str, issuer: &str| {
        std::process::Command::new("python3")
            .arg(&script)
            .args([&url, token, issuer])
            .output()
            .expect("python3")
    };
    let out = run(&token, "orders");
    assert!(
        out.status.success(),
        "PyJWT refused the token: {} (the test needs `pip install pyjwt cryptography`; scripts/test.sh installs them)",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "orders");
    // The same check refuses a token of another issuer and a forged one.
    assert!(!run(&token, "billing").status.success());
    let forged = appauth_testkit::forge(
        &PrivateKey::generate(2048).unwrap(),
        appauth_core::Algorithm::RS512,
        &serde_json::json!({"alg": "RS512", "kid": key.kid().as_str()}),
        &serde_json::json!({"appId": "orders", "iss": "orders", "sub": "orders",
                            "iat": crate::now(), "exp": crate::now() + 300}),
    );
    assert!(!run(&forged, "orders").status.success());
}

#[tokio::test]
async fn the_jwks_follows_the_keys_directory_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let old = add_app(dir.path(), "orders");
    let server = Server::start(dir.path(), &["--serve-jwks"]);
    let url = jwks_url(&server, "orders");
    assert_eq!(kids(&url).await, Some(vec![old.kid().to_string()]));
    // Open: no token needed, GET only; an unknown app is 404.
    assert_eq!(kids(&jwks_url(&server, "nobody")).await, None);
    let post = reqwest::Client::new().post(&url).send().await.unwrap();
    assert_eq!(post.status(), 401);

    // A rotation: the bundle gains a key; the set shows both within 1 s.
    let new = PrivateKey::generate(2048).unwrap();
    let bundle = format!(
        "{}{}",
        old.public_key_pem().unwrap(),
        new.public_key_pem().unwrap()
    );
    fs::write(dir.path().join("orders_public.pem"), bundle).unwrap();
    let both = vec![old.kid().to_string(), new.kid().to_string()];
    let took = eventually(Duration::from_secs(1), || {
        let (url, both) = (url.clone(), both.clone());
        async move { kids(&url).await == Some(both) }
    })
    .await;
    assert!(took.is_some(), "rotated bundle not in the JWKS within 1 s");

    // The app's key file removed: 404 within 1 s.
    fs::remove_file(dir.path().join("orders_public.pem")).unwrap();
    let took = eventually(Duration::from_secs(1), || {
        let url = url.clone();
        async move { kids(&url).await.is_none() }
    })
    .await;
    assert!(took.is_some());

    // Without --serve-jwks the route does not exist (and needs a token).
    let plain = Server::start(dir.path(), &[]);
    let resp = reqwest::get(jwks_url(&plain, "orders")).await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[test]
fn every_other_spelling_of_the_jwks_route_is_refused_before_any_route() {
    let dir = tempfile::tempdir().unwrap();
    add_app(dir.path(), "orders");
    let server = Server::start(dir.path(), &["--serve-jwks"]);
    let status = |path: &str| crate::util::raw_status(&server.url, path);
    assert_eq!(status("/.well-known/appauth/orders/jwks.json"), Some(200));
    for disguised in [
        "/.well-known/appauth/%6frders/jwks.json",
        "/.well-known/appauth/orders/jwks%2ejson",
        "/.well-known/appauth/x/../orders/jwks.json",
        "/.well-known/appauth/%2e%2e/appauth/orders/jwks.json",
        "/.well-known/appauth/./orders/jwks.json",
        "/.well-known/appauth/orders/..;/orders/jwks.json",
        "/.well-known/appauth//orders/jwks.json",
        "/.well-known/appauth/%c0%ae%c0%ae/orders/jwks.json",
        "/%2ewell-known/appauth/orders/jwks.json",
    ] {
        assert_eq!(status(disguised), Some(400), "{disguised}");
    }
}

#[tokio::test]
async fn the_jwks_advertises_the_algorithm_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    add_app(dir.path(), "orders");
    let alg = |algorithms: &'static str| {
        let dir = dir.path().to_path_buf();
        async move {
            let server = Server::start(&dir, &["--serve-jwks", "--algorithms", algorithms]);
            let set: serde_json::Value = reqwest::get(jwks_url(&server, "orders"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            set["keys"][0].get("alg").cloned()
        }
    };
    assert_eq!(alg("RS512").await, Some("RS512".into()));
    assert_eq!(alg("PS256").await, Some("PS256".into()));
    // A JWK names at most one algorithm: with several accepted, none.
    assert_eq!(alg("RS256,RS512").await, None);
}

#[tokio::test]
async fn a_running_client_follows_its_key_file_through_a_rotation_and_an_early_retirement() {
    let root = tempfile::tempdir().unwrap();
    let keys = root.path().join("keys");
    let private = root.path().join("private");
    fs::create_dir_all(&keys).unwrap();
    fs::create_dir_all(&private).unwrap();
    let old = PrivateKey::generate(2048).unwrap();
    let key_file = private.join("orders_private.pem");
    fs::write(&key_file, old.to_pkcs8_pem().unwrap()).unwrap();
    fs::write(
        keys.join("orders_public.pem"),
        old.public_key_pem().unwrap(),
    )
    .unwrap();
    let server = Server::start(&keys, &[]);
    let signer = Signer::builder("orders")
        .key_file(&key_file)
        .build()
        .unwrap();
    let client = appauth_client::AppAuthClient::builder(signer)
        .build()
        .unwrap();
    let call = || async {
        let resp = client
            .get(format!("{}/whoami", server.url))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let who: serde_json::Value = resp.json().await.unwrap_or_default();
        (status, who["kid"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(call().await, (200, old.kid().to_string()));

    // Rotation: the bundle gains the new key, the private key is replaced.
    let new = PrivateKey::generate(2048).unwrap();
    let bundle = format!(
        "{}{}",
        old.public_key_pem().unwrap(),
        new.public_key_pem().unwrap()
    );
    replace(&keys.join("orders_public.pem"), &bundle);
    replace(&key_file, &new.to_pkcs8_pem().unwrap());
    // Retired early: the old key leaves the bundle while the client's cached
    // token is still signed with it.
    replace(
        &keys.join("orders_public.pem"),
        &new.public_key_pem().unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The cached old-key token is refused once; the retry signs with the new
    // key read from the file: the caller sees no failure.
    let mut kids = Vec::new();
    for _ in 0..20 {
        let (status, kid) = call().await;
        assert_eq!(status, 200);
        kids.push(kid);
    }
    assert!(kids.iter().all(|k| *k == new.kid().to_string()), "{kids:?}");

    // A broken key file keeps the last good key, and says so.
    fs::write(&key_file, "-----BEGIN PRIVATE KEY-----\ntruncat").unwrap();
    let signer = client.signer();
    let _ = signer
        .refresh_after_rejection(&signer.token().unwrap())
        .unwrap();
    assert_eq!(signer.kid(), *new.kid());
    assert!(
        signer
            .key_file_problem()
            .is_some_and(|p| p.contains("previous key"))
    );
    assert_eq!(call().await.0, 200);
}
