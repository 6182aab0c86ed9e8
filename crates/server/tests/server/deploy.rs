//! TLS and gateway mode with the real binary (docs/spec.md §7).

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use appauth_client::{AppAuthClient, Signer};

use crate::util::{Server, add_app, eventually};
use crate::{claims_for, forge};

pub(crate) use appauth_testkit::tls::{Ca, ca, issue};

fn served_serial(url: &str) -> String {
    let addr = url.trim_start_matches("https://");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo | openssl s_client -connect {addr} 2>/dev/null | openssl x509 -noout -serial"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn https_with_a_test_ca_and_certificate_hot_reload() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let tls = dir.path().join("tls");
    fs::create_dir_all(&keys).unwrap();
    fs::create_dir_all(&tls).unwrap();
    let key = add_app(&keys, "svc");
    let ca = ca();
    fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    let (cert, tls_key) = issue(&ca, &tls, 1, 2090);
    // Relative paths from the deployment's own directory, as a unit file or
    // a container's working directory would give them: the renewal below is
    // still seen within a second.
    let relative =
        |p: &std::path::Path| format!("tls/{}", p.file_name().unwrap().to_str().unwrap());
    let server = Server::launch(
        Some(dir.path()),
        &[],
        &[
            "--keys-dir",
            "keys",
            "--tls-cert",
            &relative(&cert),
            "--tls-key",
            &relative(&tls_key),
        ],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);

    let signer = Signer::builder("svc")
        .key_pem(key.to_pkcs8_pem().unwrap())
        .build()
        .unwrap();
    let client = AppAuthClient::builder(signer)
        .ca_file(dir.path().join("ca.pem"))
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/whoami", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Without the CA the server is not trusted.
    let stranger = reqwest::Client::new()
        .get(format!("{}/healthz", server.url))
        .send()
        .await;
    assert!(stranger.is_err());

    // Renewal: a new certificate is served to new connections within 1 s.
    assert_eq!(served_serial(&server.url), "serial=01");
    issue(&ca, &tls, 2, 2091);
    let took = eventually(Duration::from_secs(1), || async {
        served_serial(&server.url) == "serial=02"
    })
    .await;
    assert!(took.is_some(), "renewed certificate not served");

    // A broken renewal keeps the current certificate in service.
    fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(served_serial(&server.url), "serial=02");
    assert!(
        server.logs().contains("previous one stays in service"),
        "{}",
        server.logs()
    );
    let resp = client
        .get(format!("{}/whoami", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[test]
fn bad_tls_files_stop_the_server_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let (cert, key) = issue(&ca, dir.path(), 1, 2090);
    let other = dir.path().join("other");
    fs::create_dir(&other).unwrap();
    let (_, other_key) = issue(&ca, &other, 2, 2090);
    let old = dir.path().join("old");
    fs::create_dir(&old).unwrap();
    let (expired, expired_key) = issue(&ca, &old, 3, 2021);
    let run = |cert: &Path, key: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_appauth-server"))
            .args([
                "--keys-dir",
                dir.path().to_str().unwrap(),
                "--bind",
                "127.0.0.1:0",
            ])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let missing = dir.path().join("missing.crt");
    assert!(run(&missing, &key).contains("missing.crt"));
    // Unreadable (a directory where a file should be): the file is named.
    let err = run(&cert, &other);
    assert!(err.contains("TLS file") && err.contains("other"), "{err}");
    assert!(run(&cert, &other_key).contains("does not match certificate"));
    let err = run(&expired, &expired_key);
    assert!(
        err.contains("expired") && err.contains("old/tls.crt"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_appauth-server"))
        .args([
            "--keys-dir",
            dir.path().to_str().unwrap(),
            "--upstream",
            "ftp://nope",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--upstream \"ftp://nope\" is not usable")
    );
}

/// A small upstream in this process: echoes what it received, streams,
/// and can be slow.
fn start_upstream(hits: Arc<AtomicUsize>) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let hits = hits.clone();
                App::new()
                        .app_data(web::Data::new(hits))
                        .app_data(web::PayloadConfig::new(16 << 20))
                        .route(
                            "/slow",
                            web::get().to(|| async {
                                actix_web::rt::time::sleep(Duration::from_secs(3)).await;
                                HttpResponse::Ok().body("late")
                            }),
                        )
                        .route(
                            "/stream",
                            web::get().to(|| async {
                                let chunks = (0..5).map(|i| {
                                    Ok::<_, std::io::Error>(web::Bytes::from(format!("chunk-{i};")))
                                });
                                HttpResponse::Ok().streaming(futures_util::stream::iter(chunks))
                            }),
                        )
                        .default_service(web::to(
                            |req: HttpRequest,
                             body: web::Bytes,
                             hits: web::Data<Arc<AtomicUsize>>| async move {
                                hits.fetch_add(1, Ordering::SeqCst);
                                let headers: serde_json::Map<String, serde_json::Value> = req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").into()))
                                    .collect();
                                HttpResponse::Ok()
                                    .insert_header(("connection", "close"))
                                    .insert_header(("x-upstream", "yes"))
                                    .json(serde_json::json!({
                                        "method": req.method().as_str(),
                                        "path": req.uri().to_string(),
                                        "headers": headers,
                                        "body_len": body.len(),
                                        "body_sum": body.iter().map(|b| *b as u64).sum::<u64>(),
                                    }))
                            },
                        ))
            })
            .workers(1)
            .bind("127.0.0.1:0")
            .unwrap();
            tx.send(server.addrs()[0]).unwrap();
            server.run().await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

#[tokio::test]
async fn gateway_forwards_with_the_verified_app_id_and_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    let hits = Arc::new(AtomicUsize::new(0));
    let upstream = start_upstream(hits.clone());
    let server = Server::start(
        dir.path(),
        &["--upstream", &upstream, "--upstream-timeout", "1"],
    );
    let token = forge(&key, &claims_for("orders"));
    let http = reqwest::Client::new();

    let echo: serde_json::Value = http
        .get(format!("{}/api/things?id=7", server.url))
        .header("x-token", &token)
        .header("x-app-id", "admin")
        .header("x-request-id", "r-42")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["path"], "/api/things?id=7");
    let headers = &echo["headers"];
    assert_eq!(headers["x-app-id"], "orders", "{echo}");
    assert!(headers.get("x-token").is_none(), "token forwarded: {echo}");
    assert_eq!(headers["x-request-id"], "r-42");
    assert!(headers.get("x-forwarded-for").is_some());

    // Bearer is stripped too; a 1 MiB body streams through intact.
    let body: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let sum: u64 = body.iter().map(|b| *b as u64).sum();
    let resp = http
        .post(format!("{}/api/upload", server.url))
        .bearer_auth(&token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream"], "yes");
    assert!(
        resp.headers()
            .get("connection")
            .is_none_or(|v| v != "close"),
        "hop-by-hop header passed back"
    );
    let echo: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(echo["body_len"], 1024 * 1024);
    assert_eq!(echo["body_sum"], sum);
    assert!(echo["headers"].get("authorization").is_none());

    let streamed = http
        .get(format!("{}/stream", server.url))
        .header("x-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        streamed.text().await.unwrap(),
        "chunk-0;chunk-1;chunk-2;chunk-3;chunk-4;"
    );

    // Slow upstream: 504 after the timeout.
    let slow = http
        .get(format!("{}/slow", server.url))
        .header("x-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), 504);

    // Unauthenticated callers never reach the upstream.
    let before = hits.load(Ordering::SeqCst);
    let refused = http
        .post(format!("{}/api/upload", server.url))
        .body("x".repeat(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(hits.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "orders");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server::start(
        dir.path(),
        &["--upstream", &format!("http://127.0.0.1:{port}")],
    );
    let resp = reqwest::Client::new()
        .get(format!("{}/anything", server.url))
        .header("x-token", forge(&key, &claims_for("orders")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["reason"],
        "upstream_unreachable"
    );
}

/// What can be checked of docker-compose.yml without a Docker engine.
#[test]
fn compose_file_wires_keys_as_documented() {
    use yaml_rust2::{Yaml, YamlLoader};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let doc = YamlLoader::load_from_str(&text).unwrap().remove(0);
    let services = doc["services"].as_hash().unwrap();
    let svc = |name: &str| &doc["services"][name];
    let strings = |y: &Yaml| -> Vec<String> {
        y.as_vec().map_or_else(Vec::new, |v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
    };
    let dockerfile = fs::read_to_string(root.join("Dockerfile")).unwrap();

    // Every image is built here.
    let built: Vec<&str> = services
        .values()
        .filter(|s| !s["build"].is_badvalue())
        .map(|s| s["image"].as_str().unwrap())
        .collect();
    assert!(!built.is_empty());
    for (name, s) in services {
        let name = name.as_str().unwrap();
        if let Some(ctx) = s["build"].as_str() {
            assert!(
                root.join(ctx).join("Dockerfile").exists(),
                "{name}: no Dockerfile in {ctx}"
            );
        } else {
            let image = s["image"].as_str().unwrap();
            // The shared store and the load balancer are the stock images
            // platform teams run, and the agent's caller is an application
            // of someone else's (plain Python); everything of ours is built
            // here.
            let stock = ["redis:7-alpine", "nginx:1.27-alpine", "python:3.12-alpine"];
            assert!(
                built.contains(&image) || stock.contains(&image),
                "{name} uses {image}, which nothing here builds"
            );
        }
        // Every binary a service of our image runs is in the image.
        if s["image"].as_str().is_some_and(|i| !built.contains(&i)) {
            continue;
        }
        let argv: Vec<String> = strings(&s["command"]);
        let program = argv
            .first()
            .map(|p| p.split_whitespace().next().unwrap_or("").to_owned());
        if let Some(p) = program.filter(|p| {
            !p.starts_with("appauth-keygen new") && !p.is_empty() && p != "redis-server"
        }) {
            assert!(
                dockerfile.contains(&p),
                "{name} runs {p}, not copied by the Dockerfile"
            );
        }
    }
    assert!(
        dockerfile.contains("USER 10001"),
        "runtime image must not run as root"
    );

    // The api mounts only the public keys (and its policy), read-only, runs
    // three replicas sharing Redis behind the load balancer, and checks /readyz.
    let api_vols = strings(&svc("api")["volumes"]);
    assert_eq!(api_vols[0], "public-keys:/keys:ro");
    for v in &api_vols[1..] {
        let host = v.split(':').next().unwrap();
        assert!(v.ends_with(":ro") && root.join(host).is_file(), "{v}");
    }
    assert_eq!(svc("api")["deploy"]["replicas"].as_i64(), Some(3));
    assert_eq!(
        svc("api")["environment"]["APPAUTH_REDIS_URL"].as_str(),
        Some("redis://redis:6379")
    );
    assert!(services.contains_key(&Yaml::String("redis".into())));
    let lb_conf = fs::read_to_string(root.join("deploy/compose/nginx.conf")).unwrap();
    assert!(lb_conf.contains("server api:8080"), "{lb_conf}");
    let policy = fs::read_to_string(root.join("deploy/compose/policy.toml")).unwrap();
    appauth_gate::policy::Policy::parse("policy.toml", &policy).unwrap();
    let api_cmd = strings(&svc("api")["command"]).join(" ");
    assert!(api_cmd.contains("--keys-dir /keys"), "{api_cmd}");
    let health = strings(&svc("api")["healthcheck"]["test"]).join(" ");
    assert!(health.contains("/readyz"), "{health}");

    // keygen writes public keys to that volume and each private key to its app's volume.
    let keygen_vols = strings(&svc("keygen")["volumes"]);
    assert!(keygen_vols.contains(&"public-keys:/public".to_owned()));
    let keygen_cmd = strings(&svc("keygen")["command"]).join(" ");
    assert!(keygen_cmd.contains("--if-missing") && keygen_cmd.contains("--public-dir /public"));
    assert!(
        keygen_cmd.contains("--private-dir /private --private-subdirs"),
        "{keygen_cmd}"
    );
    for app in ["app-one", "app-two"] {
        assert!(keygen_cmd.contains(app));
        assert!(keygen_vols.contains(&format!("{app}-key:/private/{app}")));
        // The app mounts exactly its own key, read-only, and uses it.
        assert_eq!(
            strings(&svc(app)["volumes"]),
            [format!("{app}-key:/key:ro")]
        );
        let cmd = strings(&svc(app)["command"]).join(" ");
        assert!(cmd.contains(&format!("--app-id={app}")), "{cmd}");
        assert!(
            cmd.contains(&format!("--key=/key/{app}_private.pem")),
            "{cmd}"
        );
        assert!(cmd.contains("--url=http://lb:8080"), "{cmd}");
    }
}

/// What can be checked of deploy/kubernetes/ without a cluster (CI also
/// validates the schemas with kubernetes-validate): every APPAUTH_* variable
/// is one the server reads, the probes hit the open routes, the mounts hold
/// what the variables name, and the keys ConfigMap holds usable keys.
#[test]
fn kubernetes_manifests_use_the_servers_own_names() {
    use yaml_rust2::{Yaml, YamlLoader};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes");
    let mut docs = Vec::new();
    // The manifests of a plain cluster; monitoring/ holds the Operator's
    // PrometheusRule, checked with the alert rules.
    for entry in fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = fs::read_to_string(path).unwrap();
        docs.extend(YamlLoader::load_from_str(&text).unwrap());
    }
    let find = |kind: &str, name: &str| -> &Yaml {
        docs.iter()
            .find(|d| {
                d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_appauth-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);

    let deployment = find("Deployment", "appauth");
    assert_eq!(deployment["spec"]["replicas"].as_i64(), Some(3));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut env = std::collections::HashMap::new();
    for e in container["env"].as_vec().unwrap() {
        let name = e["name"].as_str().unwrap();
        // A value from a Secret: the Secret holds that key.
        let from = &e["valueFrom"]["secretKeyRef"];
        if !from.is_badvalue() {
            let secret = find("Secret", from["name"].as_str().unwrap());
            let key = from["key"].as_str().unwrap();
            assert!(
                !secret["stringData"][key].is_badvalue(),
                "{name}: no {key} in its Secret"
            );
            continue;
        }
        let value = e["value"].as_str().unwrap();
        if name.starts_with("APPAUTH_") {
            assert!(
                help.contains(&format!("[env: {name}=")),
                "{name} is not a server variable"
            );
        }
        env.insert(name, value);
    }
    for probe in ["readinessProbe", "livenessProbe"] {
        let path = container[probe]["httpGet"]["path"].as_str().unwrap();
        assert!(
            appauth_server::routes::OPEN_ROUTES
                .iter()
                .any(|r| r.path == path),
            "{probe} {path} is not an open route"
        );
    }
    // The pod is given the whole drain: the delay, then the shutdown timeout.
    let secs = |var: &str| -> i64 { env.get(var).map_or(i64::MAX, |v| v.parse().unwrap()) };
    let grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds");
    let drain = secs("APPAUTH_DRAIN_DELAY") + secs("APPAUTH_SHUTDOWN_TIMEOUT");
    assert!(
        grace > drain,
        "terminationGracePeriodSeconds {grace} does not cover the drain ({drain} s)"
    );
    // Each path a variable names lies in a mounted volume of the right source.
    let mounts: Vec<(&str, &str)> = container["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_vec()
        .unwrap();
    let source_of = |var: &str| -> (String, String) {
        let path = env[var];
        let (volume, dir) = mounts
            .iter()
            .find(|(_, dir)| path.starts_with(dir))
            .unwrap_or_else(|| panic!("{var}={path} is in no mounted volume"));
        let v = volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(volume))
            .unwrap();
        let source = v["configMap"]["name"]
            .as_str()
            .or(v["secret"]["secretName"].as_str())
            .unwrap()
            .to_owned();
        (source, path[dir.len()..].trim_start_matches('/').to_owned())
    };
    let (keys, rest) = source_of("APPAUTH_KEYS_DIR");
    assert!(rest.is_empty());
    let keys = find("ConfigMap", &keys);
    let mut apps = 0;
    for (file, text) in keys["data"].as_hash().unwrap() {
        let (file, text) = (file.as_str().unwrap(), text.as_str().unwrap());
        if file.ends_with("_public.pem") {
            appauth_core::parse_public_bundle(
                text.as_bytes(),
                0,
                &[appauth_core::Algorithm::RS512],
            )
            .unwrap_or_else(|e| panic!("{file}: {e}"));
            apps += 1;
        } else if file == "revoked.txt" {
            appauth_gate::revocation::RevocationList::parse(file, text).unwrap();
        }
    }
    assert!(apps > 0);
    let (policy, file) = source_of("APPAUTH_POLICY");
    let text = find("ConfigMap", &policy)["data"][file.as_str()]
        .as_str()
        .unwrap();
    appauth_gate::policy::Policy::parse(&file, text).unwrap();
    for var in ["APPAUTH_TLS_CERT", "APPAUTH_TLS_KEY"] {
        let (secret, file) = source_of(var);
        let secret = find("Secret", &secret);
        assert_eq!(secret["type"].as_str(), Some("kubernetes.io/tls"));
        assert!(
            !secret["stringData"][file.as_str()].is_badvalue(),
            "{var}: no {file}"
        );
    }
    // Redis: the URL names the Service, carries the password from the
    // Secret the Redis itself requires, and the fallback parses.
    let url = env["APPAUTH_REDIS_URL"];
    let (userinfo, rest) = url
        .trim_start_matches("redis://")
        .split_once('@')
        .expect("a password in the Redis URL");
    assert_eq!(userinfo, ":$(REDIS_PASSWORD)");
    find("Service", rest.split(':').next().unwrap());
    let redis = find("Deployment", "appauth-redis");
    let args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_vec()
        .unwrap();
    assert!(
        args.windows(2)
            .any(|w| w[0].as_str() == Some("--requirepass")
                && w[1].as_str() == Some("$(REDIS_PASSWORD)")),
        "the Redis asks for no password"
    );
    // Kubernetes expands $(VAR) only from a variable defined before it.
    let names = |c: &Yaml| -> Vec<String> {
        c["env"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let ours = names(container);
    let at = |n: &str| ours.iter().position(|x| x == n).unwrap();
    assert!(at("REDIS_PASSWORD") < at("APPAUTH_REDIS_URL"));
    assert!(
        names(&redis["spec"]["template"]["spec"]["containers"][0])
            .contains(&"REDIS_PASSWORD".into())
    );
    appauth_gate::shared::Fallback::parse(env["APPAUTH_REDIS_FALLBACK"]).unwrap();
    // Replicas survive voluntary disruptions, and are spread over nodes.
    let pdb = find("PodDisruptionBudget", "appauth");
    assert!(pdb["spec"]["minAvailable"].as_i64().unwrap() >= 2);
    let res = &container["resources"];
    assert!(!res["requests"]["cpu"].is_badvalue() && !res["requests"]["memory"].is_badvalue());
}

/// The image runs the server as an unprivileged user (uid 10001). Keys laid
/// out by keygen in split directories (`out/public`, `out/private`, as
/// `gen-keys.sh` does) are readable by such a user; a directory it cannot
/// enter is reported as a permission problem, not as a missing directory.
/// As root the server is run as `nobody` through `setpriv`; as any other
/// user it already is unprivileged.
#[tokio::test]
async fn an_unprivileged_server_reads_what_keygen_made_and_names_a_permission_problem() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let root = tempfile::tempdir().unwrap();
    let base = root.path();
    // tempfile makes its directory 0700; a deployment's parent would not be.
    fs::set_permissions(base, fs::Permissions::from_mode(0o755)).unwrap();
    let dirs = appauth_keygen::KeyDirs {
        private: base.join("out/private"),
        public: base.join("out/public"),
        private_per_app: false,
    };
    let app = appauth_core::AppId::new("orders").unwrap();
    appauth_keygen::generate(
        std::slice::from_ref(&app),
        2048,
        &dirs,
        appauth_keygen::Existing::Refuse,
    )
    .unwrap();
    let key = appauth_core::PrivateKey::from_pem(
        &fs::read(dirs.private.join("orders_private.pem")).unwrap(),
    )
    .unwrap();
    // A copy the other user can execute whatever the checkout's permissions.
    let bin = base.join("appauth-server");
    fs::copy(env!("CARGO_BIN_EXE_appauth-server"), &bin).unwrap();
    let as_root = fs::metadata("/proc/self").unwrap().uid() == 0;
    let unprivileged = || {
        let mut cmd = if as_root {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&bin);
            c
        } else {
            std::process::Command::new(&bin)
        };
        cmd.current_dir(base).args(["--keys-dir", "out/public"]);
        cmd
    };

    let server = Server::spawn(unprivileged());
    let token = forge(&key, &claims_for("orders"));
    let resp = reqwest::Client::new()
        .get(format!("{}/whoami", server.url))
        .header("x-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", server.logs());
    drop(server);

    // A parent directory closed to others: the real cause, and where to look.
    fs::set_permissions(base.join("out"), fs::Permissions::from_mode(0o700)).unwrap();
    let out = unprivileged()
        .args(["--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ermission denied") && err.contains("every directory above it"),
        "{err}"
    );
    assert!(!err.contains("does not exist"), "{err}");
}

/// Silent TCP connections (no ClientHello) must not hold the TLS handshake
/// slots: 1,100 held open, then 700 renewed every 4 s, while a TLS client
/// makes new connections; each of its requests is served within 1 s. Before
/// the hello timeout, slots were held for the whole handshake timeout (5 s)
/// and real clients waited behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_starve_tls_clients() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    fs::create_dir_all(&keys).unwrap();
    add_app(&keys, "svc");
    let ca = ca();
    let (cert, key) = issue(&ca, dir.path(), 1, 2090);
    let server = Server::start(
        &keys,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let addr = server.url.trim_start_matches("https://").to_owned();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("{}/healthz", server.url);
    let timed = |what: String| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let started = std::time::Instant::now();
            let status = client.get(&url).send().await.map(|r| r.status().as_u16());
            let took = started.elapsed();
            assert_eq!(status.ok(), Some(200), "{what}");
            assert!(took < Duration::from_secs(1), "{what}: {took:?}");
            took
        }
    };
    let silent = |n: usize| -> Vec<std::net::TcpStream> {
        (0..n)
            .map(|_| std::net::TcpStream::connect(&addr).unwrap())
            .collect()
    };

    let held = silent(1100);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut worst = Duration::ZERO;
    for i in 0..5 {
        worst = worst.max(timed(format!("request {i} beside 1,100 silent connections")).await);
    }
    drop(held);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewer = {
        let (stop, addr) = (stop.clone(), addr.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<_> = (0..700)
                    .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
                    .collect();
                for _ in 0..40 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                drop(batch);
            }
        })
    };
    let until = std::time::Instant::now() + Duration::from_secs(9);
    let mut served = 0;
    while std::time::Instant::now() < until {
        let what = "a request while 700 silent connections renew every 4 s".to_owned();
        worst = worst.max(timed(what).await);
        served += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    renewer.join().unwrap();
    eprintln!("TLS under silent connections: {served} renewed-phase requests, worst {worst:?}");
    assert!(served >= 20, "{served}");
}

/// deploy/kubernetes-sentinel: the overlay takes every manifest of
/// deploy/kubernetes but the single-node Redis, its patch names the real
/// Deployment, container and variable, and the server takes its URL (the
/// revoke command gets past the URL to the network, where the sentinels'
/// names do not resolve here).
#[test]
fn the_sentinel_overlay_changes_only_the_redis_url() {
    use yaml_rust2::YamlLoader;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let kustomization = YamlLoader::load_from_str(
        &fs::read_to_string(root.join("kubernetes-sentinel/kustomization.yaml")).unwrap(),
    )
    .unwrap()
    .remove(0);
    let mut listed: Vec<String> = kustomization["resources"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_str()
                .unwrap()
                .trim_start_matches("../kubernetes/")
                .to_owned()
        })
        .collect();
    listed.sort();
    let mut expected: Vec<String> = fs::read_dir(root.join("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        // redis.yaml is replaced by the Sentinel the overlay points at;
        // caller-with-agent.yaml is a calling app, not the server's install.
        .filter(|n| n.ends_with(".yaml") && n != "redis.yaml" && n != "caller-with-agent.yaml")
        .collect();
    expected.sort();
    assert_eq!(listed, expected);

    let patch = YamlLoader::load_from_str(
        &fs::read_to_string(root.join("kubernetes-sentinel/sentinel-url.yaml")).unwrap(),
    )
    .unwrap()
    .remove(0);
    let base = YamlLoader::load_from_str(
        &fs::read_to_string(root.join("kubernetes/deployment.yaml")).unwrap(),
    )
    .unwrap()
    .remove(0);
    assert_eq!(patch["metadata"]["name"], base["metadata"]["name"]);
    let container = &patch["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["name"],
        base["spec"]["template"]["spec"]["containers"][0]["name"]
    );
    let env = &container["env"][0];
    assert_eq!(env["name"].as_str(), Some("APPAUTH_REDIS_URL"));
    let url = env["value"]
        .as_str()
        .unwrap()
        .replace("$(REDIS_PASSWORD)", "pw");
    assert!(url.starts_with("redis+sentinel://"), "{url}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_appauth-server"))
        .args(["revoke", "--list", "--redis-url", &url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Redis at") && !err.contains("Redis URL"),
        "{err}"
    );
    assert!(!err.contains(":pw@"), "the password is printed: {err}");
}

/// Runs promtool (Debian's `prometheus` package; `.ci/run` installs it).
fn promtool(args: &[&str]) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus");
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(&root)
        .output()
        .expect("promtool (apt-get install prometheus; .ci/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_alert_rules_pass_promtool_and_their_own_cases() {
    let checked = promtool(&["check", "rules", "alerts.yaml"]);
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts.test.yaml"]);
    println!("{tested}");
    assert!(tested.contains("SUCCESS"), "{tested}");

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let load = |rel: &str| {
        yaml_rust2::YamlLoader::load_from_str(&fs::read_to_string(root.join(rel)).unwrap())
            .unwrap()
            .remove(0)
    };
    let alerts = load("deploy/prometheus/alerts.yaml");
    let rule = load("deploy/kubernetes/monitoring/prometheus-rule.yaml");
    assert_eq!(rule["kind"].as_str(), Some("PrometheusRule"));
    assert_eq!(
        alerts["groups"], rule["spec"]["groups"],
        "the PrometheusRule differs from alerts.yaml"
    );

    // Each alert has a summary and a runbook line, and fires and does not
    // fire in the cases.
    let tests = load("deploy/prometheus/alerts.test.yaml");
    let cases: Vec<(&str, bool)> = tests["tests"]
        .as_vec()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_vec().unwrap())
        .map(|c| {
            let fires = !c["exp_alerts"].as_vec().unwrap().is_empty();
            (c["alertname"].as_str().unwrap(), fires)
        })
        .collect();
    let metrics_src = fs::read_to_string(root.join("crates/gate/src/metrics.rs")).unwrap();
    for rule in alerts["groups"][0]["rules"].as_vec().unwrap() {
        let name = rule["alert"].as_str().unwrap();
        for a in ["summary", "runbook"] {
            assert!(
                rule["annotations"][a]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: no {a}"
            );
        }
        assert!(
            cases.contains(&(name, true)),
            "{name} has no case that fires"
        );
        assert!(
            cases.contains(&(name, false)),
            "{name} has no case that does not fire"
        );
        // Every metric it reads is one the server registers.
        let expr = rule["expr"].as_str().unwrap();
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Some(metric) = word.strip_prefix("appauth_") {
                let family = metric.strip_suffix("_total").unwrap_or(metric);
                assert!(
                    metrics_src.contains(&format!("\"{family}\"")),
                    "{name} reads {word}, which the server does not export"
                );
            }
        }
    }
}
