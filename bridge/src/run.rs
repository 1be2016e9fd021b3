//! `bridge run`: resolves the settings (flags > environment > configuration file > stored
//! login > remembered names and client tokens > defaults), starts the in-process relay when
//! no relay is given, and runs one driver per server — each with its own server process,
//! core and relay link — printing each tunnel's URLs.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use protocol::{ClientAuth, ConsentRequest, Frame};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};
use url::Url;

use crate::aggregate::children::{AggregateChildren, Member};
use crate::assets::AssetOrigin;
use crate::assets::fetch::AssetServer;
use crate::child::ChildSpec;
use crate::config::{BridgeFile, ServerEntry};
use crate::core::{Core, CoreConfig, Root};
use crate::driver::{self, Outcome};
use crate::link::{self, LinkConfig};
use crate::local_state::{self, LocalMemory};
use crate::login::{self, Credentials};
use crate::policy::{PolicyArgs, PolicyConfig};
use crate::server_settings::{AuthMode, ProtocolMode, ServerFlags, ServerOptions};
use crate::status_line::{self, Gauges, StatusLine};
use crate::upstream::{self, HttpServer, HttpUpstreams, ServerSource, Transport, UpstreamConfig};

/// Default listen address of the in-process relay.
const DEFAULT_LISTEN: std::net::SocketAddr = std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    7171,
));

/// `bridge run` options. Each can also be set in the `--config` file, under the same name
/// in snake_case; flags and environment variables win over the file.
///
/// `bridge run --help` lists the options by `display_order`, else in the order they are
/// declared: the per-server flags ([`ServerFlags`]) have theirs, and so do the options
/// listed between them.
#[derive(clap::Args)]
pub struct RunArgs {
    /// TOML file with these options and the servers to publish (`[servers.NAME]`). Flags
    /// and environment variables take precedence over it.
    #[arg(long, env = "BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Publish the servers of an MCP client's configuration file, each under its own tunnel
    /// name: Claude Desktop's claude_desktop_config.json, Claude Code's .mcp.json, Cursor's
    /// mcp.json or VS Code's mcp.json. Entries the bridge cannot publish are skipped with a
    /// warning.
    #[arg(long, value_name = "PATH", visible_alias = "import")]
    pub claude_config: Option<PathBuf>,
    /// Relay base URL (e.g. https://relay.example.com). Default: the relay stored by
    /// `bridge login`, else a relay in-process on --listen.
    #[arg(long, env = "BRIDGE_RELAY")]
    pub relay: Option<Url>,
    /// Bridge token for the relay. Prefer `bridge login` or the BRIDGE_TOKEN environment
    /// variable.
    #[arg(long, env = "BRIDGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Tunnel name ([a-z0-9-]{3,40}). Default: the name this command had last time on the
    /// stored relay (`bridge login`) or on the in-process relay's listen address (chosen at
    /// random the first time); otherwise random.
    #[arg(long, env = "BRIDGE_NAME")]
    pub name: Option<String>,
    /// Use the in-process relay even when `bridge login` stored a relay.
    #[arg(long)]
    pub local: bool,
    /// Listen address of the in-process relay (default 127.0.0.1:7171; port 0 picks a free
    /// port). Giving it selects the in-process relay.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The per-server settings (from `--auth` to `--max-message`, listed among the others
    /// by their `display_order`).
    #[command(flatten)]
    pub server: ServerFlags,
    /// With the in-process relay: replace the remembered client token with a new one (and
    /// remember it). Clients holding the old token are refused from then on.
    #[arg(long, display_order = 9)]
    pub new_token: bool,
    /// Seconds an in-process relay waits for a bridge that just disconnected (default 10).
    #[arg(long, display_order = 16)]
    pub grace_secs: Option<f64>,
    /// PEM file with the CA certificates to trust for an https relay (default: the
    /// public web PKI roots).
    #[arg(long, display_order = 20)]
    pub ca_file: Option<PathBuf>,
    /// Keep-alive interval of the in-process relay's SSE streams, in seconds (default 15).
    #[arg(long, display_order = 21)]
    pub keepalive_secs: Option<f64>,
    /// The in-process relay closes resumable SSE answers (2025-11-25 sessions) after this
    /// many seconds; clients resume them with GET + Last-Event-ID.
    #[arg(long, display_order = 22)]
    pub sse_poll_secs: Option<f64>,
    /// No live status line on the terminal.
    #[arg(long, short)]
    pub quiet: bool,
    /// Loopback address of the owner's dashboard (default 127.0.0.1 on a free port; the
    /// bridge prints its address, `bridge open` opens it).
    #[arg(long, value_name = "ADDR", env = "BRIDGE_DASHBOARD")]
    pub dashboard: Option<SocketAddr>,
    /// No dashboard: calls that need approval are then asked in the terminal only (and
    /// declined without one).
    #[arg(long, conflicts_with = "dashboard", env = "BRIDGE_NO_DASHBOARD")]
    pub no_dashboard: bool,
    /// No desktop notification when a tool call or an OAuth client waits for approval
    /// (notify-send, osascript or a Windows balloon, where there is one).
    #[arg(long)]
    pub no_notify: bool,
    /// Publish the local HTTP MCP server at this URL (Streamable HTTP, or HTTP+SSE such as
    /// http://127.0.0.1:PORT/sse) instead of a command after `--`.
    #[arg(long, value_name = "URL", conflicts_with = "command")]
    pub upstream: Option<Url>,
    /// The transport of --upstream: auto (Streamable HTTP, else HTTP+SSE, as MCP clients
    /// decide), http or sse.
    #[arg(long, value_enum, value_name = "KIND", requires = "upstream")]
    pub upstream_transport: Option<Transport>,
    /// A header sent with every request to --upstream, as "Name: value" (repeatable); never
    /// sent to the relay.
    #[arg(
        long = "upstream-header",
        value_name = "NAME: VALUE",
        requires = "upstream"
    )]
    pub upstream_headers: Vec<String>,
    /// Publish an HTTP server (--upstream, or a server's `url`) that is neither on loopback
    /// nor on a private network.
    #[arg(long)]
    pub allow_remote_upstream: bool,
    /// Publish the local asset server of the server's widgets (e.g. http://127.0.0.1:4444)
    /// under the tunnel's /assets/, moving that origin to its public address in what the
    /// server sends (widget HTML, CSP domains).
    #[arg(long, value_name = "ORIGIN", value_parser = parse_assets)]
    pub assets: Option<Url>,
    /// The desktop policy (tools offered, confirmed, annotated; audit log).
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// The server command and its arguments (after `--`). Without it, the servers of
    /// --config / --claude-config are published.
    #[arg(last = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// A random hex token of `bytes` random bytes.
pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    crate::random::fill(&mut b);
    hex::encode(b)
}

/// A random tunnel name (10 characters a-z, 0-9).
pub fn random_name() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    crate::random::bytes::<10>()
        .iter()
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

