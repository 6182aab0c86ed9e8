//! HTTP/2 as an attacker speaks it (issue: stream floods and slow header
//! blocks), with a hand-framed client over real TLS: one that ignores the
//! server's settings, which a well-behaved library never does.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::client::TlsStream;

use crate::deploy::{Ca, ca, issue};
use crate::util::{Server, add_app};
use crate::{claims_for, forge};

const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with a 7-bit prefix (RFC 7541 §5.1), as string lengths
/// are written (no Huffman coding).
fn int7(mut n: usize, out: &mut Vec<u8>) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// A header block of literal fields that touch no table (RFC 7541 §6.2.2).
fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        int7(name.len(), &mut out);
        out.extend_from_slice(name.as_bytes());
        int7(value.len(), &mut out);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// What the server sent on a raw connection.
#[derive(Default)]
struct Seen {
    /// The entries of the server's first SETTINGS frame.
    settings: std::sync::Mutex<Option<Vec<(u16, u32)>>>,
    /// Streams that got response headers.
    responses: AtomicUsize,
    /// When the server closed the connection.
    closed_at: std::sync::Mutex<Option<Instant>>,
}

type Writer = Arc<Mutex<WriteHalf<TlsStream<TcpStream>>>>;

/// A hand-framed HTTP/2 client: it sends what it is told, never waits for a
/// stream slot, answers SETTINGS and PING as the protocol requires, and
/// counts the streams that got response headers.
struct Raw {
    writer: Writer,
    seen: Arc<Seen>,
    authority: String,
}

impl Raw {
    async fn connect(addr: &str, ca: &Ca) -> Raw {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject as _;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap();
        roots.add(der).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (reader, mut writer) = tokio::io::split(tls);
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        // A large connection window, so 1,500 responses never stall.
        hello.extend(frame(WINDOW_UPDATE, 0, 0, &(1u32 << 30).to_be_bytes()));
        writer.write_all(&hello).await.unwrap();
        let raw = Raw {
            writer: Arc::new(Mutex::new(writer)),
            seen: Arc::new(Seen::default()),
            authority: addr.to_owned(),
        };
        tokio::spawn(read_frames(reader, raw.writer.clone(), raw.seen.clone()));
        let until = Instant::now() + Duration::from_secs(5);
        while raw.settings().is_none() {
            assert!(Instant::now() < until, "no SETTINGS from the server");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        raw
    }

    fn settings(&self) -> Option<Vec<(u16, u32)>> {
        self.seen.settings.lock().unwrap().clone()
    }

    fn closed_at(&self) -> Option<Instant> {
        *self.seen.closed_at.lock().unwrap()
    }

    async fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut w = self.writer.lock().await;
        w.write_all(bytes).await?;
        w.flush().await
    }

    fn block(&self, path: &str, token: &str) -> Vec<u8> {
        hpack(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", path),
            (":authority", &self.authority),
            ("x-token", token),
        ])
    }
}

async fn read_frames(mut reader: ReadHalf<TlsStream<TcpStream>>, writer: Writer, seen: Arc<Seen>) {
    loop {
        let mut header = [0u8; 9];
        if reader.read_exact(&mut header).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; len];
        if reader.read_exact(&mut payload).await.is_err() {
            break;
        }
        let reply = match (header[3], header[4] & ACK != 0) {
            (SETTINGS, false) => {
                let entries = payload
                    .chunks_exact(6)
                    .map(|e| {
                        (
                            u16::from_be_bytes([e[0], e[1]]),
                            u32::from_be_bytes([e[2], e[3], e[4], e[5]]),
                        )
                    })
                    .collect();
                seen.settings.lock().unwrap().get_or_insert(entries);
                Some(frame(SETTINGS, ACK, 0, &[]))
            }
            (PING, false) => Some(frame(PING, ACK, 0, &payload)),
            (HEADERS, _) => {
                seen.responses.fetch_add(1, Ordering::SeqCst);
                None
            }
            _ => None,
        };
        if let Some(reply) = reply {
            let _ = writer.lock().await.write_all(&reply).await;
        }
    }
    seen.closed_at
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
}

/// A TLS server with `extra` arguments, and its CA.
fn tls_server(dir: &std::path::Path, extra: &[&str]) -> (Server, Ca) {
    let ca = ca();
    let (cert, key) = issue(&ca, dir, 1, 2090);
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let server = Server::start(&dir.join("keys"), &args);
    (server, ca)
}

fn addr(server: &Server) -> String {
    server.url.trim_start_matches("https://").to_owned()
}

#[tokio::test]
async fn the_server_advertises_its_stream_limit_and_cuts_slow_header_blocks() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("keys")).unwrap();
    let key = add_app(&dir.path().join("keys"), "svc");
    let (server, ca) = tls_server(dir.path(), &["--request-head-timeout-ms", "1000"]);
    let raw = Raw::connect(&addr(&server), &ca).await;
    let settings = raw.settings().unwrap();
    assert!(settings.contains(&(0x3, 100)), "{settings:?}");

    // A whole request in one HEADERS frame is served.
    let token = forge(&key, &claims_for("svc"));
    let block = raw.block("/whoami", &token);
    raw.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while raw.seen.responses.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < until, "no response to a plain request");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The next head comes as HEADERS without END_HEADERS, then one byte of
    // CONTINUATION every 200 ms: cut at the 1 s head deadline.
    let started = Instant::now();
    raw.send(&frame(HEADERS, END_STREAM, 3, &block[..10]))
        .await
        .unwrap();
    for byte in &block[10..] {
        if raw.closed_at().is_some() || started.elapsed() > Duration::from_secs(10) {
            break;
        }
        let _ = raw.send(&frame(CONTINUATION, 0, 3, &[*byte])).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let closed = raw
        .closed_at()
        .expect("a slow header block held the connection for 10 s");
    let held = closed - started;
    eprintln!("slow CONTINUATION frames: connection closed after {held:?}");
    assert!(
        held >= Duration::from_millis(900) && held < Duration::from_millis(2500),
        "{held:?}"
    );
    // The connection's first request was not disturbed by the watch.
    assert_eq!(raw.seen.responses.load(Ordering::SeqCst), 1);
}

