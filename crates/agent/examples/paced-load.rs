//! An open-loop load at a fixed rate, for `scripts/bench-agent.sh`: GET URL
//! RATE times a second for SECS seconds, spread over 4 keep-alive
//! connections, each on its own thread with plain blocking I/O (no runtime
//! whose timer wheel would round every due time to a millisecond). Each
//! latency is taken from the moment the request was due, so a stall counts
//! against every request it delays. Prints one line:
//! `RESULT <sent> <errors> <p50 us> <p99 us> <max us>`.
//!
//!     paced-load http://127.0.0.1:PORT/PATH RATE SECS

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CONNECTIONS: u32 = 4;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, rate, secs] = &args[..] else {
        eprintln!("usage: paced-load http://HOST:PORT/PATH RATE SECS");
        std::process::exit(2);
    };
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let rate: u32 = rate.parse().expect("requests per second");
    let secs: u32 = secs.parse().expect("seconds");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    // Each connection takes every CONNECTIONS-th slot of the schedule.
    let interval = Duration::from_secs(1) * CONNECTIONS / rate;
    let per_connection = rate * secs / CONNECTIONS;
    let start = Instant::now() + Duration::from_millis(200);
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (addr, request) = (addr.to_owned(), request.clone());
            std::thread::spawn(move || {
                let offset = Duration::from_secs(1) * c / rate;
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
                    let due = start + offset + interval * i;
                    wait_until(due);
                    let ok = writer.write_all(&request).is_ok() && read_response(&mut reader);
                    if !ok {
                        errors += 1;
                    }
                    out.push(due.elapsed().as_micros() as u64);
                }
                (out, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t.join().expect("load thread");
        latencies.extend(l);
        errors += e;
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "RESULT {} {errors} {} {} {}",
        latencies.len(),
        at(0.50),
        at(0.99),
        latencies.last().copied().unwrap_or(0)
    );
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
