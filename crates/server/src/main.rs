//! `appauth-server`: the command line over the `appauth_server` library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use appauth_core::{Algorithm, VerifyConfig};
use appauth_core::{DEFAULT_LEEWAY, DEFAULT_MAX_LIFETIME};
use appauth_gate::shared::{
    self, DEFAULT_REDIS_PREFIX, DEFAULT_REDIS_TIMEOUT, Fallback, RedisConfig, RedisTls,
};
use appauth_gate::{DEFAULT_RESCAN_INTERVAL, DEFAULT_TOKEN_CACHE_MB, WatchConfig};
use appauth_server::ServerConfig;
use clap::Parser;
use clap::builder::BoolishValueParser;

/// The appauth API server: verifies appauth tokens against a watched keys directory.
#[derive(Parser)]
#[command(version, about, subcommand_negates_reqs = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Directory of <appId>_public.pem files, watched for changes.
    #[arg(long, env = "APPAUTH_KEYS_DIR", required = true)]
    keys_dir: Option<PathBuf>,
    /// Address to listen on (port 0: any free port, logged at start-up).
    #[arg(long, env = "APPAUTH_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    /// Required token audience (aud); unset: aud is not checked.
    #[arg(long, env = "APPAUTH_AUDIENCE")]
    audience: Option<String>,
    /// Clock skew tolerated on exp, nbf and iat, in seconds.
    #[arg(long, env = "APPAUTH_LEEWAY", default_value_t = DEFAULT_LEEWAY)]
    leeway: u64,
    /// Longest accepted token lifetime (exp - iat), in seconds.
    #[arg(long, env = "APPAUTH_MAX_TOKEN_LIFETIME", default_value_t = DEFAULT_MAX_LIFETIME)]
    max_token_lifetime: u64,
    /// Accepted algorithms, comma-separated (RSA only: RS256..RS512, PS256..PS512).
    #[arg(
        long,
        env = "APPAUTH_ALGORITHMS",
        default_value = "RS512",
        value_delimiter = ','
    )]
    algorithms: Vec<Algorithm>,
    /// Seconds between full rescans of the keys directory.
    #[arg(long, env = "APPAUTH_RESCAN_INTERVAL", default_value_t = DEFAULT_RESCAN_INTERVAL.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    rescan_interval: u64,
    /// TOML route policy and rate limits, hot-reloaded (default: none, every app may call every route).
    #[arg(long, env = "APPAUTH_POLICY")]
    policy: Option<PathBuf>,
    /// Revocation list, hot-reloaded (default: revoked.txt in the keys directory).
    #[arg(long, env = "APPAUTH_REVOCATIONS")]
    revocations: Option<PathBuf>,
    /// Validate the keys directory, policy and revocations, print what is wrong, and exit.
    #[arg(long)]
    check_config: bool,
    /// Memory for the verified-token cache, in MiB (0 turns it off).
    #[arg(long, env = "APPAUTH_TOKEN_CACHE_MB", default_value_t = DEFAULT_TOKEN_CACHE_MB)]
    token_cache_mb: u64,
    /// TLS certificate chain (PEM); with --tls-key, serve HTTPS. Hot-reloaded.
    #[arg(long, env = "APPAUTH_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM). Hot-reloaded.
    #[arg(long, env = "APPAUTH_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Gateway mode: forward every other path, after the gate, to this URL with x-app-id set.
    #[arg(long, env = "APPAUTH_UPSTREAM")]
    upstream: Option<String>,
    /// Seconds to wait for the upstream's response before answering 504.
    #[arg(long, env = "APPAUTH_UPSTREAM_TIMEOUT", default_value_t = 30)]
    upstream_timeout: u64,
    /// Milliseconds a client may take to send a request head (slow-loris bound; 408 after).
    #[arg(long, env = "APPAUTH_REQUEST_HEAD_TIMEOUT_MS", default_value_t = 5000)]
    request_head_timeout_ms: u64,
    /// Milliseconds an idle keep-alive connection stays open between requests.
    #[arg(long, env = "APPAUTH_KEEP_ALIVE_MS", default_value_t = 15000)]
    keep_alive_ms: u64,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "APPAUTH_WORKERS")]
    workers: Option<usize>,
    /// Seconds to keep serving after SIGTERM (with /readyz 503 and Connection: close) before accepting stops.
    #[arg(long, env = "APPAUTH_DRAIN_DELAY", default_value_t = appauth_server::drain::DEFAULT_DRAIN_DELAY.as_secs())]
    drain_delay: u64,
    /// Seconds requests in flight may take once accepting stops (gateway mode: at least --upstream-timeout).
    #[arg(long, env = "APPAUTH_SHUTDOWN_TIMEOUT", default_value_t = appauth_server::drain::DEFAULT_SHUTDOWN_TIMEOUT.as_secs())]
    shutdown_timeout: u64,
    /// Log JSON lines instead of text (the variable takes 1/0, yes/no, true/false, on/off).
    #[arg(long, env = "APPAUTH_LOG_JSON", value_parser = BoolishValueParser::new())]
    log_json: bool,
    /// Log every accepted request: app, kid, method, path, status, time (off by default).
    #[arg(long, env = "APPAUTH_ACCESS_LOG", value_parser = BoolishValueParser::new())]
    access_log: bool,
    /// Publish each app's public keys as a JWK Set at /.well-known/appauth/{appId}/jwks.json (open).
    #[arg(long, env = "APPAUTH_SERVE_JWKS", value_parser = BoolishValueParser::new())]
    serve_jwks: bool,
    /// Export a trace span of every gate decision over OTLP/HTTP to this collector
    /// (a base URL, e.g. http://otel-collector:4318; /v1/traces is appended). Off by
    /// default; the OTEL_EXPORTER_OTLP_* and other standard OTEL_* variables are honoured.
    #[arg(long, env = "APPAUTH_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    #[command(flatten)]
    redis: RedisArgs,
    /// Without Redis, rate limits: share (this replica enforces the whole
    /// rate), share:<fraction> (e.g. share:0.34 for 3 replicas), open or closed.
    #[arg(long, env = "APPAUTH_REDIS_FALLBACK", default_value = "share", requires = "redis_url",
          value_parser = |s: &str| Fallback::parse(s))]
    redis_fallback: Fallback,
    /// Milliseconds one Redis command may take before the replica falls back.
    #[arg(long, env = "APPAUTH_REDIS_TIMEOUT_MS",
          default_value_t = DEFAULT_REDIS_TIMEOUT.as_millis() as u64)]
    redis_timeout_ms: u64,
    /// Milliseconds between two reads of every revocation in Redis, besides
    /// the message that announces each change.
    #[arg(long, env = "APPAUTH_REDIS_RESYNC_MS",
          default_value_t = shared::DEFAULT_REVOCATION_RESYNC.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(10..))]
    redis_resync_ms: u64,
    /// Accept tokens before the first complete read of Redis's revocations,
    /// with the revocation file's rules only (an availability choice, logged
    /// at WARN). Default: until that read, tokens get 503
    /// revocations_loading and /readyz is 503.
    #[arg(long, env = "APPAUTH_REDIS_SERVE_BEFORE_SYNC", requires = "redis_url",
          value_parser = BoolishValueParser::new())]
    redis_serve_before_sync: bool,
}

