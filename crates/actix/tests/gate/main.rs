//! The middleware in process, inside apps shaped like the ones that embed it:
//! no socket, no binary, an in-memory key source and a manual clock where
//! time matters.

mod conformance;
#[path = "../../examples/embed.rs"]
mod embed;
mod shared;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::Method;
use actix_web::test as at;
use actix_web::{App, HttpResponse, web};
use appauth_actix::{AccessControl, AppAuth, Caller, KeySource, Metrics, TokenCache};
use appauth_core::{
    Algorithm, AppId, Clock, KeyProvider, ManualClock, PrivateKey, PublicKey, Verifier,
    VerifyConfig, parse_public_bundle,
};
use serde_json::Value;

const NOW: i64 = 1_800_000_000;

fn token(key: &PrivateKey, app: &str, iat: i64) -> String {
    appauth_testkit::signed(key, app, iat)
}

fn bundle(keys: &[&PrivateKey]) -> Arc<[PublicKey]> {
    let pem: String = keys.iter().map(|k| k.public_key_pem().unwrap()).collect();
    parse_public_bundle(pem.as_bytes(), NOW, &[Algorithm::RS512])
        .unwrap()
        .into()
}

/// A key source whose keys a test can change, as a reload would.
#[derive(Default)]
struct Keys(Mutex<HashMap<AppId, Arc<[PublicKey]>>>);

impl Keys {
    fn set(&self, app: &str, keys: Arc<[PublicKey]>) {
        self.0
            .lock()
            .unwrap()
            .insert(AppId::new(app).unwrap(), keys);
    }
}

impl KeyProvider for Keys {
    fn keys_for(&self, app: &AppId) -> Option<Arc<[PublicKey]>> {
        self.0.lock().unwrap().get(app).cloned()
    }
}

impl KeySource for Keys {}

fn gate(keys: Arc<Keys>, clock: Arc<ManualClock>) -> AppAuth {
    AppAuth::new(
        Verifier::with_clock(VerifyConfig::default(), clock),
        keys,
        Arc::new(Metrics::new()),
    )
}

async fn body<B: MessageBody>(resp: ServiceResponse<B>) -> Value {
    serde_json::from_slice(&at::read_body(resp).await).unwrap_or(Value::Null)
}

fn hello() -> actix_web::Route {
    web::get()
        .to(|caller: Caller| async move { HttpResponse::Ok().body(caller.app_id.to_string()) })
}

#[actix_web::test]
async fn refusals_carry_their_status_headers_and_bodies() {
    let key = PrivateKey::generate(2048).unwrap();
    let keys = Arc::new(Keys::default());
    keys.set("orders", bundle(&[&key]));
    let clock = Arc::new(ManualClock::new(NOW));
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[default]\nallow = [\"GET /hello\"]\n\n[apps.orders]\nrate = \"1/m\"\n",
    )
    .unwrap();
    let (access, _) = AccessControl::load(Some(policy), dir.path().join("revoked.txt")).unwrap();
    let app = at::init_service(
        App::new()
            .wrap(gate(keys, clock.clone()).with_access(Arc::new(access)))
            .route("/hello", hello())
            .route("/other", hello()),
    )
    .await;
    let t = token(&key, "orders", NOW);
    let get = |path: &str, token: Option<&str>| {
        let mut req = at::TestRequest::get().uri(path);
        if let Some(t) = token {
            req = req.insert_header(("x-token", t.to_owned()));
        }
        req.to_request()
    };

    let resp = at::call_service(&app, get("/hello", None)).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers().get("www-authenticate").unwrap(),
        "Bearer realm=\"appauth\", error=\"invalid_request\""
    );
    assert_eq!(resp.headers().get("cache-control").unwrap(), "no-store");
    assert_eq!(body(resp).await["reason"], "missing_token");

    let resp = at::call_service(&app, get("/other", Some(&t))).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(body(resp).await["reason"], "route_not_allowed");

    let resp = at::call_service(&app, get("/hello", Some(&t))).await;
    assert_eq!(resp.status(), 200);
    let resp = at::call_service(&app, get("/hello", Some(&t))).await;
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(body(resp).await["reason"], "rate_exceeded");

    // Time, on the manual clock: the token expires (with its 30 s leeway).
    clock.advance(300 + 30);
    let resp = at::call_service(&app, get("/hello", Some(&t))).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers().get("www-authenticate").unwrap(),
        "Bearer realm=\"appauth\", error=\"invalid_token\""
    );
    assert_eq!(body(resp).await["reason"], "expired");
}

