//! The tower adapter in the apps that embed it: the axum example in process
//! (the conformance table) and as a real process, and the gRPC example as a
//! real process called by a gRPC client.

#[path = "../../examples/axum-api.rs"]
#[allow(dead_code, reason = "only `app` is used here")]
mod axum_api;
mod conformance;
mod processes;
mod tracer;

/// A keys directory with one new 2048-bit key for `orders`, and the key.
fn orders_keys() -> (tempfile::TempDir, appauth_core::PrivateKey) {
    let dir = tempfile::tempdir().unwrap();
    let key = appauth_core::PrivateKey::generate(2048).unwrap();
    std::fs::write(
        dir.path().join("orders_public.pem"),
        key.public_key_pem().unwrap(),
    )
    .unwrap();
    (dir, key)
}
