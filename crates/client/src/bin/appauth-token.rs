//! `appauth-token`: prints one signed token, for scripts and curl, or looks
//! inside one.
//!
//!     curl -H "x-token: $(appauth-token --app-id my-app --key my-app_private.pem)" ...
//!     appauth-token inspect "$TOKEN" --keys-dir keys

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use appauth_client::inspect::{self, KeysFrom};
use appauth_core::{DEFAULT_LEEWAY, DEFAULT_MAX_LIFETIME, SystemClock, Verifier, VerifyConfig};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

/// Print one appauth token (RS512) to stdout, or inspect one.
#[derive(Parser)]
#[command(
    version,
    about,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The app the token speaks for.
    #[arg(long, env = "APPAUTH_APP_ID", required = true)]
    app_id: Option<String>,
    /// The app's private key (PKCS#8 or PKCS#1 PEM).
    #[arg(long, env = "APPAUTH_KEY", required = true)]
    key: Option<PathBuf>,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = appauth_client::DEFAULT_TTL, env = "APPAUTH_TTL")]
    ttl: u64,
    /// The server's --max-token-lifetime, in seconds: --ttl plus the iat backdating must fit in it.
    #[arg(long, default_value_t = appauth_client::SERVER_MAX_LIFETIME, env = "APPAUTH_MAX_TOKEN_LIFETIME")]
    max_lifetime: u64,
    /// Audience claim, for servers started with --audience.
    #[arg(long, env = "APPAUTH_AUD")]
    aud: Option<String>,
    /// Also set iss and sub to the appId (for JWT gateways that verify per issuer).
    #[arg(long)]
    as_issuer: bool,
    /// An extra claim, NAME=VALUE; numbers, true, false and null stay JSON values (repeatable).
    #[arg(long = "claim", value_name = "NAME=VALUE", value_parser = claim)]
    claims: Vec<(String, Value)>,
    /// Print {"token": ...} on success and {"error": ...} on failure.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Decode a token, say when it was issued and expires, and with --key or
    /// --keys-dir whether it verifies (exit 0 only then; 1 refused, 2 not a
    /// token at all, 3 not checked).
    Inspect {
        /// The token; `-` or nothing reads it from stdin.
        token: Option<String>,
        /// A public key bundle or a private key to verify with.
        #[arg(long, conflicts_with = "keys_dir")]
        key: Option<PathBuf>,
        /// A keys directory of <appId>_public.pem files, as the server reads it.
        #[arg(long)]
        keys_dir: Option<PathBuf>,
        /// Required audience, as the server's --audience.
        #[arg(long)]
        audience: Option<String>,
        /// Clock skew tolerated, as the server's --leeway.
        #[arg(long, default_value_t = DEFAULT_LEEWAY)]
        leeway: u64,
        /// Longest lifetime accepted, as the server's --max-token-lifetime.
        #[arg(long, default_value_t = DEFAULT_MAX_LIFETIME)]
        max_token_lifetime: u64,
        /// One JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
}

fn claim(s: &str) -> Result<(String, Value), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    if name.is_empty() {
        return Err(format!("{s:?} has no claim name"));
    }
    let value = match serde_json::from_str::<Value>(value) {
        Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => v,
        _ => Value::String(value.to_owned()),
    };
    Ok((name.to_owned(), value))
}

/// Prints an error the way the caller asked for, and fails.
fn fail(json: bool, kind: &str, detail: &str, code: u8) -> ExitCode {
    if json {
        println!("{}", json!({ "error": kind, "detail": detail }));
    } else {
        eprintln!("appauth-token: error: {detail}");
    }
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let wants_json = std::env::args().any(|a| a == "--json");
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if wants_json && e.use_stderr() => {
            return fail(true, "usage", e.to_string().trim(), 2);
        }
        Err(e) => e.exit(),
    };
    match args.command {
        Some(Command::Inspect {
            token,
            key,
            keys_dir,
            audience,
            leeway,
            max_token_lifetime,
            json,
        }) => {
            let token = match token.filter(|t| t != "-") {
                Some(t) => t,
                None => {
                    let mut t = String::new();
                    // A token is at most 8 KiB; more is not one.
                    if let Err(e) = std::io::stdin().take(64 * 1024).read_to_string(&mut t) {
                        return fail(
                            json,
                            "stdin",
                            &format!("cannot read the token from stdin: {e}"),
                            2,
                        );
                    }
                    t
                }
            };
            let keys = match (key, keys_dir) {
                (Some(k), _) => KeysFrom::File(k),
                (_, Some(d)) => KeysFrom::Dir(d),
                _ => KeysFrom::Nowhere,
            };
            let verifier = Verifier::with_clock(
                VerifyConfig {
                    audience,
                    leeway,
                    max_lifetime: max_token_lifetime,
                    ..VerifyConfig::default()
                },
                Arc::new(SystemClock),
            );
            match inspect::inspect(&token, &keys, &verifier) {
                Ok(found) => {
                    if json {
                        println!("{}", found.to_json());
                    } else {
                        print!("{}", found.to_text());
                    }
                    ExitCode::from(found.exit_code())
                }
                Err(e) => fail(json, "keys", &e.to_string(), 2),
            }
        }
        None => {
            // Both are required by clap when there is no subcommand.
            let (Some(app_id), Some(key)) = (args.app_id, args.key) else {
                return fail(args.json, "usage", "--app-id and --key are required", 2);
            };
            let mut builder = appauth_client::Signer::builder(app_id)
                .key_file(&key)
                .ttl(args.ttl)
                .max_lifetime(args.max_lifetime)
                .app_as_issuer(args.as_issuer);
            if let Some(aud) = args.aud {
                builder = builder.audience(aud);
            }
            for (name, value) in args.claims {
                builder = builder.claim(name, value);
            }
            match builder.build().and_then(|s| s.token()) {
                Ok(token) if args.json => {
                    println!("{}", json!({ "token": &*token }));
                    ExitCode::SUCCESS
                }
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(args.json, "sign", &format!("{e:#}"), 1),
            }
        }
    }
}