/// Which relay the tunnels go through.
enum RelayChoice {
    /// A relay in this process, on loopback.
    Embedded { listen: SocketAddr },
    /// A relay elsewhere.
    Remote {
        url: Url,
        token: String,
        ca_file: Option<PathBuf>,
        /// Relay and token come from `bridge login`.
        from_login: bool,
    },
}

impl RelayChoice {
    fn is_public(&self) -> bool {
        match self {
            Self::Embedded { .. } => false,
            Self::Remote { url, .. } => {
                !protocol::net::is_loopback_host(url.host_str().unwrap_or(""))
            }
        }
    }
}

/// Picks the relay: a flag or environment variable, else the file, else the stored login,
/// else the in-process relay. `--local` or a listen address selects the in-process relay.
fn choose_relay(
    args: &RunArgs,
    file: Option<&BridgeFile>,
    stored: impl Fn() -> Result<Option<Credentials>>,
) -> Result<RelayChoice> {
    let listen = args.listen.or(file.and_then(|f| f.listen));
    let relay_url = match (&args.relay, file.and_then(|f| f.relay.as_deref())) {
        (Some(u), _) => Some(u.clone()),
        (None, Some(s)) => Some(Url::parse(s).with_context(|| {
            format!(
                "{}: key `relay`: invalid URL {s:?}",
                file.map(|f| f.path.display().to_string())
                    .unwrap_or_default()
            )
        })?),
        (None, None) => None,
    };
    let local = args.local || file.and_then(|f| f.local).unwrap_or(false);
    let default_listen = || DEFAULT_LISTEN;
    let ca_file = args
        .ca_file
        .clone()
        .or(file.and_then(|f| f.ca_file.clone()));
    match relay_url {
        Some(url) if !local => {
            let from_flags = args.token.clone().or(file.and_then(|f| f.token.clone()));
            let stored = match from_flags {
                Some(_) => None,
                None => stored()?,
            };
            let stored = stored.as_ref();
            let same_relay = |c: &&Credentials| {
                c.relay.trim_end_matches('/') == url.as_str().trim_end_matches('/')
            };
            let (token, from_login) = match (from_flags, stored.filter(same_relay)) {
                (Some(t), _) => (t, false),
                (None, Some(c)) => (c.token.clone(), true),
                (None, None) => bail!(
                    "the relay {0} needs a bridge token: run `bridge login {0}` once (it stores \
                     the token), or set BRIDGE_TOKEN",
                    url.as_str().trim_end_matches('/')
                ),
            };
            let ca_file =
                ca_file.or_else(|| stored.filter(same_relay).and_then(|c| c.ca_file.clone()));
            Ok(RelayChoice::Remote {
                url,
                token,
                ca_file,
                from_login,
            })
        }
        _ if local || listen.is_some() => Ok(RelayChoice::Embedded {
            listen: listen.unwrap_or_else(default_listen),
        }),
        _ => match stored()? {
            Some(c) => {
                let url = c.relay_url()?;
                info!(
                    "publishing through {} (stored by `bridge login`; --local for the in-process relay)",
                    c.relay
                );
                let token = args.token.clone().unwrap_or_else(|| c.token.clone());
                Ok(RelayChoice::Remote {
                    url,
                    token,
                    ca_file: ca_file.or_else(|| c.ca_file.clone()),
                    from_login: true,
                })
            }
            None => Ok(RelayChoice::Embedded {
                listen: default_listen(),
            }),
        },
    }
}

/// One tunnel to run, with its settings resolved.
struct TunnelPlan {
    name: String,
    /// Where the server was defined (shown when there are several).
    origin: Option<String>,
    /// The command line, or the URL: how the server is named and remembered.
    command: Vec<String>,
    server: ServerSource,
    /// The servers published together under this tunnel (`tunnel = "NAME"`), by name,
    /// each with its own policy; empty for a tunnel of one server (`server`).
    members: Vec<(String, ServerSource, Option<PolicyConfig>)>,
    opts: ServerOptions,
    /// The local asset origins it publishes (a member's under the member's name).
    assets: Vec<AssetOrigin>,
    /// What to remember once the relay welcomes the tunnel.
    remember: Remember,
}

/// What a tunnel remembers once the relay welcomes it.
#[derive(Debug, Clone)]
enum Remember {
    /// Nothing new.
    Nothing,
    /// The name picked for its command on this relay (with a stored login; login.rs).
    RelayName(Url),
    /// The values picked on the in-process relay (local_state.rs), with whether the client
    /// token replaces a remembered one (`--new-token`).
    Local(local_state::Picked, bool),
}

/// The servers to publish.
fn plan_tunnels(
    args: &RunArgs,
    file: Option<&BridgeFile>,
    relay: &RelayChoice,
    memory: Option<&LocalMemory>,
) -> Result<Vec<TunnelPlan>> {
    let flags = args.server.given();
    let policy_flags = args.policy.clone().into_config();
    let top = file.map(|f| f.options.clone()).unwrap_or_default();
    let given = match &args.upstream {
        Some(url) => Some(ServerSource::Http(HttpServer {
            url: url.clone(),
            transport: args.upstream_transport.unwrap_or_default(),
            headers: args
                .upstream_headers
                .iter()
                .map(|h| parse_header(h))
                .collect::<Result<_>>()?,
        })),
        None if !args.command.is_empty() => Some(ServerSource::Command {
            command: args.command.clone(),
            env: Vec::new(),
            cwd: None,
        }),
        None => None,
    };
    if let Some(server) = given {
        let words = server.words();
        if let Some(f) = file
            && (!f.servers.is_empty() || f.claude_desktop_config.is_some())
        {
            info!(
                "serving only the server given on the command line; the servers of {} are not started",
                f.path.display()
            );
        }
        let (name, remember) = match (&args.name, file.and_then(|f| f.name.clone())) {
            (Some(n), _) => (n.clone(), Remember::Nothing),
            (None, Some(n)) => (n, Remember::Nothing),
            (None, None) => match (relay, memory) {
                (
                    RelayChoice::Remote {
                        url,
                        from_login: true,
                        ..
                    },
                    _,
                ) => match login::remembered_name(url, &words) {
                    Some(n) => (n, Remember::Nothing),
                    None => (random_name(), Remember::RelayName(url.clone())),
                },
                (RelayChoice::Embedded { .. }, Some(m)) => match m.name_for(&words) {
                    Some(n) => (n, Remember::Nothing),
                    None => {
                        let name = random_name();
                        let mut picked = m.picked(&name);
                        picked.command = Some(words.clone());
                        (name, Remember::Local(picked, false))
                    }
                },
                _ => (random_name(), Remember::Nothing),
            },
        };
        if !protocol::valid_tunnel_name(&name) {
            bail!("invalid --name {name:?}: use 3-40 characters a-z, 0-9 and '-'");
        }
        return Ok(vec![TunnelPlan {
            name,
            origin: None,
            command: words,
            server,
            members: Vec::new(),
            opts: ServerOptions::merge(&flags, &ServerOptions::default(), &top, &policy_flags),
            assets: own_assets(args.assets.as_ref()),
            remember,
        }]);
    }
    let mut entries: Vec<ServerEntry> = file.map(|f| f.servers.clone()).unwrap_or_default();
    let claude = args
        .claude_config
        .clone()
        .or(file.and_then(|f| f.claude_desktop_config.clone()));
    if let Some(path) = &claude {
        let allow_remote = args.allow_remote_upstream
            || file.and_then(|f| f.allow_remote_upstream).unwrap_or(false);
        for e in crate::imports::import_servers(path, allow_remote)? {
            if let Some(other) = entries.iter().find(|x| x.name == e.name) {
                bail!(
                    "two servers would be published as the tunnel {:?}: {} and {}; rename one",
                    e.name,
                    other.origin,
                    e.origin
                );
            }
            entries.push(e);
        }
    }
    if entries.is_empty() {
        bail!(
            "nothing to run: give the server command after `--` (`bridge run -- <cmd> [args…]`), \
             or servers with --config FILE ([servers.NAME] tables) or --claude-config PATH{}",
            match (&claude, file) {
                (Some(p), _) => format!(" ({} has no server the bridge can publish)", p.display()),
                (None, Some(f)) => format!(" ({} has no [servers.NAME])", f.path.display()),
                _ => String::new(),
            }
        );
    }
    if let Some(a) = &args.assets {
        if entries.len() > 1 {
            bail!(
                "--assets names the asset origin of one server, but {} servers are configured: \
                 give each its own with `assets = \"{}\"` in its [servers.NAME] table",
                entries.len(),
                a.origin().ascii_serialization()
            );
        }
        entries[0].assets = Some(a.clone());
    }
    if let Some(n) = &args.name {
        if entries.len() > 1 {
            bail!(
                "--name (or BRIDGE_NAME) names one tunnel, but {} servers are configured: each \
                 is published under its own name",
                entries.len()
            );
        }
        if !protocol::valid_tunnel_name(n) {
            bail!("invalid --name {n:?}: use 3-40 characters a-z, 0-9 and '-'");
        }
        entries[0].name = n.clone();
    }
    group_tunnels(entries, |e, grouped| {
        let mut own = e.options.clone();
        if grouped {
            // A member's policy applies to its own tools (in the aggregate), not to the
            // tunnel's public names.
            own.policy = None;
        }
        ServerOptions::merge(&flags, &own, &top, &policy_flags)
    })
}

