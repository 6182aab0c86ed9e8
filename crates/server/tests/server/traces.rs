//! Traces (docs/spec.md §13): the real server exports its decision spans
//! over OTLP/HTTP to a collector of the test's own on loopback, which
//! decodes them with the OpenTelemetry protocol types; in gateway mode, a
//! recording upstream shows the `traceparent` it was sent.

use std::io::{BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use crate::util::{Server, add_app, raw_exchange, recording_upstream, wait_until};
use crate::{claims_for, forge};

/// One span as exported, with its resource's `service.name`.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    span: Span,
}

impl Exported {
    fn attr(&self, key: &str) -> Option<any_value::Value> {
        value_of(&self.span.attributes, key)
    }

    fn text(&self, key: &str) -> Option<String> {
        match self.attr(key)? {
            any_value::Value::StringValue(s) => Some(s),
            other => panic!("{key} is not a string: {other:?}"),
        }
    }

    fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }
}

fn value_of(attributes: &[KeyValue], key: &str) -> Option<any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|v| v.value)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/HTTP collector on loopback: it takes `POST /v1/traces` with a
/// protobuf body, as an OpenTelemetry Collector's `otlphttp` receiver does,
/// and keeps every span and every raw body.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Exported>>>,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (spans, bodies, paths) = (Arc::default(), Arc::default(), Arc::default());
        let collector = Collector {
            url,
            spans: Arc::clone(&spans),
            bodies: Arc::clone(&bodies),
            paths: Arc::clone(&paths),
        };
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (spans, bodies, paths) = (spans.clone(), bodies.clone(), paths.clone());
                std::thread::spawn(move || serve(conn, &spans, &bodies, &paths));
            }
        });
        collector
    }

    fn spans(&self) -> Vec<Exported> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of `trace_id`, waiting up to 10 s for `n` of them.
    fn of_trace(&self, trace_id: &str, n: usize) -> Vec<Exported> {
        wait_until(Duration::from_secs(10), || {
            self.spans()
                .iter()
                .filter(|s| s.trace_id() == trace_id)
                .count()
                >= n
        });
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id() == trace_id)
            .collect()
    }

    fn everything_sent(&self) -> Vec<u8> {
        self.bodies.lock().unwrap().concat()
    }
}

