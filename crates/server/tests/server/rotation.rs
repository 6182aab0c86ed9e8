//! The rotation runbook, run: keys made and rotated by appauth-keygen (its
//! library, as the CLI calls it), a client calling continuously the whole
//! time, an early retirement of the old key. Nothing restarts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use appauth_client::{AppAuthClient, Signer};
use appauth_core::AppId;
use appauth_keygen::{Existing, KeyDirs};

use crate::util::Server;

/// Keys for `orders` made by appauth-keygen under `root` (public in
/// `keys/`, private in `private/`): the directories, the app, its kid.
fn orders_from_keygen(root: &std::path::Path) -> (KeyDirs, AppId, appauth_core::Kid) {
    let dirs = KeyDirs {
        private: root.join("private"),
        public: root.join("keys"),
        private_per_app: false,
    };
    let app = AppId::new("orders").unwrap();
    let made = appauth_keygen::generate(std::slice::from_ref(&app), 2048, &dirs, Existing::Refuse)
        .unwrap();
    let kid = made[0].kid.clone().unwrap();
    (dirs, app, kid)
}

#[tokio::test]
async fn a_rotation_then_an_early_retirement_fails_no_call() {
    let root = tempfile::tempdir().unwrap();
    let (dirs, app, old_kid) = orders_from_keygen(root.path());
    // The old private key, as a leaked copy would be: rotate deletes its own.
    let old_private = std::fs::read(dirs.private_path(&app)).unwrap();
    let server = Server::start(&dirs.public, &[]);

    // The app: a long-running client on its key file, calling every 10 ms.
    let signer = Signer::builder("orders")
        .key_file(dirs.private_path(&app))
        .build()
        .unwrap();
    let client = Arc::new(AppAuthClient::builder(signer).build().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let caller = {
        let (client, stop, url) = (client.clone(), stop.clone(), server.url.clone());
        tokio::spawn(async move {
            let mut by_kid: BTreeMap<String, u32> = BTreeMap::new();
            let mut failed = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match client.get(format!("{url}/whoami")).send().await {
                    Ok(r) if r.status() == 200 => {
                        let who: serde_json::Value = r.json().await.unwrap();
                        *by_kid
                            .entry(who["kid"].as_str().unwrap().to_owned())
                            .or_default() += 1;
                    }
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (by_kid, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Runbook step 1: rotate. The bundle now holds both keys; the app's key
    // file holds the new one.
    let rotated = appauth_keygen::rotate(&app, 2048, &dirs, false).unwrap();
    let new_kid = rotated.kid.clone().unwrap();
    assert_eq!(rotated.old_private_key, None);
    assert_eq!(rotated.deleted_private_keys.len(), 1);
    assert_eq!(rotated.bundle, vec![old_kid.clone(), new_kid.clone()]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Step 2, early: retire the old key while the client's cached token is
    // still signed with it (its refresh is minutes away).
    appauth_keygen::retire(&app, old_kid.as_str(), &dirs, false, false).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let (by_kid, failed) = caller.await.unwrap();

    let total: u32 = by_kid.values().sum();
    println!(
        "rotation: {total} calls accepted, {} failed, by kid {by_kid:?}",
        failed.len()
    );
    assert!(failed.is_empty(), "failed calls: {failed:?}");
    assert!(
        by_kid.get(old_kid.as_str()).is_some_and(|n| *n > 0),
        "{by_kid:?}"
    );
    assert!(
        by_kid.get(new_kid.as_str()).is_some_and(|n| *n > 0),
        "{by_kid:?}"
    );
    // The server sees the new kid, and a token of the retired key is refused.
    let stale = Signer::builder("orders")
        .key_pem(old_private)
        .build()
        .unwrap();
    assert_eq!(stale.kid(), old_kid);
    let resp = reqwest::Client::new()
        .get(format!("{}/whoami", server.url))
        .header("x-token", &*stale.token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

/// `/metrics` lines that start with `prefix`, and their values.
async fn series(url: &str, prefix: &str) -> Vec<(String, f64)> {
    crate::util::metrics_text(url)
        .await
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn key_lifecycle_metrics_date_a_rotation_and_forget_a_retired_key() {
    let root = tempfile::tempdir().unwrap();
    let (dirs, app, old_kid) = orders_from_keygen(root.path());
    let bundle = dirs.public.join("orders_public.pem");
    let modified = std::fs::metadata(&bundle)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let server = Server::start(&dirs.public, &[]);
    // At start the only key is the newest, dated by its file.
    let info = series(&server.url, "appauth_key_info{").await;
    assert_eq!(
        info,
        [(
            format!(r#"appauth_key_info{{app="orders",kid="{old_kid}",newest="true"}}"#),
            1.0
        )]
    );
    let newest = series(
        &server.url,
        "appauth_app_newest_key_first_seen_timestamp_seconds{",
    )
    .await;
    assert_eq!(newest[0].1, modified);

    let rotated = appauth_keygen::rotate(&app, 2048, &dirs, false).unwrap();
    let new_kid = rotated.kid.unwrap();
    let started = crate::now() as f64;
    let flipped = crate::util::eventually(Duration::from_secs(5), || async {
        series(&server.url, "appauth_key_info{").await.len() == 2
    })
    .await;
    assert!(flipped.is_some(), "the rotation never reached the metrics");
    let info: Vec<String> = series(&server.url, "appauth_key_info{")
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        info.contains(&format!(
            r#"appauth_key_info{{app="orders",kid="{old_kid}",newest="false"}}"#
        )),
        "{info:?}"
    );
    assert!(
        info.contains(&format!(
            r#"appauth_key_info{{app="orders",kid="{new_kid}",newest="true"}}"#
        )),
        "{info:?}"
    );
    let newest = series(
        &server.url,
        "appauth_app_newest_key_first_seen_timestamp_seconds{",
    )
    .await;
    assert!(
        (newest[0].1 - started).abs() <= 5.0,
        "{newest:?} vs {started}"
    );

    appauth_keygen::retire(&app, old_kid.as_str(), &dirs, false, false).unwrap();
    let gone = crate::util::eventually(Duration::from_secs(5), || async {
        !crate::util::metrics_text(&server.url)
            .await
            .contains(old_kid.as_str())
    })
    .await;
    assert!(gone.is_some(), "the retired key's series stayed");
}