/// An upstream that answers after 2 s and records, per app, how many of its
/// requests it held at once.
/// Per app: requests held now, and the most held at once.
type Held = Arc<std::sync::Mutex<std::collections::HashMap<String, (usize, usize)>>>;

fn slow_upstream() -> (String, Held) {
    let held: Held = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let record = held.clone();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let record = record.clone();
                App::new().default_service(web::to(move |req: HttpRequest| {
                    let record = record.clone();
                    async move {
                        let app = req
                            .headers()
                            .get("x-app-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_owned();
                        {
                            let mut r = record.lock().unwrap();
                            let e = r.entry(app.clone()).or_default();
                            e.0 += 1;
                            e.1 = e.1.max(e.0);
                        }
                        actix_web::rt::time::sleep(Duration::from_secs(2)).await;
                        record.lock().unwrap().get_mut(&app).unwrap().0 -= 1;
                        HttpResponse::Ok().body("late")
                    }
                }))
            })
            .workers(1)
            .backlog(4096)
            .max_connections(100_000)
            .bind("127.0.0.1:0")
            .unwrap();
            tx.send(server.addrs()[0]).unwrap();
            server.run().await.unwrap();
        });
    });
    (format!("http://{}", rx.recv().unwrap()), held)
}

/// One HTTP/2 connection opening 1,500 streams at once through the gateway
/// to a 2 s upstream (ignoring the advertised stream limit), while another
/// app calls: the other app's requests finish within 2 s + 0.5 s, the flood
/// holds at most its `concurrency` (64 by default) upstream, and an app
/// allowed more is stopped at the connection's 100 streams. Before, the
/// flood took all 100 of awc's upstream connections and the other app's 2 s
/// requests took 8.6-9.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_flooding_streams_leaves_other_apps_their_latency() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    fs::create_dir_all(&keys).unwrap();
    let flood = add_app(&keys, "flood");
    let wide = add_app(&keys, "wide");
    let calm = add_app(&keys, "calm");
    fs::write(
        dir.path().join("policy.toml"),
        "[default]\nallow = [\"*\"]\n\n[apps.wide]\nconcurrency = 1000\n",
    )
    .unwrap();
    let (upstream, held) = slow_upstream();
    let policy = dir.path().join("policy.toml");
    let (server, ca) = tls_server(
        dir.path(),
        &[
            "--upstream",
            &upstream,
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    let mut floods = Vec::new();
    for (app, key) in [("flood", &flood), ("wide", &wide)] {
        let raw = Raw::connect(&addr(&server), &ca).await;
        let block = raw.block("/data", &forge(key, &claims_for(app)));
        let mut burst = Vec::new();
        for i in 0..1500u32 {
            burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, &block));
        }
        raw.send(&burst).await.unwrap();
        floods.push(raw);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let calm_token = forge(&calm, &claims_for("calm"));
    let calls = (0..6).map(|_| {
        let (client, url, token) = (
            client.clone(),
            format!("{}/data", server.url),
            calm_token.clone(),
        );
        async move {
            let started = Instant::now();
            let resp = client
                .get(url)
                .header("x-token", token)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.version(), started.elapsed())
        }
    });
    let results = futures_util::future::join_all(calls).await;
    eprintln!("another app beside 2 x 1,500 streams: {results:?}");
    for (status, version, took) in &results {
        assert_eq!(*status, 200);
        assert_eq!(*version, reqwest::Version::HTTP_2);
        assert!(*took < Duration::from_millis(2500), "{took:?}");
    }

    let peaks = held.lock().unwrap().clone();
    eprintln!("held upstream at once, by app: {peaks:?}");
    assert_eq!(peaks["flood"].1, 64, "the default concurrency");
    assert_eq!(peaks["wide"].1, 100, "the connection's stream limit");

    // Every stream was answered: refusals at once, the held ones after 2 s.
    for raw in &floods {
        let until = Instant::now() + Duration::from_secs(10);
        while raw.seen.responses.load(Ordering::SeqCst) < 1500 {
            assert!(
                Instant::now() < until,
                "{} of 1,500 answered",
                raw.seen.responses.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let metrics = client
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |reason: &str| -> f64 {
        let prefix =
            format!("appauth_requests_total{{outcome=\"rate_limited\",reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{reason} missing: {metrics}"))
    };
    // Every stream not held upstream was refused at once: past the app's
    // concurrency, or past the connection's 100 streams (the first 100 of a
    // burst take the stream slots before any is answered).
    let (concurrency, streams) = (count("concurrency_limit"), count("too_many_streams"));
    eprintln!("refused: {concurrency} concurrency_limit, {streams} too_many_streams");
    assert!(concurrency >= 1.0, "{concurrency}");
    assert!(concurrency + streams >= 2500.0, "{concurrency} + {streams}");
    assert!(
        metrics.contains("appauth_in_flight{app=\"flood\"}"),
        "{metrics}"
    );
}
