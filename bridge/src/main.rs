//! `bridge`: serves a desktop stdio MCP server through a relay.
//!
//! `bridge run -- <cmd> [args…]` spawns the server, connects to the relay given with
//! `--relay` (or starts one in-process on loopback), and prints the public endpoints.

mod child;
mod consent;
mod core;
mod driver;
mod guard;
mod init;
mod link;
mod resume;
mod session;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use protocol::ClientAuth;
use tokio::sync::mpsc;
use url::Url;

use crate::child::ChildSpec;
use crate::core::{Core, CoreConfig, Root};
use crate::driver::Outcome;
use crate::link::LinkConfig;

#[derive(Parser)]
#[command(
    name = "bridge",
    version,
    about = "Serve a desktop stdio MCP server to hosted AI clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a stdio MCP server and publish it: `bridge run [options] -- <cmd> [args…]`.
    Run(Box<RunArgs>),
    /// Approve (or deny) an OAuth client waiting on a consent page, by the code the page
    /// shows. Needs the tunnel's bridge token (BRIDGE_TOKEN) and relay (BRIDGE_RELAY).
    Approve(ApproveArgs),
    /// Internal: the orphan guard process (see guard.rs).
    #[command(name = "__guard", hide = true)]
    Guard,
}

#[derive(clap::Args)]
struct ApproveArgs {
    /// The code shown on the consent page (e.g. K7QX-9M2P).
    code: String,
    /// Relay base URL.
    #[arg(long, env = "BRIDGE_RELAY")]
    relay: Url,
    /// Bridge token owning the tunnel. Prefer the BRIDGE_TOKEN environment variable.
    #[arg(long, env = "BRIDGE_TOKEN", hide_env_values = true)]
    token: String,
    /// Deny the request instead.
    #[arg(long)]
    deny: bool,
    /// PEM file with the CA certificates to trust for an https relay.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AuthMode {
    /// OAuth 2.1 with the relay as authorization server (what ChatGPT and Claude.ai
    /// connectors use); each new client needs the owner's approval.
    Oauth,
    /// Clients send `Authorization: Bearer <token>` (a token generated, or given with
    /// --client-token).
    Bearer,
    /// No client authentication (refused by public relays unless they allow it).
    None,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProtocolMode {
    /// Every revision: 2026-07-28 requests statelessly, 2025-03-26…2025-11-25 with
    /// sessions, 2024-11-05 over the legacy SSE endpoint.
    Auto,
    /// Only the initialize-era revisions: 2026-07-28 requests get "method not found", so
    /// clients fall back to `initialize`.
    Legacy,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Relay base URL (e.g. https://relay.example.com). Without it, a relay runs
    /// in-process on --listen.
    #[arg(long, env = "BRIDGE_RELAY")]
    relay: Option<Url>,
    /// Bridge token for the relay. Prefer the BRIDGE_TOKEN environment variable.
    #[arg(long, env = "BRIDGE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Tunnel name ([a-z0-9-]{3,40}); random when not given.
    #[arg(long, env = "BRIDGE_NAME")]
    name: Option<String>,
    /// Listen address of the in-process relay (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7171")]
    listen: SocketAddr,
    /// How clients authenticate.
    /// How clients authenticate: `oauth` by default with a public relay, `bearer` with
    /// the in-process relay or a loopback one.
    #[arg(long, value_enum)]
    auth: Option<AuthMode>,
    /// The bearer token clients must send (generated when not given).
    #[arg(long, env = "BRIDGE_CLIENT_TOKEN", hide_env_values = true)]
    client_token: Option<String>,
    /// Give each session its own server process.
    #[arg(long)]
    isolate: bool,
    /// Most server processes under --isolate.
    #[arg(long, default_value_t = 16)]
    max_children: usize,
    /// Most sessions kept (least recently used evicted first).
    #[arg(long, default_value_t = 10_000)]
    max_sessions: usize,
    /// Most sessions kept per client principal (its least recently used evicted first).
    #[arg(long, default_value_t = 1_000)]
    max_sessions_per_principal: usize,
    /// Most requests in flight in one session.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// Seconds after which an unanswered request is cancelled on the server and answered
    /// with an error.
    #[arg(long, default_value_t = 600.0)]
    call_timeout_secs: f64,
    /// Seconds an in-process relay waits for a bridge that just disconnected.
    #[arg(long, default_value_t = 10.0)]
    grace_secs: f64,
    /// A directory reported to the server as a root (repeatable). Remote clients' roots
    /// are not forwarded unless --client-roots is given.
    #[arg(long = "root")]
    roots: Vec<PathBuf>,
    /// Let the server ask the remote clients for their roots (`roots/list` goes to a
    /// client that declared roots) instead of answering it from --root.
    #[arg(long)]
    client_roots: bool,
    /// Which protocol revisions the endpoint serves.
    #[arg(long, value_enum, default_value_t = ProtocolMode::Auto)]
    protocol: ProtocolMode,
    /// PEM file with the CA certificates to trust for an https relay (default: the
    /// public web PKI roots).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Keep-alive interval of the in-process relay's SSE streams, in seconds.
    #[arg(long, default_value_t = 15.0)]
    keepalive_secs: f64,
    /// The in-process relay closes resumable SSE answers (2025-11-25 sessions) after this
    /// many seconds; clients resume them with GET + Last-Event-ID.
    #[arg(long)]
    sse_poll_secs: Option<f64>,
    /// Longest line accepted from the server's stdout, in bytes.
    #[arg(long, default_value_t = 32 << 20)]
    max_message: usize,
    /// The server command and its arguments (after `--`).
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Approve(args) => approve(args),
        Command::Guard => {
            guard::run_guard();
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("OS randomness");
    hex::encode(b)
}

fn random_name() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut b = [0u8; 10];
    getrandom::fill(&mut b).expect("OS randomness");
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

fn roots(paths: &[PathBuf]) -> Result<Vec<Root>> {
    paths
        .iter()
        .map(|p| {
            let abs = std::fs::canonicalize(p).with_context(|| format!("root {}", p.display()))?;
            let uri = Url::from_file_path(&abs)
                .map_err(|_| anyhow::anyhow!("root {} is not an absolute path", abs.display()))?;
            Ok(Root {
                uri: uri.to_string(),
                name: abs.file_name().map(|n| n.to_string_lossy().into_owned()),
            })
        })
        .collect()
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let name = args.name.clone().unwrap_or_else(random_name);
    if !protocol::valid_tunnel_name(&name) {
        bail!("invalid --name {name:?}: use 3-40 characters a-z, 0-9 and '-'");
    }
    let public_relay = args
        .relay
        .as_ref()
        .is_some_and(|u| !relay::config::is_loopback_host(u.host_str().unwrap_or("")));
    let auth = args.auth.unwrap_or(if public_relay {
        AuthMode::Oauth
    } else {
        AuthMode::Bearer
    });
    if auth == AuthMode::Oauth && args.relay.is_none() {
        bail!(
            "--auth oauth needs a relay with a public URL (--relay); the in-process relay serves loopback only"
        );
    }
    let client_token = match auth {
        AuthMode::Bearer => Some(
            args.client_token
                .clone()
                .unwrap_or_else(|| random_token(24)),
        ),
        AuthMode::None | AuthMode::Oauth => None,
    };
    let client_auth = match (&client_token, auth) {
        (Some(t), _) => ClientAuth::Bearer {
            sha256: relay::config::sha256(t.as_bytes()),
        },
        (None, AuthMode::Oauth) => ClientAuth::OAuth,
        (None, _) => ClientAuth::None,
    };

    // The relay: given, or in-process on loopback.
    let mut embedded = None;
    let (relay_url, token) = match &args.relay {
        Some(url) => {
            let Some(token) = args.token.clone() else {
                bail!("--relay needs a bridge token: set BRIDGE_TOKEN (or --token)");
            };
            (url.clone(), token)
        }
        None => {
            let listener = relay::bind(args.listen).with_context(|| {
                format!(
                    "cannot listen on {} (choose another with --listen, port 0 for any)",
                    args.listen
                )
            })?;
            let addr = listener.local_addr()?;
            let mut config = relay::RelayConfig::new(addr, &format!("http://{addr}"))?;
            let token = random_token(32);
            config.add_bridge_token(&token);
            if !(args.keepalive_secs > 0.0 && args.keepalive_secs <= 3600.0) {
                bail!("--keepalive-secs must be between 0 and 3600");
            }
            config.keepalive = Duration::from_secs_f64(args.keepalive_secs);
            config.sse_poll = match args.sse_poll_secs {
                None => None,
                Some(s) if s > 0.0 && s <= 86_400.0 => Some(Duration::from_secs_f64(s)),
                Some(_) => bail!("--sse-poll-secs must be between 0 and 86400"),
            };
            if !(args.grace_secs >= 0.0 && args.grace_secs <= 3600.0) {
                bail!("--grace-secs must be between 0 and 3600");
            }
            config.grace = Duration::from_secs_f64(args.grace_secs);
            embedded = Some(relay::EmbeddedRelay::start(config, listener)?);
            (Url::parse(&format!("http://{addr}"))?, token)
        }
    };

    let mut cfg = CoreConfig::new(ChildSpec {
        program: args.command[0].clone(),
        args: args.command[1..].to_vec(),
        max_line: args.max_message,
    });
    cfg.isolate = args.isolate;
    cfg.max_children = args.max_children;
    cfg.max_sessions = args.max_sessions;
    cfg.max_sessions_per_principal = args.max_sessions_per_principal;
    cfg.max_in_flight_per_session = args.max_in_flight;
    if args.call_timeout_secs.is_nan() || args.call_timeout_secs <= 0.0 {
        bail!("--call-timeout-secs must be positive");
    }
    cfg.call_timeout = Duration::from_secs_f64(args.call_timeout_secs);
    cfg.roots = roots(&args.roots)?;
    cfg.client_roots = args.client_roots;
    cfg.modern = args.protocol == ProtocolMode::Auto;
    cfg.public_cache = auth == AuthMode::None;
    let link = LinkConfig {
        relay: relay_url,
        token,
        tunnel: name,
        client_auth,
        tls: link::tls_config(args.ca_file.as_deref())?,
    };
    let mut printed = false;
    let on_welcome: driver::OnWelcome = Box::new(move |w| {
        if printed {
            return;
        }
        printed = true;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "MCP endpoint: {}", w.mcp_url);
        let _ = writeln!(out, "SSE endpoint: {}", w.sse_url);
        match (&client_token, auth) {
            (Some(t), _) => {
                let _ = writeln!(out, "Bearer token: {t}");
            }
            (None, AuthMode::Oauth) => {
                let _ = writeln!(
                    out,
                    "Client auth: OAuth (approve each new client here by typing the code its consent page shows, or with `bridge approve <code>`)"
                );
            }
            (None, _) => {
                let _ = writeln!(out, "Client auth: none");
            }
        }
        let _ = out.flush();
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let isolate = args.isolate;
    let outcome = rt.block_on(async move {
        let (events_tx, events_rx) = mpsc::channel(1024);
        let core = Core::new(cfg, events_tx, Arc::new(guard::Guard::start()));
        driver::run(
            core,
            events_rx,
            link,
            on_welcome,
            relay::server::shutdown_signal(),
            isolate,
        )
        .await
    });
    rt.shutdown_timeout(Duration::from_millis(500));
    if let Some(relay) = embedded.take() {
        // Let the in-process relay deliver the last answers.
        relay.shutdown(Duration::from_secs(3));
    }
    match outcome {
        Outcome::Stopped => Ok(ExitCode::SUCCESS),
        Outcome::Refused(msg) => {
            eprintln!("error: the relay refused this tunnel: {msg}");
            Ok(ExitCode::from(2))
        }
        Outcome::ServerFailed(msg) => {
            eprintln!("error: the MCP server could not start: {msg}");
            Ok(ExitCode::from(3))
        }
    }
}

/// `bridge approve <code>`: proves ownership of the tunnel with the bridge token.
fn approve(args: ApproveArgs) -> Result<ExitCode> {
    let tls = link::tls_config(args.ca_file.as_deref())?;
    let url = args
        .relay
        .join("oauth/approve")
        .context("building the approval URL")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = rt.block_on(async {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .timeout(Duration::from_secs(15))
            .build()?;
        let resp = http
            .post(url)
            .bearer_auth(&args.token)
            .json(&serde_json::json!({ "code": args.code, "deny": args.deny }))
            .send()
            .await
            .context("cannot reach the relay")?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        anyhow::Ok((status, body))
    })?;
    if status.is_success() {
        let verb = if args.deny { "Denied" } else { "Approved" };
        println!(
            "{verb}: access to tunnel {} for a client {} (codes go to {}).",
            consent::printable(body["tunnel"].as_str().unwrap_or("?")),
            consent::printable(body["client"].as_str().unwrap_or("?")),
            consent::printable(body["redirect_host"].as_str().unwrap_or("?"))
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: the relay refused ({}): {}",
            status.as_u16(),
            consent::printable(body["error_description"].as_str().unwrap_or("no details"))
        );
        Ok(ExitCode::from(2))
    }
}