#[actix_web::test]
async fn a_cached_token_is_not_served_once_its_key_is_retired() {
    let old = PrivateKey::generate(2048).unwrap();
    let new = PrivateKey::generate(2048).unwrap();
    let keys = Arc::new(Keys::default());
    keys.set("orders", bundle(&[&old, &new]));
    let clock = Arc::new(ManualClock::new(NOW));
    let gate = gate(keys.clone(), clock).with_cache(Arc::new(TokenCache::new(1 << 20)));
    let metrics = gate.metrics().clone();
    let app = at::init_service(App::new().wrap(gate).route("/hello", hello())).await;
    let t = token(&old, "orders", NOW);
    let call = || {
        at::TestRequest::get()
            .uri("/hello")
            .insert_header(("x-token", t.clone()))
            .to_request()
    };
    assert_eq!(at::call_service(&app, call()).await.status(), 200);
    assert_eq!(at::call_service(&app, call()).await.status(), 200);
    assert_eq!(metrics.token_cache_hits(), 1);

    // The old key retired from the bundle: the cached token is refused.
    keys.set("orders", bundle(&[&new]));
    let resp = at::call_service(&app, call()).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(body(resp).await["reason"], "bad_signature");
    assert_eq!(metrics.token_cache_hits(), 1);
}

#[actix_web::test]
async fn the_extractor_refuses_on_a_route_the_gate_does_not_wrap() {
    let keys = Arc::new(Keys::default());
    let gate = gate(keys, Arc::new(ManualClock::new(NOW)));
    let app = at::init_service(
        App::new()
            .service(web::scope("/api").wrap(gate).route("/hello", hello()))
            // Mounted outside the gate by mistake: Caller still refuses.
            .route("/forgotten", hello()),
    )
    .await;
    let resp = at::call_service(&app, at::TestRequest::get().uri("/forgotten").to_request()).await;
    assert_eq!(resp.status(), 401);
}

#[actix_web::test]
async fn exempt_routes_are_exempt_for_their_method_only() {
    let keys = Arc::new(Keys::default());
    // Two calls add up, as the builder's do.
    let gate = gate(keys, Arc::new(ManualClock::new(NOW)))
        .exempt([(Method::GET, "/healthz")])
        .exempt([(Method::GET, "/version")]);
    // A fallback that never asks for Caller: only the gate protects it.
    let app = at::init_service(
        App::new()
            .wrap(gate)
            .default_service(web::to(|| async { HttpResponse::Ok().body("open") })),
    )
    .await;
    let call = |m: Method, p: &str| at::TestRequest::default().method(m).uri(p).to_request();
    for p in ["/healthz", "/version"] {
        assert_eq!(
            at::call_service(&app, call(Method::GET, p)).await.status(),
            200,
            "{p}"
        );
    }
    for (m, p) in [
        (Method::POST, "/healthz"),
        (Method::DELETE, "/healthz"),
        (Method::GET, "/healthz/"),
        (Method::GET, "/metrics"),
    ] {
        assert_eq!(
            at::call_service(&app, call(m.clone(), p)).await.status(),
            401,
            "{m} {p}"
        );
    }
}

#[actix_web::test]
async fn the_embedding_example_protects_its_api_and_shares_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate(2048).unwrap();
    let key_file = dir.path().join("shop_public.pem");
    std::fs::write(&key_file, key.public_key_pem().unwrap()).unwrap();
    let (telemetry, gate) = embed::setup(dir.path()).unwrap();
    let app = at::init_service(
        App::new().configure(|cfg| embed::routes(cfg, telemetry.clone(), gate.clone())),
    )
    .await;
    let now = appauth_core::SystemClock.now();
    let t = token(&key, "shop", now);
    let order = || {
        at::TestRequest::post()
            .uri("/api/orders")
            .insert_header(("x-token", t.clone()))
            .to_request()
    };

    assert_eq!(
        at::call_service(&app, at::TestRequest::get().uri("/status").to_request())
            .await
            .status(),
        200
    );
    let refused = at::TestRequest::post().uri("/api/orders").to_request();
    assert_eq!(at::call_service(&app, refused).await.status(), 401);
    let resp = at::call_service(&app, order()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body(resp).await["placed_by"], "shop");

    // One /metrics: the app's own counter and appauth's, side by side.
    let metrics =
        at::call_and_read_body(&app, at::TestRequest::get().uri("/metrics").to_request()).await;
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    assert!(metrics.contains("shop_orders_total 1"), "{metrics}");
    assert!(
        metrics.contains("appauth_requests_total{outcome=\"accepted\",reason=\"none\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("appauth_requests_total{outcome=\"rejected\",reason=\"missing_token\"} 1"),
        "{metrics}"
    );

    // Hot reload with nothing but the builder: the key file removed, the
    // app's tokens stop working within a second.
    std::fs::remove_file(&key_file).unwrap();
    let started = Instant::now();
    loop {
        let status = at::call_service(&app, order()).await.status();
        if status == 401 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "removed key still accepted"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn the_builder_refuses_what_would_not_work_and_says_why() {
    let err = AppAuth::from_dir("/nonexistent/keys").build().unwrap_err();
    assert!(
        err.to_string()
            .contains("/nonexistent/keys: does not exist"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[default]\nallow = [\"get /x\"]\n").unwrap();
    let err = AppAuth::from_dir(dir.path())
        .policy(&policy)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("policy.toml:2:"), "{err}");
    let err = AppAuth::from_dir(dir.path())
        .algorithms(Vec::new())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("RS512"), "{err}");
}
