//! `appauth-agent`: flags, then the library's proxy or token file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use appauth_agent::{KeySettings, Keys, Listen, Metrics, admin, proxy, token_file, upstream};
use appauth_client::TokenHeader;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// A local helper that signs for an application: a reverse proxy on
/// loopback that adds the app's token to every request, or a file that
/// always holds a valid token.
#[derive(Parser)]
#[command(name = "appauth-agent", version)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Forward http://LISTEN/any/path to UPSTREAM/any/path with a token added.
    Proxy {
        #[command(flatten)]
        key: KeyArgs,
        /// Where the application calls: 127.0.0.1:PORT, [::1]:PORT or unix:/path.sock (mode 0600).
        #[arg(long, env = "APPAUTH_AGENT_LISTEN")]
        listen: Listen,
        /// Listen on a non-loopback address too (anyone who reaches it calls as this app).
        #[arg(long)]
        allow_remote: bool,
        /// The API's base URL, http:// or https://.
        #[arg(long, env = "APPAUTH_AGENT_UPSTREAM")]
        upstream: String,
        /// A CA bundle (PEM) the upstream's certificate may chain to, besides the system's roots.
        #[arg(long, env = "APPAUTH_AGENT_CA")]
        ca: Option<PathBuf>,
        /// The header the token goes in.
        #[arg(long, value_enum, default_value_t = Header::XToken)]
        header: Header,
        /// Seconds to wait for the upstream's response head, and between pieces of its body.
        #[arg(long, default_value_t = proxy::DEFAULT_UPSTREAM_TIMEOUT.as_secs())]
        upstream_timeout: u64,
        /// Seconds to keep forwarding after SIGTERM (with /readyz 503 and Connection: close) before accepting stops.
        #[arg(long, env = "APPAUTH_AGENT_DRAIN_DELAY", default_value_t = appauth_agent::listen::DEFAULT_DRAIN_DELAY.as_secs())]
        drain_delay: u64,
        /// Seconds requests in flight may take once accepting stops (at least --upstream-timeout).
        #[arg(long, env = "APPAUTH_AGENT_SHUTDOWN_TIMEOUT", default_value_t = appauth_agent::listen::DEFAULT_SHUTDOWN_TIMEOUT.as_secs())]
        shutdown_timeout: u64,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Keep a file holding a valid token (mode 0600, replaced by rename).
    TokenFile {
        #[command(flatten)]
        key: KeyArgs,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// Write one token and exit.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Args)]
struct KeyArgs {
    /// The app the tokens speak for.
    #[arg(long, env = "APPAUTH_APP_ID")]
    app_id: String,
    /// The app's private key (PKCS#8 or PKCS#1 PEM), followed through rotations.
    #[arg(long, env = "APPAUTH_KEY")]
    key: PathBuf,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = appauth_client::DEFAULT_TTL, env = "APPAUTH_TTL")]
    ttl: u64,
    /// The server's --max-token-lifetime, in seconds: --ttl plus the iat backdating must fit in it.
    #[arg(long, default_value_t = appauth_client::SERVER_MAX_LIFETIME, env = "APPAUTH_MAX_TOKEN_LIFETIME")]
    max_lifetime: u64,
    /// The aud claim, for servers started with --audience.
    #[arg(long, env = "APPAUTH_AUD")]
    audience: Option<String>,
    /// Start even while the key file is missing or unusable (answering 503,
    /// not ready) and use it once it is there, instead of exiting.
    #[arg(long)]
    wait_for_key: bool,
}

