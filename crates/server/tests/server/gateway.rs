//! Gateway mode in front of a real upstream that records what it received:
//! which paths reach it, which headers, which bytes.

use std::time::Duration;

use appauth_core::PrivateKey;
use serde_json::Value;

use crate::util::{Server, add_app, raw_exchange, recording_upstream};
use crate::{claims_for, forge};

fn request(
    server: &Server,
    method: &str,
    target: &str,
    headers: &str,
    body: &[u8],
) -> (u16, String) {
    let addr = server.url.strip_prefix("http://").unwrap();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw_exchange(&server.url, &req)
}

fn token(key: &PrivateKey) -> String {
    forge(key, &claims_for("orders"))
}

#[test]
fn every_path_but_the_operational_ones_goes_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let (upstream, seen) = recording_upstream();
    let server = Server::start(dir.path(), &["--upstream", &upstream]);
    let auth = format!("x-token: {}\r\n", token(&key));

    // The demo data set, /whoami and /ping are not the gateway's: an
    // upstream with routes of those names gets them.
    for path in [
        "/users",
        "/users/",
        "/users/1",
        "/whoami",
        "/ping",
        "/anything?x=1",
    ] {
        let (status, text) = request(&server, "GET", path, &auth, b"");
        assert_eq!(status, 200, "{path}: {text}");
        let last = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(last.target, path);
    }
    // The operational endpoints stay the server's, and are open for GET only.
    let before = seen.lock().unwrap().len();
    assert_eq!(request(&server, "GET", "/healthz", "", b"").0, 200);
    assert_eq!(request(&server, "GET", "/metrics", "", b"").0, 200);
    assert_eq!(request(&server, "POST", "/healthz", "", b"x").0, 401);
    assert_eq!(request(&server, "DELETE", "/metrics", "", b"").0, 401);
    assert_eq!(seen.lock().unwrap().len(), before);
}

#[test]
fn the_upstream_sees_one_identity_whatever_the_caller_spelled() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let (upstream, seen) = recording_upstream();
    let server = Server::start(dir.path(), &["--upstream", &upstream]);
    let forged = [
        "X-App-Id: admin",
        "X_App_Id: admin",
        "x_app-id: admin",
        "x-app_id: admin",
        "X_TOKEN: stolen",
        "Proxy-Authorization: Basic Zm9v",
        "Authorization: Basic Zm9vOmJhcg==",
        "x_forwarded_for: 10.0.0.1",
    ]
    .map(|h| format!("{h}\r\n"))
    .concat();
    let headers = format!("x-token: {}\r\n{forged}x-request-id: r-7\r\n", token(&key));
    let (status, text) = request(&server, "GET", "/api/things", &headers, b"");
    assert_eq!(status, 200, "{text}");
    let got = seen.lock().unwrap().last().cloned().unwrap();
    let ids: Vec<&(String, String)> = got
        .headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().replace('_', "-") == "x-app-id")
        .collect();
    assert_eq!(ids.len(), 1, "{:?}", got.headers);
    assert_eq!(ids[0].1, "orders");
    for gone in ["x-token", "authorization", "proxy-authorization"] {
        assert!(
            got.headers
                .iter()
                .all(|(n, _)| n.to_ascii_lowercase().replace('_', "-") != gone),
            "{gone} reached the upstream: {:?}",
            got.headers
        );
    }
    assert_eq!(got.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(got.all("x-request-id"), ["r-7"]);
}

