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
    Serve(Box<ServeArgs>),
    /// Manage bridge tokens (stored hashed in the data directory).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        /// The relay's data directory.
        #[arg(long, env = "RELAY_DATA_DIR", global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Manage tunnel names.
    Name {
        #[command(subcommand)]
        command: NameCommand,
        /// The relay's data directory.
        #[arg(long, env = "RELAY_DATA_DIR", global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Read a password on standard input and print its Argon2 hash, for
    /// --operator-password-file.
    HashPassword,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a bridge token and print it (it is shown only once).
    Create {
        /// A label to recognise it by.
        label: String,
    },
    /// List tokens and the tunnel names they own.
    List,
    /// Revoke a token: its bridges are disconnected at once; its names stay reserved.
    Revoke {
        /// The token's label.
        label: String,
    },
}

#[derive(Subcommand)]
enum NameCommand {
    /// Release a tunnel name so another token may claim it.
    Release {
        /// The name.
        name: String,
    },
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
    /// Close resumable SSE answers (2025-11-25 sessions) after this many seconds; clients
    /// resume them with GET + Last-Event-ID. For proxies that cut long responses.
    #[arg(long)]
    sse_poll_secs: Option<f64>,
    /// Seconds requests wait for a bridge that just disconnected before the tunnel is
    /// answered as offline (from its last snapshot).
    #[arg(long, default_value_t = 10.0)]
    grace_secs: f64,
    /// Extra browser origins allowed to call MCP endpoints (repeatable).
    #[arg(long)]
    allowed_origin: Vec<String>,
    /// Directory of the relay's database (bridge tokens, names, OAuth clients and
    /// tokens). Without it, state lives in memory and is lost on restart.
    #[arg(long, env = "RELAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// File holding the Argon2 hash of the operator password (see `relay hash-password`),
    /// which approves OAuth consents on the consent page.
    #[arg(long, env = "RELAY_OPERATOR_PASSWORD_FILE")]
    operator_password_file: Option<PathBuf>,
    /// An extra host allowed in OAuth redirect URIs (https), besides ChatGPT's, Claude's
    /// and loopback (repeatable).
    #[arg(long)]
    allow_redirect_host: Vec<String>,
    /// Lifetime of OAuth access tokens, in seconds (refresh tokens renew them).
    #[arg(long, default_value_t = 3600)]
    access_token_ttl_secs: u64,
    /// Serve HTTPS with this certificate chain (PEM: the certificate, then intermediates);
    /// needs --tls-key. Without TLS flags the relay serves plain HTTP (for a reverse proxy).
    #[arg(
        long,
        env = "RELAY_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "acme_domain"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "RELAY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a certificate for this domain obtained and renewed automatically
    /// from an ACME CA with TLS-ALPN-01 (repeatable; the CA must reach this relay on port
    /// 443). Needs --data-dir: the account and certificates are cached in <data-dir>/acme.
    #[arg(long, env = "RELAY_ACME_DOMAINS", value_delimiter = ',')]
    acme_domain: Vec<String>,
    /// Contact e-mail for the ACME account (repeatable).
    #[arg(long, env = "RELAY_ACME_EMAIL", value_delimiter = ',')]
    acme_email: Vec<String>,
    /// ACME directory URL.
    #[arg(long, env = "RELAY_ACME_DIRECTORY", default_value = relay::tls::LETS_ENCRYPT_PRODUCTION)]
    acme_directory: String,
    /// CA certificates (PEM) to trust for the ACME server's own HTTPS instead of the web
    /// PKI roots (e.g. a test CA such as Pebble's).
    #[arg(long, env = "RELAY_ACME_CA_FILE")]
    acme_ca_file: Option<PathBuf>,
}

/// How `relay serve` terminates TLS.
enum Tls {
    /// Plain HTTP.
    Off,
    /// A certificate from files.
    Files(relay::tls::TlsTerminator),
    /// Certificates from ACME (started inside the runtime).
    Acme(relay::tls::AcmeSettings),
}

fn tls_settings(args: &ServeArgs) -> Result<Tls> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let t =
            relay::tls::TlsTerminator::from_pem_files(cert, key).context("--tls-cert/--tls-key")?;
        return Ok(Tls::Files(t));
    }
    if args.acme_domain.is_empty() {
        if !args.acme_email.is_empty() || args.acme_ca_file.is_some() {
            bail!("--acme-email and --acme-ca-file need --acme-domain");
        }
        return Ok(Tls::Off);
    }
    let Some(data_dir) = &args.data_dir else {
        bail!("--acme-domain needs --data-dir (the ACME account and certificates are kept there)");
    };
    let settings = relay::tls::AcmeSettings {
        domains: args
            .acme_domain
            .iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect(),
        emails: args
            .acme_email
            .iter()
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect(),
        directory: args.acme_directory.clone(),
        ca_file: args.acme_ca_file.clone(),
        cache_dir: data_dir.join("acme"),
    };
    settings.validate()?;
    if let Some(f) = &settings.ca_file {
        relay::tls::client_config(Some(f)).context("--acme-ca-file")?;
    }
    Ok(Tls::Acme(settings))
}