/// Serves one keep-alive connection of the exporter.
fn serve(
    conn: std::net::TcpStream,
    spans: &Mutex<Vec<Exported>>,
    bodies: &Mutex<Vec<Vec<u8>>>,
    paths: &Mutex<Vec<String>>,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    while let Some(head) = crate::util::read_head(&mut reader) {
        let path = head.target.clone();
        let field = |name: &str| {
            head.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map_or("", |(_, v)| v.as_str())
        };
        let len = field("content-length").parse().unwrap_or(0);
        let content_type = field("content-type").to_owned();
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        paths.lock().unwrap().push(path.clone());
        let decoded = (path == "/v1/traces" && content_type == "application/x-protobuf")
            .then(|| ExportTraceServiceRequest::decode(body.as_slice()).ok())
            .flatten();
        let status = match decoded {
            Some(request) => {
                let mut out = spans.lock().unwrap();
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .as_ref()
                        .and_then(|r| value_of(&r.attributes, "service.name"))
                        .map(|v| match v {
                            any_value::Value::StringValue(s) => s,
                            other => format!("{other:?}"),
                        })
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            out.push(Exported {
                                service: service.clone(),
                                span,
                            });
                        }
                    }
                }
                "200 OK"
            }
            None => "400 Bad Request",
        };
        bodies.lock().unwrap().push(body);
        // An empty ExportTraceServiceResponse is zero bytes of protobuf.
        let reply = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
        );
        if conn.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn get(server: &Server, target: &str, headers: &[(&str, &str)]) -> u16 {
    let addr = server.url.strip_prefix("http://").unwrap();
    let mut req = format!("GET {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw_exchange(&server.url, req.as_bytes()).0
}

const PARENT_SPAN: &str = "00f067aa0ba902b7";
const TRACE_D: &str = "8bf92f3577b34da6a3ce929d0e0e4740";

fn traceparent(trace_id: &str, flags: &str) -> String {
    format!("00-{trace_id}-{PARENT_SPAN}-{flags}")
}

/// The server's environment: batches every 100 ms, so a test waits for
/// spans no longer than that; nothing of the machine's own OTEL_* settings.
const FAST_BATCHES: [(&str, &str); 1] = [("OTEL_BSP_SCHEDULE_DELAY", "100")];

/// A gateway in front of a recording upstream, exporting to a collector,
/// with one app and a token of it.
struct TracedGateway {
    _dir: tempfile::TempDir,
    key: appauth_core::PrivateKey,
    received: Arc<Mutex<Vec<crate::util::Received>>>,
    collector: Collector,
    server: Server,
    token: String,
}

impl TracedGateway {
    fn start() -> TracedGateway {
        let dir = tempfile::tempdir().unwrap();
        let key = add_app(dir.path(), "orders");
        let (upstream, received) = recording_upstream();
        let collector = Collector::start();
        // A base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is: /v1/traces is added.
        let keys = dir.path().to_str().unwrap();
        let args = [
            "--keys-dir",
            keys,
            "--upstream",
            &upstream,
            "--otlp-endpoint",
            &collector.url,
        ];
        let server = Server::launch(None, &FAST_BATCHES, &args);
        let token = forge(&key, &claims_for("orders"));
        TracedGateway {
            _dir: dir,
            key,
            received,
            collector,
            server,
            token,
        }
    }
}

#[test]
fn decisions_are_spans_with_their_attributes_and_the_gateway_forwards_the_context() {
    let gw = TracedGateway::start();
    let (key, received, collector, server, token) =
        (&gw.key, &gw.received, &gw.collector, &gw.server, &gw.token);

    // Accepted and forwarded, inside the caller's trace.
    let trace_a = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = traceparent(trace_a, "01");
    let headers = [
        ("x-token", token.as_str()),
        ("traceparent", parent.as_str()),
    ];
    assert_eq!(get(server, "/orders/7", &headers), 200);
    // Again, with the same token: a cache hit this time.
    let trace_b = "5bf92f3577b34da6a3ce929d0e0e4737";
    let parent_b = traceparent(trace_b, "01");
    let headers = [
        ("x-token", token.as_str()),
        ("traceparent", parent_b.as_str()),
    ];
    assert_eq!(get(server, "/orders/8", &headers), 200);

    // Refused: a token signed by a key the server does not hold.
    let stranger = appauth_core::PrivateKey::generate(2048).unwrap();
    let forged = forge(&stranger, &claims_for("orders"));
    let trace_c = "6bf92f3577b34da6a3ce929d0e0e4738";
    let parent_c = traceparent(trace_c, "01");
    let headers = [
        ("x-token", forged.as_str()),
        ("traceparent", parent_c.as_str()),
    ];
    assert_eq!(get(server, "/orders/9", &headers), 401);

    // A long path and a made-up method: bounded, and `_OTHER`.
    let long = format!("/{}", "p".repeat(2000));
    let addr = server.url.strip_prefix("http://").unwrap();
    let brew = format!(
        "BREW {long} HTTP/1.1\r\nhost: {addr}\r\nx-token: {token}\r\n\
         traceparent: {}\r\nconnection: close\r\n\r\n",
        traceparent(TRACE_D, "01")
    );
    assert_eq!(raw_exchange(&server.url, brew.as_bytes()).0, 200);

    // No traceparent: a trace of its own. An exempt probe: no span.
    let before = received.lock().unwrap().len();
    assert_eq!(get(server, "/orders/10", &[("x-token", token)]), 200);
    assert_eq!(get(server, "/healthz", &[]), 200);

    let first = &collector.of_trace(trace_a, 1)[..];
    let [accepted] = first else {
        panic!("one span for trace A: {first:#?}")
    };
    assert_eq!(accepted.span.name, "appauth.decision");
    assert_eq!(accepted.service, "appauth-server");
    assert_eq!(hex(&accepted.span.parent_span_id), PARENT_SPAN);
    assert_eq!(
        accepted.text("appauth.outcome").as_deref(),
        Some("accepted")
    );
    assert_eq!(accepted.text("appauth.app_id").as_deref(), Some("orders"));
    assert_eq!(
        accepted.text("appauth.kid").as_deref(),
        Some(key.kid().as_str())
    );
    assert_eq!(accepted.text("appauth.alg").as_deref(), Some("RS512"));
    assert_eq!(accepted.text("url.path").as_deref(), Some("/orders/7"));
    assert_eq!(accepted.text("appauth.reason"), None);
    assert_eq!(
        accepted.attr("appauth.cache_hit"),
        Some(any_value::Value::BoolValue(false))
    );
    let Some(any_value::Value::IntValue(verify_us)) = accepted.attr("appauth.verify_us") else {
        panic!("no verify time: {accepted:#?}")
    };
    assert!(verify_us > 0 && verify_us < 1_000_000, "{verify_us} µs");
    let s = &accepted.span;
    assert!(s.end_time_unix_nano >= s.start_time_unix_nano);

    // The upstream was sent the same trace, with the decision as parent.
    let sent: Vec<_> = received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.target == "/orders/7")
        .map(|r| r.one("traceparent").map(str::to_owned))
        .collect();
    let expected = format!("00-{trace_a}-{}-01", hex(&accepted.span.span_id));
    assert_eq!(sent, [Some(expected)]);

    let second = collector.of_trace(trace_b, 1);
    assert_eq!(
        second[0].attr("appauth.cache_hit"),
        Some(any_value::Value::BoolValue(true)),
        "{second:#?}"
    );
    assert_eq!(
        second[0].attr("appauth.verify_us"),
        None,
        "a hit verifies nothing"
    );

    let refused = &collector.of_trace(trace_c, 1)[0];
    assert_eq!(refused.text("appauth.outcome").as_deref(), Some("rejected"));
    assert_eq!(
        refused.text("appauth.reason").as_deref(),
        Some("bad_signature")
    );
    assert_eq!(refused.text("appauth.app_id").as_deref(), Some("orders"));
    assert_eq!(refused.text("appauth.kid"), None);
    assert_eq!(
        refused.attr("http.response.status_code"),
        Some(any_value::Value::IntValue(401))
    );
    assert_eq!(hex(&refused.span.parent_span_id), PARENT_SPAN);

    let brewed = &collector.of_trace(TRACE_D, 1)[0];
    assert_eq!(
        brewed.text("http.request.method").as_deref(),
        Some("_OTHER")
    );
    assert_eq!(brewed.text("url.path").map(|p| p.len()), Some(256));

    // The request with no traceparent began a trace, which the upstream
    // was sent too.
    let own = received.lock().unwrap()[before].clone();
    assert_eq!(own.target, "/orders/10");
    let value = own.one("traceparent").expect("a traceparent upstream");
    let own_trace = value.split('-').nth(1).unwrap().to_owned();
    let spans = collector.of_trace(&own_trace, 1);
    assert!(spans[0].span.parent_span_id.is_empty(), "a root span");

    // Five decisions, five spans; the probe made none. And no token, nor
    // any piece of one, was ever exported.
    wait_until(Duration::from_millis(500), || false);
    let all = collector.spans();
    assert_eq!(all.len(), 5, "{all:#?}");
    assert!(
        all.iter()
            .all(|s| s.text("url.path").as_deref() != Some("/healthz"))
    );
    assert_eq!(
        *collector.paths.lock().unwrap().first().unwrap(),
        "/v1/traces"
    );
    let sent = collector.everything_sent();
    for secret in [token, &forged] {
        for piece in secret.split('.') {
            assert!(
                !sent.windows(piece.len()).any(|w| w == piece.as_bytes()),
                "a token's part was exported"
            );
        }
    }
}

