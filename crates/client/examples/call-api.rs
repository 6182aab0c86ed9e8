//! An internal service calling the central data API through appauth-client:
//! what the demo and the compose file run for each app.
//!
//!   cargo run -p appauth-client --example call-api -- \
//!       --app-id orders-service --key keys/orders-service_private.pem \
//!       --url http://127.0.0.1:8080 --path /whoami --path /users/2

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use appauth_client::{AppAuthClient, Signer, TokenHeader};
use clap::Parser;

/// Call the appauth-protected API as one app.
#[derive(Parser)]
struct Args {
    /// The calling app.
    #[arg(long, env = "APPAUTH_APP_ID")]
    app_id: String,
    /// Its private key.
    #[arg(long, env = "APPAUTH_KEY")]
    key: PathBuf,
    /// Base URL of the API.
    #[arg(long, env = "APPAUTH_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Paths to GET, in order (repeatable).
    #[arg(long = "path", default_value = "/whoami")]
    paths: Vec<String>,
    /// Rounds over the paths; 0 loops forever.
    #[arg(long, default_value_t = 1)]
    rounds: u64,
    /// Pause between rounds, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Send Authorization: Bearer instead of x-token.
    #[arg(long)]
    bearer: bool,
    /// Also trust this CA certificate file (PEM) for https URLs.
    #[arg(long, env = "APPAUTH_CA")]
    ca: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let signer = match Signer::builder(&args.app_id).key_file(&args.key).build() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("call-api: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let header = if args.bearer {
        TokenHeader::Bearer
    } else {
        TokenHeader::XToken
    };
    let mut builder = AppAuthClient::builder(signer).header(header);
    if let Some(ca) = &args.ca {
        builder = builder.ca_file(ca);
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("call-api: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failures = 0;
    let mut round = 0;
    while args.rounds == 0 || round < args.rounds {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
        round += 1;
        for path in &args.paths {
            match client.get(format!("{}{path}", args.url)).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    println!("{} GET {path} -> {status} {body}", args.app_id);
                    if !status.is_success() {
                        failures += 1;
                    }
                }
                Err(e) => {
                    println!("{} GET {path} -> error: {e}", args.app_id);
                    failures += 1;
                }
            }
        }
    }
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
