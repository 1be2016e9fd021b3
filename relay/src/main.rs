//! `relay`: the public side of MCP tunnels, run on a VPS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use relay::RelayConfig;
use tracing::info;

#[derive(Parser)]
#[command(name = "relay", version, about = "Public HTTPS front for MCP tunnels")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve tunnels.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "RELAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Public base URL clients use (e.g. https://relay.example.com). Every published URL
    /// is built from it. Defaults to http://<listen address>.
    #[arg(long, env = "RELAY_PUBLIC_URL")]
    public_url: Option<String>,
    /// Bridge tokens allowed to connect, comma-separated. Prefer the environment variable
    /// or --bridge-token-file over the command line.
    #[arg(
        long,
        env = "RELAY_BRIDGE_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    bridge_token: Vec<String>,
    /// File with one bridge token per line.
    #[arg(long, env = "RELAY_BRIDGE_TOKEN_FILE")]
    bridge_token_file: Option<PathBuf>,
    /// Allow tunnels without client authentication on a public (non-loopback) URL.
    #[arg(long)]
    allow_unauthenticated: bool,
    /// Largest accepted request body in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_body: usize,
    /// Keep-alive interval for SSE streams, in seconds (also the silence after which a
    /// POST answer becomes an SSE stream).
    #[arg(long, default_value_t = 15.0)]
    keepalive_secs: f64,
    /// Seconds requests wait for a bridge that just disconnected before the tunnel is
    /// answered as offline (from its last snapshot).
    #[arg(long, default_value_t = 10.0)]
    grace_secs: f64,
    /// Extra browser origins allowed to call MCP endpoints (repeatable).
    #[arg(long)]
    allowed_origin: Vec<String>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    let listener = relay::bind(args.listen)?;
    let addr = listener.local_addr()?;
    let public = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let mut config = RelayConfig::new(addr, &public)?;
    for t in &args.bridge_token {
        if !t.trim().is_empty() {
            config.add_bridge_token(t.trim());
        }
    }
    if let Some(file) = &args.bridge_token_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading bridge tokens from {}", file.display()))?;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            config.add_bridge_token(line);
        }
    }
    if config.bridge_token_hashes.is_empty() {
        bail!(
            "no bridge token configured: set RELAY_BRIDGE_TOKENS or --bridge-token-file \
             (generate one with e.g. `openssl rand -hex 32`)"
        );
    }
    config.allow_unauthenticated = args.allow_unauthenticated;
    config.max_body = args.max_body;
    if !(args.keepalive_secs > 0.0 && args.keepalive_secs <= 3600.0) {
        bail!("--keepalive-secs must be between 0 and 3600");
    }
    config.keepalive = Duration::from_secs_f64(args.keepalive_secs);
    if !(args.grace_secs >= 0.0 && args.grace_secs <= 3600.0) {
        bail!("--grace-secs must be between 0 and 3600");
    }
    config.grace = Duration::from_secs_f64(args.grace_secs);
    config.allowed_origins = args.allowed_origin;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        info!(%addr, public_url = %config.base(), "relay listening");
        println!("Relay listening on {addr}, public URL {}", config.base());
        relay::serve(config, listener, shutdown_signal()).await?;
        info!("relay stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