#[test]
fn an_unsampled_caller_is_not_traced_and_its_decision_is_forwarded_as_unsampled() {
    let gw = TracedGateway::start();
    let (received, collector, server, token) = (&gw.received, &gw.collector, &gw.server, &gw.token);
    let trace = "7bf92f3577b34da6a3ce929d0e0e4739";
    let unsampled = traceparent(trace, "00");
    assert_eq!(
        get(
            server,
            "/x",
            &[("x-token", token), ("traceparent", &unsampled)]
        ),
        200
    );
    // A malformed or doubled traceparent starts a trace of the server's own.
    for bad in [
        "00-zz-yy-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
    ] {
        assert_eq!(
            get(server, "/bad", &[("x-token", token), ("traceparent", bad)]),
            200
        );
    }
    let doubled = [
        ("x-token", token.as_str()),
        ("traceparent", unsampled.as_str()),
        ("traceparent", unsampled.as_str()),
    ];
    assert_eq!(get(server, "/doubled", &doubled), 200);
    wait_until(Duration::from_secs(10), || collector.spans().len() >= 3);
    wait_until(Duration::from_millis(500), || false);
    assert!(
        collector.of_trace(trace, 0).is_empty(),
        "the caller said: not sampled"
    );
    let seen = received.lock().unwrap().clone();
    let forwarded = seen[0].one("traceparent").unwrap();
    assert!(
        forwarded.starts_with(&format!("00-{trace}-")) && forwarded.ends_with("-00"),
        "{forwarded}"
    );
    assert!(!forwarded.contains(PARENT_SPAN), "{forwarded}");
    for r in &seen[1..] {
        let value = r.one("traceparent").unwrap();
        assert!(
            !value.contains(trace) && value.ends_with("-01"),
            "{}: {value}",
            r.target
        );
    }
    assert_eq!(collector.spans().len(), 3);
}

