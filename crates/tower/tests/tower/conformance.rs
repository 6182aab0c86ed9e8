//! The conformance table (appauth-testkit) against the tower adapter in
//! process: the axum example's own router, no socket.

use std::collections::BTreeMap;

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
    let mut headers = BTreeMap::<String, String>::new();
    for (name, value) in response.headers() {
        let value = value.to_str().unwrap_or("").to_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value)
            })
            .or_insert(value);
    }
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Response {
        status,
        headers,
        body,
    }
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
