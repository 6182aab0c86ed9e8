//! The proxy: what reaches the upstream, bodies, rotation, failures, attacks.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::util::{
    AGENT, Agent, Proc, Reply, Server, claims, dead_port, key_dirs, keypair, recording_upstream,
    rss_kib, status_of,
};

/// One request on a fresh connection, bytes as given; the status and the
/// whole response.
fn raw(url: &str, request: &[u8]) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_host_hop_by_hop_and_tokens_change_neither_target_nor_identity() {
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path(), "orders");
    let (upstream, seen) = recording_upstream(Reply::Ok);
    let agent = Agent::proxy("orders", &key, &format!("{upstream}/base"), &[]);
    // A request line in absolute form naming another host, a Host of its
    // own, tokens of its own in both headers, hop-by-hop headers and one
    // that Connection marks as hop-by-hop.
    let request = "GET http://evil.example:9/steal?x=1 HTTP/1.1\r\n\
        Host: evil.example:9\r\n\
        x-token: forged.token.here\r\n\
        Authorization: Bearer forged.token.here\r\n\
        Connection: close, x-internal\r\n\
        x-internal: hop only\r\n\
        Keep-Alive: timeout=5\r\n\
        Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
        TE: trailers\r\n\
        x-request-id: r-42\r\n\r\n";
    let (status, _) = raw(&agent.url, request.as_bytes());
    assert_eq!(status, 200);
    let got = seen.lock().unwrap().pop().unwrap();
    assert_eq!(got.target, "/base/steal?x=1");
    assert_eq!(
        got.one("host"),
        Some(upstream.trim_start_matches("http://"))
    );
    for gone in [
        "authorization",
        "x-internal",
        "keep-alive",
        "proxy-authorization",
        "te",
    ] {
        assert!(got.all(gone).is_empty(), "{gone} forwarded: {got:?}");
    }
    assert_eq!(got.one("x-request-id"), Some("r-42"));
    let token = got.one("x-token").expect("the agent's token");
    assert_eq!(claims(token)["appId"], "orders");
    // Bearer mode replaces the application's Authorization, whatever scheme.
    let bearer = Agent::proxy("orders", &key, &upstream, &["--header", "bearer"]);
    let (status, _) = raw(
        &bearer.url,
        b"GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Basic dTpw\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let got = seen.lock().unwrap().pop().unwrap();
    let auth = got.one("authorization").unwrap();
    assert!(auth.starts_with("Bearer ey"), "{auth}");
    assert!(got.all("x-token").is_empty());
    // CONNECT is not a way through.
    let (status, text) = raw(
        &agent.url,
        b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("connect_not_supported"), "{text}");
    // The token never reaches the agent's log, even at trace level.
    let traced = Agent::proxy_env("orders", &key, &upstream, &[], &[("RUST_LOG", "trace")]);
    let (status, _) = raw(
        &traced.url,
        b"GET /t HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let sent = seen.lock().unwrap().pop().unwrap();
    let token = sent.one("x-token").unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(100));
    let logs = traced.proc.logs();
    let signature = token.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature), "the token is in the log");
    assert!(
        !logs.contains(&token[..40]),
        "part of the token is in the log"
    );
}

