//! appauth for an actix-web app you already run: the [`AppAuth`] middleware
//! and the [`Caller`] extractor over a watched keys directory, with
//! revocation, route policy, rate limits, a verified-token cache and
//! Prometheus metrics (docs/spec.md §3-§6).
//!
//! ```
//! use actix_web::{App, test, web};
//! use appauth_actix::{AppAuth, Caller};
//! use appauth_core::{Claims, PrivateKey, sign_token, Algorithm};
//!
//! # actix_web::rt::System::new().block_on(async {
//! // The directory an operator fills with <appId>_public.pem files.
//! let keys = tempfile::tempdir()?;
//! let key = PrivateKey::generate(2048)?;
//! std::fs::write(keys.path().join("billing_public.pem"), key.public_key_pem()?)?;
//!
//! // Three lines to protect a scope; changes to the directory apply within a second.
//! let gate = AppAuth::from_dir(keys.path()).build()?;
//! let app = test::init_service(App::new().service(
//!     web::scope("/api").wrap(gate.clone()).route(
//!         "/hello",
//!         web::get().to(|caller: Caller| async move { format!("hello, {}", caller.app_id) }),
//!     ),
//! ))
//! .await;
//!
//! let now = appauth_core::Clock::now(&appauth_core::SystemClock);
//! let claims = Claims { app_id: "billing".into(), iat: now, exp: now + 300, nbf: None,
//!                       jti: None, aud: None, iss: None, extra: Default::default() };
//! let token = sign_token(&key, Algorithm::RS512, &claims)?;
//! let req = test::TestRequest::get().uri("/api/hello").insert_header(("x-token", token));
//! let body = test::call_and_read_body(&app, req.to_request()).await;
//! assert_eq!(body, "hello, billing");
//!
//! let refused = test::call_service(&app, test::TestRequest::get().uri("/api/hello").to_request()).await;
//! assert_eq!(refused.status(), 401);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod access;
mod builder;
mod cache;
mod error;
pub mod files;
mod metrics;
mod middleware;
pub mod path;
pub mod policy;
mod refusal_log;
mod reload;
pub mod revocation;
#[cfg(feature = "redis")]
pub mod shared;
mod store;
mod watcher;

pub use access::{
    AccessControl, ConfigEvent, ConfigFileError, DEFAULT_REVOCATIONS_FILE, Denial, content_version,
};
pub use builder::{BuildError, Builder, DEFAULT_TOKEN_CACHE_MB};
pub use cache::TokenCache;
pub use error::AuthError;
pub use metrics::{KeyLabels, Metrics, ModeLabels, OutcomeLabels};
pub use middleware::{AppAuth, Caller, KeySource, extract_token};
pub use reload::Reloadable;
pub use store::{KeyStore, MAX_KEY_FILE_BYTES, ReloadReport};
pub use watcher::{DEFAULT_RESCAN_INTERVAL, Reload, WatchConfig, WatcherHandle, watch};