#[derive(Args)]
struct RunArgs {
    /// Serve /healthz, /readyz and /metrics here (any address: it signs nothing).
    #[arg(long, env = "APPAUTH_AGENT_ADMIN_LISTEN")]
    admin_listen: Option<Listen>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Header {
    /// x-token: <jwt>, as the Node recipe sends it.
    XToken,
    /// Authorization: Bearer <jwt>.
    Bearer,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let threads = match &cli.mode {
        Mode::Proxy { run, .. } | Mode::TokenFile { run, .. } => run.threads,
    };
    // One thread: tokio's single-threaded scheduler, which skips the
    // work-stealing machinery a lone worker has no use for.
    let mut runtime = match threads {
        Some(n) if n <= 1 => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = runtime.enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli.mode)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appauth-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mode: Mode) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    match mode {
        Mode::Proxy {
            key,
            listen,
            allow_remote,
            upstream,
            ca,
            header,
            upstream_timeout,
            drain_delay,
            shutdown_timeout,
            run,
        } => {
            let drain = Arc::new(appauth_core::drain::Drain::default());
            listen
                .check_local(allow_remote)
                .map_err(anyhow::Error::msg)?;
            let target = upstream::Target::parse(&upstream)?;
            let client = upstream::client(ca.as_deref())?;
            let keys = load(key, &metrics)?;
            let bound = listen
                .bind()
                .await
                .with_context(|| format!("cannot listen on {listen:?}"))?;
            serve_admin(run.admin_listen, &keys, &metrics, &drain).await?;
            tracing::info!(
                app_id = %keys_app(&keys),
                upstream = %target.display(),
                "proxy listening on {}",
                bound.url()
            );
            let settings = proxy::Settings {
                target,
                header: match header {
                    Header::XToken => TokenHeader::XToken,
                    Header::Bearer => TokenHeader::Bearer,
                },
                timeout: std::time::Duration::from_secs(upstream_timeout.max(1)),
            };
            // A request may rightly take the upstream timeout.
            let grace = std::time::Duration::from_secs(shutdown_timeout.max(upstream_timeout));
            let proxy = proxy::Proxy::new(keys.clone(), settings, client, metrics, drain.clone());
            tokio::spawn(keys.watch());
            let all_done = bound
                .serve(
                    move |req| proxy.clone().handle(req),
                    appauth_agent::listen::drain_on_signals(
                        drain.clone(),
                        std::time::Duration::from_secs(drain_delay),
                    ),
                    grace,
                )
                .await;
            let (finished, cut) = drain.counts();
            let cut = cut + drain.in_flight() as u64;
            if !all_done {
                tracing::warn!(
                    grace_s = grace.as_secs(),
                    "the shutdown timeout ended with requests in flight"
                );
            }
            tracing::info!(
                finished,
                cut,
                "stopped: requests finished and cut since the drain began"
            );
            Ok(())
        }
        Mode::TokenFile {
            key,
            out,
            once,
            run,
        } => {
            token_file::check(&out)?;
            let keys = load(key, &metrics)?;
            if once {
                token_file::write_once(&keys, &out)?;
                return Ok(());
            }
            let drain = Arc::new(appauth_core::drain::Drain::default());
            serve_admin(run.admin_listen, &keys, &metrics, &drain).await?;
            tracing::info!(app_id = %keys_app(&keys), path = %out.display(), "keeping the token file");
            tokio::select! {
                () = token_file::keep(keys, out) => {}
                () = appauth_agent::listen::stop_signal() => {}
            }
            Ok(())
        }
    }
}

fn load(key: KeyArgs, metrics: &Metrics) -> anyhow::Result<Arc<Keys>> {
    let settings = KeySettings {
        app_id: key.app_id,
        key: key.key,
        ttl: key.ttl,
        audience: key.audience,
        max_lifetime: key.max_lifetime,
    };
    Ok(Keys::load(settings, key.wait_for_key, metrics.clone())?)
}

fn keys_app(keys: &Keys) -> String {
    keys.signer()
        .map_or_else(|| "(no key yet)".into(), |s| s.app_id().to_string())
}

async fn serve_admin(
    listen: Option<Listen>,
    keys: &Arc<Keys>,
    metrics: &Metrics,
    drain: &Arc<appauth_core::drain::Drain>,
) -> anyhow::Result<()> {
    let Some(listen) = listen else { return Ok(()) };
    let bound = listen
        .bind()
        .await
        .with_context(|| format!("cannot listen on --admin-listen {listen:?}"))?;
    tracing::info!("admin listening on {}", bound.url());
    let admin = Arc::new(admin::Admin {
        keys: keys.clone(),
        metrics: metrics.clone(),
        drain: drain.clone(),
    });
    tokio::spawn(bound.serve(
        move |req| {
            let answer = admin.handle(&req);
            async move { answer }
        },
        std::future::pending(),
        std::time::Duration::ZERO,
    ));
    Ok(())
}

/// Logs to stderr; `RUST_LOG` overrides the `info` default. The HTTP and
/// TLS crates are held at `info` whatever `RUST_LOG` says: at `trace` they
/// print request headers, and a token must never reach a log.
fn init_logging() {
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let filter = format!("{base},hyper=info,hyper_util=info,h2=info,rustls=info,hyper_rustls=info");
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
