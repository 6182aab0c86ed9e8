//! The signer and the HTTP client against the core verifier, openssl, and a
//! small real HTTP server on loopback.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use appauth_client::{AppAuthClient, Error, Signer, TokenHeader};
use appauth_core::{
    Algorithm, AppId, Clock, ManualClock, PublicKey, Verifier, VerifyConfig, parse_public_bundle,
};
use appauth_testkit::fixture_path;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const NOW: i64 = 1_800_000_000;

fn node_signer(clock: Arc<ManualClock>) -> Signer {
    Signer::builder("node-app")
        .key_file(fixture_path("node/node-app_private.pem"))
        .clock(clock)
        .build()
        .unwrap()
}

fn node_keys() -> HashMap<AppId, Arc<[PublicKey]>> {
    let pem = std::fs::read(fixture_path("node/node-app_public.pem")).unwrap();
    let keys = parse_public_bundle(&pem, NOW, &[Algorithm::RS512]).unwrap();
    HashMap::from([(AppId::new("node-app").unwrap(), keys.into())])
}

fn json_part(token: &str, i: usize) -> serde_json::Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn tokens_carry_kid_jti_and_backdated_iat_and_verify() {
    let clock = Arc::new(ManualClock::new(NOW));
    let signer = node_signer(clock.clone());
    let token = signer.token().unwrap();
    let header = json_part(&token, 0);
    assert_eq!(header["alg"], "RS512");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], signer.kid().as_str());
    let claims = json_part(&token, 1);
    assert_eq!(claims["appId"], "node-app");
    assert_eq!(claims["exp"], NOW + 300);
    assert!(claims["iat"].as_i64().unwrap() < NOW, "iat is backdated");
    assert_eq!(claims["jti"].as_str().unwrap().len(), 22);

    let verifier = Verifier::with_clock(VerifyConfig::default(), clock.clone());
    let ok = verifier.verify(&token, &node_keys()).unwrap();
    assert_eq!(ok.kid, signer.kid());

    // A new token gets a new jti.
    clock.advance(290);
    let next = signer.token().unwrap();
    assert_ne!(json_part(&next, 1)["jti"], claims["jti"]);
}

