//! The drain on SIGTERM, as a rolling update meets it: replicas stopped in
//! turn under steady load behind a load balancer that reads `/readyz`, and
//! slow gateway requests in flight at the signal.

use std::collections::BTreeMap;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{Server, add_app, raw_status};
use crate::{claims_for, forge};

const DRAIN: &[&str] = &["--drain-delay", "1", "--shutdown-timeout", "5"];

fn signal(server: &Server, name: &str) {
    appauth_testkit::send_signal(server.pid(), name);
}

fn wait_exit(server: &mut Server, within: Duration) -> Option<(ExitStatus, Duration)> {
    appauth_testkit::wait_exit(&mut server.child, within)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_update_of_three_replicas_drops_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let token = forge(&key, &claims_for("orders"));
    let mut replicas: Vec<Server> = (0..3).map(|_| Server::start(dir.path(), DRAIN)).collect();
    // The load balancer's view, kept as an endpoints controller keeps it:
    // every replica it knows of, and those whose /readyz said 200 lately.
    let known = Arc::new(Mutex::new(
        replicas.iter().map(|r| r.url.clone()).collect::<Vec<_>>(),
    ));
    let ready = Arc::new(Mutex::new(known.lock().unwrap().clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let lb = {
        let (known, ready, stop) = (known.clone(), ready.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let urls = known.lock().unwrap().clone();
                let up: Vec<String> = urls
                    .into_iter()
                    .filter(|u| raw_status(u, "/readyz") == Some(200))
                    .collect();
                *ready.lock().unwrap() = up;
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // Six callers, each with its own pool of keep-alive connections, round
    // robin over the ready endpoints every 5 ms.
    let callers: Vec<_> = (0..6)
        .map(|c| {
            let (ready, stop, token) = (ready.clone(), stop.clone(), token.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (mut ok, mut failed, mut closing) = (0u64, Vec::new(), 0u64);
                let mut i = c;
                while !stop.load(Ordering::SeqCst) {
                    let url = {
                        let ready = ready.lock().unwrap();
                        if ready.is_empty() {
                            None
                        } else {
                            i += 1;
                            Some(ready[i % ready.len()].clone())
                        }
                    };
                    if let Some(url) = url {
                        match client
                            .get(format!("{url}/ping"))
                            .header("x-token", &token)
                            .send()
                            .await
                        {
                            Ok(r) if r.status() == 200 => {
                                ok += 1;
                                if r.headers().get("connection").is_some_and(|v| v == "close") {
                                    closing += 1;
                                }
                            }
                            Ok(r) => failed.push(format!("{url}: {}", r.status())),
                            Err(e) => failed.push(format!("{url}: {e}")),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (ok, failed, closing)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut exits = Vec::new();
    for _ in 0..3 {
        let mut old = replicas.remove(0);
        let url = old.url.clone();
        signal(&old, "TERM");
        let sent = Instant::now();
        // Unready at once; alive all along.
        while raw_status(&url, "/readyz") != Some(503) {
            assert!(
                sent.elapsed() < Duration::from_millis(500),
                "/readyz never turned 503"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(raw_status(&url, "/healthz"), Some(200));
        // Still served during the drain delay, telling keep-alive clients
        // to go elsewhere.
        let resp = reqwest::Client::new()
            .get(format!("{url}/ping"))
            .header("x-token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["connection"], "close");
        assert!(sent.elapsed() < Duration::from_secs(1));
        let (status, took) =
            tokio::task::block_in_place(|| wait_exit(&mut old, Duration::from_secs(8)))
                .expect("still running 8 s after SIGTERM");
        assert!(status.success(), "exit status {status}: {}", old.logs());
        let logs = old.logs();
        for phase in [
            "draining: /readyz answers 503",
            "drain delay over",
            "stopped: requests finished",
        ] {
            assert!(logs.contains(phase), "no {phase:?} line in {logs}");
        }
        exits.push(took);
        known.lock().unwrap().retain(|u| *u != url);
        // The update: a new replica takes its place.
        let new = Server::start(dir.path(), DRAIN);
        known.lock().unwrap().push(new.url.clone());
        replicas.push(new);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    lb.join().unwrap();
    let (mut ok, mut failed, mut closing) = (0, Vec::new(), 0);
    for c in callers {
        let (o, f, cl) = c.await.unwrap();
        ok += o;
        failed.extend(f);
        closing += cl;
    }
    println!(
        "rolling update: {ok} requests served, {} failed, {closing} answered with Connection: close; exits after SIGTERM {exits:?}",
        failed.len()
    );
    assert!(failed.is_empty(), "failed: {failed:?}");
    assert!(ok > 500, "too little load to mean anything: {ok}");
}

/// An upstream that answers each request after `delay` (`None`: never).
fn slow_upstream(delay: Option<Duration>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 8192];
                let _ = conn.read(&mut buf);
                match delay {
                    Some(d) => std::thread::sleep(d),
                    None => std::thread::sleep(Duration::from_secs(3600)),
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow",
                );
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_slow_gateway_requests_in_flight_at_sigterm_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let token = forge(&key, &claims_for("orders"));
    let upstream = slow_upstream(Some(Duration::from_secs(2)));
    // Shorter than the upstream's 2 s on purpose: gateway mode stretches
    // it to --upstream-timeout.
    let mut server = Server::start(
        dir.path(),
        &[
            "--upstream",
            &upstream,
            "--drain-delay",
            "1",
            "--shutdown-timeout",
            "1",
            "--upstream-timeout",
            "10",
        ],
    );
    let client = reqwest::Client::new();
    let requests: Vec<_> = (0..20)
        .map(|i| {
            let (client, url, token) = (client.clone(), server.url.clone(), token.clone());
            tokio::spawn(async move {
                let r = client
                    .get(format!("{url}/slow/{i}"))
                    .header("x-token", &token)
                    .send()
                    .await?;
                let status = r.status().as_u16();
                Ok::<_, reqwest::Error>((status, r.text().await?))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&server, "TERM");
    let mut outcomes: BTreeMap<String, u32> = BTreeMap::new();
    for r in requests {
        let outcome = match r.await.unwrap() {
            Ok((200, body)) if body == "slow" => "200".to_owned(),
            Ok((status, body)) => format!("{status} {body}"),
            Err(e) => e.to_string(),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    let (status, took) =
        tokio::task::block_in_place(|| wait_exit(&mut server, Duration::from_secs(15)))
            .expect("still running after SIGTERM");
    println!("gateway drain: {outcomes:?}; exited {took:?} after the requests ended");
    assert_eq!(outcomes, BTreeMap::from([("200".to_owned(), 20)]));
    assert!(status.success(), "{status}");
    let logs = server.logs();
    assert!(
        logs.contains("finished=20") && logs.contains("cut=0"),
        "{logs}"
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let upstream = slow_upstream(None);
    let mut server = Server::start(
        dir.path(),
        &["--upstream", &upstream, "--drain-delay", "30"],
    );
    let url = server.url.clone();
    let token = forge(&key, &claims_for("orders"));
    // One request that will never finish by itself.
    std::thread::spawn(move || {
        let _ = crate::util::raw_get(&url, "/hang", &format!("x-token: {token}\r\n"));
    });
    std::thread::sleep(Duration::from_millis(300));
    signal(&server, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited at the first signal"
    );
    signal(&server, "INT");
    let (status, took) =
        wait_exit(&mut server, Duration::from_secs(2)).expect("the second signal did not stop it");
    assert!(!status.success());
    assert!(
        server.logs().contains("second signal: exiting at once"),
        "{}",
        server.logs()
    );
    println!("second signal: exited {took:?} after it");
}