#[derive(clap::Args)]
struct RedisArgs {
    /// Share rate limits and revocations with the other replicas through
    /// this Redis (redis://host:port/db, rediss:// for TLS, or
    /// redis+sentinel://host:26379,.../SERVICE). Unset: everything stays in process.
    #[arg(long, env = "APPAUTH_REDIS_URL")]
    redis_url: Option<String>,
    /// Prefix of appauth's keys in Redis, so deployments can share one.
    #[arg(long, env = "APPAUTH_REDIS_PREFIX", default_value = DEFAULT_REDIS_PREFIX)]
    redis_prefix: String,
    /// PEM CA certificate(s) to trust for a rediss:// URL instead of the
    /// system's roots.
    #[arg(long, env = "APPAUTH_REDIS_CA")]
    redis_ca: Option<PathBuf>,
    /// PEM certificate to present to a rediss:// Redis that asks clients for
    /// one (tls-auth-clients yes).
    #[arg(long, env = "APPAUTH_REDIS_CLIENT_CERT", requires = "redis_client_key")]
    redis_client_cert: Option<PathBuf>,
    /// The PEM private key of --redis-client-cert.
    #[arg(long, env = "APPAUTH_REDIS_CLIENT_KEY", requires = "redis_client_cert")]
    redis_client_key: Option<PathBuf>,
}