/// The tunnels of `entries`: one per server, except that servers naming the same
/// `tunnel` are published together under it (in the place of the first of them, with its
/// options).
fn group_tunnels(
    entries: Vec<ServerEntry>,
    opts: impl Fn(&ServerEntry, bool) -> ServerOptions,
) -> Result<Vec<TunnelPlan>> {
    let own: std::collections::HashSet<&str> = entries
        .iter()
        .filter(|e| e.tunnel.is_none())
        .map(|e| e.name.as_str())
        .collect();
    if let Some(e) = entries
        .iter()
        .find(|e| e.tunnel.as_deref().is_some_and(|t| own.contains(t)))
    {
        bail!(
            "{}: tunnel {:?} is also the name of a server published on its own; rename one",
            e.origin,
            e.tunnel.as_deref().unwrap_or_default()
        );
    }
    let mut plans: Vec<TunnelPlan> = Vec::new();
    for e in &entries {
        let Some(t) = &e.tunnel else {
            plans.push(TunnelPlan {
                name: e.name.clone(),
                origin: Some(e.origin.clone()),
                command: e.server.words(),
                server: e.server.clone(),
                members: Vec::new(),
                opts: opts(e, false),
                assets: own_assets(e.assets.as_ref()),
                remember: Remember::Nothing,
            });
            continue;
        };
        let member = (e.name.clone(), e.server.clone(), e.options.policy.clone());
        // In a tunnel of several servers, a member's assets are below its name.
        let assets = e.assets.iter().map(|origin| AssetOrigin {
            mount: Some(e.name.clone()),
            origin: origin.clone(),
        });
        match plans.iter_mut().find(|p| &p.name == t) {
            Some(p) => {
                p.members.push(member);
                p.assets.extend(assets);
            }
            None => plans.push(TunnelPlan {
                name: t.clone(),
                origin: Some(format!("servers of tunnel {t}")),
                command: vec![format!("tunnel {t}")],
                server: e.server.clone(),
                members: vec![member],
                opts: opts(e, true),
                assets: assets.collect(),
                remember: Remember::Nothing,
            }),
        }
    }
    if plans.len() == 1 {
        plans[0].origin = None;
    }
    Ok(plans)
}

/// The asset origin of a tunnel of one server (published at its `/assets/` itself).
fn own_assets(origin: Option<&Url>) -> Vec<AssetOrigin> {
    origin
        .map(|origin| AssetOrigin {
            mount: None,
            origin: origin.clone(),
        })
        .into_iter()
        .collect()
}

/// Most upstream sessions of an HTTP server at once (`--max-children` for HTTP servers).
const UPSTREAM_SESSIONS: usize = 256;

/// The children of an aggregated tunnel: each member served by its own kind of children
/// (an HTTP member's health is its own: one member down leaves the tunnel up).
fn aggregate_children(
    tunnel: &str,
    members: Vec<MemberPlan>,
    events: mpsc::Sender<crate::child::ChildEvent>,
    guard: &Arc<crate::guard::Guard>,
) -> Result<AggregateChildren, String> {
    let (member_tx, member_rx) = mpsc::channel(1024);
    let mut out = Vec::new();
    for (name, spec, upstream, policy) in members {
        let children: Box<dyn crate::core::Children + Send> = match upstream {
            None => Box::new(driver::Processes::new(member_tx.clone(), guard.clone())),
            Some((cfg, addrs)) => Box::new(HttpUpstreams::new(
                cfg,
                &addrs,
                member_tx.clone(),
                Arc::new(upstream::Health::default()),
            )?),
        };
        out.push(Member {
            name,
            children,
            spec,
            policy: policy.as_ref().map(crate::policy::Policy::new),
        });
    }
    Ok(AggregateChildren::new(tunnel, out, member_rx, events))
}

/// `--assets ORIGIN`.
fn parse_assets(s: &str) -> std::result::Result<Url, String> {
    crate::assets::parse_origin(s).map_err(|e| e.to_string())
}

/// `--upstream-header "Name: value"` as a name and a value.
fn parse_header(h: &str) -> Result<(String, String)> {
    let Some((name, value)) = h.split_once(':') else {
        bail!("--upstream-header {h:?}: write it as \"Name: value\"");
    };
    let (name, value) = (name.trim(), value.trim());
    crate::config::check_header(name, value).map_err(|e| anyhow!("--upstream-header: {e}"))?;
    Ok((name.to_owned(), value.to_owned()))
}

