//! A host's own tracer behind the tower adapter: the gate hands it every
//! decision about a caller (never an exempt one), with the cache hit and
//! the verification time, and the `traceparent` it returns reaches the
//! handler in the request's extensions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use appauth_gate::{DecisionRecord, DecisionTracer, TraceParent};
use appauth_tower::AppAuthLayer;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use tower::ServiceExt as _;

/// What the tracer kept of each decision.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    path: String,
    outcome: Result<String, String>,
    cache_hit: Option<bool>,
    verified: bool,
    incoming: Option<String>,
}

#[derive(Default)]
struct Recording(Mutex<Vec<Seen>>);

impl DecisionTracer for Recording {
    fn record(&self, d: &DecisionRecord<'_>) -> Option<TraceParent> {
        let incoming = match d.head.headers.field("traceparent") {
            appauth_gate::Field::One(v) => Some(String::from_utf8_lossy(v).into_owned()),
            _ => None,
        };
        assert!(d.took < Duration::from_secs(1));
        if let Some(v) = d.verify_time {
            assert!(v <= d.took, "{v:?} > {:?}", d.took);
        }
        let mut seen = self.0.lock().unwrap();
        seen.push(Seen {
            path: d.head.path.to_owned(),
            outcome: d
                .outcome
                .map(|v| v.app_id.to_string())
                .map_err(|r| r.reason().to_owned()),
            cache_hit: d.cache_hit,
            verified: d.verify_time.is_some(),
            incoming,
        });
        let n = u8::try_from(seen.len()).unwrap();
        TraceParent::new([7; 16], [n; 8], true)
    }
}

#[tokio::test]
async fn the_gate_hands_each_decision_to_the_tracer_and_the_handler_gets_its_context() {
    let (keys, key) = crate::orders_keys();
    let tracer = Arc::new(Recording::default());
    let layer = AppAuthLayer::from_dir(keys.path())
        .exempt([("GET", "/healthz")])
        .tracer(tracer.clone())
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/echo",
            get(|req: Request<Body>| async move {
                req.extensions()
                    .get::<TraceParent>()
                    .map_or("none".to_owned(), |t| t.as_str().to_owned())
            }),
        )
        .layer(layer);
    let call = |path: &str, headers: &[(&str, &str)]| {
        let mut req = Request::get(path);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let app = app.clone();
        let req = req.body(Body::empty()).unwrap();
        async move {
            let response = app.oneshot(req).await.unwrap();
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let token = appauth_testkit::signed(
        &key,
        "orders",
        appauth_core::Clock::now(&appauth_core::SystemClock),
    );
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    let first = call("/echo", &[("x-token", &token), ("traceparent", parent)]).await;
    let expected = |n: u8| {
        TraceParent::new([7; 16], [n; 8], true)
            .unwrap()
            .as_str()
            .to_owned()
    };
    assert_eq!(first, (200, expected(1)));
    assert_eq!(
        call("/echo", &[("x-token", &token)]).await,
        (200, expected(2))
    );
    assert_eq!(call("/echo", &[]).await.0, 401);
    assert_eq!(call("/healthz", &[]).await, (200, "ok".to_owned()));

    let seen = tracer.0.lock().unwrap().clone();
    let caller = |cache_hit, verified, incoming: Option<&str>| Seen {
        path: "/echo".into(),
        outcome: Ok("orders".into()),
        cache_hit: Some(cache_hit),
        verified,
        incoming: incoming.map(str::to_owned),
    };
    assert_eq!(
        seen,
        [
            caller(false, true, Some(parent)),
            caller(true, false, None),
            Seen {
                path: "/echo".into(),
                outcome: Err("missing_token".into()),
                cache_hit: None,
                verified: false,
                incoming: None,
            },
        ],
        "the exempt probe made no decision record"
    );
}