impl RedisArgs {
    /// How to reach Redis, with the TLS files read now (a file that cannot
    /// be read is an error naming it); `None` without --redis-url.
    fn config(self) -> Result<Option<RedisConfig>, String> {
        let Some(url) = self.redis_url else {
            return Ok(None);
        };
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
        };
        let ca = match &self.redis_ca {
            Some(p) => Some(read("--redis-ca", p)?),
            None => None,
        };
        let client = match (&self.redis_client_cert, &self.redis_client_key) {
            (Some(c), Some(k)) => Some((
                read("--redis-client-cert", c)?,
                read("--redis-client-key", k)?,
            )),
            _ => None,
        };
        Ok(Some(RedisConfig {
            prefix: self.redis_prefix,
            tls: RedisTls { ca, client },
            ..RedisConfig::new(url)
        }))
    }
}

#[derive(clap::Subcommand)]
enum Command {
    /// Revoke through Redis: every replica started with the same --redis-url
    /// applies the rule within a second.
    Revoke {
        /// One rule in the revocation file's format: 'jti <id>',
        /// 'kid <thumbprint>', 'app <appId> before <RFC 3339 time>', 'app <appId>'.
        #[arg(required_unless_present_any = ["list", "file"])]
        rule: Option<String>,
        /// Many rules at once, one per line in the revocation file's format
        /// (`-` reads stdin): checked first, stored in one round trip.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["rule", "list"])]
        file: Option<PathBuf>,
        /// Lift the rule instead: every replica stops applying it within a
        /// second (a rule in a replica's revocation file still applies).
        #[arg(long, conflicts_with = "list")]
        remove: bool,
        /// Print the rules stored in Redis instead.
        #[arg(long, conflicts_with = "rule")]
        list: bool,
        #[command(flatten)]
        redis: RedisArgs,
    },
}