/// A tunnel ready to start.
struct Tunnel {
    name: String,
    origin: Option<String>,
    command: Vec<String>,
    cfg: CoreConfig,
    link: LinkConfig,
    auth: AuthMode,
    client_token: Option<String>,
    /// Start the shared child at once (and wait for it before printing the endpoints).
    start_shared: bool,
    /// What serves it: a process, an HTTP server, or several servers together.
    children: ChildrenPlan,
    /// The local asset origins it publishes.
    assets: Option<crate::assets::Published>,
    remember: Remember,
}

/// One member of an aggregated tunnel: its name, what it runs, and (an HTTP member) its
/// server's settings and the addresses its host resolved to.
type MemberPlan = (String, ChildSpec, Option<HttpPlan>, Option<PolicyConfig>);

/// An HTTP server's settings and the addresses its host resolved to.
type HttpPlan = (UpstreamConfig, Vec<SocketAddr>);

/// What a tunnel's children are.
enum ChildrenPlan {
    /// Processes running `cfg.child`.
    Processes,
    /// Sessions of an HTTP server (its settings and the addresses its host resolved to).
    Http(UpstreamConfig, Vec<SocketAddr>),
    /// Aggregate sessions over members.
    Aggregate(Vec<MemberPlan>),
}

/// What serves one server: the process to run, or the HTTP server to reach (its host
/// checked and resolved).
fn serve(
    server: &ServerSource,
    max_message: usize,
    allow_remote: bool,
    what: &str,
) -> Result<(ChildSpec, Option<HttpPlan>)> {
    Ok(match server {
        ServerSource::Command { command, env, cwd } => (
            ChildSpec {
                program: command[0].clone(),
                args: command[1..].to_vec(),
                max_line: max_message,
                env: env.clone(),
                cwd: cwd.clone(),
            },
            None,
        ),
        ServerSource::Http(server) => {
            let (_, addrs) = upstream::address::resolve(&server.url, allow_remote)
                .map_err(anyhow::Error::new)
                .with_context(|| what.to_owned())?;
            let spec = ChildSpec {
                program: server.url.to_string(),
                args: Vec::new(),
                max_line: max_message,
                env: Vec::new(),
                cwd: None,
            };
            let cfg = UpstreamConfig {
                server: server.clone(),
                max_message,
                connect_timeout: Duration::from_secs(10),
            };
            (spec, Some((cfg, addrs)))
        }
    })
}

/// The client token of a tunnel with bearer auth and whether the bridge picked it: the one
/// given, else (with the in-process relay, unless `new_token`) the one remembered for the
/// tunnel's URL, else a new one — which `remember` then stores once the tunnel is up.
fn bearer_token(
    given: Option<String>,
    name: &str,
    memory: Option<&LocalMemory>,
    new_token: bool,
    remember: &mut Remember,
) -> Result<(String, bool)> {
    if let Some(t) = given {
        if new_token {
            bail!(
                "--new-token makes a new client token, but one is given (--client-token, \
                 BRIDGE_CLIENT_TOKEN or the configuration file): leave it out"
            );
        }
        if let Some(m) = memory
            && m.token_for(name).is_some()
        {
            info!(
                "tunnel {name}: using the client token given; the one remembered for this URL \
                 stays in {}",
                m.path().display()
            );
        }
        return Ok((t, false));
    }
    let Some(m) = memory else {
        return Ok((random_token(24), true));
    };
    let remembered = m.token_for(name);
    if let Some(t) = remembered.clone().filter(|_| !new_token) {
        info!(
            "tunnel {name}: reusing the client token remembered in {} (`bridge run --new-token \
             …` makes a new one)",
            m.path().display()
        );
        return Ok((t, false));
    }
    let t = random_token(24);
    let mut picked = match std::mem::replace(remember, Remember::Nothing) {
        Remember::Local(picked, _) => picked,
        _ => m.picked(name),
    };
    picked.client_token = Some(t.clone());
    *remember = Remember::Local(picked, remembered.is_some());
    Ok((t, true))
}

/// A duration option in seconds, within `(min, max]` (or `[0, max]` when `zero_ok`).
fn secs(value: f64, flag: &str, zero_ok: bool, max: f64) -> Result<Duration> {
    let ok = if zero_ok { value >= 0.0 } else { value > 0.0 };
    if !(ok && value <= max) {
        bail!(
            "{flag} must be {} and at most {max}",
            if zero_ok { "0 or more" } else { "more than 0" }
        );
    }
    Ok(Duration::from_secs_f64(value))
}