#[test]
fn openssl_verifies_our_signatures_independently() {
    let signer = node_signer(Arc::new(ManualClock::new(NOW)));
    let token = signer.token().unwrap();
    let (input, sig) = token.rsplit_once('.').unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input"), input).unwrap();
    std::fs::write(dir.path().join("sig"), URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
    let run = |input: &str| {
        std::process::Command::new("openssl")
            .args(["dgst", "-sha512", "-verify"])
            .arg(fixture_path("node/node-app_public.pem"))
            .arg("-signature")
            .arg(dir.path().join("sig"))
            .arg(dir.path().join(input))
            .output()
            .expect("openssl is installed")
    };
    let out = run("input");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Verified OK");
    std::fs::write(dir.path().join("tampered"), format!("{input}x")).unwrap();
    assert!(!run("tampered").status.success());
}

#[test]
fn bad_keys_and_settings_fail_at_build_time() {
    let build = |app: &str, key: &str, ttl: u64| {
        Signer::builder(app)
            .key_file(fixture_path(key))
            .ttl(ttl)
            .build()
            .unwrap_err()
    };
    let ok_key = "node/node-app_private.pem";
    let cases: Vec<(Error, &str)> = vec![
        (
            build("node-app", "missing.pem", 300),
            "cannot read private key",
        ),
        (build("node-app", "keys", 300), "cannot read private key"),
        (
            build("node-app", "keys/ec_private.pem", 300),
            "not an RSA private key",
        ),
        (
            build("node-app", "keys/rsa1024_private.pem", 300),
            "at least 2048 bits",
        ),
        (
            build("node-app", "keys/encrypted_private.pem", 300),
            "encrypted",
        ),
        (
            build("node-app", "node/node-app_public.pem", 300),
            "not an RSA private key",
        ),
        (build("../node-app", ok_key, 300), "invalid appId"),
        (build("node-app", ok_key, 0), "out of range"),
        (build("node-app", ok_key, 100_000), "out of range"),
    ];
    for (err, expected) in cases {
        assert!(err.to_string().contains(expected), "{err}");
    }
    let no_key = Signer::builder("node-app").build().unwrap_err();
    assert!(matches!(no_key, Error::NoKey));
    let reserved = Signer::builder("node-app")
        .key_file(fixture_path(ok_key))
        .claim("exp", 1)
        .build()
        .unwrap_err();
    assert!(matches!(reserved, Error::ReservedClaim(_)));
}

/// Many threads call token() across refresh and expiry boundaries: each
/// refresh costs exactly one signature and nobody gets an expired token.
#[test]
fn one_signature_per_refresh_under_contention() {
    const THREADS: usize = 16;
    const CALLS: usize = 200;
    let clock = Arc::new(ManualClock::new(NOW));
    let signer = Arc::new(node_signer(clock.clone()));
    // Phases: fresh start, inside the refresh window, past expiry, then
    // twice more across windows.
    let phases = [NOW, NOW + 250, NOW + 1000, NOW + 1250, NOW + 5000];
    for (i, at) in phases.into_iter().enumerate() {
        clock.set(at);
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (signer, barrier, clock) = (signer.clone(), barrier.clone(), clock.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..CALLS {
                        let token = signer.token().unwrap();
                        let exp = json_part(&token, 1)["exp"].as_i64().unwrap();
                        assert!(exp > clock.now(), "expired token handed out");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(signer.signatures_made(), i as u64 + 1, "phase {i} at {at}");
    }
}

/// A tiny HTTP/1.1 server: answers 401 to the first `fail_first` requests,
/// 200 afterwards, and records the token headers it saw.
struct TestServer {
    url: String,
    seen: Arc<Mutex<Vec<SeenHeaders>>>,
}

/// `(x-token, authorization)` of one request.
type SeenHeaders = (Option<String>, Option<String>);

async fn test_server(fail_first: usize) -> TestServer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (seen, count) = (seen2.clone(), count.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let header = |name: &str| {
                            head.lines()
                                .find_map(|l| {
                                    l.split_once(':')
                                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                                })
                                .map(|(_, v)| v.trim().to_owned())
                        };
                        seen.lock()
                            .unwrap()
                            .push((header("x-token"), header("authorization")));
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        let status = if n < fail_first {
                            "401 Unauthorized"
                        } else {
                            "200 OK"
                        };
                        let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\nok");
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    TestServer { url, seen }
}

#[tokio::test]
async fn client_sends_x_token_and_retries_once_on_401() {
    let server = test_server(1).await;
    let clock = Arc::new(ManualClock::new(NOW));
    let client = AppAuthClient::builder(node_signer(clock)).build().unwrap();
    let resp = client
        .get(format!("{}/users", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one retry");
    let (first, second) = (seen[0].0.clone().unwrap(), seen[1].0.clone().unwrap());
    assert_ne!(first, second, "the retry carries a freshly signed token");
    assert_eq!(client.signer().signatures_made(), 2);
}

#[tokio::test]
async fn client_gives_up_after_one_retry_and_can_use_bearer() {
    let server = test_server(usize::MAX).await;
    let clock = Arc::new(ManualClock::new(NOW));
    let client = AppAuthClient::builder(node_signer(clock))
        .header(TokenHeader::Bearer)
        .build()
        .unwrap();
    let resp = client
        .post(format!("{}/orders", server.url))
        .with(|b| b.body("{}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|(x, a)| x.is_none() && a.as_deref().is_some_and(|a| a.starts_with("Bearer ey")))
    );
}

#[test]
fn appauth_token_prints_one_verifiable_token_or_a_clear_error() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_appauth-token"))
            .args(args)
            .output()
            .unwrap()
    };
    let key = fixture_path("node/node-app_private.pem");
    let out = run(&[
        "--app-id",
        "node-app",
        "--key",
        key.to_str().unwrap(),
        "--ttl",
        "60",
        "--aud",
        "data-api",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3);
    let claims = json_part(token, 1);
    assert_eq!(claims["aud"], "data-api");
    let now = appauth_core::SystemClock.now();
    let config = VerifyConfig {
        audience: Some("data-api".into()),
        ..Default::default()
    };
    let keys = node_keys();
    assert!(Verifier::new(config).verify(token, &keys).is_ok());
    assert!((claims["exp"].as_i64().unwrap() - now - 60).abs() <= 2);

    let bad = run(&["--app-id", "a/b", "--key", key.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid appId"));
    let bad = run(&["--app-id", "node-app", "--key", "/nonexistent.pem"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot read private key"));
    assert!(bad.stdout.is_empty());
}

#[test]
fn appauth_token_follows_the_servers_maximum_lifetime_flag() {
    let key = fixture_path("node/node-app_private.pem");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_appauth-token"))
            .args(["--app-id", "node-app", "--key", key.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    // Over the default maximum: refused, naming the way out.
    let out = run(&["--ttl", "7000"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("3600s") && err.contains("--max-token-lifetime"),
        "{err}"
    );
    // A server run with --max-token-lifetime 7200: the tool follows it.
    let out = run(&["--ttl", "7000", "--max-lifetime", "7200"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let claims = json_part(token.trim(), 1);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        7000 + 10
    );
    // ...also through the variable the server reads.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_appauth-token"))
        .args([
            "--app-id",
            "node-app",
            "--key",
            key.to_str().unwrap(),
            "--ttl",
            "7000",
        ])
        .env("APPAUTH_MAX_TOKEN_LIFETIME", "7200")
        .output()
        .unwrap();
    assert!(out.status.success());
}

/// A server that redirects `/go` to `to`, answers 200 to anything else, and
/// records the x-token of every request.
async fn redirecting_server(to: String) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let token = head.lines().find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("x-token"))
                    .map(|(_, v)| v.trim().to_owned())
            });
            record.lock().unwrap().push(token);
            let resp = if head.starts_with("GET /go ") {
                format!(
                    "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
            } else {
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_owned()
            };
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    (url, seen)
}

#[tokio::test]
async fn the_token_never_follows_a_redirect_to_another_origin() {
    let other = test_server(0).await;
    let (url, first) = redirecting_server(format!("{}/collect", other.url)).await;
    let clock = Arc::new(ManualClock::new(NOW));
    let client = AppAuthClient::builder(node_signer(clock)).build().unwrap();
    let resp = client.get(format!("{url}/go")).send().await.unwrap();
    // The caller gets the redirect itself; the other port saw nothing.
    assert_eq!(resp.status(), 302);
    assert!(first.lock().unwrap()[0].is_some());
    assert!(
        other.seen.lock().unwrap().is_empty(),
        "token sent to another origin"
    );

    // Within the origin, redirects are followed, with the token.
    let (url, seen) = redirecting_server("/here".to_owned()).await;
    let resp = client.get(format!("{url}/go")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(Option::is_some));
}

fn token_tool(args: &[&str], stdin: Option<&str>) -> (u8, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_appauth-token"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap() as u8,
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn inspect_gives_the_servers_verdict_and_exits_zero_only_when_it_verifies() {
    let key = fixture_path("node/node-app_private.pem");
    let key = key.to_str().unwrap();
    let public = fixture_path("node/node-app_public.pem");
    let (code, token, _) = token_tool(&["--app-id", "node-app", "--key", key], None);
    assert_eq!(code, 0);
    let token = token.trim();

    // Valid, checked against a keys directory as the server reads it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&public, dir.path().join("node-app_public.pem")).unwrap();
    let keys_dir = dir.path().to_str().unwrap();
    let (code, out, _) = token_tool(&["inspect", token, "--keys-dir", keys_dir, "--json"], None);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"]["status"], "verified");
    assert_eq!(v["claims"]["appId"], "node-app");
    assert!(v["expires"]["words"].as_str().unwrap().starts_with("in "));

    // Expired: signed on a clock an hour behind, refused as the server would.
    let old = appauth_core::SystemClock.now() - 3600;
    let signer = Signer::builder("node-app")
        .key_file(fixture_path("node/node-app_private.pem"))
        .clock(Arc::new(ManualClock::new(old)))
        .build()
        .unwrap();
    let expired = signer.token().unwrap();
    let (code, out, _) = token_tool(
        &["inspect", &expired, "--key", public.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("REFUSED: expired"), "{out}");
    assert!(out.contains(" ago)"), "{out}");

    // Forged: same claims, another key; read from stdin.
    let other =
        appauth_core::PrivateKey::from_pem(&appauth_testkit::fixture("keys/other_private.pem"))
            .unwrap();
    let forged = appauth_testkit::forge(
        &other,
        Algorithm::RS512,
        &serde_json::json!({"alg": "RS512"}),
        &json_part(token, 1),
    );
    let (code, out, _) = token_tool(&["inspect", "-", "--keys-dir", keys_dir], Some(&forged));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("REFUSED: bad_signature"), "{out}");

    // Not checked without keys; junk is no token at all (2, unusable
    // input), with or without keys, and the verdict still says why.
    assert_eq!(token_tool(&["inspect", token], None).0, 3);
    assert_eq!(token_tool(&["inspect", "a.b.c"], None).0, 2);
    let (code, out, _) = token_tool(&["inspect", "not.a.token", "--key", key, "--json"], None);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"]["reason"], "malformed");
}

#[test]
fn extra_claims_keep_their_types_and_errors_in_json_mode_are_json() {
    let key = fixture_path("node/node-app_private.pem");
    let key = key.to_str().unwrap();
    let (code, out, _) = token_tool(
        &[
            "--app-id",
            "node-app",
            "--key",
            key,
            "--json",
            "--as-issuer",
            "--claim",
            "tier=3",
            "--claim",
            "admin=false",
            "--claim",
            "role=batch",
            "--claim",
            "ratio=0.5",
            "--claim",
            "id=007x",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let claims = json_part(v["token"].as_str().unwrap(), 1);
    assert_eq!(claims["tier"], 3);
    assert_eq!(claims["admin"], false);
    assert_eq!(claims["ratio"], 0.5);
    assert_eq!(claims["role"], "batch");
    assert_eq!(claims["id"], "007x");
    assert_eq!(
        (&claims["iss"], &claims["sub"]),
        (&"node-app".into(), &"node-app".into())
    );

    // A verifier configured per issuer (as a JWT gateway is) accepts it.
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS512);
    validation.set_issuer(&["node-app"]);
    validation.sub = Some("node-app".into());
    let decoding = jsonwebtoken::DecodingKey::from_rsa_pem(&appauth_testkit::fixture(
        "node/node-app_public.pem",
    ))
    .unwrap();
    jsonwebtoken::decode::<serde_json::Value>(v["token"].as_str().unwrap(), &decoding, &validation)
        .unwrap();

    // Errors, in JSON mode, are JSON on stdout.
    for (args, kind) in [
        (
            vec![
                "--app-id",
                "node-app",
                "--key",
                "/nonexistent.pem",
                "--json",
            ],
            "sign",
        ),
        (
            vec![
                "--app-id", "node-app", "--key", key, "--ttl", "99999", "--json",
            ],
            "sign",
        ),
        (
            vec![
                "--app-id", "node-app", "--key", key, "--claim", "novalue", "--json",
            ],
            "usage",
        ),
        (
            vec![
                "--app-id", "node-app", "--key", key, "--claim", "iat=1", "--json",
            ],
            "sign",
        ),
        (vec!["inspect", "x", "--key", "/dev/zero", "--json"], "keys"),
    ] {
        let (code, out, _) = token_tool(&args, None);
        assert_ne!(code, 0, "{args:?}");
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
        assert_eq!(v["error"], kind, "{args:?}: {out}");
    }
    // A key file that never ends is refused, not read into memory.
    let (code, _, err) = token_tool(&["--app-id", "a", "--key", "/dev/zero"], None);
    assert_eq!(code, 1);
    assert!(err.contains("limit"), "{err}");
}

/// A loopback server that answers the n-th connection (0-based) with
/// `script(n)`: `None` closes it without a word, `Some(text)` writes the
/// whole response. Every connection serves one request.
async fn scripted_server(
    script: impl Fn(usize) -> Option<String> + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let script = script.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let _ = sock.read(&mut buf).await;
                if let Some(reply) = script(n) {
                    let _ = sock.write_all(reply.as_bytes()).await;
                }
            });
        }
    });
    (url, count)
}

fn reply(status: &str, extra: &str) -> Option<String> {
    Some(format!(
        "HTTP/1.1 {status}\r\n{extra}content-length: 2\r\nconnection: close\r\n\r\nok"
    ))
}

fn quick_client() -> AppAuthClient {
    AppAuthClient::builder(node_signer(Arc::new(ManualClock::new(NOW))))
        .timeouts(appauth_client::Timeouts {
            connect: std::time::Duration::from_secs(1),
            read: std::time::Duration::from_secs(1),
            total: std::time::Duration::from_secs(2),
        })
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_server_that_never_answers_costs_the_timeout_not_forever() {
    // Accepts, reads, and holds the connection open without a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let started = std::time::Instant::now();
    let err = quick_client()
        .get(format!("{url}/x"))
        .send()
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.to_string().contains("timed out") || err.to_string().contains("timeout"),
        "{err}"
    );
}

#[tokio::test]
async fn a_refused_connection_says_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = quick_client()
        .get(format!("http://127.0.0.1:{port}/x"))
        .send()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("refused"), "{err}");
}

#[tokio::test]
async fn busy_servers_and_dropped_connections_are_retried_when_safe() {
    // 503 with Retry-After: 1, then 200: one retry, after the second asked.
    let (url, count) = scripted_server(|n| match n {
        0 => reply("503 Service Unavailable", "retry-after: 1\r\n"),
        _ => reply("200 OK", ""),
    })
    .await;
    let started = std::time::Instant::now();
    let resp = quick_client().get(format!("{url}/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() >= std::time::Duration::from_millis(950));

    // A connection closed without an answer, then 200: a GET is retried...
    let (url, count) = scripted_server(|n| if n == 0 { None } else { reply("200 OK", "") }).await;
    let resp = quick_client().get(format!("{url}/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(count.load(Ordering::SeqCst), 2);
    // ...a POST is not: it may have been acted on.
    let (url, count) = scripted_server(|n| if n == 0 { None } else { reply("200 OK", "") }).await;
    let client = quick_client();
    let result = client
        .post(format!("{url}/orders"))
        .with(|b| b.body("{}"))
        .send()
        .await;
    assert!(result.is_err());
    assert_eq!(count.load(Ordering::SeqCst), 1);

    // 429 for ever: bounded in attempts (3 by default).
    let (url, count) =
        scripted_server(|_| reply("429 Too Many Requests", "retry-after: 0\r\n")).await;
    let resp = quick_client().get(format!("{url}/x")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

/// A keep-alive connection that the server closes as the next request
/// arrives (an idle timeout racing the client): a GET on it is retried on a
/// new connection, not failed.
#[tokio::test]
async fn a_pooled_connection_the_server_dropped_is_retried_for_a_get() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let (c, a) = (connections.clone(), answered.clone());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let a = a.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                // First request: answered, connection kept open.
                if sock.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                a.fetch_add(1, Ordering::SeqCst);
                let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                let _ = sock.write_all(ok.as_bytes()).await;
                // Second request on the same connection: read, then dropped
                // without a word.
                let _ = sock.read(&mut buf).await;
            });
        }
    });
    let client = quick_client();
    for _ in 0..2 {
        let resp = client.get(format!("{url}/x")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    assert_eq!(answered.load(Ordering::SeqCst), 2);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "the second call reused the pooled connection, then a new one"
    );

    // The same server with retries off: the second call fails, so the
    // retry above is ours, not the HTTP stack's.
    let once = AppAuthClient::builder(node_signer(Arc::new(ManualClock::new(NOW))))
        .retry(appauth_client::RetryPolicy {
            attempts: 1,
            ..Default::default()
        })
        .build()
        .unwrap();
    let first = once.get(format!("{url}/x")).send().await.unwrap();
    first.bytes().await.unwrap();
    assert!(once.get(format!("{url}/x")).send().await.is_err());
}

#[tokio::test]
async fn a_server_that_keeps_refusing_costs_one_fresh_signature_not_one_per_call() {
    let (url, _) = scripted_server(|_| reply("401 Unauthorized", "")).await;
    let client = quick_client();
    for _ in 0..10 {
        let resp = client.get(format!("{url}/x")).send().await.unwrap();
        assert_eq!(resp.status(), 401);
    }
    // The first token, and one fresh one after the first 401: no more.
    assert_eq!(client.signer().signatures_made(), 2);
}

#[test]
fn reload_key_file_drops_the_cached_token_only_for_another_key() {
    use appauth_client::KeyFileCheck;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app_private.pem");
    let write = |pem: &[u8]| {
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    let first = appauth_core::PrivateKey::generate(2048).unwrap();
    write(first.to_pkcs8_pem().unwrap().as_bytes());
    let signer = Signer::builder("app").key_file(&path).build().unwrap();
    let token = signer.token().unwrap();
    assert_eq!(signer.reload_key_file(), KeyFileCheck::Unchanged);

    // The same key written again: read, but the cached token stays.
    write(first.to_pkcs8_pem().unwrap().as_bytes());
    let check = signer.reload_key_file();
    assert!(
        matches!(check, KeyFileCheck::Reloaded { new_kid: false, .. }),
        "{check:?}"
    );
    assert_eq!(signer.token().unwrap(), token);

    // Half a key: refused, the previous key and token stay.
    let pem = first.to_pkcs8_pem().unwrap();
    write(&pem.as_bytes()[..pem.len() / 2]);
    let KeyFileCheck::Refused(why) = signer.reload_key_file() else {
        panic!("a half-written key was not refused");
    };
    assert!(why.contains("app_private.pem"), "{why}");
    assert_eq!(signer.token().unwrap(), token);

    // Another key: the next token is signed with it at once.
    let second = appauth_core::PrivateKey::generate(2048).unwrap();
    write(second.to_pkcs8_pem().unwrap().as_bytes());
    assert_eq!(
        signer.reload_key_file(),
        KeyFileCheck::Reloaded {
            kid: second.kid().clone(),
            new_kid: true
        }
    );
    assert_eq!(signer.kid(), *second.kid());
    assert_ne!(signer.token().unwrap(), token);
    assert_eq!(signer.key_reloads(), 2);
    assert_eq!(signer.signatures_made(), 2);
}