fn revoke(
    rule: Option<String>,
    file: Option<PathBuf>,
    remove: bool,
    list: bool,
    redis: RedisArgs,
) -> ExitCode {
    let config = match redis.config() {
        Ok(Some(config)) => config,
        Ok(None) => {
            eprintln!(
                "appauth-server revoke: error: --redis-url (or APPAUTH_REDIS_URL) is required"
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("appauth-server revoke: error: {e}");
            return ExitCode::from(2);
        }
    };
    let told = |listening: usize| {
        format!(
            "{listening} subscriber(s) received it (one per running replica); a replica not \
             subscribed now applies it when it next reads Redis (within a second once \
             connected)"
        )
    };
    if let Some(path) = file {
        let text = if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map(|_| text)
        } else {
            std::fs::read_to_string(&path)
        };
        let text = match text {
            Ok(text) => text,
            Err(e) => {
                eprintln!("appauth-server revoke: error: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        return match shared::change_many(&config, &text, remove) {
            Ok(s) => {
                let verb = if remove { "lifted" } else { "stored" };
                let unchanged = if remove {
                    "were not in Redis"
                } else {
                    "already were"
                };
                println!(
                    "{verb} {} rule(s) from {} in one round trip ({} {unchanged}); {}",
                    s.changed,
                    path.display(),
                    s.rules - s.changed,
                    told(s.listening)
                );
                ExitCode::SUCCESS
            }
            Err(e @ shared::SharedError::BadLine(_)) => {
                eprintln!(
                    "appauth-server revoke: error: {}: {e} (nothing was stored)",
                    path.display()
                );
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("appauth-server revoke: error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let result = match (rule, list) {
        (_, true) => shared::list_revocations(&config).map(|lines| {
            for line in &lines {
                println!("{line}");
            }
            eprintln!("{} rule(s) in Redis", lines.len());
        }),
        (Some(rule), false) if remove => shared::lift_revocation(&config, &rule).map(|s| {
            if s.changed {
                println!("lifted '{}'; {}", s.rule, told(s.listening));
            } else {
                eprintln!(
                    "warning: '{}' was not among the rules in Redis (revoke --list shows them); \
                     replicas still holding it were told to drop it: {}",
                    s.rule,
                    told(s.listening)
                );
            }
        }),
        (Some(rule), false) => shared::store_revocation(&config, &rule).map(|s| {
            let already = if s.changed { "" } else { " (it already was)" };
            println!("stored '{}'{already}; {}", s.rule, told(s.listening));
        }),
        (None, false) => unreachable!("clap requires a rule or --list"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appauth-server revoke: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Revoke {
        rule,
        file,
        remove,
        list,
        redis,
    }) = args.command
    {
        return revoke(rule, file, remove, list, redis);
    }
    let Some(keys_dir) = args.keys_dir else {
        eprintln!("appauth-server: error: --keys-dir (or APPAUTH_KEYS_DIR) is required");
        return ExitCode::from(2);
    };
    let redis = match args.redis.config() {
        Ok(redis) => redis.map(|r| RedisConfig {
            fallback: args.redis_fallback,
            timeout: Duration::from_millis(args.redis_timeout_ms),
            revocation_resync: Duration::from_millis(args.redis_resync_ms),
            serve_before_sync: args.redis_serve_before_sync,
            ..r
        }),
        Err(e) => {
            eprintln!("appauth-server: error: {e}");
            return ExitCode::from(2);
        }
    };
    let traces =
        match appauth_server::trace::Export::from_settings(args.otlp_endpoint.as_deref(), |name| {
            std::env::var(name).ok()
        }) {
            Ok(traces) => traces,
            Err(e) => {
                eprintln!("appauth-server: error: {e}");
                return ExitCode::from(2);
            }
        };
    if !args.check_config {
        appauth_server::init_logging(args.log_json);
    }
    let config = ServerConfig {
        keys_dir,
        bind: args.bind,
        verify: VerifyConfig {
            algorithms: args.algorithms,
            leeway: args.leeway,
            max_lifetime: args.max_token_lifetime,
            audience: args.audience,
        },
        watch: WatchConfig {
            rescan_interval: Duration::from_secs(args.rescan_interval),
            ..WatchConfig::default()
        },
        token_cache_bytes: args.token_cache_mb.saturating_mul(1024 * 1024),
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        upstream: args.upstream,
        upstream_timeout: Duration::from_secs(args.upstream_timeout),
        policy: args.policy,
        revocations: args.revocations,
        request_head_timeout: Duration::from_millis(args.request_head_timeout_ms),
        keep_alive: Duration::from_millis(args.keep_alive_ms),
        workers: args.workers,
        drain_delay: Duration::from_secs(args.drain_delay),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        log_json: args.log_json,
        access_log: args.access_log,
        serve_jwks: args.serve_jwks,
        redis,
        traces,
    };
    if args.check_config {
        return match appauth_server::check_config(&config) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(problems) => {
                for p in problems {
                    eprintln!("appauth-server: {p}");
                }
                ExitCode::FAILURE
            }
        };
    }
    match actix_web::rt::System::new().block_on(appauth_server::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appauth-server: error: {e}");
            ExitCode::FAILURE
        }
    }
}
