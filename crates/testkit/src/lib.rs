//! Helpers the test suites of several appauth crates share: the path of the
//! known-answer fixtures, and tokens forged by hand (any header, any claims,
//! any key), which the real signer would never make.
//!
//! ```
//! use appauth_core::{Algorithm, PrivateKey};
//! let key = PrivateKey::generate(2048).unwrap();
//! let token = appauth_testkit::forge(
//!     &key,
//!     Algorithm::RS512,
//!     &serde_json::json!({"alg": "RS512", "crit": ["x"]}),
//!     &serde_json::json!({"appId": "a"}),
//! );
//! assert_eq!(token.split('.').count(), 3);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod conformance;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use appauth_core::{Algorithm, PrivateKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// `tests/fixtures/<rel>` at the top of the workspace.
pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

/// The bytes of a fixture; panics naming the file when it is missing.
pub fn fixture(rel: &str) -> Vec<u8> {
    let p = fixture_path(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A valid RS512 token for `app`, issued at `iat` for 300 s, made by the real
/// signer (`appauth_core::sign_token`): what a well-behaved caller sends.
pub fn signed(key: &PrivateKey, app: &str, iat: i64) -> String {
    let claims = appauth_core::Claims {
        app_id: app.into(),
        iat,
        exp: iat + 300,
        nbf: None,
        jti: None,
        aud: None,
        iss: None,
        extra: Default::default(),
    };
    appauth_core::sign_token(key, Algorithm::RS512, &claims).expect("sign")
}

/// A compact JWS of exactly `header` and `claims`, signed with `key`.
pub fn forge(key: &PrivateKey, alg: Algorithm, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let sig = key.sign(alg, input.as_bytes()).expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// An `HS256` or `HS512` token MACed with `secret`: the classic attack of
/// using an RSA public key as an HMAC secret.
pub fn hmac_token(alg: &str, secret: &[u8], claims: &Value) -> String {
    use aws_lc_rs::hmac;
    let input = signing_input(&serde_json::json!({ "alg": alg, "typ": "JWT" }), claims);
    let algorithm = if alg == "HS256" {
        hmac::HMAC_SHA256
    } else {
        hmac::HMAC_SHA512
    };
    let tag = hmac::sign(&hmac::Key::new(algorithm, secret), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag))
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A throwaway `redis-server` on a free loopback port, no persistence,
/// killed by PID when dropped (the replica tests of the server and the
/// library start their own).
pub struct Redis {
    child: Option<Child>,
    /// The port it listens on.
    pub port: u16,
    /// The TLS port, for one started with [`Redis::start_tls`].
    pub tls_port: Option<u16>,
    args: Vec<String>,
    /// Its own working directory: a replica writes the primary's data there
    /// (`dump.rdb`), and a Redis started in a shared directory would load
    /// another test's data from it.
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    /// Starts one.
    pub fn start() -> Redis {
        let mut redis = Redis {
            child: None,
            port: free_port(),
            tls_port: None,
            args: Vec::new(),
            dir: tempfile::tempdir().expect("a temp dir for redis-server"),
        };
        redis.restart();
        redis
    }

    /// Starts one with extra `redis-server` arguments (for example
    /// `--requirepass`).
    pub fn start_with(args: &[&str]) -> Redis {
        let mut redis = Redis {
            child: None,
            port: free_port(),
            tls_port: None,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            dir: tempfile::tempdir().expect("a temp dir for redis-server"),
        };
        redis.restart();
        redis
    }

    /// Starts one that also listens with TLS on [`Redis::tls_url`], with
    /// this certificate and key, and asks every TLS client for a
    /// certificate signed by `ca` (`tls-auth-clients yes`, Redis's default).
    /// The plain port stays open for [`Redis::command`].
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path) -> Redis {
        Self::start_tls_with(cert, key, ca, true, &[])
    }

    /// As [`Redis::start_tls`], asking clients for a certificate only when
    /// `client_certs`, with extra arguments (cluster or replication over
    /// TLS, say).
    pub fn start_tls_with(
        cert: &Path,
        key: &Path,
        ca: &Path,
        client_certs: bool,
        extra: &[&str],
    ) -> Redis {
        let tls_port = free_port();
        let path = |p: &Path| p.to_str().unwrap().to_owned();
        let mut redis = Redis {
            child: None,
            port: free_port(),
            tls_port: Some(tls_port),
            args: vec![
                "--tls-port".into(),
                tls_port.to_string(),
                "--tls-cert-file".into(),
                path(cert),
                "--tls-key-file".into(),
                path(key),
                "--tls-ca-cert-file".into(),
                path(ca),
                "--tls-auth-clients".into(),
                if client_certs { "yes" } else { "no" }.into(),
            ]
            .into_iter()
            .chain(extra.iter().map(|a| (*a).to_owned()))
            .collect(),
            dir: tempfile::tempdir().expect("a temp dir for redis-server"),
        };
        redis.restart();
        redis
    }

    /// `rediss://127.0.0.1:<tls port>`, for one started with TLS.
    pub fn tls_url(&self) -> String {
        format!(
            "rediss://127.0.0.1:{}",
            self.tls_port.expect("started with TLS")
        )
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGKILL: an outage, not a shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes it (SIGSTOP): connections stay open and nothing answers, as
    /// with a Redis stuck on a slow disk or a long fork.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws it (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let ok = Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {sig} redis-server");
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        // Empty means empty: not even what a replica wrote before.
        let _ = std::fs::remove_file(self.dir.path().join("dump.rdb"));
        let child = Command::new("redis-server")
            .current_dir(self.dir.path())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--dir",
                self.dir.path().to_str().expect("a UTF-8 temp path"),
            ])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it with apt-get)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // A Redis with a password answers NOAUTH: it is up all the same.
            if self
                .command(&["PING"])
                .is_some_and(|r| r.contains("PONG") || r.contains("NOAUTH"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// One command in RESP over a plain socket; the raw reply.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        self.commands(&[args]).pop()
    }

    /// `AUTH user password`, then one command, on one connection; the raw
    /// reply to the command.
    pub fn command_as(&self, user: &str, password: &str, args: &[&str]) -> Option<String> {
        self.commands(&[&["AUTH", user, password], args]).pop()
    }

    fn commands(&self, each: &[&[&str]]) -> Vec<String> {
        commands(self.port, each)
    }
}

/// Commands in RESP over a plain socket to `port`; the raw replies.
fn commands(port: u16, each: &[&[&str]]) -> Vec<String> {
    use std::io::{Read, Write};
    let mut replies = Vec::new();
    let Ok(mut sock) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return replies;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
    for args in each {
        let mut req = format!("*{}\r\n", args.len());
        for a in *args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        if sock.write_all(req.as_bytes()).is_err() {
            break;
        }
        let mut buf = vec![0u8; 1 << 16];
        let Ok(n) = sock.read(&mut buf) else { break };
        replies.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    replies
}

/// The `redis-server` arguments that create docs/spec.md §11's ACL user
/// `appauth`, with `password`: the tests run against the documented line.
pub fn documented_acl_user(password: &str) -> Vec<String> {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/spec.md"))
        .expect("docs/spec.md");
    let line = spec
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("user appauth on "))
        .expect("docs/spec.md §11 lists the ACL user")
        .replace(">PASSWORD", &format!(">{password}"));
    std::iter::once("--user".to_owned())
        .chain(
            line.trim_start_matches("user ")
                .split_whitespace()
                .map(str::to_owned),
        )
        .collect()
}

/// A throwaway Redis Cluster: `masters` primaries with one replica each,
/// every node a [`Redis`] of its own (cluster mode, 1 s node timeout),
/// joined with `redis-cli --cluster create`.
pub struct Cluster {
    /// Every node, primaries first as `redis-cli` assigned them at creation.
    pub nodes: Vec<Redis>,
}

impl Cluster {
    /// Starts one and waits until every node says `cluster_state:ok`.
    pub fn start(masters: usize) -> Cluster {
        Self::start_with(masters, &[])
    }

    /// As [`Cluster::start`], with extra `redis-server` arguments on every
    /// node (an ACL user, say).
    pub fn start_with(masters: usize, extra: &[String]) -> Cluster {
        Self::start_inner(masters, extra, None)
    }

    /// As [`Cluster::start`], the cluster speaking TLS (clients, the
    /// cluster bus and replication) with this certificate, key and CA; the
    /// plain ports stay open for the test's own commands.
    pub fn start_tls(masters: usize, cert: &Path, key: &Path, ca: &Path) -> Cluster {
        Self::start_inner(masters, &[], Some((cert, key, ca)))
    }

    fn start_inner(
        masters: usize,
        extra: &[String],
        tls: Option<(&Path, &Path, &Path)>,
    ) -> Cluster {
        let nodes: Vec<Redis> = (0..masters * 2)
            .map(|_| {
                let mut args: Vec<&str> = extra.iter().map(String::as_str).collect();
                if tls.is_some() {
                    args.extend(["--tls-cluster", "yes", "--tls-replication", "yes"]);
                }
                args.extend([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    // A replica whose first sync was cut short may still
                    // fail over, as the test means it to.
                    "--cluster-replica-validity-factor",
                    "0",
                ]);
                match tls {
                    Some((cert, key, ca)) => Redis::start_tls_with(cert, key, ca, false, &args),
                    None => Redis::start_with(&args),
                }
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.tls_port.unwrap_or(n.port)))
            .collect();
        let mut create = Command::new("redis-cli");
        if let Some((_, _, ca)) = tls {
            create.arg("--tls").arg("--cacert").arg(ca);
        }
        let out = create
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli is installed (with redis-server, from redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster { nodes };
        assert!(
            cluster.wait_ok(Duration::from_secs(20)),
            "the cluster never became ok"
        );
        // Every replica in sync, so a failover has a copy to promote.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let synced = cluster.nodes.iter().all(|n| {
                n.command(&["INFO", "replication"]).is_some_and(|r| {
                    r.contains("role:master") || r.contains("master_link_status:up")
                })
            });
            if synced {
                return cluster;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the cluster's replicas never synced");
    }

    /// Waits until every running node says `cluster_state:ok`.
    pub fn wait_ok(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let ok = self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                n.command(&["CLUSTER", "INFO"])
                    .is_some_and(|r| r.contains("cluster_state:ok"))
            });
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `redis+cluster://` naming two of the nodes.
    pub fn url(&self) -> String {
        self.url_as("")
    }

    /// `redis+cluster://<userinfo>@` naming two of the nodes (`userinfo`
    /// empty for none); `rediss+cluster://` and the TLS ports for a cluster
    /// started with TLS.
    pub fn url_as(&self, userinfo: &str) -> String {
        let at = if userinfo.is_empty() {
            String::new()
        } else {
            format!("{userinfo}@")
        };
        let tls = self.nodes[0].tls_port.is_some();
        let port = |n: &Redis| if tls { n.tls_port.unwrap() } else { n.port };
        let scheme = if tls { "rediss" } else { "redis" };
        format!(
            "{scheme}+cluster://{at}127.0.0.1:{},127.0.0.1:{}",
            port(&self.nodes[0]),
            port(&self.nodes[1])
        )
    }

    /// The node that serves `key` now (as a running node sees it): the one
    /// that owns its slot as primary.
    pub fn owner_of(&self, key: &str) -> Option<usize> {
        let asker = self.nodes.iter().find(|n| n.child.is_some())?;
        let slot: u16 = asker
            .command(&["CLUSTER", "KEYSLOT", key])?
            .trim()
            .trim_start_matches(':')
            .parse()
            .ok()?;
        let layout = asker.command(&["CLUSTER", "NODES"])?;
        for line in layout.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port: u16 = fields[1].split(['@', ':']).nth(1)?.parse().ok()?;
            let owns = fields[8..].iter().any(|range| {
                let mut ends = range.split('-');
                match (ends.next().and_then(|a| a.parse::<u16>().ok()), ends.next()) {
                    (Some(a), None) => a == slot,
                    (Some(a), Some(b)) => b.parse::<u16>().is_ok_and(|b| (a..=b).contains(&slot)),
                    _ => false,
                }
            });
            if owns {
                return self.nodes.iter().position(|n| n.port == port);
            }
        }
        None
    }

    /// The slot of `key`.
    pub fn slot_of(&self, key: &str) -> Option<u16> {
        let asker = self.nodes.iter().find(|n| n.child.is_some())?;
        asker
            .command(&["CLUSTER", "KEYSLOT", key])?
            .trim()
            .trim_start_matches(':')
            .parse()
            .ok()
    }

    /// The first slot of each range `node` owns as primary.
    pub fn first_slots(&self, node: usize) -> Vec<u16> {
        let layout = self.nodes[node]
            .command(&["CLUSTER", "NODES"])
            .unwrap_or_default();
        layout
            .lines()
            .find(|l| l.contains("myself"))
            .map(|l| {
                l.split_whitespace()
                    .skip(8)
                    .filter_map(|r| r.split('-').next()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Moves the first `slots` slots of `from` to `to`, keys included, with
    /// `redis-cli --cluster reshard`.
    pub fn reshard(&self, from: usize, to: usize, slots: usize) {
        let out = Command::new("redis-cli")
            .args([
                "--cluster",
                "reshard",
                &format!("127.0.0.1:{}", self.nodes[from].port),
            ])
            .args([
                "--cluster-from",
                &self.id_of(from),
                "--cluster-to",
                &self.id_of(to),
            ])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster reshard: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// A node's cluster id.
    pub fn id_of(&self, node: usize) -> String {
        self.nodes[node]
            .command(&["CLUSTER", "MYID"])
            .unwrap_or_default()
            .lines()
            .find(|l| !l.starts_with('$'))
            .unwrap_or("")
            .trim()
            .to_owned()
    }
}

/// A throwaway Redis Sentinel (`redis-server --sentinel`) on a free loopback
/// port, watching one primary as service `mymaster` with a 1 s down-after,
/// killed by PID when dropped. Several started on one primary find each
/// other through it.
pub struct Sentinel {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    /// Its TLS port, for one started with [`Sentinel::start_tls`].
    pub tls_port: Option<u16>,
    /// Its config file lives here (a sentinel rewrites it).
    _dir: tempfile::TempDir,
}

impl Sentinel {
    /// The service name it watches.
    pub const SERVICE: &'static str = "mymaster";

    /// Starts `n` watching the primary on `primary_port`, with a majority
    /// quorum.
    pub fn start_group(primary_port: u16, n: usize) -> Vec<Sentinel> {
        (0..n)
            .map(|_| Self::start(primary_port, n / 2 + 1))
            .collect()
    }

    /// `redis+sentinel://` naming every sentinel of `group`
    /// (`rediss+sentinel://` and their TLS ports when they speak TLS).
    pub fn group_url(group: &[Sentinel]) -> String {
        let tls = group.iter().all(|s| s.tls_port.is_some());
        let port = |s: &Sentinel| if tls { s.tls_port.unwrap() } else { s.port };
        let hosts: Vec<String> = group
            .iter()
            .map(|s| format!("127.0.0.1:{}", port(s)))
            .collect();
        let scheme = if tls { "rediss" } else { "redis" };
        format!("{scheme}+sentinel://{}/{}", hosts.join(","), Self::SERVICE)
    }

    /// Starts one watching the primary on `primary_port`.
    pub fn start(primary_port: u16, quorum: usize) -> Sentinel {
        Self::start_inner(primary_port, quorum, None)
    }

    /// Starts one that speaks TLS (to clients, and to the nodes it watches:
    /// `primary_tls_port` is the primary's TLS port) with this certificate,
    /// key and CA; its plain port stays open for the test's own commands.
    pub fn start_tls(primary_tls_port: u16, cert: &Path, key: &Path, ca: &Path) -> Sentinel {
        Self::start_inner(primary_tls_port, 1, Some((cert, key, ca)))
    }

    fn start_inner(
        primary_port: u16,
        quorum: usize,
        tls: Option<(&Path, &Path, &Path)>,
    ) -> Sentinel {
        let dir = tempfile::tempdir().expect("a temp dir for redis-sentinel");
        let port = free_port();
        let tls_port = tls.map(|_| free_port());
        let tls_conf = match (tls, tls_port) {
            (Some((cert, key, ca)), Some(p)) => format!(
                "tls-port {p}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                 tls-auth-clients no\ntls-replication yes\n",
                cert.display(),
                key.display(),
                ca.display()
            ),
            _ => String::new(),
        };
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                 sentinel monitor {service} 127.0.0.1 {primary_port} {quorum}\n\
                 sentinel down-after-milliseconds {service} 1000\n\
                 sentinel failover-timeout {service} 5000\n\
                 sentinel parallel-syncs {service} 1\n{tls_conf}",
                dir = dir.path().display(),
                service = Self::SERVICE,
            ),
        )
        .expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it with apt-get)");
        let sentinel = Sentinel {
            child,
            port,
            tls_port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if sentinel.primary_port() == Some(primary_port) {
                return sentinel;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-sentinel did not start on port {port}");
    }

    /// `redis+sentinel://127.0.0.1:<port>/mymaster`.
    pub fn url(&self) -> String {
        format!("redis+sentinel://127.0.0.1:{}/{}", self.port, Self::SERVICE)
    }

    /// The port of the primary it names now.
    pub fn primary_port(&self) -> Option<u16> {
        let reply = self.command(&["SENTINEL", "get-master-addr-by-name", Self::SERVICE])?;
        // *2 $9 127.0.0.1 $4 6379
        reply
            .lines()
            .filter(|l| !l.starts_with(['*', '$']))
            .nth(1)?
            .trim()
            .parse()
            .ok()
    }

    /// One command; the raw reply.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        commands(self.port, &[args]).pop()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// A binary of another package of this workspace, from the target directory
/// the running test was built in (`cargo test --workspace` builds every
/// package's binaries before any test runs). Panics, saying what to build,
/// when it is not there.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in target/<profile>/deps");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is not built: run `cargo build -p {name}` (scripts/test.sh builds the workspace)",
        bin.display()
    );
    bin
}

/// What a recording upstream received: the request line's target as sent,
/// every header in order, and the body.
#[derive(Debug, Clone)]
pub struct Received {
    /// The method.
    pub method: String,
    /// Path and query, as on the request line.
    pub target: String,
    /// Every header, in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Received {
    /// Every value of header `name` (case-insensitive).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value of header `name`; panics when it was sent twice.
    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} sent {} times: {all:?}", all.len());
        all.first().copied()
    }
}

/// Sends signal `name` (`TERM`, `INT`, ...) to process `pid`, as a
/// supervisor would, with `kill(1)`.
pub fn send_signal(pid: u32, name: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill(1)")
        .success();
    assert!(ok, "kill -{name} {pid}");
}

/// Waits up to `within` for `child` to exit by itself: its status and how
/// long it took. A short pause after the exit lets a thread reading its
/// stderr take the last lines.
pub fn wait_exit(
    child: &mut std::process::Child,
    within: std::time::Duration,
) -> Option<(std::process::ExitStatus, std::time::Duration)> {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if let Ok(Some(status)) = child.try_wait() {
            let took = started.elapsed();
            std::thread::sleep(std::time::Duration::from_millis(100));
            return Some((status, took));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}
