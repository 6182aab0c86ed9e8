//! An open-loop load at a fixed rate, for `scripts/bench-agent.sh`: GET each
//! URL RATE times a second for SECS seconds, the URLs' requests interleaved
//! on one schedule, so that a hiccup of the machine falls on every path
//! alike and the paths' latencies compare within one run. Each URL has 2
//! keep-alive connections, each on its own thread with plain blocking I/O
//! (no runtime whose timer wheel would round due times to a millisecond).
//! Each latency is taken from the moment the request was due, so a stall
//! counts against every request it delays. Prints a line per URL:
//! `RESULT <url> <sent> <errors> <p50 us> <p90 us> <p99 us> <max us>`.
//!
//!     paced-load RATE SECS http://127.0.0.1:PORT/PATH...

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CONNECTIONS: u32 = 2;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: paced-load RATE SECS http://HOST:PORT/PATH...");
        std::process::exit(2);
    }
    let rate: u32 = args[1].parse().expect("requests per second");
    let secs: u32 = args[2].parse().expect("seconds");
    let urls = &args[3..];
    let n = urls.len() as u32;
    // One slot per request of any URL; URL u takes every n-th slot from u,
    // and its connection c every CONNECTIONS-th of those from c.
    let slot = Duration::from_secs(1) / (rate * n);
    let per_connection = rate * secs / CONNECTIONS;
    let start = Instant::now() + Duration::from_millis(200);
    let mut threads = Vec::new();
    for (u, url) in urls.iter().enumerate() {
        let rest = url.strip_prefix("http://").expect("an http:// URL");
        let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
        for c in 0..CONNECTIONS {
            let (addr, request) = (addr.to_owned(), request.clone());
            threads.push((
                u,
                std::thread::spawn(move || {
                    let stream = TcpStream::connect(&addr).expect("connect");
                    stream.set_nodelay(true).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    // Warm the connection, unmeasured.
                    let _ = writer.write_all(&request);
                    let _ = read_response(&mut reader);
                    let mut out = Vec::with_capacity(per_connection as usize);
                    let mut errors = 0u32;
                    for i in 0..per_connection {
                        let k = (i * CONNECTIONS + c) * n + u as u32;
                        let due = start + slot * k;
                        wait_until(due);
                        let ok = writer.write_all(&request).is_ok() && read_response(&mut reader);
                        if !ok {
                            errors += 1;
                        }
                        out.push(due.elapsed().as_micros() as u64);
                    }
                    (out, errors)
                }),
            ));
        }
    }
    let mut latencies = vec![Vec::new(); urls.len()];
    let mut errors = vec![0; urls.len()];
    for (u, t) in threads {
        let (l, e) = t.join().expect("load thread");
        latencies[u].extend(l);
        errors[u] += e;
    }
    for (u, url) in urls.iter().enumerate() {
        let l = &mut latencies[u];
        l.sort_unstable();
        let at = |q: f64| l[((l.len() as f64 * q) as usize).min(l.len() - 1)];
        println!(
            "RESULT {url} {} {} {} {} {} {}",
            l.len(),
            errors[u],
            at(0.50),
            at(0.90),
            at(0.99),
            l.last().copied().unwrap_or(0)
        );
    }
}

/// Sleeps until `due` (a high-resolution sleep, some tens of microseconds
/// late at worst; that lateness counts in every path alike). No spinning:
/// a spinning load thread would take the core the upstream needs.
fn wait_until(due: Instant) {
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

/// Reads one response with a `Content-Length`; false if it is not a 2xx.
fn read_response(reader: &mut BufReader<TcpStream>) -> bool {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return false;
    }
    let ok = line
        .split_whitespace()
        .nth(1)
        .is_some_and(|s| s.starts_with('2'));
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return false;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':')
            && n.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    ok && reader.read_exact(&mut body).is_ok()
}
