//! Token-file mode: a reader never sees part of a token, the server accepts
//! every one read, the file follows its lifetime and a rotation.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::util::{AGENT, Proc, Server, claims, key_dirs, keypair};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_file_is_whole_accepted_rewritten_before_expiry_and_after_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path(), "batch");
    let dirs = key_dirs(dir.path());
    let server = Server::start(&dirs.public, &[]);
    let out = dir.path().join("run").join("token");
    std::fs::create_dir(out.parent().unwrap()).unwrap();
    let mut cmd = std::process::Command::new(AGENT);
    cmd.args(["token-file", "--app-id", "batch", "--ttl", "10", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&out);
    let agent = Proc::spawn(cmd);

    // A reader as tight as it gets: every millisecond, on its own thread.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, out, url) = (stop.clone(), out.clone(), server.url.clone());
        std::thread::spawn(move || {
            let mut seen: Vec<String> = Vec::new();
            let mut reads = 0u64;
            let mut partial = Vec::new();
            let mut accepted = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Ok(text) = std::fs::read_to_string(&out) {
                    reads += 1;
                    let parts: Vec<&str> = text.split('.').collect();
                    if parts.len() != 3 || parts.iter().any(|p| p.len() < 10) || text.contains('\n')
                    {
                        partial.push(text.clone());
                    }
                    if seen.last() != Some(&text) {
                        // Checked by the server as soon as it is read, as the
                        // application would send it.
                        accepted.push(whoami_status(&url, &text));
                        seen.push(text);
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            (seen, reads, partial, accepted)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !out.exists() {
        assert!(Instant::now() < deadline, "no token file: {}", agent.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let first = std::fs::read_to_string(&out).unwrap();
    let c = claims(&first);
    assert_eq!(c["appId"], "batch");

    // Rewritten at 4/5 of a 10 s lifetime: 8 s after signing.
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        if std::fs::read_to_string(&out).unwrap() != first {
            break;
        }
        assert!(Instant::now() < deadline, "never rewritten before expiry");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = std::fs::read_to_string(&out).unwrap();
    let (exp1, iat2) = (
        c["exp"].as_i64().unwrap(),
        claims(&second)["iat"].as_i64().unwrap(),
    );
    assert!(iat2 + 10 < exp1, "rewritten after the old token expired");

    // A rotation: the file carries the new kid within a couple of seconds,
    // not at the next scheduled refresh.
    let app = appauth_core::AppId::new("batch").unwrap();
    let rotated = appauth_keygen::rotate(&app, 2048, &dirs, false).unwrap();
    let new_kid = rotated.kid.unwrap();
    let started = Instant::now();
    loop {
        let token = std::fs::read_to_string(&out).unwrap();
        if header_kid(&token) == new_kid.as_str() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the rotation never reached the file"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "token file: new kid {:?} after the rotation",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let (seen, reads, partial, accepted) = reader.join().unwrap();
    println!(
        "token file: {reads} reads, {} distinct tokens, {} partial",
        seen.len(),
        partial.len()
    );
    assert!(partial.is_empty(), "partial reads: {partial:?}");
    assert!(seen.len() >= 3, "{seen:?}");
    // The server accepted every token the reader saw.
    assert!(accepted.iter().all(|s| *s == 200), "statuses: {accepted:?}");
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["token"]);
}

/// `GET /whoami` with `token`, blocking: the status.
fn whoami_status(url: &str, token: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    write!(
        s,
        "GET /whoami HTTP/1.1\r\nHost: api\r\nx-token: {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn header_kid(token: &str) -> String {
    use base64::Engine;
    let part = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[test]
fn once_writes_one_token_and_exits_and_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path(), "init");
    let out = dir.path().join("token");
    let run = |key: &std::path::Path, out: &std::path::Path| {
        std::process::Command::new(AGENT)
            .args(["token-file", "--once", "--app-id", "init", "--key"])
            .arg(key)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let done = run(&key, &out);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let token = std::fs::read_to_string(&out).unwrap();
    assert_eq!(claims(&token)["appId"], "init");
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // No directory: named, nothing made.
    let nowhere = dir.path().join("missing-dir").join("token");
    let failed = run(&key, &nowhere);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("missing-dir") && err.contains("does not exist"),
        "{err}"
    );
    // No key: exits non-zero naming it; the previous token is untouched.
    let failed = run(&dir.path().join("gone.pem"), &out);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("gone.pem"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), token);
}

#[test]
fn relative_paths_from_its_own_working_directory_are_followed_through_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    keypair(dir.path(), "cron");
    std::fs::create_dir(dir.path().join("run")).unwrap();
    // Relative to the agent's working directory, which is not the test's.
    let mut cmd = std::process::Command::new(AGENT);
    cmd.current_dir(dir.path()).args([
        "token-file",
        "--app-id",
        "cron",
        "--key",
        "private/cron_private.pem",
        "--out",
        "run/token",
    ]);
    let agent = Proc::spawn(cmd);
    let out = dir.path().join("run/token");
    let read_kid = || std::fs::read_to_string(&out).ok().map(|t| header_kid(&t));
    let started = Instant::now();
    while read_kid().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no token: {}",
            agent.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = read_kid().unwrap();
    let app = appauth_core::AppId::new("cron").unwrap();
    let rotated = appauth_keygen::rotate(&app, 2048, &key_dirs(dir.path()), false).unwrap();
    let new_kid = rotated.kid.unwrap().to_string();
    assert_ne!(before, new_kid);
    let started = Instant::now();
    while read_kid().as_deref() != Some(new_kid.as_str()) {
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the rotation never reached run/token"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
