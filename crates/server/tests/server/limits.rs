//! Slow and oversized requests: bounded by actix-web limits that the server
//! sets deliberately (see README, "Limits").

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::{Server, add_app};
use crate::{claims_for, forge};

fn connect(url: &str) -> TcpStream {
    let s = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn status_line(s: &mut TcpStream) -> String {
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn oversized_headers_and_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "svc");
    let server = Server::start(dir.path(), &[]);

    // A 9 KiB token: over appauth's 8 KiB limit, under actix's header buffer.
    let mut s = connect(&server.url);
    write!(
        s,
        "GET /ping HTTP/1.1\r\nhost: x\r\nx-token: {}\r\n\r\n",
        "a".repeat(9 * 1024)
    )
    .unwrap();
    assert!(status_line(&mut s).contains("401"));

    // 200 KiB of headers: past actix's 128 KiB request-head limit.
    let mut s = connect(&server.url);
    let _ = write!(
        s,
        "GET /ping HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(200 * 1024)
    );
    let line = status_line(&mut s);
    assert!(!line.contains("200"), "{line}");

    let ok = crate::util::raw_get(
        &server.url,
        "/ping",
        &format!("x-token: {}\r\n", forge(&key, &claims_for("svc"))),
    );
    assert_eq!(ok, Some(200), "server still serves");
}

#[test]
fn an_unauthenticated_body_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    add_app(dir.path(), "svc");
    let server = Server::start(dir.path(), &[]);
    let mut s = connect(&server.url);
    // Announce 100 MB and send none of it: the answer must not wait for it.
    write!(
        s,
        "POST /users HTTP/1.1\r\nhost: x\r\ncontent-length: 104857600\r\n\r\n"
    )
    .unwrap();
    let started = Instant::now();
    let line = status_line(&mut s);
    assert!(line.contains("401"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn slow_loris_connections_are_cut_and_do_not_block_others() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "svc");
    let server = Server::start(dir.path(), &["--request-head-timeout-ms", "800"]);
    // 200 connections that send half a request head and stall.
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = connect(&server.url);
            s.write_all(b"GET /ping HTTP/1.1\r\nhost: x\r\nx-tok")
                .unwrap();
            s
        })
        .collect();
    let token = forge(&key, &claims_for("svc"));
    let ok = crate::util::raw_get(&server.url, "/ping", &format!("x-token: {token}\r\n"));
    assert_eq!(
        ok,
        Some(200),
        "a valid caller waited behind slow connections"
    );
    // After the head timeout the server answers 408 or closes.
    let started = Instant::now();
    let line = status_line(&mut slow[0]);
    assert!(line.is_empty() || line.contains("408"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
