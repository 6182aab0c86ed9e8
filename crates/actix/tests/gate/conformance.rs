//! The conformance table (appauth-testkit) against the actix adapter in
//! process: an actix-web app with the server's routes, no socket.

use actix_web::dev::ServiceResponse;
use actix_web::test as at;
use actix_web::{App, HttpResponse, web};
use appauth_actix::{AppAuth, Caller};
use appauth_testkit::conformance::{self, AUDIENCE, Fixture, Request, Response};

fn request(request: Request) -> at::TestRequest {
    let mut test = at::TestRequest::default()
        .method(request.method.parse().unwrap())
        .uri(&request.path);
    for (name, value) in &request.headers {
        test = test.append_header((name.as_str(), value.as_str()));
    }
    test.set_payload(request.body)
}

async fn response<B: actix_web::body::MessageBody>(response: ServiceResponse<B>) -> Response {
    let status = response.status().as_u16();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = at::read_body(response).await.to_vec();
    Response::new(
        status,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        body,
    )
}

#[actix_web::test]
async fn the_conformance_table_passes_on_the_actix_adapter() {
    let fixture = Fixture::new();
    let gate = AppAuth::from_dir(&fixture.keys_dir)
        .policy(&fixture.policy)
        .revocations(&fixture.revocations)
        .audience(AUDIENCE)
        .exempt([("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")])
        .build()
        .unwrap();
    let ok = || HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }));
    let app = at::init_service(
        App::new()
            .wrap(gate)
            .route("/healthz", web::get().to(move || async move { ok() }))
            .route("/readyz", web::get().to(move || async move { ok() }))
            .route("/metrics", web::get().to(|| async { "" }))
            .route("/ping", web::get().to(move |_: Caller| async move { ok() }))
            .route("/users", web::get().to(|_: Caller| async { "[]" }))
            .route(
                "/whoami",
                web::get().to(|c: Caller| async move {
                    HttpResponse::Ok().json(serde_json::json!({
                        "appId": c.app_id, "kid": c.kid, "alg": c.alg.as_str(), "claims": c.claims,
                    }))
                }),
            ),
    )
    .await;
    let cases = conformance::run(&fixture, "appauth-actix", |r| {
        let (app, r) = (&app, request(r).to_request());
        async move { response(at::call_service(app, r).await).await }
    })
    .await;
    assert!(cases >= 50, "{cases} cases");
}

#[actix_web::test]
async fn keys_still_loading_is_a_503_with_retry_after() {
    let gate = AppAuth::from(appauth_testkit::conformance::loading_gate());
    let app = at::init_service(
        App::new()
            .wrap(gate)
            .route("/ping", web::get().to(|_: Caller| async { "pong" })),
    )
    .await;
    let req = at::TestRequest::get()
        .uri("/ping")
        .insert_header(("x-token", "a.b.c"))
        .to_request();
    let got = response(at::call_service(&app, req).await).await;
    conformance::assert_not_ready("appauth-actix", &got);
}
