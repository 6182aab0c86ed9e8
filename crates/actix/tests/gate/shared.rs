//! Two apps embedding the gate, each its own "replica", sharing one Redis
//! through `Builder::redis`: one rate limit between them, and a revocation
//! stored once refused by both.

use std::time::{Duration, Instant};

use actix_web::App;
use actix_web::test as at;
use appauth_actix::AppAuth;
use appauth_actix::shared::{RedisConfig, store_revocation};
use appauth_core::PrivateKey;

use super::{hello, token};

#[actix_web::test]
async fn two_embedded_gates_share_one_limit_and_one_revocation_list() {
    let redis = appauth_testkit::Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate(2048).unwrap();
    std::fs::write(
        dir.path().join("orders_public.pem"),
        key.public_key_pem().unwrap(),
    )
    .unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[default]\nallow = [\"GET /hello\"]\n\n[apps.orders]\nrate = \"10/m\"\n",
    )
    .unwrap();
    let gate = || {
        AppAuth::from_dir(dir.path())
            .policy(&policy)
            .redis(RedisConfig::new(redis.url()))
            .build()
            .unwrap()
    };
    let (one, two) = (gate(), gate());
    for g in [&one, &two] {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !g
            .metrics()
            .render()
            .contains("appauth_shared_state_mode{mode=\"global\"} 1")
        {
            assert!(Instant::now() < deadline, "never reached Redis");
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let app = |g: AppAuth| at::init_service(App::new().wrap(g).route("/hello", hello()));
    let (a, b) = (app(one).await, app(two).await);
    let now = appauth_core::Clock::now(&appauth_core::SystemClock);
    let t = token(&key, "orders", now);
    let call = |t: &str| {
        at::TestRequest::get()
            .uri("/hello")
            .insert_header(("x-token", t.to_owned()))
            .to_request()
    };

    // 10/m is a burst of 10 between both apps, not 10 each. A refill is
    // asynchronous, so a request may be refused while one is in flight:
    // pace the calls a little and count.
    let mut accepted = 0;
    for i in 0..30 {
        let resp = if i % 2 == 0 {
            at::call_service(&a, call(&t)).await
        } else {
            at::call_service(&b, call(&t)).await
        };
        match resp.status().as_u16() {
            200 => accepted += 1,
            429 => {}
            other => panic!("status {other}"),
        }
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        (9..=11).contains(&accepted),
        "accepted {accepted}: one shared burst of 10, not 20"
    );

    // A revocation stored once reaches both within a second.
    let jti_token = {
        let claims = appauth_core::Claims {
            app_id: "orders".into(),
            iat: now,
            exp: now + 300,
            nbf: None,
            jti: Some("j-1".into()),
            aud: None,
            iss: None,
            extra: Default::default(),
        };
        appauth_core::sign_token(&key, appauth_core::Algorithm::RS512, &claims).unwrap()
    };
    let listening = store_revocation(&redis.url(), "appauth", "jti j-1").unwrap();
    assert_eq!(listening, 2);
    let sent = Instant::now();
    for svc in [&a, &b] {
        loop {
            let resp = at::call_service(svc, call(&jti_token)).await;
            if resp.status() == 401 {
                break;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(1),
                "not revoked within 1 s"
            );
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