/// `bridge run`.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let file = match &args.config {
        Some(path) => Some(BridgeFile::load(path)?),
        None => None,
    };
    let file = file.as_ref();
    let relay_choice = choose_relay(&args, file, login::load_credentials)?;
    if let RelayChoice::Remote { url, .. } = &relay_choice {
        crate::cleartext::check(url)?;
        if args.new_token {
            bail!(
                "--new-token replaces the client token remembered by the in-process relay; with \
                 a relay, a bearer client token is new on every run unless --client-token gives one"
            );
        }
    }
    // With the in-process relay, the names and client tokens picked are remembered.
    let memory = match &relay_choice {
        RelayChoice::Embedded { listen } => LocalMemory::open(*listen),
        RelayChoice::Remote { .. } => None,
    };
    let plans = plan_tunnels(&args, file, &relay_choice, memory.as_ref())?;
    let quiet = args.quiet || file.and_then(|f| f.quiet).unwrap_or(false);
    let several = plans.len() > 1;

    // The relay: given, or in-process on loopback (one for every tunnel).
    let mut embedded = None;
    let (relay_url, token, ca_file) = match &relay_choice {
        RelayChoice::Remote {
            url,
            token,
            ca_file,
            ..
        } => (url.clone(), token.clone(), ca_file.clone()),
        RelayChoice::Embedded { listen } => {
            let listener = relay::bind(*listen).with_context(|| {
                format!(
                    "cannot listen on {listen} (another bridge may be running there: choose \
                     another address with --listen, port 0 for any)"
                )
            })?;
            let addr = listener.local_addr()?;
            let mut config = relay::RelayConfig::new(addr, &format!("http://{addr}"))?;
            let token = random_token(32);
            config.add_bridge_token(&token)?;
            let keepalive = args
                .keepalive_secs
                .or(file.and_then(|f| f.keepalive_secs))
                .unwrap_or(15.0);
            config.keepalive = secs(keepalive, "--keepalive-secs", false, 3600.0)?;
            config.sse_poll = match args.sse_poll_secs.or(file.and_then(|f| f.sse_poll_secs)) {
                None => None,
                Some(s) => Some(secs(s, "--sse-poll-secs", false, 86_400.0)?),
            };
            let grace = args
                .grace_secs
                .or(file.and_then(|f| f.grace_secs))
                .unwrap_or(10.0);
            config.grace = secs(grace, "--grace-secs", true, 3600.0)?;
            embedded = Some(relay::EmbeddedRelay::start(config, listener)?);
            (Url::parse(&format!("http://{addr}"))?, token, None)
        }
    };
    let tls = link::tls_config(ca_file.as_deref()).with_context(|| match &ca_file {
        Some(p) => format!("--ca-file {}", p.display()),
        None => "the web PKI roots".into(),
    })?;

    let mut tunnels = Vec::new();
    // Client tokens picked by the bridge this run (what `--new-token` renews).
    let mut picked_tokens = 0;
    for mut p in plans {
        let o = &p.opts;
        let auth = o.auth.unwrap_or(if relay_choice.is_public() {
            AuthMode::Oauth
        } else {
            AuthMode::Bearer
        });
        if auth == AuthMode::Oauth && matches!(relay_choice, RelayChoice::Embedded { .. }) {
            bail!(
                "--auth oauth needs a relay with a public URL (--relay, or `bridge login`); the \
                 in-process relay serves loopback only"
            );
        }
        let client_token = match auth {
            AuthMode::Bearer => {
                let given = o.client_token.clone();
                let (token, picked) = bearer_token(
                    given,
                    &p.name,
                    memory.as_ref(),
                    args.new_token,
                    &mut p.remember,
                )
                .map_err(|e| {
                    if several {
                        e.context(format!("tunnel {}", p.name))
                    } else {
                        e
                    }
                })?;
                picked_tokens += usize::from(picked);
                Some(token)
            }
            AuthMode::None | AuthMode::Oauth => None,
        };
        let client_auth = match (&client_token, auth) {
            (Some(t), _) => ClientAuth::Bearer {
                sha256: protocol::digest::sha256(t.as_bytes()),
            },
            (None, AuthMode::Oauth) => ClientAuth::OAuth,
            (None, _) => ClientAuth::None,
        };
        let max_message = o.max_message.unwrap_or(32 << 20);
        let allow_remote = args.allow_remote_upstream
            || file.and_then(|f| f.allow_remote_upstream).unwrap_or(false);
        let what = if several {
            format!("tunnel {}", p.name)
        } else {
            "--upstream".into()
        };
        let (spec, children, http) = if p.members.is_empty() {
            let (spec, upstream) = serve(&p.server, max_message, allow_remote, &what)?;
            let http = upstream.is_some();
            let children = match upstream {
                Some((cfg, addrs)) => ChildrenPlan::Http(cfg, addrs),
                None => ChildrenPlan::Processes,
            };
            (spec, children, http)
        } else {
            let mut members = Vec::new();
            for (name, server, policy) in &p.members {
                let what = format!("tunnel {}, server {name}", p.name);
                let (spec, upstream) = serve(server, max_message, allow_remote, &what)?;
                if let Some(p) = policy {
                    p.validate()
                        .with_context(|| format!("the policy of {what}"))?;
                    if !p.confirm_tools.is_empty()
                        || !p.roots.is_empty()
                        || p.audit_log.is_some()
                        || p.audit_max_bytes.is_some()
                        || p.confirm_timeout_secs.is_some()
                    {
                        bail!(
                            "the policy of {what}: in a tunnel of several servers a server's \
                             own policy may hide and annotate its tools (allow_tools, \
                             deny_tools, read_only_tools, destructive_tools); confirmations, \
                             roots and the audit log are the tunnel's: set them at the top \
                             level, with the public names (`{name}_<tool>`)"
                        );
                    }
                }
                members.push((name.clone(), spec, upstream, policy.clone()));
            }
            let http = members.iter().any(|(_, _, u, _)| u.is_some());
            let spec = ChildSpec {
                program: format!("tunnel {}", p.name),
                args: Vec::new(),
                max_line: max_message,
                env: Vec::new(),
                cwd: None,
            };
            (spec, ChildrenPlan::Aggregate(members), http)
        };
        let mut cfg = CoreConfig::new(spec);
        cfg.tunnel = p.name.clone();
        // The dashboard's call figures.
        cfg.calls = (!args.no_dashboard).then(|| Arc::new(crate::calls::CallStats::default()));
        // An HTTP server's children are sessions: each remote session (and each
        // principal's sessionless traffic) gets its own, and the bridge keeps one to watch
        // the server (also when it is one member of several).
        cfg.isolate = o.isolate.unwrap_or(false) || http;
        cfg.keep_shared = http;
        cfg.max_children = o.max_children.unwrap_or(if http {
            UPSTREAM_SESSIONS
        } else {
            cfg.max_children
        });
        cfg.max_sessions = o.max_sessions.unwrap_or(cfg.max_sessions);
        cfg.max_sessions_per_principal = o
            .max_sessions_per_principal
            .unwrap_or(cfg.max_sessions_per_principal);
        cfg.max_in_flight_per_session = o.max_in_flight.unwrap_or(cfg.max_in_flight_per_session);
        let call_timeout = o.call_timeout_secs.unwrap_or(600.0);
        if call_timeout.is_nan() || call_timeout <= 0.0 {
            bail!("--call-timeout-secs must be positive");
        }
        cfg.call_timeout = Duration::from_secs_f64(call_timeout);
        cfg.roots = roots(o.root.as_deref().unwrap_or_default())?;
        cfg.client_roots = o.client_roots.unwrap_or(false);
        cfg.stateless = o.protocol.unwrap_or(ProtocolMode::Auto) == ProtocolMode::Auto;
        cfg.public_cache = auth == AuthMode::None;
        let policy = o.policy.clone().unwrap_or_default();
        policy.validate().with_context(|| {
            if several {
                format!("the policy of tunnel {}", p.name)
            } else {
                "the policy".into()
            }
        })?;
        cfg.policy = policy;
        let assets = if p.assets.is_empty() {
            None
        } else {
            let server = AssetServer::new(&p.assets, allow_remote, max_message).map_err(|e| {
                anyhow!(
                    "{e}{}",
                    if several {
                        format!(" (tunnel {})", p.name)
                    } else {
                        String::new()
                    }
                )
            })?;
            Some(crate::assets::Published {
                origins: p.assets.clone(),
                server: Arc::new(server),
            })
        };
        tunnels.push(Tunnel {
            link: LinkConfig {
                relay: relay_url.clone(),
                token: token.clone(),
                tunnel: p.name.clone(),
                client_auth,
                tls: tls.clone(),
                assets: assets.is_some(),
            },
            assets,
            name: p.name,
            origin: p.origin,
            command: p.command,
            start_shared: !cfg.isolate || cfg.keep_shared,
            cfg,
            auth,
            client_token,
            children,
            remember: p.remember,
        });
    }
    if args.new_token && picked_tokens == 0 {
        bail!(
            "--new-token: there is no client token to renew (with --auth none, clients send none)"
        );
    }

    let gauges: Vec<(String, Arc<Gauges>)> = tunnels
        .iter()
        .map(|t| (t.name.clone(), Arc::new(Gauges::default())))
        .collect();
    let status = StatusLine::start(gauges.clone(), quiet);
    let pauser = status.as_ref().map(StatusLine::pauser);
    let terminal = std::io::stdin().is_terminal();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let names: Vec<String> = tunnels.iter().map(|t| t.name.clone()).collect();
    let no_notify = args.no_notify;
    let desk_listener = if args.no_dashboard {
        None
    } else {
        let addr = args
            .dashboard
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        Some(
            crate::desk::bind(addr)
                .with_context(|| format!("the dashboard cannot listen on {addr} (--dashboard)"))?,
        )
    };
    // The owner's commands to each tunnel, from the dashboard.
    let mut command_rx = Vec::new();
    let desk_tunnels: Vec<crate::desk::DeskTunnel> = tunnels
        .iter()
        .zip(&gauges)
        .map(|(t, (_, g))| {
            let (tx, rx) = mpsc::channel(16);
            command_rx.push(Some(rx));
            (t, g, tx)
        })
        .map(|(t, g, commands)| crate::desk::DeskTunnel {
            commands,
            audit_log: t.cfg.policy.audit_log.clone(),
            name: t.name.clone(),
            auth: match t.auth {
                AuthMode::Oauth => "OAuth",
                AuthMode::Bearer => "bearer token",
                AuthMode::None => "none",
            },
            gauges: g.clone(),
            calls: t.cfg.calls.clone(),
        })
        .collect();
    let outcomes = rt.block_on(async move {
        // The owner's dashboard, before the tunnels start: its address comes first.
        let (desk_tx, desk_rx) = mpsc::channel(16);
        let mut _address_file = None;
        let desk = match desk_listener {
            None => None,
            Some(l) => match crate::desk::start(l, desk_tunnels, desk_tx, !no_notify) {
                Ok(d) => {
                    status_line::without_line(|| {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "Dashboard: {}", d.url);
                        let _ = out.flush();
                    });
                    match crate::desk::remember_address(&d.url) {
                        Ok(f) => _address_file = Some(f),
                        Err(e) => warn!("`bridge open` will not find this dashboard: {e:#}"),
                    }
                    Some(d.state)
                }
                Err(e) => {
                    warn!("the dashboard cannot start: {e:#}");
                    None
                }
            },
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            relay::server::shutdown_signal().await;
            let _ = stop_tx.send(true);
            // Keep the sender: a closed channel would read as a second signal.
            std::future::pending::<()>().await;
        });
        let (consent_tx, consent_rx) = mpsc::channel(64);
        let mut decisions = Vec::new();
        let guard = Arc::new(crate::guard::Guard::start());
        let mut runs = Vec::new();
        for (i, t) in tunnels.into_iter().enumerate() {
            let (decision_tx, decision_rx) = mpsc::channel(16);
            decisions.push(decision_tx);
            let terminal_link = driver::TerminalLink {
                index: i,
                consent: consent_tx.clone(),
                decisions: decision_rx,
                gauges: gauges[i].1.clone(),
                owner_view: desk.is_some(),
                commands: if desk.is_some() {
                    command_rx[i].take()
                } else {
                    None
                },
            };
            let mut stop = stop_rx.clone();
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let on_welcome = welcome_printer(&t, several, terminal);
            let (events_tx, events_rx) = mpsc::channel(1024);
            let core = match t.children {
                ChildrenPlan::Processes => Core::new(t.cfg, events_tx, guard.clone()),
                ChildrenPlan::Http(cfg, addrs) => {
                    match HttpUpstreams::new(cfg, &addrs, events_tx, gauges[i].1.health()) {
                        Ok(s) => Core::with_children(t.cfg, Box::new(s), std::time::Instant::now()),
                        Err(e) => {
                            status_line::without_line(|| {
                                eprintln!("error: tunnel {}: {e}", t.name)
                            });
                            continue;
                        }
                    }
                }
                ChildrenPlan::Aggregate(members) => {
                    match aggregate_children(&t.name, members, events_tx, &guard) {
                        Ok(c) => Core::with_children(t.cfg, Box::new(c), std::time::Instant::now()),
                        Err(e) => {
                            status_line::without_line(|| {
                                eprintln!("error: tunnel {}: {e}", t.name)
                            });
                            continue;
                        }
                    }
                }
            };
            let (name, command) = (t.name, t.command);
            runs.push(async move {
                let options = driver::DriverOptions {
                    start_shared: t.start_shared,
                    assets: t.assets,
                };
                let outcome = driver::run(
                    core,
                    events_rx,
                    t.link,
                    on_welcome,
                    shutdown,
                    options,
                    terminal_link,
                )
                .await;
                report(&name, several, &command, &outcome);
                outcome
            });
        }
        drop(consent_tx);
        tokio::spawn(consent_desk(
            consent_rx,
            decisions,
            names,
            pauser,
            desk.map(|d| (d, desk_rx)),
        ));
        futures_util::future::join_all(runs).await
    });
    rt.shutdown_timeout(Duration::from_millis(500));
    drop(status);
    if let Some(relay) = embedded.take() {
        // Let the in-process relay deliver the last answers.
        relay.shutdown(Duration::from_secs(3));
    }
    let code = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Stopped => 0,
            Outcome::Refused(_) => 2,
            Outcome::ServerFailed(_) => 3,
        })
        .fold(0u8, |worst, c| match (worst, c) {
            (2, _) | (_, 2) => 2,
            (w, c) => w.max(c),
        });
    Ok(ExitCode::from(code))
}

