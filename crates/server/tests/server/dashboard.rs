//! The Grafana dashboard against a real Prometheus: two real replicas
//! sharing a real Redis, traffic of several apps, a rotation and a
//! certificate key, scraped by Prometheus from Debian's package; every
//! panel's query must parse and return series.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{Server, add_app, replace};
use crate::{forge, now};

/// A Prometheus of its own on a free port, scraping `targets` every second;
/// killed when dropped.
struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[String]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let targets: Vec<String> = targets
            .iter()
            .map(|u| format!("'{}'", u.trim_start_matches("http://")))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: appauth\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let child = std::process::Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus (apt-get install prometheus; .ci/run installs it)");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    async fn query(&self, expr: &str) -> Value {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            &[("query", expr)],
        )
        .unwrap();
        reqwest::Client::new()
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_dashboard_panel_returns_series_from_a_real_prometheus() {
    let redis = appauth_testkit::Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let orders = add_app(dir.path(), "orders");
    let billing = add_app(dir.path(), "billing");
    // A key from an X.509 certificate, for the expiry panel.
    std::fs::copy(
        appauth_testkit::fixture_path("keys/node-app_cert.pem"),
        dir.path().join("node-app_public.pem"),
    )
    .unwrap();
    let node =
        appauth_core::PrivateKey::from_pem(&appauth_testkit::fixture("node/node-app_private.pem"))
            .unwrap();
    let redis_url = redis.url();
    let replicas: Vec<Server> = (0..2)
        .map(|_| Server::start(dir.path(), &["--redis-url", &redis_url]))
        .collect();
    let prometheus = Prometheus::start(&replicas.iter().map(|r| r.url.clone()).collect::<Vec<_>>());

    // Traffic: three apps on both replicas, warm tokens and cold ones, a
    // refusal now and then; halfway, orders rotates to a new key.
    let client = reqwest::Client::new();
    let rotated = appauth_core::PrivateKey::generate(2048).unwrap();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut bundle_rotated = false;
    let warm = forge(
        &billing,
        &json!({"appId": "billing", "iat": now(), "exp": now() + 300}),
    );
    while started.elapsed() < Duration::from_secs(8) {
        let halfway = started.elapsed() > Duration::from_secs(4);
        if halfway && !bundle_rotated {
            bundle_rotated = true;
            let pem = format!(
                "{}{}",
                orders.public_key_pem().unwrap(),
                rotated.public_key_pem().unwrap()
            );
            replace(&dir.path().join("orders_public.pem"), &pem);
        }
        let use_new = started.elapsed() > Duration::from_secs(5);
        let orders_key = if use_new { &rotated } else { &orders };
        let cold = |key, app: &str| {
            forge(
                key,
                &json!({"appId": app, "iat": now(), "exp": now() + 300, "jti": format!("j{sent}")}),
            )
        };
        let tokens = [
            cold(orders_key, "orders"),
            warm.clone(),
            cold(&node, "node-app"),
            "not.a.token".to_owned(),
        ];
        for (i, token) in tokens.iter().enumerate() {
            let url = &replicas[(sent as usize + i) % 2].url;
            let _ = client
                .get(format!("{url}/ping"))
                .header("x-token", token)
                .send()
                .await
                .unwrap();
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Two more scrapes after the last request.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(appauth_testkit::fixture_path(
            "../../deploy/grafana/appauth.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let up = prometheus.query("up{job=\"appauth\"} == 1").await;
    assert_eq!(
        up["data"]["result"].as_array().map(Vec::len),
        Some(2),
        "Prometheus does not scrape both replicas: {up}"
    );
    let mut empty = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let answer = prometheus.query(expr).await;
            assert_eq!(
                answer["status"], "success",
                "{title}: {expr} does not parse: {answer}"
            );
            let series = answer["data"]["result"].as_array().map_or(0, Vec::len);
            println!("panel {title:?}: {series} series from {expr}");
            if series == 0 {
                empty.push(format!("{title}: {expr}"));
            }
        }
    }
    assert!(empty.is_empty(), "panels with no series: {empty:#?}");
    // The rotation shows: orders accepted with both kids.
    let kids = prometheus
        .query("count by (app) (sum by (app, kid) (appauth_accepted_total{app=\"orders\"}) > 0)")
        .await;
    assert_eq!(kids["data"]["result"][0]["value"][1], "2", "{kids}");
}
