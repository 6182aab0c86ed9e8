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
        let mut child = Command::new(env!("CARGO_BIN_EXE_appauth-server"))
            .arg("--keys-dir")
            .arg(keys_dir)
            .args(["--bind", "127.0.0.1:0", "--workers", "2"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
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
        let server = Server { child, url, logs };
        server.wait_ready();
        server
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

/// The value of a metric line on `/metrics`, e.g. `appauth_rsa_verifications_total`.
pub async fn metric(url: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// RSA verifications the server has run.
pub async fn rsa_verifications(url: &str) -> u64 {
    metric(url, "appauth_rsa_verifications_total").await
}
