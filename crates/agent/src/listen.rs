//! Where the agent listens, and the serving loop (hyper, HTTP/1.1 and h2c).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, UnixListener};

use std::sync::Arc;

use appauth_core::drain::{Drain, Signals};

use crate::body::ProxyBody;

/// How long a client may take to send a request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `--drain-delay`: how long the proxy keeps serving after SIGTERM
/// (the application beside it is being stopped too, and may still call).
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// Default `--shutdown-timeout`: how long requests in flight may take once
/// accepting stops (never less than the upstream timeout).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// A listening address: `HOST:PORT` or `unix:/path.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// TCP.
    Tcp(SocketAddr),
    /// A Unix socket, created mode 0600.
    Unix(PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path, e.g. unix:/run/app/agent.sock".into());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(port) = s.strip_prefix("localhost:") {
            let port = port.parse().map_err(|_| format!("{s:?}: not a port"))?;
            return Ok(Self::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
        }
        s.parse().map(Self::Tcp).map_err(|_| {
            format!("{s:?} is not an address: use 127.0.0.1:PORT, [::1]:PORT or unix:/path.sock")
        })
    }
}

impl Listen {
    /// Refuses an address other hosts can reach, unless `allow_remote`:
    /// whoever reaches the proxy gets requests signed as the app.
    pub fn check_local(&self, allow_remote: bool) -> Result<(), String> {
        match self {
            Self::Tcp(addr) if !addr.ip().is_loopback() && !allow_remote => Err(format!(
                "--listen {addr} is not a loopback address: anything that can reach it could call \
                 the upstream as this app. Listen on 127.0.0.1 (or unix:/path.sock), or pass \
                 --allow-remote if the network around it is yours to trust"
            )),
            _ => Ok(()),
        }
    }

    /// Binds. A Unix socket is made under a temporary name, set to mode
    /// 0600 and renamed into place, so it is never reachable with wider
    /// permissions; a stale socket at the path is replaced, any other file
    /// is refused.
    pub async fn bind(&self) -> std::io::Result<Bound> {
        match self {
            Self::Tcp(addr) => Ok(Bound::Tcp(TcpListener::bind(addr).await?)),
            Self::Unix(path) => bind_unix(path).map(|l| Bound::Unix(l, path.clone())),
        }
    }
}

fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && !meta.file_type().is_socket()
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket: not replaced",
                path.display()
            ),
        ));
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)?;
    Ok(listener)
}

/// A bound listener.
#[derive(Debug)]
pub enum Bound {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix socket, removed when this is dropped.
    Unix(UnixListener, PathBuf),
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Bound {
    /// What to call: `http://127.0.0.1:PORT` or `unix:/path`.
    pub fn url(&self) -> String {
        match self {
            Self::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "http://?".into(), |a| format!("http://{a}")),
            Self::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }

    /// Serves `handle` on every connection until `stop` completes, then
    /// stops accepting and gives requests in flight `grace`; returns
    /// whether they all finished in it.
    pub async fn serve<F, Fut>(
        self,
        handle: F,
        stop: impl Future<Output = ()>,
        grace: Duration,
    ) -> bool
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
    {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(stop);
        loop {
            let accepted = tokio::select! {
                () = &mut stop => break,
                a = self.accept() => a,
            };
            match accepted {
                Ok(io) => {
                    let handle = handle.clone();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let answer = handle(req);
                            async move { Ok::<_, Infallible>(answer.await) }
                        });
                        let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
                        builder
                            .http1()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEAD_TIMEOUT);
                        let conn = builder.serve_connection(io, service);
                        // A connection that ends in an error (the client went
                        // away mid-request) is the client's business.
                        let _ = watcher.watch(conn).await;
                    });
                }
                Err(e) => {
                    // Out of file descriptors, most often: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        // Idle keep-alive connections are closed now, busy ones after
        // their response.
        tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_ok()
    }

    async fn accept(&self) -> std::io::Result<TokioIo<Stream>> {
        match self {
            Self::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(TokioIo::new(Box::new(s)))
            }
            Self::Unix(l, _) => Ok(TokioIo::new(Box::new(l.accept().await?.0))),
        }
    }
}

/// An accepted connection of either kind.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}
type Stream = Box<dyn Io>;

/// Resolves on the first SIGTERM or SIGINT.
pub async fn stop_signal() {
    let _ = signals().next().await;
}

// Fails only without a runtime's signal driver: a bug, not input.
fn signals() -> Signals {
    Signals::new().expect("SIGTERM and SIGINT handlers")
}

/// The drain (docs/spec.md §12): waits for SIGTERM or SIGINT, marks `drain`
/// begun (the admin `/readyz` turns 503, answers carry `Connection:
/// close`), keeps serving for `delay`, then resolves, when accepting
/// stops. From the first signal on, a second one exits the process at once.
pub async fn drain_on_signals(drain: Arc<Drain>, delay: Duration) {
    let mut signals = signals();
    let signal = signals.next().await;
    drain.begin();
    tracing::info!(
        signal,
        in_flight = drain.in_flight(),
        drain_delay_s = delay.as_secs_f64(),
        "draining: /readyz answers 503, requests are still forwarded (with Connection: close) until the drain delay ends"
    );
    let watching = drain.clone();
    tokio::spawn(async move {
        let signal = signals.next().await;
        let (finished, _) = watching.counts();
        tracing::warn!(
            signal,
            in_flight = watching.in_flight(),
            finished,
            "second signal: exiting at once, requests in flight are cut"
        );
        std::process::exit(1);
    });
    tokio::time::sleep(delay).await;
    tracing::info!(
        in_flight = drain.in_flight(),
        "drain delay over: no longer accepting; requests in flight may finish until the shutdown timeout"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_unless_allowed() {
        for local in [
            "127.0.0.1:9000",
            "[::1]:9000",
            "localhost:9000",
            "127.1.2.3:1",
        ] {
            let l: Listen = local.parse().unwrap();
            assert!(l.check_local(false).is_ok(), "{local}");
        }
        for remote in ["0.0.0.0:9000", "10.0.0.1:9000", "[::]:9000"] {
            let l: Listen = remote.parse().unwrap();
            let why = l.check_local(false).unwrap_err();
            assert!(why.contains("--allow-remote"), "{why}");
            assert!(l.check_local(true).is_ok());
        }
        assert_eq!(
            "unix:/run/a.sock".parse::<Listen>().unwrap(),
            Listen::Unix("/run/a.sock".into())
        );
        assert!("unix:".parse::<Listen>().is_err());
        assert!("example.com:80".parse::<Listen>().is_err());
    }
}
