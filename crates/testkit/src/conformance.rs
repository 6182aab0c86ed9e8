//! One table of requests and the answers every way of running the gate must
//! give: the actix adapter and the tower adapter in process, and the server
//! end to end. A case that passes on one and fails on another is a bug.
//!
//! Each target is built from the same [`Fixture`] (a keys directory, a
//! policy, a revocation list and the audience [`AUDIENCE`]), mounts the
//! same routes (`GET /healthz`, `/readyz` and `/metrics` open; `GET /ping`,
//! `/whoami` and `/users` behind the gate; any other path 404 after the
//! gate) and hands each [`Request`] to the table runner as it arrived:
//! method, raw path and headers untouched.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use appauth_core::{Algorithm, PrivateKey};
use serde_json::{Value, json};

/// The audience every target is configured with.
pub const AUDIENCE: &str = "data-api";

/// A request as the client sends it: nothing normalized.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: &'static str,
    /// The raw request target (path and query), sent byte for byte.
    pub path: String,
    /// Header lines, in order (repeats are separate lines).
    pub headers: Vec<(String, String)>,
    /// The body (with its `content-length` among the headers).
    pub body: Vec<u8>,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names lower case; a repeated name's values joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response from its parts, header names lower-cased and a repeated
    /// name's values joined, as every target's answers are compared.
    pub fn new<'a>(
        status: u16,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: Vec<u8>,
    ) -> Self {
        let mut joined = BTreeMap::<String, String>::new();
        for (name, value) in headers {
            joined
                .entry(name.trim().to_ascii_lowercase())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(value.trim())
                })
                .or_insert_with(|| value.trim().to_owned());
        }
        Response {
            status,
            headers: joined,
            body,
        }
    }
}

/// The files every target runs on, and the keys that sign the table's
/// tokens.
pub struct Fixture {
    dir: tempfile::TempDir,
    /// The keys directory.
    pub keys_dir: PathBuf,
    /// The route policy.
    pub policy: PathBuf,
    /// The revocation list.
    pub revocations: PathBuf,
    orders: PrivateKey,
    billing: PrivateKey,
    limited: PrivateKey,
    banned: PrivateKey,
    late: PrivateKey,
    stranger: PrivateKey,
}

const POLICY: &str = r#"
[default]
allow = ["GET /ping", "GET /whoami"]

[apps.orders]
allow = ["GET /ping", "GET /whoami", "GET /users", "* /nope"]

[apps.limited]
allow = ["*"]
rate = "2/m"

[apps.late]
allow = ["*"]
"#;

