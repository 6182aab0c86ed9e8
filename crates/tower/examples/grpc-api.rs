//! A tonic gRPC service with appauth in front: every call needs a token in
//! the `x-token` or `authorization: Bearer` metadata; a refused call gets
//! grpc-status 16 UNAUTHENTICATED (7, 8 for policy and rate refusals).
//!
//!     cargo run -p appauth-tower --example grpc-api -- --keys-dir keys --bind 127.0.0.1:50051

use appauth_tower::AppAuthLayer;
use clap::Parser;

/// The example's flags.
#[derive(Parser)]
struct Args {
    /// The directory of `<appId>_public.pem` files.
    #[arg(long)]
    keys_dir: std::path::PathBuf,
    /// Where to listen (plain HTTP/2).
    #[arg(long, default_value = "127.0.0.1:50051")]
    bind: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    // The service: the standard gRPC health service, standing for any
    // tonic service.
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;

    // The whole of adding appauth: a directory, build, `.layer(auth)`.
    let auth = AppAuthLayer::from_dir(&args.keys_dir).build()?;
    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    tracing::info!("grpc-api listening on http://{}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .layer(auth)
        .add_service(health)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await?;
    Ok(())
}
