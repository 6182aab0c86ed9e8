//! The conformance table (appauth-testkit) against the tower adapter in
//! process: the axum example's own router, no socket.

use appauth_testkit::conformance::{self, AUDIENCE, Fixture, Request, Response};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::axum_api::{Args, app};

async fn call(router: &axum::Router, request: Request) -> Response {
    let mut builder = http::Request::builder()
        .method(request.method)
        .uri(&request.path);
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = builder
        .body(axum::body::Body::from(request.body))
        .expect("a request the table can send");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Response::new(
        status,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        body,
    )
}

pub fn args(fixture: &Fixture) -> Args {
    Args {
        keys_dir: fixture.keys_dir.clone(),
        bind: "127.0.0.1:0".into(),
        policy: Some(fixture.policy.clone()),
        revocations: Some(fixture.revocations.clone()),
        audience: Some(AUDIENCE.into()),
        token_cache_mb: appauth_tower::DEFAULT_TOKEN_CACHE_MB,
    }
}

#[tokio::test]
async fn the_conformance_table_passes_on_the_tower_adapter() {
    let fixture = Fixture::new();
    let router = app(&args(&fixture)).unwrap();
    let cases = conformance::run(&fixture, "appauth-tower", |r| call(&router, r)).await;
    assert!(cases >= 50, "{cases} cases");
}

#[tokio::test]
async fn grpc_callers_get_grpc_statuses_for_every_kind_of_refusal() {
    let fixture = Fixture::new();
    let router = app(&args(&fixture)).unwrap();
    conformance::run_grpc(&fixture, "appauth-tower", |r| call(&router, r)).await;
}

#[tokio::test]
async fn keys_still_loading_is_a_503_with_retry_after_or_unavailable_for_grpc() {
    let gate = appauth_testkit::conformance::loading_gate();
    let router = axum::Router::new()
        .route("/ping", axum::routing::get(|| async { "pong" }))
        .layer(appauth_tower::AppAuthLayer::from(gate));
    let request = Request {
        method: "GET",
        path: "/ping".into(),
        headers: vec![("x-token".into(), "a.b.c".into())],
        body: Vec::new(),
    };
    let got = call(&router, request.clone()).await;
    conformance::assert_not_ready("appauth-tower", &got);
    // The same refusal to a gRPC caller: 14 UNAVAILABLE, trailers-only.
    let mut grpc = request;
    grpc.headers
        .push(("content-type".into(), "application/grpc".into()));
    let got = call(&router, grpc).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.headers.get("grpc-status").map(String::as_str),
        Some("14")
    );
    assert_eq!(
        got.headers.get("grpc-message").map(String::as_str),
        Some("keys_loading")
    );
    assert!(got.body.is_empty());
}
