//! The tower adapter in the apps that embed it: the axum example in process
//! (the conformance table) and as a real process, and the gRPC example as a
//! real process called by a gRPC client.

#[path = "../../examples/axum-api.rs"]
#[allow(dead_code, reason = "only `app` is used here")]
mod axum_api;
mod conformance;
mod processes;
mod tracer;
