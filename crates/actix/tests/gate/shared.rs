//! Two apps embedding the gate, each its own "replica", sharing one Redis
//! through `Builder::redis`: one rate limit between them, a revocation
//! stored once refused by both, lifted once accepted by both, and a Redis
//! that loses its data lifts nothing.

use std::time::{Duration, Instant};

use actix_web::App;
use actix_web::test as at;
use appauth_actix::AppAuth;
use appauth_core::PrivateKey;
use appauth_gate::shared::{RedisConfig, lift_revocation, list_revocations, store_revocation};

use super::{hello, token};

#[actix_web::test]
async fn two_embedded_gates_share_one_limit_and_one_revocation_list() {
    let redis = appauth_testkit::Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let key = orders_key(dir.path());
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
    // Each is ready once its limits are global and its revocations read
    // (until then it refuses every token, 503).
    for g in [&one, &two] {
        let deadline = Instant::now() + Duration::from_secs(5);
        let ready = |m: String| {
            m.contains("appauth_shared_state_mode{mode=\"global\"} 1")
                && m.contains("appauth_shared_revocations_synced 1")
        };
        while !ready(g.metrics().render()) {
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
    let jti_token = with_jti(&key, "j-1");
    let listening = store_revocation(&RedisConfig::new(redis.url()), "jti j-1")
        .unwrap()
        .listening;
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

/// A key for the app `orders`, its public key in `dir`.
fn orders_key(dir: &std::path::Path) -> PrivateKey {
    let key = PrivateKey::generate(2048).unwrap();
    std::fs::write(dir.join("orders_public.pem"), key.public_key_pem().unwrap()).unwrap();
    key
}

/// Waits until a replica has written `rule` back to a Redis that lost it.
async fn written_back(config: &RedisConfig, rule: &str, within: Duration) {
    let since = Instant::now();
    while !list_revocations(config).unwrap().iter().any(|r| r == rule) {
        assert!(
            since.elapsed() < within,
            "{rule} not written back to Redis within {within:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Signs a token for `orders` carrying `jti`.
fn with_jti(key: &PrivateKey, jti: &str) -> String {
    let now = appauth_core::Clock::now(&appauth_core::SystemClock);
    let claims = appauth_core::Claims {
        app_id: "orders".into(),
        iat: now,
        exp: now + 300,
        nbf: None,
        jti: Some(jti.into()),
        aud: None,
        iss: None,
        extra: Default::default(),
    };
    appauth_core::sign_token(key, appauth_core::Algorithm::RS512, &claims).unwrap()
}

#[actix_web::test]
async fn a_lift_reaches_both_and_a_redis_that_lost_its_data_lifts_nothing() {
    let mut redis = appauth_testkit::Redis::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let key = orders_key(dir.path());
    // Read everything again every 200 ms, so a test of that read is short.
    let config = RedisConfig {
        revocation_resync: Duration::from_millis(200),
        ..RedisConfig::new(&url)
    };
    let gates: Vec<AppAuth> = (0..2)
        .map(|_| {
            AppAuth::from_dir(dir.path())
                .redis(config.clone())
                .build()
                .unwrap()
        })
        .collect();
    let mut apps = Vec::new();
    for g in gates {
        apps.push(at::init_service(App::new().wrap(g).route("/hello", hello())).await);
    }
    // Waits until both apps answer `status` to a token carrying `jti`.
    macro_rules! both_answer {
        ($jti:expr, $status:expr, $within:expr, $why:expr) => {{
            let t = with_jti(&key, $jti);
            let since = Instant::now();
            for app in &apps {
                loop {
                    let req = at::TestRequest::get()
                        .uri("/hello")
                        .insert_header(("x-token", t.clone()))
                        .to_request();
                    if at::call_service(app, req).await.status().as_u16() == $status {
                        break;
                    }
                    assert!(
                        since.elapsed() < $within,
                        "jti {}: not {} within {:?}: {}",
                        $jti,
                        $status,
                        $within,
                        $why
                    );
                    actix_web::rt::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }};
    }
    let second = Duration::from_secs(1);
    both_answer!("j-1", 200, Duration::from_secs(5), "before any rule");

    // Revoked, then lifted, each seen by both within a second. The rule is
    // stored in one spelling, so the lift matches however it was typed.
    let stored = store_revocation(&config, "jti   j-1   # leaked").unwrap();
    assert_eq!(stored.rule, "jti j-1");
    assert!(stored.changed);
    both_answer!("j-1", 401, second, "revocation");
    let lifted = lift_revocation(&config, "jti j-1").unwrap();
    assert!(lifted.changed, "{lifted:?}");
    assert_eq!(lifted.listening, 2);
    both_answer!("j-1", 200, second, "lift");
    let again = lift_revocation(&config, "jti j-1").unwrap();
    assert!(!again.changed, "a second lift says the rule was not there");

    // A rule added by hand, with no message, arrives with the periodic read.
    // One removed by hand looks like a rule Redis lost (an evicted key would
    // look the same): it is written back, since only a lift lifts.
    redis
        .command(&["SADD", "appauth:revocations", "jti j-2"])
        .unwrap();
    both_answer!("j-2", 401, second, "periodic read of a rule added by hand");
    redis
        .command(&["SREM", "appauth:revocations", "jti j-2"])
        .unwrap();
    written_back(&config, "jti j-2", second).await;
    both_answer!("j-2", 401, Duration::ZERO, "removal by hand must not lift");
    lift_revocation(&config, "jti j-2").unwrap();
    both_answer!("j-2", 200, second, "lift");
    store_revocation(&config, "jti j-3").unwrap();
    both_answer!("j-3", 401, second, "revocation");

    // Redis restored from an older snapshot: the rule is gone and the
    // version went back. Both keep refusing, and the rule is written back.
    let version: u64 = redis
        .command(&["HGET", "appauth:revocations:generation", "version"])
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    redis
        .command(&["SREM", "appauth:revocations", "jti j-3"])
        .unwrap();
    let older = (version - 1).to_string();
    redis
        .command(&["HSET", "appauth:revocations:generation", "version", &older])
        .unwrap();
    written_back(&config, "jti j-3", second).await;
    both_answer!("j-3", 401, Duration::ZERO, "rollback must not lift");

    // Redis restarted empty: still refused, and the rule is back in Redis
    // once the replicas reconnect. A lift in the new generation holds.
    redis.restart();
    both_answer!("j-3", 401, Duration::ZERO, "restart must not lift");
    written_back(&config, "jti j-3", Duration::from_secs(10)).await;
    assert_eq!(list_revocations(&config).unwrap(), ["jti j-3"]);
    lift_revocation(&config, "jti j-3").unwrap();
    both_answer!("j-3", 200, second, "lift after the restart");
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert!(list_revocations(&config).unwrap().is_empty());
    both_answer!("j-3", 200, Duration::ZERO, "lift undone by a periodic read");
}

#[test]
fn a_rule_an_older_release_stored_with_an_offset_is_lifted_by_its_own_words() {
    let redis = appauth_testkit::Redis::start();
    let config = RedisConfig::new(redis.url());
    // How releases before the typed rule stored it: the time as typed.
    let typed = "app billing before 2026-01-01T02:00:00+02:00";
    redis
        .command(&["SADD", "appauth:revocations", typed])
        .unwrap();
    assert_eq!(list_revocations(&config).unwrap(), [typed]);
    let lifted = lift_revocation(&config, typed).unwrap();
    assert!(lifted.changed, "{lifted:?}");
    assert_eq!(lifted.rule, "app billing before 2026-01-01T00:00:00Z");
    assert!(list_revocations(&config).unwrap().is_empty());
    // A new one is stored in the one spelling, and its lift in any spelling
    // of the same instant matches it.
    store_revocation(&config, typed).unwrap();
    assert_eq!(
        list_revocations(&config).unwrap(),
        ["app billing before 2026-01-01T00:00:00Z"]
    );
    let lifted = lift_revocation(&config, "app billing before 2026-01-01T01:00:00+01:00").unwrap();
    assert!(lifted.changed);
    assert!(list_revocations(&config).unwrap().is_empty());
}

/// The status the engine gives `GET /hello` with `token`, straight from
/// `Gate::authenticate` (no framework in between).
fn status_of(gate: &AppAuth, token: &str) -> u16 {
    use appauth_gate::{Admission, RequestHead};
    let headers = [("x-token", token)];
    let head = RequestHead {
        method: "GET",
        path: "/hello",
        headers: &headers,
    };
    match gate.gate().authenticate(&head) {
        Ok(Admission::Caller(_)) => 200,
        Ok(Admission::Exempt) => 0,
        Err(refusal) => refusal.status(),
    }
}

/// A gate pointed at a read-only Redis (a replica, as the old primary is
/// after a failover) loads every rule and follows new ones made on the
/// primary. Before, the sync script wrote on its slow path, so on a replica
/// the read failed, the follower reconnected for ever, and no rule was ever
/// loaded.
#[test]
fn a_gate_on_a_read_only_replica_loads_every_rule_and_follows_new_ones() {
    let primary = appauth_testkit::Redis::start();
    let replica = appauth_testkit::Redis::start_with(&[
        "--replicaof",
        "127.0.0.1",
        &primary.port.to_string(),
    ]);
    let on_primary = RedisConfig::new(primary.url());
    for i in 0..8 {
        store_revocation(&on_primary, &format!("jti r-{i}")).unwrap();
    }
    let on_replica = RedisConfig::new(replica.url());
    let deadline = Instant::now() + Duration::from_secs(10);
    while list_revocations(&on_replica).map(|l| l.len()).unwrap_or(0) < 8 {
        assert!(Instant::now() < deadline, "the replica never synced");
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = tempfile::tempdir().unwrap();
    let key = orders_key(dir.path());
    let gate = AppAuth::from_dir(dir.path())
        .redis(on_replica)
        .build()
        .unwrap();
    let status = |jti: &str| status_of(&gate, &with_jti(&key, jti));
    let within = |jti: &str, want: u16, limit: Duration| {
        let started = Instant::now();
        while status(jti) != want {
            assert!(
                started.elapsed() < limit,
                "{jti}: not {want} within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        started.elapsed()
    };
    for i in 0..8 {
        within(&format!("r-{i}"), 401, Duration::from_secs(3));
    }
    assert_eq!(status("fresh"), 200);
    // Made on the primary, announced there, seen through the replica.
    store_revocation(&on_primary, "jti r-new").unwrap();
    let took = within("r-new", 401, Duration::from_secs(1));
    eprintln!("a revocation on the primary reached the replica's follower in {took:?}");
}

/// A TCP forwarder the test owns, standing for a DNS name, a managed
/// endpoint or a Kubernetes Service in front of Redis: new connections go to
/// the current target; connections already made stay where they were.
struct Forwarder {
    port: u16,
    target: std::sync::Arc<std::sync::atomic::AtomicU16>,
}

impl Forwarder {
    fn to(target: u16) -> Forwarder {
        use std::sync::atomic::{AtomicU16, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = std::sync::Arc::new(AtomicU16::new(target));
        let to = target.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) =
                    std::net::TcpStream::connect(("127.0.0.1", to.load(Ordering::SeqCst)))
                else {
                    continue;
                };
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Forwarder { port, target }
    }

    fn point_at(&self, port: u16) {
        self.target.store(port, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A single `redis://` URL re-pointed from the old primary to the new one,
/// as a failover behind a name does it: the limiter's connection to the old
/// primary answers READONLY once it is demoted; the replica drops it and
/// reconnects through the name, and is global again with no restart (it
/// stayed in fallback for good before).
#[test]
fn a_re_pointed_url_fails_over_with_no_restart() {
    let a = appauth_testkit::Redis::start();
    let b = appauth_testkit::Redis::start();
    let name = Forwarder::to(a.port);
    let dir = tempfile::tempdir().unwrap();
    orders_key(dir.path());
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[default]\nallow = [\"GET /hello\"]\nrate = \"100/s\"\n",
    )
    .unwrap();
    let gate = AppAuth::from_dir(dir.path())
        .policy(&policy)
        .redis(RedisConfig::new(format!("redis://127.0.0.1:{}", name.port)))
        .build()
        .unwrap();
    let mode = |want: &str, within: Duration| {
        let started = Instant::now();
        let series = format!("appauth_shared_state_mode{{mode=\"{want}\"}} 1");
        while !gate.metrics().render().contains(&series) {
            if started.elapsed() > within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(started.elapsed())
    };
    assert!(
        mode("global", Duration::from_secs(5)).is_some(),
        "never global"
    );

    // The failover: B is promoted, the name points at B, A becomes B's
    // replica (read-only, its data replaced by B's).
    name.point_at(b.port);
    a.command(&["REPLICAOF", "127.0.0.1", &b.port.to_string()])
        .unwrap();
    let fell_back = mode("fallback", Duration::from_secs(5));
    let back = mode("global", Duration::from_secs(10));
    eprintln!("re-pointed URL: fallback after {fell_back:?}, global again after {back:?}");
    assert!(back.is_some(), "still in fallback 10 s after the failover");
    // And global on B: the limiter's keys are there now.
    let on_b = b.command(&["KEYS", "appauth:*"]).unwrap_or_default();
    assert!(
        on_b.contains("appauth:"),
        "nothing written to the new primary: {on_b}"
    );
}

/// A gate started against 10,000 rules in Redis never accepts a revoked
/// token, polled from its first moment: until its first complete read it
/// answers 503 revocations_loading, then 401. Before, it served (and
/// reported ready) before the read, and a revoked token passed.
#[test]
fn a_gate_started_against_10k_rules_never_accepts_a_revoked_token() {
    let redis = appauth_testkit::Redis::start();
    let mut sadd = vec!["SADD".to_owned(), "appauth:revocations".to_owned()];
    sadd.extend((0..10_000).map(|i| format!("jti r-{i}")));
    let sadd: Vec<&str> = sadd.iter().map(String::as_str).collect();
    redis.command(&sadd).unwrap();
    redis
        .command(&[
            "HSET",
            "appauth:revocations:generation",
            "id",
            "g1",
            "version",
            "1",
            "rules",
            "10000",
        ])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = orders_key(dir.path());
    let revoked = with_jti(&key, "r-9999");
    let gate = AppAuth::from_dir(dir.path())
        .redis(RedisConfig::new(redis.url()))
        .build()
        .unwrap();
    let status = |t: &str| status_of(&gate, t);
    let started = Instant::now();
    let (mut unavailable, mut polls) = (0, 0);
    loop {
        polls += 1;
        match status(&revoked) {
            401 => break,
            503 => unavailable += 1,
            other => panic!("a revoked token got {other} after {:?}", started.elapsed()),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never loaded");
    }
    assert!(gate.gate().is_ready());
    eprintln!(
        "10k rules: revoked token refused from the first poll; 503 for {unavailable} of {polls} polls, 401 after {:?}",
        started.elapsed()
    );
    assert_eq!(status(&with_jti(&key, "fresh")), 200);
}