#[test]
fn off_by_default_the_callers_traceparent_passes_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let (upstream, received) = recording_upstream();
    let server = Server::start(dir.path(), &["--upstream", &upstream]);
    let token = forge(&key, &claims_for("orders"));
    let parent = traceparent("4bf92f3577b34da6a3ce929d0e0e4736", "01");
    let headers = [
        ("x-token", token.as_str()),
        ("traceparent", parent.as_str()),
        ("tracestate", "vendor=1"),
    ];
    assert_eq!(get(&server, "/x", &headers), 200);
    let r = received.lock().unwrap()[0].clone();
    assert_eq!(r.one("traceparent"), Some(parent.as_str()));
    assert_eq!(r.one("tracestate"), Some("vendor=1"));
    assert!(server.logs().contains("traces=off"), "{}", server.logs());
}

#[test]
fn the_standard_variables_configure_it_and_spans_left_at_sigterm_are_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let collector = Collector::start();
    let keys = dir.path().to_str().unwrap();
    // No flag: the standard variables alone, and the SDK's default 5 s
    // batch delay, so only the flush at exit can deliver the span in time.
    let endpoint = collector.url.clone();
    let mut server = Server::launch(
        None,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "data-api-gate"),
        ],
        &["--keys-dir", keys, "--drain-delay", "0"],
    );
    let token = forge(&key, &claims_for("orders"));
    assert_eq!(get(&server, "/whoami", &[("x-token", &token)]), 200);
    let started = Instant::now();
    appauth_testkit::send_signal(server.pid(), "TERM");
    let (status, _) = appauth_testkit::wait_exit(&mut server.child, Duration::from_secs(10))
        .expect("exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let spans = collector.spans();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].service, "data-api-gate");
    assert_eq!(
        spans[0].text("appauth.outcome").as_deref(),
        Some("accepted")
    );
}

#[test]
fn a_collector_that_is_down_costs_callers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let keys = dir.path().to_str().unwrap();
    let server = Server::launch(
        None,
        &FAST_BATCHES,
        &["--keys-dir", keys, "--otlp-endpoint", &url],
    );
    let token = forge(&key, &claims_for("orders"));
    let started = Instant::now();
    for _ in 0..200 {
        assert_eq!(get(&server, "/whoami", &[("x-token", &token)]), 200);
    }
    // Loopback requests to a refused port: an exporter on the request path
    // would show as seconds here.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(crate::util::raw_status(&server.url, "/readyz"), Some(200));
}

#[test]
fn settings_it_cannot_honour_stop_the_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().to_str().unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_appauth-server"))
            .args(["--keys-dir", keys])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[], &["--otlp-endpoint", "collector:4318"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is not an http:// or https:// URL"), "{err}");
    let (code, err) = run(
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
        &["--otlp-endpoint", "http://c:4318"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("http/protobuf"), "{err}");
    // --check-config says where traces go.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_appauth-server"))
        .args([
            "--keys-dir",
            keys,
            "--check-config",
            "--otlp-endpoint",
            "http://c:4318",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("traces OTLP/HTTP to http://c:4318/v1/traces"),
        "{said}"
    );
}