/// The public URL when none is given: the listen address, or the first ACME domain.
fn default_public_url(tls: &Tls, addr: SocketAddr) -> String {
    match tls {
        Tls::Off => format!("http://{addr}"),
        Tls::Files(_) => format!("https://{addr}"),
        Tls::Acme(s) if addr.port() == 443 => format!("https://{}", s.domains[0]),
        Tls::Acme(s) => format!("https://{}:{}", s.domains[0], addr.port()),
    }
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
        Command::Serve(args) => serve(*args),
        Command::Token { command, data_dir } => token(command, &need_dir(data_dir)?),
        Command::Name { command, data_dir } => name(command, &need_dir(data_dir)?),
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                bail!("give the password on standard input");
            }
            println!("{}", relay::oauth::consent::hash_password(password));
            Ok(())
        }
    }
}

fn need_dir(dir: Option<PathBuf>) -> Result<PathBuf> {
    dir.context("give the relay's data directory with --data-dir or RELAY_DATA_DIR")
}

fn token(command: TokenCommand, data_dir: &std::path::Path) -> Result<()> {
    let store = relay::store::Store::open(data_dir)?;
    match command {
        TokenCommand::Create { label } => {
            let token = store.create_token(&label)?;
            println!("{token}");
            eprintln!("Give this token to the bridge as BRIDGE_TOKEN; it is not shown again.");
        }
        TokenCommand::List => {
            for t in store.list_tokens()? {
                let state = match t.revoked {
                    Some(_) => "revoked",
                    None => "active",
                };
                println!("{}\t{}\t{}", t.label, state, t.names.join(","));
            }
        }
        TokenCommand::Revoke { label } => {
            store.revoke_token(&label)?;
            println!("revoked {label}; a running relay disconnects its bridges within 2 s");
        }
    }
    Ok(())
}

fn name(command: NameCommand, data_dir: &std::path::Path) -> Result<()> {
    let store = relay::store::Store::open(data_dir)?;
    match command {
        NameCommand::Release { name } => {
            if store.release_name(&name)? {
                println!("released {name}");
            } else {
                bail!("{name} is not claimed");
            }
        }
    }
    Ok(())
}

fn serve(args: ServeArgs) -> Result<()> {
    let tls = tls_settings(&args)?;
    let listener = relay::bind(args.listen)?;
    let addr = listener.local_addr()?;
    let public = args
        .public_url
        .clone()
        .unwrap_or_else(|| default_public_url(&tls, addr));
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
    config.data_dir = args.data_dir.clone();
    let has_stored = match &args.data_dir {
        Some(dir) => !relay::store::Store::open(dir)?.list_tokens()?.is_empty(),
        None => false,
    };
    if config.bridge_token_hashes.is_empty() && !has_stored {
        bail!(
            "no bridge token: create one with `relay token create NAME --data-dir DIR`, or set \
             RELAY_BRIDGE_TOKENS / --bridge-token-file"
        );
    }
    if args.data_dir.is_none() {
        tracing::warn!("no --data-dir: tokens, names and OAuth grants are kept in memory only");
    }
    if let Some(f) = &args.operator_password_file {
        let hash = std::fs::read_to_string(f)
            .with_context(|| format!("reading {}", f.display()))?
            .trim()
            .to_owned();
        if !hash.starts_with("$argon2") {
            bail!(
                "{} must hold an Argon2 hash (see `relay hash-password`)",
                f.display()
            );
        }
        config.oauth.operator_password_hash = Some(hash);
    }
    config.oauth.extra_redirect_hosts = args.allow_redirect_host.clone();
    if args.access_token_ttl_secs == 0 {
        bail!("--access-token-ttl-secs must be positive");
    }
    config.oauth.access_ttl = Duration::from_secs(args.access_token_ttl_secs);
    config.allow_unauthenticated = args.allow_unauthenticated;
    config.max_body = args.max_body;
    if !(args.keepalive_secs > 0.0 && args.keepalive_secs <= 3600.0) {
        bail!("--keepalive-secs must be between 0 and 3600");
    }
    config.keepalive = Duration::from_secs_f64(args.keepalive_secs);
    config.sse_poll = sse_poll(args.sse_poll_secs)?;
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
        let tls = match tls {
            Tls::Off => None,
            Tls::Files(t) => Some(t),
            Tls::Acme(settings) => Some(relay::tls::TlsTerminator::acme(&settings)?),
        };
        if tls.is_some() && config.public_url.scheme() == "http" {
            tracing::warn!(
                "serving HTTPS, but the public URL {} is http",
                config.base()
            );
        }
        let scheme = if tls.is_some() { "HTTPS" } else { "HTTP" };
        info!(%addr, public_url = %config.base(), scheme, "relay listening");
        println!("Relay listening on {addr}, public URL {}", config.base());
        match tls {
            Some(tls) => {
                relay::serve_tls(config, listener, tls, relay::server::shutdown_signal()).await?
            }
            None => relay::serve(config, listener, relay::server::shutdown_signal()).await?,
        }
        info!("relay stopped");
        Ok(())
    })
}

/// Checks `--sse-poll-secs`.
fn sse_poll(secs: Option<f64>) -> Result<Option<Duration>> {
    match secs {
        None => Ok(None),
        Some(s) if s > 0.0 && s <= 86_400.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(_) => bail!("--sse-poll-secs must be between 0 and 86400"),
    }
}
