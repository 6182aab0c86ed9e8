//! The real binaries (the agent, appauth-server) on free loopback ports, and
//! an upstream that records what reached it.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

pub const AGENT: &str = env!("CARGO_BIN_EXE_appauth-agent");

/// A running process, killed by PID when dropped; its stderr collected.
pub struct Proc {
    pub child: Child,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `cmd` with stderr piped (as under Kubernetes).
    pub fn spawn(mut cmd: Command) -> Proc {
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "info");
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the process");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Proc { child, logs }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The URL after the first `<what> listening on `, waiting for it.
    pub fn url(&mut self, what: &str) -> String {
        let needle = format!("{what} listening on ");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(url) = self.logs.lock().unwrap().iter().find_map(|l| {
                let i = l.find(&needle)?;
                Some(l[i + needle.len()..].split_whitespace().next()?.to_owned())
            }) {
                return url;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("exited with {status} before listening: {}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("never listened: {}", self.logs());
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        appauth_testkit::wait_exit(&mut self.child, within).map(|(status, _)| status)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// appauth-server on a free port, ready.
pub struct Server {
    /// Kept for its Drop, which kills the server.
    _proc: Proc,
    pub url: String,
}

impl Server {
    pub fn start(keys_dir: &Path, extra: &[&str]) -> Server {
        let mut cmd = Command::new(appauth_testkit::workspace_bin("appauth-server"));
        cmd.arg("--keys-dir").arg(keys_dir).args(extra).args([
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
        ]);
        let mut proc = Proc::spawn(cmd);
        let url = proc.url("");
        let url = url.replace("://localhost", "://127.0.0.1");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if proc.logs().contains("ready") {
                return Server { _proc: proc, url };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server never ready: {}", proc.logs());
    }
}

/// An agent in proxy mode on a free port, with its admin listener.
pub struct Agent {
    pub proc: Proc,
    pub url: String,
    pub admin: String,
}

impl Agent {
    /// `appauth-agent proxy --app-id APP --key KEY --upstream UPSTREAM` plus
    /// `extra`, on 127.0.0.1:0 with an admin listener.
    pub fn proxy(app: &str, key: &Path, upstream: &str, extra: &[&str]) -> Agent {
        Self::proxy_env(app, key, upstream, extra, &[])
    }

    pub fn proxy_env(
        app: &str,
        key: &Path,
        upstream: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let mut cmd = Command::new(AGENT);
        cmd.args(["proxy", "--app-id", app, "--key"])
            .arg(key)
            .args(["--upstream", upstream])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(extra)
            .envs(env.iter().copied());
        let mut proc = Proc::spawn(cmd);
        let admin = proc.url("admin");
        let url = proc.url("proxy");
        Agent { proc, url, admin }
    }

    /// The value of one metric line of the admin `/metrics`.
    pub async fn metric(&self, line_prefix: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line_prefix} in {text}"))
    }
}

/// The status of `GET url`.
pub async fn status_of(url: &str) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

/// An app's keypair from appauth-keygen: public key in `<dir>/keys`, private
/// in `<dir>/private`. Returns the private key's path.
pub fn keypair(dir: &Path, app: &str) -> PathBuf {
    let dirs = key_dirs(dir);
    let id = appauth_core::AppId::new(app).unwrap();
    appauth_keygen::generate(
        std::slice::from_ref(&id),
        2048,
        &dirs,
        appauth_keygen::Existing::Refuse,
    )
    .unwrap();
    dirs.private_path(&id)
}

pub fn key_dirs(dir: &Path) -> appauth_keygen::KeyDirs {
    appauth_keygen::KeyDirs {
        private: dir.join("private"),
        public: dir.join("keys"),
        private_per_app: false,
    }
}

pub use appauth_testkit::Received;

/// How the recording upstream answers.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    /// 200 `{"read":N}`.
    Ok,
    /// 401 with an appauth refusal body of this reason.
    Refuse(&'static str),
    /// Reads the request, then never answers.
    Hang,
    /// 200 after this long.
    Slow(Duration),
}

/// A real HTTP/1.1 server (hyper) that records every request whole,
/// chunked bodies decoded, on its own thread.
pub fn recording_upstream(reply: Reply) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                            let record = record.clone();
                            async move {
                                let method = req.method().to_string();
                                let target = req
                                    .uri()
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default();
                                let headers = req
                                    .headers()
                                    .iter()
                                    .map(|(n, v)| {
                                        (
                                            n.to_string(),
                                            String::from_utf8_lossy(v.as_bytes()).into(),
                                        )
                                    })
                                    .collect();
                                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                                let body = body.unwrap_or_default().to_vec();
                                let read = body.len();
                                record.lock().unwrap().push(Received {
                                    method,
                                    target,
                                    headers,
                                    body,
                                });
                                let (status, text) = match reply {
                                    Reply::Ok => (200, format!(r#"{{"read":{read}}}"#)),
                                    Reply::Slow(d) => {
                                        tokio::time::sleep(d).await;
                                        (200, format!(r#"{{"read":{read}}}"#))
                                    }
                                    Reply::Refuse(reason) => (
                                        401,
                                        format!(
                                            r#"{{"error":"invalid_token","reason":"{reason}"}}"#
                                        ),
                                    ),
                                    Reply::Hang => {
                                        std::future::pending::<()>().await;
                                        unreachable!()
                                    }
                                };
                                Ok::<_, Infallible>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .header("content-type", "application/json")
                                        .header("x-upstream", "recorder")
                                        .body(Full::new(Bytes::from(text)))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    (url, seen)
}

/// A loopback port nothing listens on.
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The claims of a token, decoded without checking it.
pub fn claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The resident memory of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