/// Prints how a tunnel ended, when it ended with an error.
fn report(name: &str, several: bool, command: &[String], outcome: &Outcome) {
    let who = if several {
        format!("tunnel {name}: ")
    } else {
        String::new()
    };
    status_line::without_line(|| match outcome {
        Outcome::Stopped => {}
        Outcome::Refused(msg) => {
            eprintln!("error: {who}the relay refused this tunnel: {msg}");
        }
        Outcome::ServerFailed(msg) => {
            let hint = if msg.starts_with("cannot start") {
                "\n  check that the program is installed and on PATH (or give its full path)"
            } else {
                ""
            };
            eprintln!(
                "error: {who}the MCP server could not start: {msg}{hint}\n  the command: {}",
                login::command_line(command)
            );
        }
    });
}

/// Prints a tunnel's endpoints and how clients authenticate, once, when the relay first
/// welcomes it; remembers what it was asked to.
fn welcome_printer(t: &Tunnel, several: bool, terminal: bool) -> driver::OnWelcome {
    let mut printed = false;
    let header = several.then(|| {
        format!(
            "Tunnel {} ({}):",
            t.name,
            t.origin.as_deref().unwrap_or_default()
        )
    });
    let (client_token, auth) = (t.client_token.clone(), t.auth);
    let remember = t.remember.clone();
    let asset_mounts: Vec<String> = t
        .assets
        .iter()
        .flat_map(|a| a.origins.iter())
        .map(|o| o.mount.as_ref().map_or(String::new(), |m| format!("{m}/")))
        .collect();
    let (name, command) = (t.name.clone(), t.command.clone());
    Box::new(move |w| {
        if printed {
            return;
        }
        printed = true;
        match &remember {
            Remember::Nothing => {}
            Remember::RelayName(url) => {
                if let Err(e) = login::remember_name(url, &command, &name) {
                    warn!("cannot remember the tunnel name (the next run gets a new URL): {e:#}");
                }
            }
            Remember::Local(picked, replaces) => match picked.store() {
                Err(e) => warn!(
                    "tunnel {name}: cannot remember its name and client token (the next run \
                     gets new ones): {e:#}"
                ),
                Ok(()) if *replaces => info!(
                    "tunnel {name}: a new client token is remembered in {}; clients sending \
                     the previous one are refused until they are given this one",
                    picked.path().display()
                ),
                Ok(()) => info!(
                    "tunnel {name}: {} remembered in {}, and the next runs on this address \
                     reuse {} (`bridge run --new-token …` makes a new token; delete the entry \
                     to forget it)",
                    match (&picked.command, &picked.client_token) {
                        (Some(_), Some(_)) => "its name and client token are",
                        (Some(_), None) => "its name is",
                        _ => "its client token is",
                    },
                    picked.path().display(),
                    if picked.command.is_some() && picked.client_token.is_some() {
                        "them"
                    } else {
                        "it"
                    }
                ),
            },
        }
        status_line::without_line(|| {
            let mut out = std::io::stdout().lock();
            if let Some(h) = &header {
                let _ = writeln!(out, "{h}");
            }
            let _ = writeln!(out, "MCP endpoint: {}", w.mcp_url);
            let _ = writeln!(out, "SSE endpoint: {}", w.sse_url);
            if let Some(root) = w.mcp_url.strip_suffix("/mcp") {
                for mount in &asset_mounts {
                    let _ = writeln!(out, "Assets: {root}/assets/{mount}");
                }
            }
            match (&client_token, auth) {
                (Some(t), _) => {
                    let _ = writeln!(out, "Bearer token: {t}");
                }
                (None, AuthMode::Oauth) if terminal => {
                    let _ = writeln!(
                        out,
                        "Client auth: OAuth (approve each new client here by typing the code its consent page shows, or with `bridge approve <code>`)"
                    );
                }
                (None, AuthMode::Oauth) => {
                    let _ = writeln!(
                        out,
                        "Client auth: OAuth (approve each new client with `bridge approve <code>`, the code its consent page shows)"
                    );
                }
                (None, _) => {
                    let _ = writeln!(out, "Client auth: none");
                }
            }
            let _ = out.flush();
        });
    })
}