impl Fixture {
    /// A fresh directory: keys for `orders`, `billing`, `limited` and
    /// `banned` (revoked by the list), none yet for `late`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys_dir = dir.path().join("keys");
        std::fs::create_dir(&keys_dir).expect("keys dir");
        let key = || PrivateKey::generate(2048).expect("RSA key");
        let fixture = Fixture {
            keys_dir: keys_dir.clone(),
            policy: dir.path().join("policy.toml"),
            revocations: dir.path().join("revoked.txt"),
            orders: key(),
            billing: key(),
            limited: key(),
            banned: key(),
            late: key(),
            stranger: key(),
            dir,
        };
        for (app, key) in [
            ("orders", &fixture.orders),
            ("billing", &fixture.billing),
            ("limited", &fixture.limited),
            ("banned", &fixture.banned),
        ] {
            let pem = key.public_key_pem().expect("public PEM");
            std::fs::write(keys_dir.join(format!("{app}_public.pem")), pem).expect("write key");
        }
        std::fs::write(&fixture.policy, POLICY).expect("policy");
        std::fs::write(&fixture.revocations, "app banned\njti burned-1\n").expect("revocations");
        fixture
    }

    /// The fixture's own directory (for a target's other files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64
    }

    fn claims(app: &str) -> Value {
        let now = Self::now();
        json!({ "appId": app, "iat": now, "exp": now + 300, "aud": AUDIENCE })
    }

    fn header(key: &PrivateKey, alg: &str) -> Value {
        json!({ "alg": alg, "typ": "JWT", "kid": key.kid().as_str() })
    }

    fn sign(key: &PrivateKey, header: Value, claims: Value) -> String {
        crate::forge(key, Algorithm::RS512, &header, &claims)
    }

    fn good(&self, key: &PrivateKey, app: &str) -> String {
        Self::sign(key, Self::header(key, "RS512"), Self::claims(app))
    }

    fn with_claims(&self, change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut claims = Self::claims("orders");
        change(claims.as_object_mut().expect("object"));
        Self::sign(&self.orders, Self::header(&self.orders, "RS512"), claims)
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

/// What a case expects.
#[derive(Debug, Clone)]
struct Expect {
    status: u16,
    /// For a refusal: the body's `error` and `reason`.
    refusal: Option<(&'static str, &'static str)>,
    /// Headers that must be present with exactly this value.
    headers: Vec<(&'static str, String)>,
    /// Headers that must be absent.
    absent: Vec<&'static str>,
}

fn ok() -> Expect {
    Expect {
        status: 200,
        refusal: None,
        headers: Vec::new(),
        absent: vec!["www-authenticate"],
    }
}

fn status(status: u16) -> Expect {
    Expect { status, ..ok() }
}

fn unauthorized(error: &'static str, reason: &'static str) -> Expect {
    Expect {
        status: 401,
        refusal: Some((error, reason)),
        headers: vec![
            (
                "www-authenticate",
                format!(r#"Bearer realm="appauth", error="{error}""#),
            ),
            ("cache-control", "no-store".into()),
            ("content-type", "application/json".into()),
        ],
        absent: Vec::new(),
    }
}

fn invalid_token(reason: &'static str) -> Expect {
    unauthorized("invalid_token", reason)
}

fn invalid_request(reason: &'static str) -> Expect {
    unauthorized("invalid_request", reason)
}

fn bad_path() -> Expect {
    Expect {
        status: 400,
        refusal: Some(("bad_request", "path_not_canonical")),
        headers: vec![("cache-control", "no-store".into())],
        absent: vec!["www-authenticate"],
    }
}

/// One row: a request (sent `times` times; the last answer is judged) and
/// what it must get.
struct Case {
    name: &'static str,
    request: Request,
    times: usize,
    expect: Expect,
}

fn get(path: &str, headers: &[(&str, &str)]) -> Request {
    req("GET", path, headers)
}

fn req(method: &'static str, path: &str, headers: &[(&str, &str)]) -> Request {
    Request {
        method,
        path: path.to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: Vec::new(),
    }
}

fn case(name: &'static str, request: Request, expect: Expect) -> Case {
    Case {
        name,
        request,
        times: 1,
        expect,
    }
}

fn cases(f: &Fixture) -> Vec<Case> {
    let good = f.good(&f.orders, "orders");
    let t = good.as_str();
    let bearer = format!("Bearer {t}");
    let now = Fixture::now();
    let hs256 = crate::hmac_token("HS256", b"secret", &Fixture::claims("orders"));
    let none_alg = {
        let header = json!({"alg": "none", "typ": "JWT"});
        let mut parts: Vec<String> = Fixture::sign(&f.orders, header, Fixture::claims("orders"))
            .split('.')
            .map(str::to_owned)
            .collect();
        parts[2] = "AA".into();
        parts.join(".")
    };
    let rs256 = {
        let claims = Fixture::claims("orders");
        crate::forge(
            &f.orders,
            Algorithm::RS256,
            &Fixture::header(&f.orders, "RS256"),
            &claims,
        )
    };
    let crit = {
        let mut header = Fixture::header(&f.orders, "RS512");
        header["crit"] = json!(["exp"]);
        Fixture::sign(&f.orders, header, Fixture::claims("orders"))
    };
    let no_kid = Fixture::sign(
        &f.orders,
        json!({"alg": "RS512", "typ": "JWT"}),
        Fixture::claims("orders"),
    );
    let unknown_kid = {
        let mut header = Fixture::header(&f.orders, "RS512");
        header["kid"] = json!(f.stranger.kid().as_str());
        Fixture::sign(&f.orders, header, Fixture::claims("orders"))
    };
    let tokens = vec![
        (
            "unknown app",
            f.good(&f.stranger, "nobody"),
            invalid_token("unknown_app"),
        ),
        (
            "another app's key",
            Fixture::sign(
                &f.stranger,
                Fixture::header(&f.orders, "RS512"),
                Fixture::claims("orders"),
            ),
            invalid_token("bad_signature"),
        ),
        (
            "a kid of no key of the app",
            unknown_kid,
            invalid_token("bad_signature"),
        ),
        (
            "signed by billing, claiming orders",
            Fixture::sign(
                &f.billing,
                json!({"alg": "RS512"}),
                Fixture::claims("orders"),
            ),
            invalid_token("bad_signature"),
        ),
        ("no kid: every key is tried", no_kid, ok()),
        (
            "HS256 with a guessable secret",
            hs256,
            invalid_token("unsupported_alg"),
        ),
        ("alg none", none_alg, invalid_token("unsupported_alg")),
        (
            "RS256 when only RS512 is allowed",
            rs256,
            invalid_token("unsupported_alg"),
        ),
        ("a crit header", crit, invalid_token("malformed")),
        (
            "expired",
            f.with_claims(|c| {
                c.insert("iat".into(), json!(now - 900));
                c.insert("exp".into(), json!(now - 600));
            }),
            invalid_token("expired"),
        ),
        (
            "nbf in the future",
            f.with_claims(|c| {
                c.insert("nbf".into(), json!(now + 600));
            }),
            invalid_token("not_yet_valid"),
        ),
        (
            "iat in the future",
            f.with_claims(|c| {
                c.insert("iat".into(), json!(now + 600));
                c.insert("exp".into(), json!(now + 900));
            }),
            invalid_token("not_yet_valid"),
        ),
        (
            "a lifetime over the maximum",
            f.with_claims(|c| {
                c.insert("exp".into(), json!(now + 7200));
            }),
            invalid_token("lifetime_too_long"),
        ),
        (
            "iat after exp",
            f.with_claims(|c| {
                c.insert("iat".into(), json!(now + 10));
                c.insert("exp".into(), json!(now + 5));
            }),
            invalid_token("malformed"),
        ),
        (
            "no aud",
            f.with_claims(|c| {
                c.remove("aud");
            }),
            invalid_token("wrong_audience"),
        ),
        (
            "another aud",
            f.with_claims(|c| {
                c.insert("aud".into(), json!("billing-api"));
            }),
            invalid_token("wrong_audience"),
        ),
        (
            "aud as an array naming ours",
            f.with_claims(|c| {
                c.insert("aud".into(), json!(["x", AUDIENCE]));
            }),
            ok(),
        ),
        (
            "an appId outside the grammar",
            f.with_claims(|c| {
                c.insert("appId".into(), json!("../etc/passwd"));
            }),
            invalid_token("malformed"),
        ),
        (
            "no appId",
            f.with_claims(|c| {
                c.remove("appId");
            }),
            invalid_token("malformed"),
        ),
        (
            "a revoked jti",
            f.with_claims(|c| {
                c.insert("jti".into(), json!("burned-1"));
            }),
            invalid_token("revoked"),
        ),
        (
            "another jti",
            f.with_claims(|c| {
                c.insert("jti".into(), json!("fresh-1"));
            }),
            ok(),
        ),
        (
            "a revoked app",
            f.good(&f.banned, "banned"),
            invalid_token("revoked"),
        ),
        (
            "not base64url",
            "a.b$.c".to_owned(),
            invalid_token("malformed"),
        ),
        (
            "two parts",
            "abc.def".to_owned(),
            invalid_token("malformed"),
        ),
        (
            "three empty parts",
            "..".to_owned(),
            invalid_token("malformed"),
        ),
        (
            "over 8 KiB",
            format!(
                "{}.{}.{}",
                "a".repeat(4096),
                "b".repeat(4096),
                "c".repeat(64)
            ),
            invalid_token("malformed"),
        ),
        ("padded base64", format!("{t}="), invalid_token("malformed")),
    ];

    let mut table = vec![
        case("an open route, no token", get("/healthz", &[]), ok()),
        case("readiness, no token", get("/readyz", &[]), ok()),
        case("metrics, no token", get("/metrics", &[]), ok()),
        case(
            "an open route with a query",
            get("/healthz?probe=1", &[]),
            ok(),
        ),
        case(
            "an open route is open for GET only",
            req("POST", "/healthz", &[]),
            invalid_request("missing_token"),
        ),
        case(
            "an open route with a trailing slash is not open",
            get("/healthz/", &[]),
            invalid_request("missing_token"),
        ),
        case(
            "no token",
            get("/ping", &[]),
            invalid_request("missing_token"),
        ),
        case(
            "a token in the query is no token",
            get(&format!("/ping?token={t}"), &[]),
            invalid_request("missing_token"),
        ),
        case(
            "OPTIONS needs a token too",
            req("OPTIONS", "/ping", &[]),
            invalid_request("missing_token"),
        ),
        case(
            "a POST body is never read before the token",
            Request {
                body: b"hello".to_vec(),
                ..req(
                    "POST",
                    "/ping",
                    &[("content-length", "5"), ("content-type", "text/plain")],
                )
            },
            invalid_request("missing_token"),
        ),
        case("x-token", get("/ping", &[("x-token", t)]), ok()),
        case("X-Token in capitals", get("/ping", &[("X-Token", t)]), ok()),
        case(
            "Authorization: Bearer",
            get("/ping", &[("authorization", &bearer)]),
            ok(),
        ),
        case(
            "bearer in lower case",
            get("/ping", &[("authorization", &format!("bearer {t}"))]),
            ok(),
        ),
        case(
            "BEARER with a tab and spaces",
            get("/ping", &[("authorization", &format!("BEARER \t {t} "))]),
            ok(),
        ),
        case(
            "x-token and the same Bearer",
            get("/ping", &[("x-token", t), ("authorization", &bearer)]),
            ok(),
        ),
        case(
            "x-token and another Bearer",
            get(
                "/ping",
                &[("x-token", t), ("authorization", "Bearer a.b.c")],
            ),
            invalid_request("malformed"),
        ),
        case(
            "two x-token lines",
            get("/ping", &[("x-token", t), ("x-token", t)]),
            invalid_request("malformed"),
        ),
        case(
            "two Authorization lines",
            get(
                "/ping",
                &[("authorization", &bearer), ("authorization", &bearer)],
            ),
            invalid_request("malformed"),
        ),
        case(
            "Basic only",
            get("/ping", &[("authorization", "Basic Zm9vOmJhcg==")]),
            invalid_request("malformed"),
        ),
        case(
            "x-token beside Basic for another layer",
            get("/ping", &[("x-token", t), ("authorization", "Basic Zm9v")]),
            ok(),
        ),
        case(
            "Bearer with no token",
            get("/ping", &[("authorization", "Bearer")]),
            invalid_request("malformed"),
        ),
        case(
            "Bearer with two tokens",
            get("/ping", &[("authorization", &format!("Bearer {t} {t}"))]),
            invalid_request("malformed"),
        ),
        case(
            "an empty x-token",
            get("/ping", &[("x-token", "")]),
            invalid_token("malformed"),
        ),
        case(
            "whoami names the caller",
            get("/whoami", &[("x-token", t)]),
            ok(),
        ),
        case(
            "a route the policy allows",
            get("/users", &[("x-token", t)]),
            ok(),
        ),
        case(
            "a path nothing serves, after the gate",
            get("/nope", &[("x-token", t)]),
            status(404),
        ),
        case(
            "a path nothing serves, without a token",
            get("/nope", &[]),
            invalid_request("missing_token"),
        ),
        case(
            "a route the policy does not allow",
            get("/users", &[("x-token", &f.good(&f.billing, "billing"))]),
            Expect {
                status: 403,
                refusal: Some(("forbidden", "route_not_allowed")),
                headers: vec![("cache-control", "no-store".into())],
                absent: vec!["www-authenticate", "retry-after"],
            },
        ),
        case(
            "the default policy allows ping",
            get("/ping", &[("x-token", &f.good(&f.billing, "billing"))]),
            ok(),
        ),
        Case {
            name: "over the app's rate: the third of 2/m",
            request: get("/ping", &[("x-token", &f.good(&f.limited, "limited"))]),
            times: 3,
            expect: Expect {
                status: 429,
                refusal: Some(("rate_limited", "rate_exceeded")),
                headers: vec![("cache-control", "no-store".into())],
                absent: vec!["www-authenticate"],
            },
        },
    ];
    for (name, token, expect) in tokens {
        table.push(case(name, get("/ping", &[("x-token", &token)]), expect));
    }
    let disguises = [
        ("an encoded dot-dot", "/users/%2e%2e/ping"),
        ("a dot-dot", "/users/../ping"),
        ("a dot segment", "/./ping"),
        ("a dot-dot with parameters", "/users/..;/ping"),
        ("an empty segment", "//ping"),
        ("an encoded slash", "/users%2fping"),
        ("a backslash", "/users\\ping"),
        ("an encoded unreserved letter", "/%70ing"),
        ("a double encoding", "/users/%252e%252e/ping"),
        ("an overlong dot", "/users/%c0%ae%c0%ae/ping"),
        ("a bad escape", "/pi%g1ng"),
        ("an encoded NUL", "/ping%00"),
        ("an open route spelled another way", "/heal%74hz"),
        ("an open route behind a dot-dot", "/x/../healthz"),
        (
            "the JWKS route spelled another way",
            "/.well-known/appauth/%6frders/jwks.json",
        ),
        (
            "the JWKS route behind a dot-dot",
            "/.well-known/appauth/orders/../orders/jwks.json",
        ),
    ];
    for (name, path) in disguises {
        table.push(case(name, get(path, &[]), bad_path()));
        table.push(case(name, get(path, &[("x-token", t)]), bad_path()));
    }
    table
}

/// Sends `request` until `check` holds, for up to 5 s.
async fn eventually<F, Fut>(
    call: &mut F,
    request: &Request,
    check: impl Fn(&Response) -> bool,
) -> Result<(), String>
where
    F: FnMut(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = call(request.clone()).await;
        if check(&response) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "still {} {} after 5 s",
                response.status,
                String::from_utf8_lossy(&response.body)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn judge(expect: &Expect, response: &Response) -> Result<(), String> {
    let mut problems = Vec::new();
    if response.status != expect.status {
        problems.push(format!(
            "status {} (expected {})",
            response.status, expect.status
        ));
    }
    if let Some((error, reason)) = expect.refusal {
        let want = format!(r#"{{"error":"{error}","reason":"{reason}"}}"#);
        if response.body != want.as_bytes() {
            problems.push(format!(
                "body {} (expected {want})",
                String::from_utf8_lossy(&response.body)
            ));
        }
    }
    for (name, value) in &expect.headers {
        match response.headers.get(*name) {
            Some(v) if v == value => {}
            other => problems.push(format!("{name}: {other:?} (expected {value:?})")),
        }
    }
    if expect.status == 429 {
        match response
            .headers
            .get("retry-after")
            .map(|v| v.parse::<u64>())
        {
            Some(Ok(secs)) if secs >= 1 => {}
            other => problems.push(format!(
                "retry-after {other:?} (expected whole seconds >= 1)"
            )),
        }
    }
    for name in &expect.absent {
        if let Some(v) = response.headers.get(*name) {
            problems.push(format!("{name}: {v:?} (expected none)"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Runs the whole table through `call` (one target) and panics with every
/// case that failed. Returns the number of cases run.
///
/// The last cases change the fixture's files (a new key, a new revocation)
/// and wait for the target to apply them, as an operator's edit would.
pub async fn run<F, Fut>(fixture: &Fixture, target: &str, mut call: F) -> usize
where
    F: FnMut(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let table = cases(fixture);
    let mut failures = Vec::new();
    let mut count = 0;
    for case in &table {
        count += 1;
        let mut response = None;
        for _ in 0..case.times {
            response = Some(call(case.request.clone()).await);
        }
        let response = response.expect("times >= 1");
        if let Err(problem) = judge(&case.expect, &response) {
            failures.push(format!("{}: {problem}", case.name));
        }
        if case.name == "whoami names the caller" && response.status == 200 {
            let who: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
            if who["appId"] != "orders"
                || who["alg"] != "RS512"
                || who["kid"] != fixture.orders.kid().as_str()
                || who["claims"]["aud"] != AUDIENCE
            {
                failures.push(format!("whoami: {who}"));
            }
        }
    }

    // Hot reload: a new key, then a new revocation, each applied with no
    // restart.
    let late = get(
        "/ping",
        &[("x-token", &fixture.good(&fixture.late, "late"))],
    );
    count += 1;
    let before = call(late.clone()).await;
    if let Err(p) = judge(&invalid_token("unknown_app"), &before) {
        failures.push(format!("a key not yet added: {p}"));
    }
    let pem = fixture.late.public_key_pem().expect("public PEM");
    write_atomically(&fixture.keys_dir.join("late_public.pem"), &pem);
    count += 1;
    if let Err(p) = eventually(&mut call, &late, |r| r.status == 200).await {
        failures.push(format!("a key added is accepted with no restart: {p}"));
    }
    let mut revoked = std::fs::read_to_string(&fixture.revocations).expect("revocations");
    revoked.push_str("app late\n");
    write_atomically(&fixture.revocations, &revoked);
    count += 1;
    let expect = invalid_token("revoked");
    if let Err(p) = eventually(&mut call, &late, |r| judge(&expect, r).is_ok()).await {
        failures.push(format!("a revocation added applies with no restart: {p}"));
    }
    std::fs::remove_file(fixture.keys_dir.join("billing_public.pem")).expect("remove key");
    count += 1;
    let billing = get(
        "/ping",
        &[("x-token", &fixture.good(&fixture.billing, "billing"))],
    );
    let expect = invalid_token("unknown_app");
    if let Err(p) = eventually(&mut call, &billing, |r| judge(&expect, r).is_ok()).await {
        failures.push(format!("a key removed is refused with no restart: {p}"));
    }

    assert!(
        failures.is_empty(),
        "{target}: {} of {count} cases failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    count
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-conformance");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// The gRPC half of the table: the same refusals to a request that says
/// `content-type: application/grpc`, each as a trailers-only answer with its
/// gRPC status (for targets that speak gRPC: the tower adapter). Run it on
/// a fresh fixture: it spends `limited`'s rate.
pub async fn run_grpc<F, Fut>(fixture: &Fixture, target: &str, mut call: F) -> usize
where
    F: FnMut(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let grpc = |method, path: &str, token: Option<&str>| {
        let mut headers = vec![
            ("content-type", "application/grpc+proto"),
            ("te", "trailers"),
        ];
        if let Some(t) = token {
            headers.push(("x-token", t));
        }
        req(method, path, &headers)
    };
    let orders = fixture.good(&fixture.orders, "orders");
    let billing = fixture.good(&fixture.billing, "billing");
    let limited = fixture.good(&fixture.limited, "limited");
    // (name, request, times sent, expected grpc-status and grpc-message).
    type GrpcCase<'a> = (&'a str, Request, usize, Option<(&'a str, &'a str)>);
    let cases: Vec<GrpcCase> = vec![
        (
            "no token",
            grpc("POST", "/ping", None),
            1,
            Some(("16", "missing_token")),
        ),
        (
            "a bad token",
            grpc("POST", "/ping", Some("a.b.c")),
            1,
            Some(("16", "malformed")),
        ),
        (
            "a route the policy does not allow",
            grpc("GET", "/users", Some(&billing)),
            1,
            Some(("7", "route_not_allowed")),
        ),
        (
            "over the rate",
            grpc("GET", "/ping", Some(&limited)),
            3,
            Some(("8", "rate_exceeded")),
        ),
        (
            "a path in disguise",
            grpc("POST", "/users/%2e%2e/ping", Some(&orders)),
            1,
            Some(("3", "path_not_canonical")),
        ),
        (
            "a valid token passes",
            grpc("GET", "/ping", Some(&orders)),
            1,
            None,
        ),
    ];
    let mut failures = Vec::new();
    let count = cases.len();
    for (name, request, times, expect) in cases {
        let mut response = None;
        for _ in 0..times {
            response = Some(call(request.clone()).await);
        }
        let r = response.expect("times >= 1");
        let status = r.headers.get("grpc-status").map(String::as_str);
        let message = r.headers.get("grpc-message").map(String::as_str);
        match expect {
            Some((code, reason))
                if r.status != 200
                    || status != Some(code)
                    || message != Some(reason)
                    || !r.body.is_empty() =>
            {
                failures.push(format!(
                    "{name}: HTTP {} grpc-status {status:?} grpc-message {message:?} body {:?} (expected 200, {code}, {reason}, no body)",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
            None if r.status != 200 || status.is_some() => {
                failures.push(format!("{name}: HTTP {} grpc-status {status:?}", r.status));
            }
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{target} (gRPC): {} of {count} cases failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    count
}

/// Checks the answer to `GET /ping` (with any token) of a gate whose keys
/// are still loading: the table cannot bring a target to that state, so
/// each adapter's suite builds one over a key source that is never ready.
pub fn assert_not_ready(target: &str, response: &Response) {
    let expect = Expect {
        status: 503,
        refusal: Some(("not_ready", "keys_loading")),
        headers: vec![
            ("retry-after", "1".into()),
            ("cache-control", "no-store".into()),
            ("content-type", "application/json".into()),
        ],
        absent: vec!["www-authenticate"],
    };
    if let Err(problem) = judge(&expect, response) {
        panic!("{target}, keys still loading: {problem}");
    }
}

/// Sends `request` over a new HTTP/1.1 connection to `addr` (`host:port`),
/// byte for byte (clients normalize `..` and escapes; this one does not),
/// with `connection: close`, and reads the whole answer.
pub fn http1(addr: &str, request: &Request) -> Response {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {addr}\r\n",
        request.method, request.path
    );
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&request.body);
    sock.write_all(&bytes).expect("send");
    let mut out = Vec::new();
    let _ = sock.read_to_end(&mut out);
    parse_response(&out)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.get(9..12))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = BTreeMap::<String, String>::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
            headers
                .entry(name)
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value)
                })
                .or_insert(value);
        }
    }
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || raw.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[(end + 4 + size).min(raw.len())..];
    }
    out
}

/// A key source whose first load never finishes.
struct Loading;

impl appauth_core::KeyProvider for Loading {
    fn keys_for(
        &self,
        _: &appauth_core::AppId,
    ) -> Option<std::sync::Arc<[appauth_core::PublicKey]>> {
        None
    }
}

impl appauth_gate::KeySource for Loading {
    fn is_ready(&self) -> bool {
        false
    }
}

/// A gate whose keys are still loading: every protected request gets
/// `503 keys_loading`, which each adapter must carry unchanged.
pub fn loading_gate() -> appauth_gate::Gate {
    appauth_gate::Gate::new(
        appauth_core::Verifier::new(appauth_core::VerifyConfig::default()),
        std::sync::Arc::new(Loading),
        std::sync::Arc::new(appauth_gate::Metrics::new()),
    )
}