/// A body of `len` bytes that is not all one byte.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_reach_the_upstream_byte_for_byte_through_the_agent_and_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path(), "orders");
    let (upstream, seen) = recording_upstream(Reply::Ok);
    let gateway = Server::start(&dir.path().join("keys"), &["--upstream", &upstream]);
    let direct = Agent::proxy("orders", &key, &upstream, &[]);
    let via_gateway = Agent::proxy("orders", &key, &gateway.url, &[]);
    let client = reqwest::Client::new();
    let big = pattern(5 * 1024 * 1024, 7);
    let chunks: Vec<Vec<u8>> = (0..40)
        .map(|i| pattern(10_000 + i * 777, i as u8))
        .collect();
    let chunked: Vec<u8> = chunks.concat();
    for (hop, agent) in [("agent", &direct), ("agent + gateway", &via_gateway)] {
        let resp = client
            .post(format!("{}/upload?n=1", agent.url))
            .header("content-type", "application/octet-stream")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{hop}");
        assert_eq!(resp.headers()["x-upstream"], "recorder", "{hop}");
        let got = seen.lock().unwrap().pop().unwrap();
        assert_eq!(got.method, "POST");
        assert_eq!(got.target, "/upload?n=1");
        assert_eq!(
            got.one("content-length"),
            Some("5242880"),
            "{hop}: length kept"
        );
        assert!(got.all("transfer-encoding").is_empty(), "{hop}");
        assert!(got.body == big, "{hop}: the 5 MiB body changed");
        if hop != "agent" {
            // The gateway forwards the identity it verified.
            assert_eq!(got.one("x-app-id"), Some("orders"));
        }

        // A chunked PUT: stays chunked, arrives whole.
        let stream = futures_stream(chunks.clone());
        let resp = client
            .put(format!("{}/blob", agent.url))
            .body(reqwest::Body::wrap(http_body_util::StreamBody::new(stream)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{hop}");
        let got = seen.lock().unwrap().pop().unwrap();
        assert_eq!(got.method, "PUT");
        assert_eq!(got.one("transfer-encoding"), Some("chunked"), "{hop}");
        assert!(got.all("content-length").is_empty(), "{hop}");
        assert!(got.body == chunked, "{hop}: the chunked body changed");
    }
}

/// A body of unknown length, sent chunked.
fn futures_stream(
    chunks: Vec<Vec<u8>>,
) -> impl futures_util::Stream<Item = Result<http_body::Frame<bytes::Bytes>, std::io::Error>>
+ Send
+ Sync
+ 'static {
    futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok(http_body::Frame::data(bytes::Bytes::from(c)))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_and_an_early_retirement_fail_no_call_through_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path(), "orders");
    let dirs = key_dirs(dir.path());
    let app = appauth_core::AppId::new("orders").unwrap();
    let old_kid = appauth_core::PrivateKey::from_pem(&std::fs::read(&key).unwrap())
        .unwrap()
        .kid()
        .clone();
    let server = Server::start(&dirs.public, &[]);
    let agent = Agent::proxy("orders", &key, &server.url, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let caller = {
        let (stop, url) = (stop.clone(), format!("{}/whoami", agent.url));
        tokio::spawn(async move {
            // An application with no JWT code: a plain client.
            let client = reqwest::Client::new();
            let mut by_kid: BTreeMap<String, u32> = BTreeMap::new();
            let mut failed = Vec::new();
            let mut last = String::new();
            while !stop.load(Ordering::SeqCst) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        let who: serde_json::Value = r.json().await.unwrap();
                        last = who["kid"].as_str().unwrap().to_owned();
                        *by_kid.entry(last.clone()).or_default() += 1;
                    }
                    Ok(r) => failed.push(format!("{} {}", r.status(), r.text().await.unwrap())),
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (by_kid, failed, last)
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let rotated = appauth_keygen::rotate(&app, 2048, &dirs, false).unwrap();
    let new_kid = rotated.kid.clone().unwrap();
    // Retired at once: the server drops the old key while the agent may
    // still hold a token it signed.
    appauth_keygen::retire(&app, old_kid.as_str(), &dirs, false, false).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::SeqCst);
    let (by_kid, failed, last) = caller.await.unwrap();
    let total: u32 = by_kid.values().sum();
    println!(
        "rotation through the agent: {total} calls, {} failed, by kid {by_kid:?}",
        failed.len()
    );
    assert!(failed.is_empty(), "failed calls: {failed:?}");
    assert!(
        by_kid.get(old_kid.as_str()).is_some_and(|n| *n > 0),
        "{by_kid:?}"
    );
    assert_eq!(
        last,
        new_kid.as_str(),
        "the last call was not on the new kid"
    );
    assert!(agent.metric("appauth_agent_key_reloads_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_401_costs_one_signature_and_only_a_replayable_request_is_resent() {
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path(), "orders");
    let client = reqwest::Client::new();

    let (upstream, seen) = recording_upstream(Reply::Refuse("bad_signature"));
    let agent = Agent::proxy("orders", &key, &upstream, &[]);
    let resp = client.get(format!("{}/a", agent.url)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["reason"], "bad_signature",
        "the upstream's refusal is passed back"
    );
    let got = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(got.len(), 2, "a GET is sent again once");
    assert_ne!(
        got[0].one("x-token"),
        got[1].one("x-token"),
        "with a fresh token"
    );
    // A POST is not idempotent: sent once, refused, not resent.
    let resp = client
        .post(format!("{}/a", agent.url))
        .body("order #1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let got = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(got.len(), 1, "a POST is never sent twice");
    assert_eq!(got[0].body, b"order #1");
    assert_eq!(
        agent
            .metric("appauth_agent_token_refreshes_total{cause=\"rejected\"}")
            .await,
        2.0
    );
    assert_eq!(
        agent
            .metric("appauth_agent_requests_total{status=\"401\"}")
            .await,
        2.0
    );

    // A refusal a fresh token cannot cure costs no signature.
    let (upstream, seen) = recording_upstream(Reply::Refuse("revoked"));
    let agent = Agent::proxy("orders", &key, &upstream, &[]);
    let resp = client.get(format!("{}/a", agent.url)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(agent.metric("appauth_agent_signatures_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_is_502_a_hung_one_504_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path(), "orders");
    let client = reqwest::Client::new();

    let dead = Agent::proxy(
        "orders",
        &key,
        &format!("http://127.0.0.1:{}", dead_port()),
        &[],
    );
    let resp = client.get(format!("{}/x", dead.url)).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error":"bad_gateway","reason":"upstream_unreachable"})
    );
    assert_eq!(
        dead.metric("appauth_agent_upstream_errors_total{kind=\"connect\"}")
            .await,
        1.0
    );

    let (hung_url, _) = recording_upstream(Reply::Hang);
    let hung = Agent::proxy("orders", &key, &hung_url, &["--upstream-timeout", "1"]);
    let started = Instant::now();
    let resp = client.get(format!("{}/x", hung.url)).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 504);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["reason"], "upstream_timeout");
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        hung.metric("appauth_agent_upstream_errors_total{kind=\"timeout\"}")
            .await,
        1.0
    );
}

#[test]
fn a_5_gib_body_to_a_dead_upstream_is_not_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path(), "orders");
    let agent = Agent::proxy(
        "orders",
        &key,
        &format!("http://127.0.0.1:{}", dead_port()),
        &[],
    );
    let before = rss_kib(agent.proc.child.id());
    let addr = agent.url.trim_start_matches("http://").to_owned();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let len: u64 = 5 << 30;
    write!(
        s,
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    // Write until the agent answers or stops reading; count what it took.
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let chunk = vec![b'x'; 1 << 20];
            let mut sent: u64 = 0;
            while sent < len {
                if w.write_all(&chunk).is_err() {
                    break;
                }
                sent += chunk.len() as u64;
            }
            sent
        })
    };
    let mut head = [0u8; 512];
    let n = s.read(&mut head).unwrap_or(0);
    let answer = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    let _ = s.shutdown(std::net::Shutdown::Both);
    let sent = writer.join().unwrap();
    let after = rss_kib(agent.proc.child.id());
    println!(
        "5 GiB to a dead upstream: {sent} bytes taken before the 502, RSS {before} -> {after} KiB"
    );
    assert!(
        sent < 512 << 20,
        "the agent read {sent} bytes of a body it could not forward"
    );
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_upstream_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path(), "orders");
    let (cert, tls_key, ca) = appauth_testkit::tls::tls_files(dir.path());
    let server = Server::start(
        &dir.path().join("keys"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            tls_key.to_str().unwrap(),
        ],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let agent = Agent::proxy("orders", &key, &server.url, &["--ca", ca.to_str().unwrap()]);
    let who: serde_json::Value = reqwest::get(format!("{}/whoami", agent.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["appId"], "orders");
    // Without the CA the certificate is not trusted: 502, said as TLS.
    let untrusting = Agent::proxy("orders", &key, &server.url, &[]);
    let resp = reqwest::get(format!("{}/whoami", untrusting.url))
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["reason"], "upstream_tls", "{}", untrusting.proc.logs());
    assert_eq!(
        untrusting
            .metric("appauth_agent_upstream_errors_total{kind=\"tls\"}")
            .await,
        1.0
    );
    assert!(
        untrusting.proc.logs().contains("UnknownIssuer"),
        "{}",
        untrusting.proc.logs()
    );
}