/// The dashboard's state, and the consent decisions the owner makes there.
type DeskLink = (Arc<crate::desk::DeskState>, mpsc::Receiver<(String, bool)>);

/// How long an unanswered consent request keeps the status line hidden.
const CONSENT_TTL: Duration = Duration::from_secs(600);

/// The terminal's one reader (answers to held tool calls are taken out before, by the
/// confirmation hub): OAuth consent codes typed by the owner go to the tunnel whose relay
/// asked.
async fn consent_desk(
    mut requests: mpsc::Receiver<(usize, ConsentRequest)>,
    decisions: Vec<mpsc::Sender<Frame>>,
    names: Vec<String>,
    pauser: Option<status_line::Pauser>,
    desk: Option<DeskLink>,
) {
    let (desk, mut desk_decisions) = match desk {
        Some((d, rx)) => (Some(d), Some(rx)),
        None => (None, None),
    };
    let mut prompts = crate::consent::Prompts::default();
    let mut owners: HashMap<String, (usize, Instant)> = HashMap::new();
    let mut stdin = crate::consent::stdin_lines();
    let mut stdin_open = true;
    let mut sweep = tokio::time::interval(Duration::from_secs(30));
    let pause = |on: bool| {
        if let Some(p) = &pauser {
            p.set(on);
        }
    };
    loop {
        tokio::select! {
            r = requests.recv() => match r {
                Some((i, c)) => {
                    pause(true);
                    status_line::without_line(|| {
                        if names.len() > 1 {
                            eprintln!("\n[tunnel {}]", names[i]);
                        }
                        prompts.show(&c);
                    });
                    if let Some(d) = &desk {
                        d.add_consent(crate::desk::WaitingConsent {
                            tunnel: names[i].clone(),
                            request: c.clone(),
                            since: std::time::SystemTime::now(),
                        });
                    }
                    owners.insert(c.id.clone(), (i, Instant::now()));
                }
                None => return,
            },
            decided = next_desk_decision(&mut desk_decisions), if desk_decisions.is_some() => match decided {
                Some((id, approve)) => {
                    if let Some((i, _)) = owners.remove(&id) {
                        status_line::without_line(|| {
                            eprintln!("{} the client on the dashboard.", if approve { "Approved" } else { "Denied" });
                        });
                        let _ = decisions[i].send(Frame::ConsentDecision { id, approve }).await;
                    }
                    if owners.is_empty() {
                        pause(false);
                    }
                }
                None => desk_decisions = None,
            },
            line = stdin.recv(), if stdin_open => match line {
                Some(line) => {
                    let decision = status_line::without_line(|| prompts.on_line(&line));
                    if let Some(Frame::ConsentDecision { id, approve }) = decision
                        && let Some((i, _)) = owners.remove(&id)
                    {
                        if let Some(d) = &desk {
                            d.remove_consent(&id);
                        }
                        let _ = decisions[i].send(Frame::ConsentDecision { id, approve }).await;
                    }
                    if owners.is_empty() {
                        pause(false);
                    }
                }
                None => stdin_open = false,
            },
            _ = sweep.tick() => {
                owners.retain(|id, (_, at)| {
                    let keep = at.elapsed() < CONSENT_TTL;
                    if let (false, Some(d)) = (keep, &desk) {
                        d.remove_consent(id);
                    }
                    keep
                });
                if owners.is_empty() {
                    pause(false);
                }
            }
        }
    }
}

