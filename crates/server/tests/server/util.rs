//! Starting the real `appauth-server` binary on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appauth_core::PrivateKey;

/// A running server, killed by PID when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(keys_dir: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--keys-dir", keys_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        Self::launch(None, &[], &args)
    }

    /// Starts the binary with exactly `args` (plus a free port and two
    /// workers), in `cwd` when given, with extra environment variables.
    /// stderr is a pipe, as under systemd or Kubernetes.
    pub fn launch(cwd: Option<&Path>, env: &[(&str, &str)], args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_appauth-server"));
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        cmd.args(args).envs(env.iter().copied());
        Self::spawn(cmd)
    }

    /// Starts `cmd`, a command line that ends in the server's arguments
    /// (the binary itself, or a wrapper such as `setpriv` that runs it),
    /// adding a free port and two workers.
    pub fn spawn(cmd: Command) -> Server {
        let server = Self::spawn_unready(cmd);
        server.wait_ready();
        server
    }

    /// Starts the binary with `args` (plus a free port and two workers) and
    /// returns once it listens, ready or not (its `/readyz` may say 503).
    pub fn start_unready(args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_appauth-server"));
        cmd.args(args);
        Self::spawn_unready(cmd)
    }

    fn spawn_unready(mut cmd: Command) -> Server {
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "info");
        }
        let mut child = cmd
            .args(["--bind", "127.0.0.1:0", "--workers", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start appauth-server");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on http") {
                    let url = line[i + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .to_owned();
                    let _ = tx.send(url);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("server did not start: {:?}", logs.lock().unwrap()));
        Server { child, url, logs }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ready = if self.url.starts_with("https") {
                self.logs().contains("keys loaded; ready")
            } else {
                raw_status(&self.url, "/readyz") == Some(200)
            };
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server never became ready");
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces `path` atomically (write beside, then rename), as editors,
/// deploy tools and keygen do.
pub fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Generates a keypair for `app` into `dir` (public) and returns the private key.
pub fn add_app(dir: &Path, app: &str) -> PrivateKey {
    let key = PrivateKey::generate(2048).unwrap();
    std::fs::write(
        dir.join(format!("{app}_public.pem")),
        key.public_key_pem().unwrap(),
    )
    .unwrap();
    key
}

/// Polls `check` until it holds or `within` passes; returns how long it took.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return Some(started.elapsed());
        }
        if started.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain HTTP/1.1 GET over a std socket, for use outside the async runtime.
pub fn raw_status(url: &str, path: &str) -> Option<u16> {
    raw_get(url, path, "")
}

/// A GET with `path` sent exactly as given (HTTP clients normalize `..`) and
/// extra header lines, each ending in CRLF.
pub fn raw_get(url: &str, path: &str, headers: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let addr = url.strip_prefix("http://")?;
    let mut sock = std::net::TcpStream::connect(addr).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\n{headers}connection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    sock.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Sends `request` as raw bytes and returns the status and the whole
/// response text (the request should say `connection: close`).
pub fn raw_exchange(url: &str, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.strip_prefix("http://").unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = sock.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// What an upstream received: the request line's target as sent, every
/// header in order, and the body as read by `Content-Length`.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// Every value of header `name` (exact, case-insensitive match).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// An upstream that reads a request the way Python's http.server and many
/// WSGI servers do: the head, then exactly `Content-Length` bytes (a chunked
/// body reads as empty). It records each request and answers 200 with the
/// number of body bytes it read, then closes the connection.
pub fn recording_upstream() -> (String, Arc<Mutex<Vec<Received>>>) {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let record = record.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_owned();
                let target = parts.next().unwrap_or_default().to_owned();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((n, v)) = h.trim_end().split_once(':') {
                        headers.push((n.to_owned(), v.trim().to_owned()));
                    }
                }
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                let reply = format!("{{\"read\":{}}}", body.len());
                record.lock().unwrap().push(Received {
                    method,
                    target,
                    headers,
                    body,
                });
                let mut conn = conn;
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            });
        }
    });
    (url, seen)
}

/// The whole `/metrics` text.
pub async fn metrics_text(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The status of `GET url+path` with `x-token: token`.
pub async fn status_with(url: &str, path: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{url}{path}"))
        .header("x-token", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The value of a metric line on `/metrics`, e.g. `appauth_rsa_verifications_total`.
pub async fn metric(url: &str, name: &str) -> u64 {
    metric_line(url, name)
        .await
        .unwrap_or_else(|| panic!("{name} missing from /metrics")) as u64
}

/// RSA verifications the server has run.
pub async fn rsa_verifications(url: &str) -> u64 {
    metric(url, "appauth_rsa_verifications_total").await
}

pub use appauth_testkit::{Cluster, Redis, Sentinel};

/// The value of one labelled metric line, e.g.
/// `appauth_shared_state_mode{mode="global"}`; `None` when absent.
pub async fn metric_line(url: &str, line_prefix: &str) -> Option<f64> {
    metrics_text(url).await.lines().find_map(|l| {
        l.strip_prefix(line_prefix)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}
