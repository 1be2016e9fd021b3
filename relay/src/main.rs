//! `relay`: the public side of MCP tunnels, run on a VPS.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use relay::RelayConfig;
use tracing::info;

#[derive(Parser)]
#[command(
    name = "relay",
    version = protocol::version::long_version(),
    about = "Public HTTPS front for MCP tunnels"
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
        env = "RELAY_LOG_FORMAT",
        default_value_t
    )]
    log_format: relay::observe::logging::LogFormat,
    /// Log one line per public MCP request (target `relay::request`); off by default, as
    /// each line costs a busy relay several µs of CPU per request.
    #[arg(long, global = true, env = "RELAY_LOG_REQUESTS")]
    log_requests: bool,
    /// `serve`: serve Prometheus metrics at /metrics, to local requests only (a loopback
    /// peer that is not a --trusted-proxy, a loopback Host, no forwarding headers) unless
    /// --metrics-token-file is given. Behind a reverse proxy prefer --metrics-listen.
    #[arg(long, global = true)]
    metrics: bool,
    /// `serve`: a file holding a bearer token that may read /metrics from anywhere.
    #[arg(
        long,
        global = true,
        env = "RELAY_METRICS_TOKEN_FILE",
        requires = "metrics"
    )]
    metrics_token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve tunnels.
    Serve(Box<ServeArgs>),
    /// Manage bridge tokens (stored hashed in the relay's database).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Manage tunnel names.
    Name {
        #[command(subcommand)]
        command: NameCommand,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Manage the relay's database.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Read a password on standard input and print its Argon2 hash, for
    /// --operator-password-file.
    HashPassword,
    /// Print a tunnel's OAuth trace: the steps its clients went through (metadata,
    /// registration, authorization, consent, tokens, 401s) and why any was refused.
    Logs {
        /// The tunnel (without it: every event, relay-wide ones included).
        #[arg(long)]
        tunnel: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
        /// How many of the newest events to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
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

/// Where a command finds the relay's state: its PostgreSQL database, else the SQLite
/// database in its data directory.
#[derive(clap::Args)]
struct StoreArgs {
    /// The relay's data directory (its SQLite database, relay.db).
    #[arg(long, env = "RELAY_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// The relay's PostgreSQL database, postgres://USER:PASSWORD@HOST:PORT/DATABASE
    /// (instead of the data directory's SQLite).
    #[arg(
        long,
        env = "RELAY_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    database_url: Option<String>,
}

impl StoreArgs {
    /// The storage these name: the database URL wins over the data directory.
    fn storage(&self) -> Result<relay::store::Storage> {
        match (&self.database_url, &self.data_dir) {
            (Some(url), _) => Ok(relay::store::Storage::Postgres(url.clone())),
            (None, Some(dir)) => Ok(relay::store::Storage::Sqlite(dir.clone())),
            (None, None) => bail!(
                "give the relay's database with --data-dir (RELAY_DATA_DIR) or --database-url \
                 (RELAY_DATABASE_URL)"
            ),
        }
    }

    /// Opens that store (without checking a public URL: these commands serve none), on
    /// the runtime that will use it (a pool's connections live on the runtime that made
    /// them).
    async fn open(&self) -> Result<relay::store::Store> {
        Ok(relay::store::Store::connect(&self.storage()?, None).await?)
    }
}

/// Runs a command's database work on a small runtime of its own.
fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

#[derive(Subcommand)]
enum DbCommand {
    /// Copy a SQLite relay's state (its data directory) into an empty PostgreSQL database:
    /// bridge tokens, names, OAuth clients, codes and tokens, the OAuth trace.
    Copy {
        /// The data directory holding relay.db.
        #[arg(long, env = "RELAY_DATA_DIR")]
        data_dir: PathBuf,
        /// The PostgreSQL database to fill (it must hold no relay state yet).
        #[arg(long, env = "RELAY_DATABASE_URL", hide_env_values = true)]
        database_url: String,
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
    /// TOML file with these options (keys named like the flags, in snake_case; see
    /// deploy/relay.example.toml). Flags and environment variables take precedence.
    #[arg(long, env = "RELAY_CONFIG")]
    config: Option<PathBuf>,
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
    /// On SIGTERM, seconds /readyz answers 503 (while the relay still serves) before it
    /// stops, so that a load balancer's health checks take it out first. Default: 3 with
    /// --database-url (a node of several), else 0.
    #[arg(long, env = "RELAY_DRAIN_DELAY_SECS")]
    drain_delay_secs: Option<f64>,
    /// Seconds a client may take to send a request's head (request line and headers);
    /// also the longest a kept-alive connection may stay idle between requests.
    #[arg(long, default_value_t = 10.0)]
    header_timeout_secs: f64,
    /// Seconds a client may take to send a request's body, from the end of its head.
    #[arg(long, default_value_t = 60.0)]
    body_timeout_secs: f64,
    /// Most connections one client address (an IPv4 address, an IPv6 /64) may hold; half
    /// as many before their first request. Default: an eighth of the connection limit
    /// (which is the file-descriptor limit less a reserve), between 8 and 256. Trusted
    /// proxies are exempt.
    #[arg(long)]
    max_connections_per_address: Option<usize>,
    /// A reverse proxy (an address or a CIDR range; repeatable or comma-separated) whose
    /// forwarding header names the client: rate limits and the OAuth trace then use the
    /// right-most address of that header that is not a trusted proxy. Without it the
    /// TCP peer is the client, and forwarding headers are ignored.
    #[arg(long, env = "RELAY_TRUSTED_PROXY", value_delimiter = ',')]
    trusted_proxy: Vec<relay::net::client_addr::Cidr>,
    /// The header trusted proxies write the client's address into.
    #[arg(long, value_enum, default_value_t)]
    trusted_proxy_header: relay::net::client_addr::ForwardedHeader,
    /// Serve Prometheus metrics (and /healthz) on this address too, to anyone who can reach
    /// it (e.g. 127.0.0.1:9464); implies --metrics. /metrics on --listen then answers only
    /// with the --metrics-token-file token (404 without one).
    #[arg(long, env = "RELAY_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Extra browser origins allowed to call MCP endpoints (repeatable).
    #[arg(long)]
    allowed_origin: Vec<String>,
    /// Directory of the relay's database (bridge tokens, names, OAuth clients and
    /// tokens) and of the ACME cache. Without it (and without --database-url), state lives
    /// in memory and is lost on restart.
    #[arg(long, env = "RELAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Keep that state in this PostgreSQL database instead of the data directory's SQLite:
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE. Nodes sharing one database must have
    /// the same --public-url.
    #[arg(long, env = "RELAY_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// This node's name in logs and metrics (default: the host's name).
    #[arg(long, env = "RELAY_NODE_ID")]
    node_id: Option<String>,
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
    #[arg(long, env = "RELAY_ACME_DIRECTORY", default_value = relay::net::tls::LETS_ENCRYPT_PRODUCTION)]
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
    Files(relay::net::tls::TlsTerminator),
    /// Certificates from ACME (started inside the runtime).
    Acme(relay::net::tls::AcmeSettings),
}

fn tls_settings(args: &ServeArgs) -> Result<Tls> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let t = relay::net::tls::TlsTerminator::from_pem_files(cert, key)
            .context("--tls-cert/--tls-key")?;
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
    let settings = relay::net::tls::AcmeSettings {
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
        relay::net::tls::client_config(Some(f)).context("--acme-ca-file")?;
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
    let log_format =
        relay::observe::logging::format_from_args(std::env::args_os(), "RELAY_LOG_FORMAT");
    let log_requests = relay::observe::logging::flag_from_args(
        std::env::args_os(),
        "--log-requests",
        "RELAY_LOG_REQUESTS",
    );
    let default_filter = if log_requests {
        "info"
    } else {
        "info,relay::request=warn"
    };
    relay::observe::logging::init(log_format, true, default_filter);
    let cli = match parse_cli(Cli::command(), std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => match e.downcast::<clap::Error>() {
            Ok(e) => e.exit(),
            Err(e) => return Err(e),
        },
    };
    let metrics_listen = matches!(&cli.command, Command::Serve(a) if a.metrics_listen.is_some());
    if cli.metrics || metrics_listen {
        let node = match &cli.command {
            Command::Serve(a) => a.node_id.as_deref(),
            _ => None,
        };
        relay::observe::metrics::enable(metrics_settings(cli.metrics_token_file.as_deref(), node)?);
    }
    match cli.command {
        Command::Serve(args) => serve(*args, cli.log_format),
        Command::Token { command, store } => token(command, &store),
        Command::Name { command, store } => name(command, &store),
        Command::Db { command } => db(command),
        Command::Logs {
            tunnel,
            store,
            limit,
            json,
        } => logs(tunnel.as_deref(), &store, limit, json),
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                bail!("give the password on standard input");
            }
            println!(
                "{}",
                relay::util::password::hash_password(password)
                    .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
            );
            Ok(())
        }
    }
}

/// Parses the command line. With `relay serve --config FILE`, the file's settings become
/// flags for the options that neither a flag nor an environment variable set (flags >
/// environment > file > defaults), and clap checks the whole.
fn parse_cli(cmd: clap::Command, argv: Vec<OsString>) -> Result<Cli> {
    // First without the rules between options (the file may complete a flag's
    // companion), to find the file and where each option came from.
    let relax = |a: clap::Arg| {
        a.requires(clap::builder::Resettable::Reset)
            .conflicts_with(clap::builder::Resettable::Reset)
    };
    let loose = cmd
        .clone()
        .mut_args(relax)
        .mut_subcommand("serve", |s| s.mut_args(relax));
    let matches = loose.try_get_matches_from(&argv)?;
    let file = match matches.subcommand() {
        Some(("serve", serve)) => serve.get_one::<PathBuf>("config").map(|p| (p, serve)),
        _ => None,
    };
    let Some((path, serve)) = file else {
        return Ok(Cli::from_arg_matches(&cmd.try_get_matches_from(argv)?)?);
    };
    let file = relay::config::file::RelayFile::load(path)?;
    let (extra, overridden) = file.args(|id| {
        matches!(
            serve.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    });
    for key in overridden {
        info!(file = %path.display(), key, "a flag or an environment variable overrides the file");
    }
    match cmd.clone().try_get_matches_from(argv.iter().chain(&extra)) {
        Ok(merged) => Ok(Cli::from_arg_matches(&merged)?),
        Err(e) => {
            // The flags' own mistake is reported as usual; one the file is part of names
            // the file, on one line, without clap's usage and hints.
            cmd.try_get_matches_from(&argv)?;
            let text = e.render().to_string();
            let message = text.split("\n\n").next().unwrap_or_default();
            let message = message.trim_start_matches("error: ");
            let message: Vec<&str> = message.split_whitespace().collect();
            Err(anyhow!("{}: {}", path.display(), message.join(" ")))
        }
    }
}

/// `--metrics-token-file`: the token (its first line), kept only as its SHA-256; and the
/// node's name (`--node-id`, else the host's) for the `node` label.
fn metrics_settings(
    token_file: Option<&std::path::Path>,
    node_id: Option<&str>,
) -> Result<relay::observe::metrics::MetricsSettings> {
    let node = match node_id {
        Some(id) => relay::config::node::clean_node_id(id)
            .context("--node-id: use letters, digits, '.', '_' and '-'")?,
        None => relay::config::node::default_node_id(),
    };
    let Some(file) = token_file else {
        return Ok(relay::observe::metrics::MetricsSettings {
            token_sha256: None,
            node: Some(node),
        });
    };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the metrics token from {}", file.display()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.len() < 16 {
        bail!(
            "{} must hold a token of at least 16 characters",
            file.display()
        );
    }
    Ok(relay::observe::metrics::MetricsSettings {
        token_sha256: Some(relay::config::sha256(token.as_bytes())),
        node: Some(node),
    })
}

fn token(command: TokenCommand, store: &StoreArgs) -> Result<()> {
    block_on(async {
        let store = store.open().await?;
        match command {
            TokenCommand::Create { label } => {
                let token = store.create_token(&label).await?;
                println!("{token}");
                eprintln!("Give this token to the bridge as BRIDGE_TOKEN; it is not shown again.");
            }
            TokenCommand::List => {
                for t in store.list_tokens().await? {
                    let state = match t.revoked {
                        Some(_) => "revoked",
                        None => "active",
                    };
                    println!("{}\t{}\t{}", t.label, state, t.names.join(","));
                }
            }
            TokenCommand::Revoke { label } => {
                store.revoke_token(&label).await?;
                println!(
                    "revoked {label}; a running relay disconnects its bridges within 2 s \
                     (at once with --database-url)"
                );
            }
        }
        Ok(())
    })
}

/// `relay db`.
fn db(command: DbCommand) -> Result<()> {
    match command {
        DbCommand::Copy {
            data_dir,
            database_url,
        } => {
            if !data_dir.join("relay.db").exists() {
                bail!("no relay database in {}", data_dir.display());
            }
            let copied = copy_to_postgres(&data_dir, &database_url)?;
            for (table, rows) in copied {
                println!("{table}\t{rows}");
            }
            println!(
                "copied {} into {}; start the relay with --database-url",
                data_dir.join("relay.db").display(),
                relay::store::redact_url(&database_url)
            );
            Ok(())
        }
    }
}

/// `relay db copy`'s work: each table and its row count.
#[cfg(feature = "postgres")]
fn copy_to_postgres(data_dir: &std::path::Path, url: &str) -> Result<Vec<(&'static str, usize)>> {
    block_on(async { Ok(relay::store::copy::sqlite_to_postgres(data_dir, url).await?) })
}

/// `relay db copy` in a build without PostgreSQL.
#[cfg(not(feature = "postgres"))]
fn copy_to_postgres(_: &std::path::Path, _: &str) -> Result<Vec<(&'static str, usize)>> {
    bail!("this build of the relay has no PostgreSQL support (cargo feature `postgres`)")
}

/// `relay logs`: the OAuth trace, oldest first.
fn logs(tunnel: Option<&str>, store: &StoreArgs, limit: usize, json: bool) -> Result<()> {
    if let relay::store::Storage::Sqlite(dir) = store.storage()?
        && !dir.join("relay.db").exists()
    {
        bail!("no relay database in {}", dir.display());
    }
    let mut events = block_on(async {
        let store = store.open().await?;
        anyhow::Ok(match tunnel {
            Some(t) => {
                store
                    .trace_for_tunnel(t, limit, relay::oauth::trace::LINK_WINDOW_MS)
                    .await?
            }
            None => store.trace_all(limit, false).await?,
        })
    })?;
    events.reverse();
    if json {
        for e in &events {
            println!("{}", e.to_json());
        }
    } else if events.is_empty() {
        eprintln!(
            "no OAuth events{}",
            tunnel
                .map(|t| format!(" for tunnel {t}"))
                .unwrap_or_default()
        );
    } else {
        print!("{}", relay::oauth::trace::render_table(&events));
    }
    Ok(())
}

fn name(command: NameCommand, store: &StoreArgs) -> Result<()> {
    match command {
        NameCommand::Release { name } => {
            let released =
                block_on(async { anyhow::Ok(store.open().await?.release_name(&name).await?) })?;
            if released {
                println!("released {name}");
            } else {
                bail!("{name} is not claimed");
            }
        }
    }
    Ok(())
}

fn serve(args: ServeArgs, log_format: relay::observe::logging::LogFormat) -> Result<()> {
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
            config
                .add_bridge_token(t.trim())
                .context("RELAY_BRIDGE_TOKENS / --bridge-token")?;
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
            config
                .add_bridge_token(line)
                .with_context(|| format!("bridge token file {}", file.display()))?;
        }
    }
    config.storage = match (&args.database_url, &args.data_dir) {
        (Some(url), _) => relay::store::Storage::Postgres(url.clone()),
        (None, Some(dir)) => relay::store::Storage::Sqlite(dir.clone()),
        (None, None) => relay::store::Storage::Memory,
    };
    if let Some(id) = &args.node_id {
        config.node_id = relay::config::node::clean_node_id(id)
            .context("--node-id: use letters, digits, '.', '_' and '-'")?;
    }
    // Every line names the node where lines are gathered from several (JSON), or where the
    // operator named it.
    if args.node_id.is_some() || log_format == relay::observe::logging::LogFormat::Json {
        relay::observe::logging::set_node(&config.node_id);
    }
    let has_stored = match &config.storage {
        relay::store::Storage::Memory => false,
        storage => block_on(async {
            let store = relay::store::Store::connect(storage, None).await?;
            anyhow::Ok(!store.list_tokens().await?.is_empty())
        })
        .with_context(|| format!("opening the relay's state ({})", storage.describe()))?,
    };
    if config.bridge_token_hashes.is_empty() && !has_stored {
        bail!(
            "no bridge token: create one with `relay token create NAME --data-dir DIR` (or \
             --database-url URL), or set RELAY_BRIDGE_TOKENS / --bridge-token-file"
        );
    }
    if config.storage == relay::store::Storage::Memory {
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
    let drain_delay = args
        .drain_delay_secs
        .unwrap_or(if args.database_url.is_some() {
            3.0
        } else {
            0.0
        });
    if !(0.0..=300.0).contains(&drain_delay) {
        bail!("--drain-delay-secs must be between 0 and 300");
    }
    config.drain_delay = Duration::from_secs_f64(drain_delay);
    config.allowed_origins = args.allowed_origin;
    if !(args.header_timeout_secs > 0.0 && args.header_timeout_secs <= 3600.0) {
        bail!("--header-timeout-secs must be between 0 and 3600");
    }
    config.header_timeout = Duration::from_secs_f64(args.header_timeout_secs);
    if !(args.body_timeout_secs > 0.0 && args.body_timeout_secs <= 86_400.0) {
        bail!("--body-timeout-secs must be between 0 and 86400");
    }
    config.body_timeout = Duration::from_secs_f64(args.body_timeout_secs);
    if args.max_connections_per_address == Some(0) {
        bail!("--max-connections-per-address must be positive");
    }
    config.max_connections_per_address = args.max_connections_per_address;
    config.metrics_listen = args.metrics_listen;
    config.trusted_proxies = relay::net::client_addr::TrustedProxies {
        ranges: args.trusted_proxy.clone(),
        header: args.trusted_proxy_header,
    };
    // One descriptor per connection: use what the system allows (the caps derive from it).
    relay::net::conn::raise_fd_limit();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let tls = match tls {
            Tls::Off => None,
            Tls::Files(t) => Some(t),
            Tls::Acme(settings) => Some(relay::net::tls::TlsTerminator::acme(&settings)?),
        };
        if tls.is_some() && config.public_url.scheme() == "http" {
            tracing::warn!(
                "serving HTTPS, but the public URL {} is http",
                config.base()
            );
        }
        let scheme = if tls.is_some() { "HTTPS" } else { "HTTP" };
        info!(
            %addr,
            public_url = %config.base(),
            scheme,
            node = %config.node_id,
            storage = %config.storage.describe(),
            "relay listening"
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use relay::config::file::{KEYS, RelayFile, uncommented};
    use std::path::Path;

    const EXAMPLE: &str = include_str!("../../deploy/relay.example.toml");

    /// The ids of `relay serve`'s options, from clap's definition with the global options
    /// it inherits; not `--config` itself, nor `--log-format` and `--log-requests` (logging
    /// starts before the file is read).
    fn serve_options() -> Vec<String> {
        let mut cmd = Cli::command();
        cmd.build();
        let serve = cmd.find_subcommand("serve").expect("serve");
        serve
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .filter(|id| {
                !["help", "version", "config", "log_format", "log_requests"].contains(&id.as_str())
            })
            .collect()
    }

    #[test]
    fn every_serve_option_is_a_file_key_documented_in_the_example() {
        let options = serve_options();
        for o in &options {
            let key = KEYS.iter().find(|(_, arg)| arg == o);
            assert!(
                key.is_some(),
                "--{} has no key in relay::config::file::KEYS",
                o.replace('_', "-")
            );
        }
        for (key, arg) in KEYS {
            assert!(
                options.iter().any(|o| o == arg),
                "{key} stands for --{arg}, which `relay serve` does not have"
            );
        }
        let path = Path::new("deploy/relay.example.toml");
        RelayFile::parse(EXAMPLE, path).expect("the example parses");
        let all = RelayFile::parse(&uncommented(EXAMPLE), path).expect("every setting parses");
        let documented = all.keys();
        for (key, arg) in KEYS {
            assert!(
                documented.contains(key),
                "deploy/relay.example.toml does not document {key} (--{})",
                arg.replace('_', "-")
            );
        }
    }

    #[test]
    fn the_example_shows_the_real_defaults() {
        let mut cmd = Cli::command();
        cmd.build();
        let serve = cmd.find_subcommand("serve").expect("serve");
        let file = RelayFile::parse(EXAMPLE, Path::new("relay.example.toml")).expect("parses");
        let (args, _) = file.args(|_| false);
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
        for a in serve.get_arguments() {
            let defaults: Vec<String> = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into())
                .collect();
            let flag = format!("--{}=", a.get_long().unwrap_or_default());
            let shown: Vec<&str> = args.iter().filter_map(|x| x.strip_prefix(&flag)).collect();
            if defaults.len() == 1 && !shown.is_empty() && a.get_id() != "listen" {
                assert_eq!(shown, [defaults[0].as_str()], "{flag}");
            }
        }
    }

    /// `relay serve` parsed with the configuration file `text`, the environment variable
    /// of `--public-url` renamed to `env_var` (and the others ignored), and `flags`.
    fn cli_with(text: &str, env_var: &'static str, flags: &[&str]) -> Result<Cli> {
        let dir = std::env::temp_dir().join(format!("relay-main-test-{env_var}"));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("relay.toml");
        std::fs::write(&path, text)?;
        let no_env = |a: clap::Arg| a.env(None::<&str>);
        let cmd = Cli::command()
            .mut_args(no_env)
            .mut_subcommand("serve", |s| {
                s.mut_args(|a| {
                    let public = a.get_id() == "public_url";
                    a.env(public.then_some(env_var))
                })
            });
        let mut argv: Vec<OsString> = ["relay", "serve", "--config"].map(Into::into).into();
        argv.push(path.into());
        argv.extend(flags.iter().map(Into::into));
        let cli = parse_cli(cmd, argv);
        let _ = std::fs::remove_dir_all(&dir);
        cli
    }

    /// The `relay serve` options of [`cli_with`].
    fn serve_with(text: &str, env_var: &'static str, flags: &[&str]) -> Result<ServeArgs> {
        match cli_with(text, env_var, flags)?.command {
            Command::Serve(args) => Ok(*args),
            _ => bail!("not serve"),
        }
    }

    #[test]
    fn a_flag_and_its_companion_in_the_file_go_together() {
        let a = serve_with(
            "[tls]\nkey = \"k.pem\"\n",
            "RELAY_TEST_PAIR_1",
            &["--tls-cert", "c.pem"],
        )
        .expect("parses");
        assert_eq!(a.tls_cert, Some(PathBuf::from("c.pem")));
        assert!(
            a.tls_key
                .expect("key")
                .ends_with("relay-main-test-RELAY_TEST_PAIR_1/k.pem")
        );
        let cli = cli_with(
            "metrics = true\n",
            "RELAY_TEST_PAIR_2",
            &["--metrics-token-file", "t"],
        )
        .expect("parses");
        assert!(cli.metrics);
        // Without the file's half, the flag alone is refused as usual.
        let e = serve_err("", "RELAY_TEST_PAIR_3", &["--tls-cert", "c.pem"]);
        assert!(e.contains("--tls-key") && !e.contains("relay.toml"), "{e}");
    }

    #[test]
    fn global_options_come_from_the_file_too() {
        let text = "metrics = true\nmetrics_token_file = \"metrics.token\"\n";
        let cli = cli_with(text, "RELAY_TEST_GLOBAL_1", &[]).expect("parses");
        assert!(cli.metrics);
        let token = cli.metrics_token_file.expect("token file");
        assert!(token.is_absolute() && token.ends_with("metrics.token"));
        let cli = cli_with("metrics = false\n", "RELAY_TEST_GLOBAL_2", &[]).expect("parses");
        assert!(!cli.metrics);
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file_which_beats_the_defaults() {
        const VAR: &str = "RELAY_TEST_PRECEDENCE_PUBLIC_URL";
        // SAFETY: only this test reads or writes this variable.
        unsafe { std::env::set_var(VAR, "https://env.example") };
        let file = r#"
listen = "127.0.0.1:1111"
public_url = "https://file.example"
max_body = 1000
data_dir = "state"
[acme]
email = ["ops@file.example"]
domain = ["file.example"]
[oauth]
allow_redirect_host = ["one.example", "two.example"]
"#;
        let a = serve_with(file, VAR, &["--listen", "127.0.0.1:2222"]).expect("parses");
        assert_eq!(a.listen, "127.0.0.1:2222".parse().expect("addr"), "flag");
        assert_eq!(a.public_url.as_deref(), Some("https://env.example"), "env");
        assert_eq!(a.max_body, 1000, "file");
        assert_eq!(a.grace_secs, 10.0, "default");
        assert_eq!(a.acme_email, ["ops@file.example"]);
        assert_eq!(a.allow_redirect_host, ["one.example", "two.example"]);
        let state = a.data_dir.expect("data dir");
        assert!(state.is_absolute() && state.ends_with(format!("relay-main-test-{VAR}/state")));

        // A repeatable option given on the command line replaces the file's list.
        let a = serve_with(file, VAR, &["--allow-redirect-host", "cli.example"]).expect("parses");
        assert_eq!(a.allow_redirect_host, ["cli.example"]);
        assert_eq!(a.listen, "127.0.0.1:1111".parse().expect("addr"), "file");

        unsafe { std::env::remove_var(VAR) };
        let a = serve_with(file, VAR, &[]).expect("parses");
        assert_eq!(
            a.public_url.as_deref(),
            Some("https://file.example"),
            "file"
        );
        let a = serve_with(file, VAR, &["--public-url", "https://flag.example"]).expect("parses");
        assert_eq!(
            a.public_url.as_deref(),
            Some("https://flag.example"),
            "flag"
        );
        let a = serve_with("", VAR, &[]).expect("parses");
        assert_eq!(a.listen, "127.0.0.1:8080".parse().expect("addr"), "default");
        assert!(!a.allow_unauthenticated);
        let a = serve_with("allow_unauthenticated = true", VAR, &[]).expect("parses");
        assert!(a.allow_unauthenticated);
    }

    /// The error of [`serve_with`].
    fn serve_err(text: &str, env_var: &'static str, flags: &[&str]) -> String {
        match serve_with(text, env_var, flags) {
            Ok(_) => panic!("{text:?} with {flags:?} is accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_the_file() {
        let e = serve_err("listn = \"127.0.0.1:1\"\n", "RELAY_TEST_ERRORS_1", &[]);
        assert!(
            e.ends_with("relay.toml:1: unknown key \"listn\" (did you mean \"listen\"?)"),
            "{e}"
        );
        let e = serve_err(
            "[oauth]\naccess_token_ttl_secs = \"1h\"\n",
            "RELAY_TEST_ERRORS_2",
            &[],
        );
        assert!(
            e.contains("relay.toml:2: oauth.access_token_ttl_secs: invalid type"),
            "{e}"
        );
        // Options that exclude each other, one from the file and one from a flag.
        let e = serve_err(
            "[acme]\ndomain = [\"relay.example.com\"]\n",
            "RELAY_TEST_ERRORS_3",
            &["--tls-cert", "c.pem", "--tls-key", "k.pem"],
        );
        assert!(
            e.contains("relay.toml: ") && e.contains("--acme-domain"),
            "{e}"
        );
        let e = serve_err("[tls]\ncert = \"c.pem\"\n", "RELAY_TEST_ERRORS_4", &[]);
        assert!(e.contains("relay.toml: ") && e.contains("--tls-key"), "{e}");
    }
}
