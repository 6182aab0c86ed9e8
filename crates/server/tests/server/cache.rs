//! The verified-token cache through the real binary.

use appauth_core::PrivateKey;

use crate::util::{Server, add_app, metric};
use crate::{claims_for, forge};

async fn status(url: &str, token: &str) -> u16 {
    crate::util::status_with(url, "/whoami", token).await
}

#[tokio::test]
async fn a_reused_token_costs_one_verification_and_junk_never_enters() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "svc");
    let server = Server::start(dir.path(), &[]);
    let url = &server.url;
    let token = forge(&key, &claims_for("svc"));

    let rsa = metric(url, "appauth_rsa_verifications_total").await;
    for _ in 0..20 {
        assert_eq!(status(url, &token).await, 200);
    }
    assert_eq!(
        metric(url, "appauth_rsa_verifications_total").await,
        rsa + 1
    );
    assert_eq!(metric(url, "appauth_token_cache_hits_total").await, 19);
    assert_eq!(metric(url, "appauth_token_cache_misses_total").await, 1);
    assert_eq!(metric(url, "appauth_token_cache_entries").await, 1);

    // Junk and unknown apps: refused, uncached, no RSA.
    let stranger = PrivateKey::generate(2048).unwrap();
    for i in 0..200 {
        let junk = if i % 2 == 0 {
            format!("junk.{i}.x")
        } else {
            forge(&stranger, &claims_for(&format!("nobody-{i}")))
        };
        assert_eq!(status(url, &junk).await, 401);
    }
    assert_eq!(metric(url, "appauth_token_cache_entries").await, 1);
    assert_eq!(
        metric(url, "appauth_rsa_verifications_total").await,
        rsa + 1
    );

    // A bad signature costs exactly one verification and is not cached.
    let forged = forge(&stranger, &claims_for("svc"));
    for _ in 0..3 {
        assert_eq!(status(url, &forged).await, 401);
    }
    assert_eq!(
        metric(url, "appauth_rsa_verifications_total").await,
        rsa + 4
    );
    assert_eq!(metric(url, "appauth_token_cache_entries").await, 1);
}

#[tokio::test]
async fn the_cache_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_app(dir.path(), "svc");
    let server = Server::start(dir.path(), &["--token-cache-mb", "0"]);
    let token = forge(&key, &claims_for("svc"));
    let rsa = metric(&server.url, "appauth_rsa_verifications_total").await;
    for _ in 0..5 {
        assert_eq!(status(&server.url, &token).await, 200);
    }
    assert_eq!(
        metric(&server.url, "appauth_rsa_verifications_total").await,
        rsa + 5
    );
    assert_eq!(
        metric(&server.url, "appauth_token_cache_hits_total").await,
        0
    );
}
