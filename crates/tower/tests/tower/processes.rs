//! The two examples as real processes, called over real sockets: the axum
//! example over HTTP/1.1 (the whole conformance table), the tonic example
//! over HTTP/2 by a gRPC client.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use appauth_core::PrivateKey;
use appauth_testkit::conformance::{self, AUDIENCE, Fixture};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// An example binary, built by `cargo test` beside this test binary.
fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().expect("test binary path");
    let dir = deps.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join("examples").join(name);
    assert!(path.exists(), "{} not built", path.display());
    path
}

/// A running example, killed by PID when dropped.
struct Running {
    child: Child,
    addr: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `name` with `args` on a free port and waits for its
/// "listening on http://ADDR" line.
fn start(name: &str, args: &[&str]) -> Running {
    let mut child = Command::new(example(name))
        .args(args)
        .args(["--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the example");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(i) = line.find("listening on http://") {
                let addr = line[i + "listening on http://".len()..].trim().to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{name} did not start"));
    Running { child, addr }
}

#[test]
fn the_axum_example_passes_the_conformance_table_as_a_process() {
    let fixture = Fixture::new();
    let running = start(
        "axum-api",
        &[
            "--keys-dir",
            fixture.keys_dir.to_str().unwrap(),
            "--policy",
            fixture.policy.to_str().unwrap(),
            "--revocations",
            fixture.revocations.to_str().unwrap(),
            "--audience",
            AUDIENCE,
        ],
    );
    let addr = running.addr.clone();
    let cases = futures_ready(conformance::run(&fixture, "axum-api", |r| {
        std::future::ready(conformance::http1(&addr, &r))
    }));
    assert!(cases >= 50);
    // The gate's metrics are on the app's own registry, beside its own.
    let metrics = conformance::http1(
        &addr,
        &conformance::Request {
            method: "GET",
            path: "/metrics".into(),
            headers: Vec::new(),
            body: Vec::new(),
        },
    );
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(r#"appauth_requests_total{outcome="rejected",reason="missing_token"}"#),
        "{text}"
    );
}

fn futures_ready<F: std::future::Future>(future: F) -> F::Output {
    // Every call the table makes is ready at once: one poll is enough.
    let mut future = std::pin::pin!(future);
    let waker = std::task::Waker::noop();
    match future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(waker))
    {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("a synchronous run was pending"),
    }
}

fn token(key: &PrivateKey, app: &str) -> String {
    let now = appauth_core::Clock::now(&appauth_core::SystemClock);
    appauth_testkit::signed(key, app, now)
}

#[tokio::test]
async fn the_grpc_example_answers_grpc_statuses() {
    let (dir, key) = crate::orders_keys();
    let running = start("grpc-api", &["--keys-dir", dir.path().to_str().unwrap()]);
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect()
        .await
        .expect("HTTP/2 connection");
    let check = || {
        tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        })
    };

    // No token: UNAUTHENTICATED, with the reason code as the message.
    let refused = HealthClient::new(channel.clone())
        .check(check())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(refused.message(), "missing_token");

    // A bad token: still UNAUTHENTICATED, never an HTTP 401 the client cannot read.
    let mut bad = check();
    bad.metadata_mut()
        .insert("x-token", "a.b.c".parse().unwrap());
    let refused = HealthClient::new(channel.clone())
        .check(bad)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(refused.message(), "malformed");

    // A valid token, in x-token or in authorization: Bearer, reaches the service.
    let t = token(&key, "orders");
    for (name, value) in [
        ("x-token", t.clone()),
        ("authorization", format!("Bearer {t}")),
    ] {
        let mut ok = check();
        ok.metadata_mut().insert(name, value.parse().unwrap());
        let answer = HealthClient::new(channel.clone()).check(ok).await.unwrap();
        assert_eq!(
            answer.into_inner().status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }

    // Past the gate, an unknown method is tonic's own UNIMPLEMENTED.
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut unknown = check();
    unknown.metadata_mut().insert("x-token", t.parse().unwrap());
    let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/NoSuchMethod");
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    let status = grpc.unary(unknown, path, codec).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);

    // And without a token, the unknown method is refused by the gate first.
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/NoSuchMethod");
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    let status = grpc.unary(check(), path, codec).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}