/// The next consent decision from the dashboard (pending forever without one).
async fn next_desk_decision(
    rx: &mut Option<mpsc::Receiver<(String, bool)>>,
) -> Option<(String, bool)> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_flags::{self, Only};

    fn args(words: &[&str]) -> RunArgs {
        test_flags::parse(words)
    }

    /// The long options of `bridge run --help`, in order.
    fn listed_options() -> Vec<String> {
        use clap::CommandFactory;
        let help = Only::<RunArgs>::command().render_long_help().to_string();
        help.lines()
            .filter(|l| l.trim_start().starts_with('-') && l.len() - l.trim_start().len() < 8)
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
            .map(|w| w.trim_end_matches(',').to_owned())
            .collect()
    }

    #[test]
    fn help_lists_the_per_server_flags_among_the_others() {
        let expected = [
            "--config",
            "--claude-config",
            "--relay",
            "--token",
            "--name",
            "--local",
            "--listen",
            "--auth",
            "--client-token",
            "--new-token",
            "--isolate",
            "--max-children",
            "--max-sessions",
            "--max-sessions-per-principal",
            "--max-in-flight",
            "--call-timeout-secs",
            "--grace-secs",
            "--root",
            "--client-roots",
            "--protocol",
            "--ca-file",
            "--keepalive-secs",
            "--sse-poll-secs",
            "--max-message",
            "--quiet",
            "--dashboard",
            "--no-dashboard",
            "--no-notify",
            "--upstream",
            "--upstream-transport",
            "--upstream-header",
            "--allow-remote-upstream",
            "--assets",
            "--allow-tool",
            "--deny-tool",
            "--confirm-tool",
            "--read-only-tool",
            "--destructive-tool",
            "--audit-log",
            "--audit-max-bytes",
            "--confirm-timeout-secs",
            "--help",
        ];
        assert_eq!(listed_options(), expected);
    }

    const HERE: &str = "127.0.0.1:7171";

    fn embedded() -> RelayChoice {
        RelayChoice::Embedded {
            listen: HERE.parse().unwrap(),
        }
    }

    /// A memory in a temporary directory, where `command` was given `name` and `token`.
    fn memory_with(dir: &std::path::Path, command: &str, name: &str, token: &str) -> LocalMemory {
        let path = dir.join("local.toml");
        let m = LocalMemory::load(path.clone(), HERE.parse().unwrap());
        let mut p = m.picked(name);
        p.command = Some(vec![command.to_owned()]);
        p.client_token = Some(token.to_owned());
        p.store().unwrap();
        LocalMemory::load(path, HERE.parse().unwrap())
    }

    fn empty_memory(dir: &std::path::Path) -> LocalMemory {
        LocalMemory::load(dir.join("local.toml"), HERE.parse().unwrap())
    }

    #[test]
    fn the_in_process_relay_picks_a_name_once_per_command() {
        let dir = tempfile::tempdir().unwrap();
        let m = empty_memory(dir.path());
        let plans = plan_tunnels(&args(&["--", "server"]), None, &embedded(), Some(&m)).unwrap();
        match &plans[0].remember {
            Remember::Local(p, false) => {
                assert_eq!(p.command.as_deref(), Some(&["server".to_owned()][..]));
                assert!(p.client_token.is_none());
            }
            other => panic!("{other:?}"),
        }

        let m = memory_with(dir.path(), "server", "abcdefghij", "tok-1");
        let plans = plan_tunnels(&args(&["--", "server"]), None, &embedded(), Some(&m)).unwrap();
        assert_eq!(plans[0].name, "abcdefghij");
        assert!(matches!(plans[0].remember, Remember::Nothing));
    }

    #[test]
    fn a_given_name_wins_and_is_not_remembered_for_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let m = memory_with(dir.path(), "server", "abcdefghij", "tok-1");
        let a = args(&["--name", "my-files", "--", "server"]);
        let plans = plan_tunnels(&a, None, &embedded(), Some(&m)).unwrap();
        assert_eq!(plans[0].name, "my-files");
        assert!(matches!(plans[0].remember, Remember::Nothing));
    }

    #[test]
    fn an_imported_file_adds_its_local_servers_to_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let imported = dir.path().join("mcp.json");
        std::fs::write(
            &imported,
            r#"{
  // comments, as VS Code writes them
  "servers": {
    "figma": {"type": "http", "url": "http://127.0.0.1:3845/mcp"},
    "public": {"type": "http", "url": "http://8.8.8.8/mcp"},
    "memory": {"type": "stdio", "command": "npx", "args": ["-y", "server-memory"]},
  }
}"#,
        )
        .unwrap();
        let path = imported.display().to_string();
        let toml = "[servers.notes]\ncommand = \"notes\"\n";
        let file = BridgeFile::parse(&dir.path().join("b.toml"), toml, &|_| None).unwrap();
        let names = |plans: &[TunnelPlan]| plans.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        let plans =
            plan_tunnels(&args(&["--import", &path]), Some(&file), &embedded(), None).unwrap();
        // The public server is left out (with a warning).
        assert_eq!(names(&plans), ["notes", "figma", "memory"]);
        assert!(matches!(&plans[1].server, ServerSource::Http(h) if h.url.port() == Some(3845)));
        assert_eq!(plans[1].command, ["http://127.0.0.1:3845/mcp"]);
        let a = args(&["--claude-config", &path, "--allow-remote-upstream"]);
        let plans = plan_tunnels(&a, Some(&file), &embedded(), None).unwrap();
        assert_eq!(names(&plans), ["notes", "figma", "memory", "public"]);
        // A name of the file and of the import at once.
        let toml = "[servers.memory]\ncommand = \"memory\"\n";
        let file = BridgeFile::parse(&dir.path().join("b.toml"), toml, &|_| None).unwrap();
        let e = plan_tunnels(&args(&["--import", &path]), Some(&file), &embedded(), None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("two servers would be published as the tunnel \"memory\""),
            "{e}"
        );
    }

    #[test]
    fn without_memory_nothing_is_remembered() {
        // Port 0, or no configuration directory.
        let plans = plan_tunnels(&args(&["--", "server"]), None, &embedded(), None).unwrap();
        assert!(matches!(plans[0].remember, Remember::Nothing));
        let mut remember = Remember::Nothing;
        let (t, picked) = bearer_token(None, "abcdefghij", None, true, &mut remember).unwrap();
        assert!(picked && !t.is_empty());
        assert!(matches!(remember, Remember::Nothing));
    }

    #[test]
    fn a_given_token_wins_and_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let m = memory_with(dir.path(), "server", "abcdefghij", "tok-1");
        let mut remember = Remember::Nothing;
        let given = |new_token, remember: &mut Remember| {
            bearer_token(
                Some("given".into()),
                "abcdefghij",
                Some(&m),
                new_token,
                remember,
            )
        };
        let got = given(false, &mut remember).unwrap();
        assert_eq!(got, ("given".to_owned(), false));
        assert!(matches!(remember, Remember::Nothing));
        // And cannot be combined with --new-token.
        let e = given(true, &mut remember).unwrap_err();
        assert!(e.to_string().contains("--new-token"), "{e}");
    }

    #[test]
    fn a_remembered_token_is_reused_unless_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let m = memory_with(dir.path(), "server", "abcdefghij", "tok-1");
        let mut remember = Remember::Nothing;
        let got = bearer_token(None, "abcdefghij", Some(&m), false, &mut remember).unwrap();
        assert_eq!(got, ("tok-1".to_owned(), false));
        assert!(matches!(remember, Remember::Nothing));

        let (t, picked) = bearer_token(None, "abcdefghij", Some(&m), true, &mut remember).unwrap();
        assert!(picked && t != "tok-1");
        match &remember {
            Remember::Local(p, true) => assert_eq!(p.client_token.as_deref(), Some(t.as_str())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_first_token_joins_the_picked_name() {
        let dir = tempfile::tempdir().unwrap();
        let m = empty_memory(dir.path());
        let plans = plan_tunnels(&args(&["--", "server"]), None, &embedded(), Some(&m)).unwrap();
        let mut remember = plans[0].remember.clone();
        let (t, picked) =
            bearer_token(None, &plans[0].name, Some(&m), false, &mut remember).unwrap();
        assert!(picked);
        match &remember {
            Remember::Local(p, false) => {
                assert!(p.command.is_some());
                assert_eq!(p.client_token.as_deref(), Some(t.as_str()));
            }
            other => panic!("{other:?}"),
        }
    }
}
