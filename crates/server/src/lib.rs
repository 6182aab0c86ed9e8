//! `appauth-server`, the product: the command line's configuration, the
//! operational routes and the demo data API, gateway mode, TLS with hot
//! reload, connection limits and `--check-config`, all built on the engine
//! [`appauth_gate`] through its actix-web adapter [`appauth_actix`]
//! (docs/spec.md §7).
//!
//! ```no_run
//! # async fn start(config: appauth_server::ServerConfig) -> Result<(), appauth_server::Error> {
//! appauth_server::run(config).await
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod check;
pub mod data;
pub mod drain;
mod listen;
mod logging;
pub mod proxy;
pub mod routes;
mod server;
pub mod tls;
pub mod trace;

pub use check::check_config;
pub use logging::init_logging;
pub use server::{Error, ServerConfig, State, build_state, configure, gate_builder, run};
