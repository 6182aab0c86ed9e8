//! The appauth API server as a library: the watched [`KeyStore`], the
//! [`AppAuth`] actix-web middleware any actix-web service can mount, the
//! [`Metrics`], and [`run`], which the thin `appauth-server` binary calls
//! (docs/spec.md §3, §4 and §7).
//!
//! ```
//! use std::sync::Arc;
//! use appauth_core::{Algorithm, SystemClock};
//! use appauth_server::{KeyStore, Metrics};
//!
//! let dir = tempfile::tempdir()?;
//! let store = KeyStore::new(dir.path(), vec![Algorithm::RS512], Arc::new(SystemClock), Arc::new(Metrics::new()));
//! store.full_scan()?;
//! assert!(store.is_ready());
//! assert_eq!(store.app_count(), 0);
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod access;
mod cache;
mod check;
pub mod data;
mod error;
mod files;
mod fingerprint;
mod listen;
mod logging;
mod metrics;
mod middleware;
pub mod path;
pub mod policy;
pub mod proxy;
mod refusal_log;
mod reload;
pub mod revocation;
pub mod routes;
mod server;
mod store;
pub mod tls;
mod watcher;

pub use access::{AccessControl, ConfigFileError, DEFAULT_REVOCATIONS_FILE, content_version};
pub use cache::{DEFAULT_TOKEN_CACHE_BYTES, TokenCache};
pub use check::check_config;
pub use error::AuthError;
pub use logging::init_logging;
pub use metrics::{Metrics, OutcomeLabels};
pub use middleware::{AppAuth, Caller, KeySource, X_TOKEN, extract_token};
pub use server::{Error, ServerConfig, resolve_paths, run};
pub use store::{KeyStore, MAX_KEY_FILE_BYTES, ReloadReport};
pub use watcher::{Reload, WatchConfig, WatcherHandle, watch};
