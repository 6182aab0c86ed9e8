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

pub use appauth_testkit::Received;

/// A request's head as a plain HTTP/1.1 reader takes it: the method, the
/// target and the header fields in order, with the body still to be read
/// (and left empty here). `None` at the end of the connection.
pub fn read_head(reader: &mut impl std::io::BufRead) -> Option<Received> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
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
    Some(Received {
        method,
        target,
        headers,
        body: Vec::new(),
    })
}

/// An upstream that reads a request the way Python's http.server and many
/// WSGI servers do: the head, then exactly `Content-Length` bytes (a chunked
/// body reads as empty). It records each request and answers 200 with the
/// number of body bytes it read, then closes the connection.
pub fn recording_upstream() -> (String, Arc<Mutex<Vec<Received>>>) {
    use std::io::{Read, Write};
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
                let Some(mut received) = read_head(&mut reader) else {
                    return;
                };
                let len: usize = received
                    .headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                received.body = vec![0u8; len];
                let _ = reader.read_exact(&mut received.body);
                let reply = format!("{{\"read\":{}}}", received.body.len());
                record.lock().unwrap().push(received);
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

/// `appauth_shared_state_mode` says limits are held in Redis.
pub const GLOBAL: &str = "appauth_shared_state_mode{mode=\"global\"}";

/// Polls `check` (blocking) until it holds: how long that took, or `None`
/// after `within`.
pub fn wait_until(within: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if check() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// How long until `GET url/users` with `token` answers `status`, or `None`
/// after `within`.
pub async fn until_status(
    url: &str,
    token: &str,
    status: u16,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if status_with(url, "/users", token).await == status {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// How long until the replica at `url` holds its limits in Redis, or `None`.
pub async fn until_global(url: &str, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if metric_line(url, GLOBAL).await == Some(1.0) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// `appauth-server revoke` with `redis_args` (the URL and TLS flags) and
/// `args`.
pub fn revoke_with(redis_args: &[&str], args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_appauth-server"))
        .arg("revoke")
        .args(redis_args)
        .args(args)
        .output()
        .unwrap()
}

/// As [`revoke_with`], asserting that it succeeded.
pub fn revoke_ok(redis_args: &[&str], args: &[&str]) {
    let out = revoke_with(redis_args, args);
    assert!(
        out.status.success(),
        "revoke {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub use appauth_testkit::tls::tls_files;

/// What every `rediss` mode must do, given a Redis at `url` that trusts
/// clients of `ca_file`: a replica reaches it and holds its limits there, a
/// revoke through it (with `--redis-ca`) is refused within a second, and
/// without the CA the command fails saying why.
pub async fn a_replica_revokes_over_tls(url: &str, ca_file: &Path) {
    let keys = tempfile::tempdir().unwrap();
    let key = add_app(keys.path(), "svc");
    let ca = ca_file.to_str().unwrap();
    let server = Server::start(keys.path(), &["--redis-url", url, "--redis-ca", ca]);
    let global = until_global(&server.url, Duration::from_secs(10)).await;
    assert!(global.is_some(), "{}", server.logs());
    let token = crate::forge(
        &key,
        &serde_json::json!({"appId": "svc", "iat": crate::now(), "exp": crate::now() + 300, "jti": "tls-1"}),
    );
    revoke_ok(&["--redis-url", url, "--redis-ca", ca], &["jti tls-1"]);
    let refused = until_status(&server.url, &token, 401, Duration::from_secs(1)).await;
    assert!(refused.is_some(), "{}", server.logs());
    let out = revoke_with(&["--redis-url", url], &["--list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("certificate"),
        "{err}"
    );
}

/// Waits until every server holds its limits in Redis, and asserts that
/// the last did so within `limit` of `since` (a kill, say): how long after
/// `since` that was.
pub async fn all_global_by(servers: &[Server], since: Instant, limit: Duration) -> Duration {
    for s in servers {
        let took = until_global(&s.url, limit).await;
        assert!(took.is_some(), "not global again: {}", s.logs());
    }
    let after = since.elapsed();
    assert!(after < limit, "global again only {after:?} after");
    after
}

/// Waits until every server refuses `token` (401), and asserts that the
/// last did so within `limit` of `since` (a revoke, say): how long after
/// `since` that was.
pub async fn all_refuse_by(
    servers: &[Server],
    token: &str,
    since: Instant,
    limit: Duration,
) -> Duration {
    for s in servers {
        let took = until_status(&s.url, token, 401, limit + Duration::from_secs(4)).await;
        assert!(took.is_some(), "the token is still accepted: {}", s.logs());
    }
    let after = since.elapsed();
    assert!(after < limit, "refused by all only {after:?} after");
    after
}