#[test]
fn paths_in_disguise_never_reach_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[default]\nallow = [\"GET /public/**\"]\n").unwrap();
    let (upstream, seen) = recording_upstream();
    let auth = format!("x-token: {}\r\n", token(&key));
    let disguises = [
        "/public/..;/admin",
        "/public/%252e%252e/admin",
        "/public/..%3b/admin",
        "/public/%2e%2e/admin",
        "/public/..%2fadmin",
        "/public/%c0%ae%c0%ae/admin",
        "/public/a%00",
        "/public\\..\\admin",
        "/public//admin",
        "/../admin",
        "/public/../admin",
    ];
    let with_policy = Server::start(
        dir.path(),
        &[
            "--upstream",
            &upstream,
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    // Without a policy the upstream has a base path: `/../admin` must not
    // become `/base/../admin`.
    let without = Server::start(dir.path(), &["--upstream", &format!("{upstream}/base")]);
    for server in [&with_policy, &without] {
        for path in disguises {
            let (status, text) = request(server, "GET", path, &auth, b"");
            assert_eq!(status, 400, "{path}: {text}");
            assert!(text.contains("path_not_canonical"), "{path}: {text}");
        }
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );

    // What passes arrives exactly as the policy judged it.
    assert_eq!(
        request(&with_policy, "GET", "/public/a%20b/c;v=1", &auth, b"").0,
        200
    );
    assert_eq!(seen.lock().unwrap()[0].target, "/public/a%20b/c;v=1");
    assert_eq!(request(&with_policy, "GET", "/admin", &auth, b"").0, 403);
    assert_eq!(request(&without, "GET", "/admin/x", &auth, b"").0, 200);
    assert_eq!(seen.lock().unwrap()[1].target, "/base/admin/x");
}

#[test]
fn a_second_token_is_refused_and_no_credential_is_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let other = add_app(dir.path(), "billing");
    let (upstream, seen) = recording_upstream();
    let server = Server::start(dir.path(), &["--upstream", &upstream]);
    let a = token(&key);
    let b = forge(&other, &claims_for("billing"));
    for second in [
        format!("Authorization: Bearer\t{b}"),
        format!("Authorization: Bearer {b}"),
        format!("Authorization: bearer   {b}  "),
        format!("Authorization: Bearer {a} {b}"),
        "Authorization: Bearer".to_owned(),
    ] {
        let headers = format!("x-token: {a}\r\n{second}\r\n");
        let (status, text) = request(&server, "GET", "/x", &headers, b"");
        assert_eq!(status, 401, "{second}: {text}");
        assert!(text.contains("\"malformed\""), "{text}");
    }
    assert!(seen.lock().unwrap().is_empty());
    // The same token twice, or Bearer alone with a tab: accepted, and the
    // upstream sees no credential.
    for headers in [
        format!("x-token: {a}\r\nAuthorization: Bearer\t{a}\r\n"),
        format!("Authorization: Bearer \t {a}\r\n"),
    ] {
        assert_eq!(request(&server, "GET", "/x", &headers, b"").0, 200);
        let got = seen.lock().unwrap().last().cloned().unwrap();
        assert!(got.all("authorization").is_empty() && got.all("x-token").is_empty());
    }
}

#[test]
fn bodies_arrive_whole_at_an_upstream_that_reads_by_length() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let (upstream, seen) = recording_upstream();
    let server = Server::start(dir.path(), &["--upstream", &upstream]);
    let auth = format!("x-token: {}\r\n", token(&key));
    let big: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let bodies: [&[u8]; 3] = [b"", b"{\"order\":42}", &big];
    for method in ["POST", "PUT", "PATCH"] {
        for body in bodies {
            let (status, text) = request(&server, method, "/orders", &auth, body);
            assert_eq!(status, 200, "{method} {}: {text}", body.len());
            let reply: Value =
                serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
            assert_eq!(reply["read"], body.len());
            let got = seen.lock().unwrap().last().cloned().unwrap();
            assert_eq!(got.method, method);
            assert_eq!(got.all("content-length"), [body.len().to_string()]);
            assert!(got.all("transfer-encoding").is_empty(), "{:?}", got.headers);
            assert!(
                got.body == body,
                "{method}: body of {} bytes changed",
                body.len()
            );
        }
    }
}

#[test]
fn a_slow_upstream_still_answers_within_its_timeout() {
    // The head watch must not cut a request whose upstream is slow: the head
    // is in, only the response is waiting.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in listener.incoming() {
            let mut conn = conn.unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            std::thread::sleep(Duration::from_millis(1500));
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nlate",
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let server = Server::start(
        dir.path(),
        &["--upstream", &upstream, "--request-head-timeout-ms", "500"],
    );
    let (status, text) = request(
        &server,
        "GET",
        "/slow",
        &format!("x-token: {}\r\n", token(&key)),
        b"",
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("late"));
}