#[test]
fn a_unix_socket_is_mode_0600_and_served() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path(), "orders");
    let (upstream, seen) = recording_upstream(Reply::Ok);
    let sock = dir.path().join("agent.sock");
    let mut cmd = std::process::Command::new(AGENT);
    cmd.args(["proxy", "--app-id", "orders", "--key"])
        .arg(&key)
        .args(["--upstream", &upstream, "--listen"])
        .arg(format!("unix:{}", sock.display()));
    let mut agent = Proc::spawn(cmd);
    let url = agent.url("proxy");
    assert_eq!(url, format!("unix:{}", sock.display()));
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(&sock)
        .arg("http://agent/over/unix")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    assert_eq!(seen.lock().unwrap()[0].target, "/over/unix");
    // A regular file at the path is never replaced.
    drop(agent);
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let mut cmd = std::process::Command::new(AGENT);
    cmd.args(["proxy", "--app-id", "orders", "--key"])
        .arg(&key)
        .args(["--upstream", &upstream, "--listen"])
        .arg(format!("unix:{}", file.display()));
    let mut refused = Proc::spawn(cmd);
    let status = refused.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(!status.success());
    assert!(
        refused.logs().contains("is not a socket"),
        "{}",
        refused.logs()
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_remote_listen_missing_key_and_503_while_keyless() {
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path(), "orders");
    let (upstream, seen) = recording_upstream(Reply::Ok);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(AGENT)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let key_s = key.to_str().unwrap();
    let base = ["proxy", "--app-id", "orders", "--upstream", &upstream];
    let (code, err) = run(&[&base[..], &["--key", key_s, "--listen", "0.0.0.0:0"]].concat());
    assert_eq!(code, Some(1));
    assert!(
        err.contains("not a loopback address") && err.contains("--allow-remote"),
        "{err}"
    );
    let missing = dir.path().join("nope_private.pem");
    let missing_s = missing.to_str().unwrap();
    let (code, err) = run(&[&base[..], &["--key", missing_s, "--listen", "127.0.0.1:0"]].concat());
    assert_eq!(code, Some(1));
    assert!(
        err.contains(missing_s) && err.contains("No such file"),
        "{err}"
    );
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nnot a key\n").unwrap();
    let (code, err) = run(&[
        &base[..],
        &[
            "--key",
            garbage.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    ]
    .concat());
    assert_eq!(code, Some(1));
    assert!(err.contains("garbage.pem"), "{err}");

    // Waiting for a key: up, not ready, 503 for every request, nothing
    // forwarded; then the key arrives and requests go through.
    let later = dir.path().join("later_private.pem");
    let agent = Agent::proxy("orders", &later, &upstream, &["--wait-for-key"]);
    let client = reqwest::Client::new();
    assert_eq!(status_of(&format!("{}/readyz", agent.admin)).await, 503);
    assert_eq!(status_of(&format!("{}/healthz", agent.admin)).await, 200);
    let resp = client.get(format!("{}/x", agent.url)).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error":"unavailable","reason":"no_signing_key"})
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "a request left without a token"
    );
    let tmp = dir.path().join("later.tmp");
    std::fs::copy(&key, &tmp).unwrap();
    std::fs::rename(&tmp, &later).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = client.get(format!("{}/x", agent.url)).send().await.unwrap();
        if resp.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the key that arrived was never used"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_of(&format!("{}/readyz", agent.admin)).await, 200);
    // The key becoming unreadable later keeps the last good key, logged once.
    std::fs::write(&later, "truncated").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let resp = client.get(format!("{}/x", agent.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let logs = agent.proc.logs();
    assert_eq!(
        logs.matches("still signing with the previous key").count(),
        1,
        "{logs}"
    );
    assert_eq!(
        agent.metric("appauth_agent_key_file_refused_total").await,
        1.0
    );
}

fn signal(proc: &Proc, name: &str) {
    appauth_testkit::send_signal(proc.child.id(), name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_proxy_and_a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path(), "orders");
    let (upstream, _) = recording_upstream(Reply::Slow(Duration::from_millis(1500)));
    let mut agent = Agent::proxy("orders", &key, &upstream, &["--drain-delay", "1"]);
    let client = reqwest::Client::new();
    let first = tokio::spawn(client.get(format!("{}/slow/1", agent.url)).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&agent.proc, "TERM");
    let sent = Instant::now();
    loop {
        let r = client
            .get(format!("{}/readyz", agent.admin))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_millis(500),
            "/readyz never turned 503"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status_of(&format!("{}/healthz", agent.admin)).await, 200);
    // Within the drain delay: still forwarded, and told to close.
    let during = client
        .get(format!("{}/slow/2", agent.url))
        .send()
        .await
        .unwrap();
    assert_eq!(during.status(), 200);
    assert_eq!(during.headers()["connection"], "close");
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), 200, "the request in flight at SIGTERM");
    let status = tokio::task::block_in_place(|| agent.proc.wait_exit(Duration::from_secs(10)))
        .expect("still running after the drain");
    assert!(status.success(), "{status}");
    let logs = agent.proc.logs();
    for line in [
        "draining: /readyz answers 503",
        "drain delay over",
        "finished=2 cut=0",
    ] {
        assert!(logs.contains(line), "no {line:?} in {logs}");
    }

    let (hung, _) = recording_upstream(Reply::Hang);
    let mut agent = Agent::proxy("orders", &key, &hung, &["--drain-delay", "30"]);
    let _stuck = tokio::spawn(client.get(format!("{}/hang", agent.url)).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&agent.proc, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        agent.proc.child.try_wait().unwrap().is_none(),
        "exited at the first signal"
    );
    signal(&agent.proc, "INT");
    let status = tokio::task::block_in_place(|| agent.proc.wait_exit(Duration::from_secs(2)))
        .expect("the second signal did not stop it");
    assert!(!status.success());
    assert!(agent.proc.logs().contains("second signal: exiting at once"));
}
