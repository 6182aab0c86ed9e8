//! `appauth-token`: prints one signed token, for scripts and curl.
//!
//!     curl -H "x-token: $(appauth-token --app-id my-app --key my-app_private.pem)" ...

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Print one appauth token (RS512) to stdout.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The app the token speaks for.
    #[arg(long, env = "APPAUTH_APP_ID")]
    app_id: String,
    /// The app's private key (PKCS#8 or PKCS#1 PEM).
    #[arg(long, env = "APPAUTH_KEY")]
    key: PathBuf,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = appauth_client::DEFAULT_TTL, env = "APPAUTH_TTL")]
    ttl: u64,
    /// The server's --max-token-lifetime, in seconds: --ttl plus the iat backdating must fit in it.
    #[arg(long, default_value_t = appauth_client::SERVER_MAX_LIFETIME, env = "APPAUTH_MAX_TOKEN_LIFETIME")]
    max_lifetime: u64,
    /// Audience claim, for servers started with --audience.
    #[arg(long, env = "APPAUTH_AUD")]
    aud: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = appauth_client::Signer::builder(args.app_id)
        .key_file(&args.key)
        .ttl(args.ttl)
        .max_lifetime(args.max_lifetime);
    if let Some(aud) = args.aud {
        builder = builder.audience(aud);
    }
    match builder.build().and_then(|s| s.token()) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("appauth-token: error: {e}");
            ExitCode::FAILURE
        }
    }
}
