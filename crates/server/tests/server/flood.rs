//! A flood of junk and unknown-app tokens over many connections while a valid
//! caller keeps calling: every junk token is refused without one RSA
//! verification, and the valid caller is served throughout. `FLOOD_TOKENS`
//! sets the flood size (default 5,000 here; `scripts/flood.sh` sends 50,000
//! in release and reports the latency ratio).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::util::{Server, add_app, rsa_verifications};
use crate::{claims_for, forge};

fn junk(i: usize) -> String {
    let b64 = |s: String| URL_SAFE_NO_PAD.encode(s);
    let fake_sig = URL_SAFE_NO_PAD.encode([7u8; 256]);
    match i % 5 {
        0 => format!("junk-{i}"),
        1 => format!(
            "{}.{}.{fake_sig}",
            b64(r#"{"alg":"RS512"}"#.into()),
            b64(format!(r#"{{"appId":"ghost-{i}","iat":1,"exp":2}}"#))
        ),
        2 => format!(
            "{}.{}.{fake_sig}",
            b64(r#"{"alg":"HS256"}"#.into()),
            b64(format!(r#"{{"appId":"svc","n":{i}}}"#))
        ),
        3 => format!(
            "{}.{}.{fake_sig}",
            b64(format!(r#"{{"alg":"RS512","kid":"k{i}"}}"#)),
            b64(format!(r#"{{"appId":"../svc{i}"}}"#))
        ),
        _ => format!(
            "{}.{}.",
            b64(format!(r#"{{"alg":"none","n":{i}}}"#)),
            b64(r#"{"appId":"svc"}"#.into())
        ),
    }
}

/// `n` calls, 5 ms apart, so the sample spans the flood rather than its
/// first instant.
async fn timed_calls(client: &reqwest::Client, url: &str, token: &str, n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t = Instant::now();
        let status = client
            .get(format!("{url}/ping"))
            .header("x-token", token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "a valid caller was refused");
        times.push(t.elapsed());
    }
    times.sort();
    times
}

fn p99(times: &[Duration]) -> Duration {
    times[(times.len() * 99 / 100).min(times.len() - 1)]
}

// Loads the machine: run alone by scripts/test.sh, not beside timing-sensitive tests.
#[ignore = "heavy; scripts/test.sh runs it on its own"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_flood_costs_no_rsa_and_valid_callers_are_served() {
    let total: usize = std::env::var("FLOOD_TOKENS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000);
    // Junk per second across all connections; 0: as fast as possible.
    let rate: u64 = std::env::var("FLOOD_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "svc");
    let server = Server::start(dir.path(), &[]);
    let url = server.url.clone();
    let valid = forge(&key, &claims_for("svc"));
    let client = reqwest::Client::new();

    let quiet = timed_calls(&client, &url, &valid, 300).await;
    let rsa_before = rsa_verifications(&url).await;

    let next = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let flooders: Vec<_> = (0..32)
        .map(|_| {
            let (next, refused, url) = (next.clone(), refused.clone(), url.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let started = Instant::now();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    if rate > 0 {
                        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let status = client
                        .get(format!("{url}/users"))
                        .header("x-token", junk(i))
                        .send()
                        .await
                        .unwrap()
                        .status();
                    if status == 401 {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // The valid caller runs on a thread and runtime of its own, so what it
    // measures is the server, not a queue behind the flooders' tasks.
    let (url2, valid2) = (url.clone(), valid.clone());
    let flooded = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(
                async move { timed_calls(&reqwest::Client::new(), &url2, &valid2, 300).await },
            )
    })
    .join()
    .unwrap();
    for f in flooders {
        f.await.unwrap();
    }

    assert_eq!(
        refused.load(Ordering::Relaxed),
        total,
        "every junk token refused with 401"
    );
    assert_eq!(
        rsa_verifications(&url).await,
        rsa_before,
        "junk cost RSA verifications"
    );
    println!(
        "flood: {total} junk tokens over 32 connections ({}); valid caller p99 quiet {:?}, during flood {:?} (ratio {:.2}); RSA verifications on junk: 0",
        if rate > 0 {
            format!("{rate}/s")
        } else {
            "as fast as possible".to_owned()
        },
        p99(&quiet),
        p99(&flooded),
        p99(&flooded).as_secs_f64() / p99(&quiet).as_secs_f64()
    );
}
