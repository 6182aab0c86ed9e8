//! The appauth engine: everything that decides whether a request may pass,
//! with no web framework, no `http` crate and no `.await` on the request
//! path (docs/spec.md §3-§6, §11).
//!
//! A [`Gate`] is built once over a watched keys directory (with a route
//! policy, revocations, a verified-token cache, metrics and, optionally,
//! Redis shared by replicas). Each request head goes through
//! [`Gate::authenticate`], which answers [`Admission`] or a [`Refusal`] that
//! knows its status, headers and body. Framework adapters are thin
//! translations of that one call; depend on the one for your framework:
//!
//! - `appauth-actix` for actix-web 4;
//! - `appauth-tower` for axum 0.8, tonic 0.14, hyper 1 and any tower
//!   service on `http` 1.x.
//!
//! Depend on `appauth-gate` itself to write an adapter for another framework
//! (implement [`Headers`] for its header map, call [`Gate::authenticate`],
//! copy the [`Refusal`] into its response type; or call [`Gate::decide`] and
//! keep its [`TraceParent`] with the request, for traces).
//!
//! ```
//! use appauth_core::{Algorithm, Claims, PrivateKey, sign_token};
//! use appauth_gate::{Admission, Gate, RequestHead};
//!
//! let keys = tempfile::tempdir()?;
//! let key = PrivateKey::generate(2048)?;
//! std::fs::write(keys.path().join("billing_public.pem"), key.public_key_pem()?)?;
//! let gate: Gate = Gate::from_dir(keys.path()).exempt([("GET", "/healthz")]).build()?;
//!
//! let now = appauth_core::Clock::now(&appauth_core::SystemClock);
//! let claims = Claims { app_id: "billing".into(), iat: now, exp: now + 300, nbf: None,
//!                       jti: None, aud: None, iss: None, extra: Default::default() };
//! let token = sign_token(&key, Algorithm::RS512, &claims)?;
//! let headers = [("x-token", token.as_str())];
//! let head = RequestHead { method: "GET", path: "/orders", headers: &headers };
//! match gate.authenticate(&head) {
//!     Ok(Admission::Caller(caller)) => assert_eq!(caller.app_id.as_str(), "billing"),
//!     other => panic!("{other:?}"),
//! }
//! let refusal = gate.authenticate(&RequestHead { method: "GET", path: "/orders", headers: &[] });
//! assert_eq!(refusal.unwrap_err().body(), r#"{"error":"invalid_request","reason":"missing_token"}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod access;
mod builder;
mod cache;
pub mod files;
mod gate;
mod in_flight;
mod metrics;
pub mod path;
pub mod policy;
mod refusal;
mod refusal_log;
mod reload;
mod request;
pub mod revocation;
pub mod route_pattern;
#[cfg(feature = "redis")]
pub mod shared;
mod store;
mod trace;
mod watcher;

/// The maps a request reads (keys by appId, revocations, metrics handles,
/// policy), hashed by foldhash rather than std's SipHash: about 470
/// instructions of a cold request went to SipHash (docs/performance.md).
/// Every key is written by the operator or belongs to a verified caller, so
/// no request can grow one of them with chosen collisions; the seed is
/// random per process all the same.
type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A set a request reads; see [`FastMap`].
type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

pub use access::{
    AccessControl, ConfigEvent, ConfigFileError, DEFAULT_REVOCATIONS_FILE, Denial, content_version,
};
pub use builder::{BuildError, Builder, Checked, DEFAULT_TOKEN_CACHE_MB};
pub use cache::TokenCache;
pub use gate::{Admission, Gate, KeySource};
pub use in_flight::{DEFAULT_CONCURRENCY, Held};
pub use metrics::Metrics;
pub use refusal::{Code, LogLevel, Refusal};
pub use reload::Reloadable;
pub use request::{AUTHORIZATION, Field, Headers, RequestHead, extract_token};
pub use store::{KeyStore, ReloadReport};
pub use trace::{Decision, DecisionRecord, DecisionTracer, TRACEPARENT, TraceParent};
pub use watcher::{DEFAULT_RESCAN_INTERVAL, Reload, WatchConfig, WatcherHandle, watch};
