//! `bridge`: serves a desktop stdio MCP server through a relay.
//!
//! `bridge run -- <cmd> [args…]` spawns the server, connects to the relay given with
//! `--relay` or stored by `bridge login` (or starts one in-process on loopback), and prints
//! the public endpoints (see run.rs). `bridge service install` makes it a user service.

mod aggregate;
mod assets;
mod audit;
mod calls;
mod child;
mod cleartext;
mod config;
mod confirm;
mod consent;
mod core;
mod desk;
mod doctor;
mod driver;
mod error_text;
mod expand;
mod guard;
mod imports;
mod jsonc;
mod link;
mod local_state;
mod login;
mod policy;
mod random;
mod roots;
mod run;
mod server_settings;
mod service;
mod status_line;
#[cfg(test)]
mod test_flags;
mod upstream;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use url::Url;

#[derive(Parser)]
#[command(
    name = "bridge",
    version = protocol::version::long_version(),
    about = "Serve a desktop stdio MCP server to hosted AI clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as human-readable text or as one JSON object per line (RUST_LOG chooses
    /// what is logged).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "BRIDGE_LOG_FORMAT",
        default_value_t
    )]
    log_format: relay::observe::logging::LogFormat,
    /// Log one line per request, in the bridge (target `bridge::request`) and in the
    /// in-process relay (`relay::request`), with the same request id; off by default (each
    /// line costs CPU on every call).
    #[arg(long, global = true, env = "BRIDGE_LOG_REQUESTS")]
    log_requests: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a stdio MCP server and publish it: `bridge run [options] -- <cmd> [args…]`, or
    /// the servers of `--config FILE` / `--claude-config PATH`.
    Run(Box<run::RunArgs>),
    /// Approve (or deny) an OAuth client waiting on a consent page, by the code the page
    /// shows. Uses the stored login, or BRIDGE_RELAY and BRIDGE_TOKEN.
    Approve(ApproveArgs),
    /// Check a bridge token against a relay and store both, so that `bridge run` needs no
    /// flags: `bridge login <relay-url> [--token T]` (asks for the token when not given).
    Login(login::LoginArgs),
    /// Remove the login stored by `bridge login`.
    Logout,
    /// Run `bridge run` as a user service (systemd on Linux, launchd on macOS).
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Check a tunnel's public MCP URL the way ChatGPT does when a connector is created
    /// (discovery, OAuth metadata, the GET probe, the tool list, SSE delivery through
    /// proxies): `bridge doctor <url> [--token T]`. Exits 1 if a check fails.
    Doctor(doctor::Args),
    /// Open the dashboard of the running bridge (the newest, when several run) in the
    /// browser.
    Open(OpenArgs),
    /// Internal: the orphan guard process (see guard.rs).
    #[command(name = "__guard", hide = true)]
    Guard,
}

#[derive(clap::Args)]
struct OpenArgs {
    /// Print the address (it carries the dashboard's secret) instead of opening it.
    #[arg(long)]
    print: bool,
}

/// `bridge open`: the running bridge's dashboard, in the browser or printed.
fn open_dashboard(args: &OpenArgs) -> anyhow::Result<ExitCode> {
    let Some(url) = desk::running_address()? else {
        anyhow::bail!(
            "no running bridge has a dashboard (start one with `bridge run`, or check that it \
             runs as this user)"
        );
    };
    if args.print {
        println!("{url}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut cmd = if cfg!(target_os = "macos") {
        std::process::Command::new("open")
    } else if cfg!(windows) {
        let mut c = std::process::Command::new("cmd");
        c.args(["/C", "start", ""]);
        c
    } else {
        std::process::Command::new("xdg-open")
    };
    match cmd.arg(&url).status() {
        Ok(s) if s.success() => Ok(ExitCode::SUCCESS),
        _ => {
            eprintln!("cannot start a browser; open this address: {url}");
            Ok(ExitCode::from(1))
        }
    }
}

#[derive(clap::Args)]
struct ApproveArgs {
    /// The code shown on the consent page (e.g. K7QX-9M2P).
    code: String,
    /// Relay base URL (default: the one stored by `bridge login`).
    #[arg(long, env = "BRIDGE_RELAY")]
    relay: Option<Url>,
    /// Bridge token owning the tunnel (default: the one stored by `bridge login`). Prefer
    /// the BRIDGE_TOKEN environment variable.
    #[arg(long, env = "BRIDGE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Deny the request instead.
    #[arg(long)]
    deny: bool,
    /// PEM file with the CA certificates to trust for an https relay.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Per-request lines only on request (the status line counts the calls);
    // `RUST_LOG` overrides this default.
    let default_filter = if cli.log_requests {
        "info,bridge::request=debug"
    } else {
        "info,relay::request=warn"
    };
    relay::observe::logging::init(cli.log_format, false, default_filter);
    let result = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Approve(args) => approve(args),
        Command::Login(args) => login::login(args),
        Command::Logout => login::logout(),
        Command::Service(command) => service::run(command),
        Command::Doctor(args) => doctor::run(args),
        Command::Open(args) => open_dashboard(&args),
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

/// `bridge approve <code>`: proves ownership of the tunnel with the bridge token.
fn approve(args: ApproveArgs) -> Result<ExitCode> {
    let stored = if args.relay.is_some() && args.token.is_some() {
        None
    } else {
        login::load_credentials()?
    };
    let (relay, token, ca_file) = match (args.relay, args.token, stored) {
        (Some(relay), Some(token), _) => (relay, token, args.ca_file),
        (relay, token, Some(c)) => {
            let stored_relay = c.relay_url()?;
            let same = relay.as_ref().is_none_or(|r| {
                r.as_str().trim_end_matches('/') == stored_relay.as_str().trim_end_matches('/')
            });
            match (relay, token) {
                (Some(relay), None) if !same => anyhow::bail!(
                    "no bridge token for {relay}: set BRIDGE_TOKEN, or run `bridge login {relay}`"
                ),
                (relay, token) => (
                    relay.unwrap_or(stored_relay),
                    token.unwrap_or(c.token),
                    args.ca_file.or(c.ca_file),
                ),
            }
        }
        _ => anyhow::bail!(
            "no relay and bridge token: run `bridge login <relay>` once, or set BRIDGE_RELAY and \
             BRIDGE_TOKEN"
        ),
    };
    cleartext::check(&relay)?;
    let tls = link::tls_config(ca_file.as_deref())?;
    let url = relay
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
            .bearer_auth(&token)
            .json(&serde_json::json!({ "code": args.code, "deny": args.deny }))
            .send()
            .await
            .with_context(|| {
                format!("cannot reach the relay at {relay} (check the URL, DNS and the firewall)")
            })?;
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
