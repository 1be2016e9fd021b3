//! Starting the systems under test: the null HTTP server, the echo server over Streamable
//! HTTP, `relay serve`, `bridge run` (embedded or against a relay; in front of the stdio
//! echo server or of the HTTP one), and supergateway (installed on demand with npm).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::http::Endpoint;
use crate::mcp::Target;
use crate::procs::Proc;

/// How long a process may take to print its ready line (or otherwise become ready).
pub const READY: Duration = Duration::from_secs(60);

/// The version of supergateway the benchmark compares against.
pub const SUPERGATEWAY: &str = "supergateway@4.0.0";

/// Paths of the binaries involved.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `bridge`.
    pub bridge: PathBuf,
    /// `relay`.
    pub relay: PathBuf,
    /// `echo-server`.
    pub echo: PathBuf,
    /// `null-http`.
    pub null: PathBuf,
    /// Where process logs go.
    pub logs: PathBuf,
}

impl Bins {
    /// The binaries next to the running `bench` executable; with `build`, runs
    /// `cargo build` for `bridge` and `relay` first (same profile).
    pub fn locate(build: bool) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let dir = exe.parent().context("executable directory")?.to_path_buf();
        if build {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args([
                "build", "-p", "bridge", "-p", "relay", "-p", "bench", "--bins",
            ]);
            if dir.file_name().and_then(|n| n.to_str()) == Some("release") {
                cmd.arg("--release");
            }
            cmd.current_dir(repo_root());
            eprintln!("bench: building bridge and relay ({cmd:?})");
            let status = cmd.status().context("running cargo build")?;
            if !status.success() {
                bail!("cargo build failed ({status})");
            }
        }
        let bins = Self {
            bridge: dir.join("bridge"),
            relay: dir.join("relay"),
            echo: dir.join("echo-server"),
            null: dir.join("null-http"),
            logs: std::env::temp_dir().join(format!("bench-{}", std::process::id())),
        };
        for p in [&bins.bridge, &bins.relay, &bins.echo, &bins.null] {
            if !p.exists() {
                bail!(
                    "{} is missing: run `cargo build --release --workspace --bins`",
                    p.display()
                );
            }
        }
        std::fs::create_dir_all(&bins.logs)?;
        Ok(bins)
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// A running null HTTP server.
pub struct NullServer {
    /// The process.
    pub proc: Proc,
    /// Its target.
    pub target: Arc<Target>,
}

/// Starts `null-http`.
pub fn null_server(bins: &Bins) -> Result<NullServer> {
    let mut proc = Proc::spawn("null-http", Command::new(&bins.null), &bins.logs)?;
    let addr = proc.wait_line("Listening on ", READY)?;
    Ok(NullServer {
        proc,
        target: Arc::new(Target {
            label: "null HTTP server".into(),
            endpoint: Endpoint::parse(&format!("http://{addr}/null/mcp"))?,
            bearer: None,
            handshake: false,
        }),
    })
}

/// A running `relay serve`.
pub struct RelayProc {
    /// The process.
    pub proc: Proc,
    /// Public base URL.
    pub url: String,
    /// The bridge token it accepts.
    pub token: String,
    /// The address it listens on (`127.0.0.1:PORT`).
    pub addr: String,
}

/// Starts `relay serve` on a free loopback port. The load comes from one address standing
/// in for many clients (1,000 idle sessions, 100 bridges), as if behind a proxy: the
/// per-address connection cap is lifted to the connection limit.
pub fn relay(bins: &Bins, name: &str) -> Result<RelayProc> {
    relay_with(bins, name, &[])
}

/// [`relay`] with extra arguments of `relay serve` (`--database-url`, `--public-url`,
/// `--node-id`, …). Every relay of one benchmark accepts the same bridge token.
pub fn relay_with(bins: &Bins, name: &str, args: &[String]) -> Result<RelayProc> {
    let token = format!("bench-bridge-token-{:0>16}", std::process::id());
    let mut cmd = Command::new(&bins.relay);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--max-connections-per-address", "1000000"])
        .args(args)
        .env("RELAY_BRIDGE_TOKENS", &token)
        .env_remove("RUST_LOG");
    let mut proc = Proc::spawn(name, cmd, &bins.logs)?;
    let line = proc.wait_line("Relay listening on ", READY)?;
    let url = line
        .rsplit("public URL ")
        .next()
        .context("relay banner without a public URL")?
        .trim()
        .to_owned();
    let addr = line
        .split(',')
        .next()
        .context("relay banner without an address")?
        .trim()
        .to_owned();
    Ok(RelayProc {
        proc,
        url,
        token,
        addr,
    })
}

/// A running `echo-server --http`: the echo server over Streamable HTTP.
pub struct HttpEcho {
    /// The process.
    pub proc: Proc,
    /// Its MCP endpoint (`http://127.0.0.1:PORT/mcp`).
    pub url: String,
    /// Its target, called directly (with a session): the floor of the HTTP upstream.
    pub target: Arc<Target>,
}

/// Starts `echo-server --http` on a free loopback port.
pub fn http_echo(bins: &Bins) -> Result<HttpEcho> {
    let mut cmd = Command::new(&bins.echo);
    cmd.arg("--http");
    let mut proc = Proc::spawn("echo-http", cmd, &bins.logs)?;
    let addr = proc.wait_line("Listening on ", READY)?;
    let url = format!("http://{addr}/mcp");
    Ok(HttpEcho {
        proc,
        target: Arc::new(Target {
            label: "HTTP server direct".into(),
            endpoint: Endpoint::parse(&url)?,
            bearer: None,
            handshake: true,
        }),
        url,
    })
}

/// A running `bridge run`.
pub struct BridgeProc {
    /// The process.
    pub proc: Proc,
    /// Its target.
    pub target: Arc<Target>,
}

/// What a bridge publishes.
enum Served<'a> {
    /// `echo-server`, its child over stdio.
    Echo,
    /// A local Streamable HTTP server (`--upstream URL`).
    Upstream(&'a str),
}

/// Starts `bridge run -- echo-server`: with its embedded relay when `relay` is `None`.
pub fn bridge(
    bins: &Bins,
    name: &str,
    relay: Option<&RelayProc>,
    tunnel: &str,
) -> Result<BridgeProc> {
    start_bridge(bins, name, relay, tunnel, Served::Echo)
}

/// Starts `bridge run --upstream URL` (a Streamable HTTP server), against `relay`.
pub fn bridge_upstream(
    bins: &Bins,
    name: &str,
    relay: &RelayProc,
    tunnel: &str,
    url: &str,
) -> Result<BridgeProc> {
    start_bridge(bins, name, Some(relay), tunnel, Served::Upstream(url))
}

fn start_bridge(
    bins: &Bins,
    name: &str,
    relay: Option<&RelayProc>,
    tunnel: &str,
    served: Served<'_>,
) -> Result<BridgeProc> {
    let mut cmd = Command::new(&bins.bridge);
    cmd.arg("run");
    match relay {
        Some(r) => {
            cmd.args(["--relay", &r.url]).env("BRIDGE_TOKEN", &r.token);
        }
        None => {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
    }
    cmd.args(["--name", tunnel]);
    match served {
        Served::Echo => {
            cmd.arg("--").arg(&bins.echo);
        }
        Served::Upstream(url) => {
            cmd.args(["--upstream", url]);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env_remove("BRIDGE_CLIENT_TOKEN")
        .env_remove("BRIDGE_RELAY");
    let mut proc = Proc::spawn(name, cmd, &bins.logs)?;
    let url = proc.wait_line("MCP endpoint:", READY)?;
    let bearer = proc.wait_line("Bearer token:", READY)?;
    Ok(BridgeProc {
        proc,
        target: Arc::new(Target {
            label: name.to_owned(),
            endpoint: Endpoint::parse(&url)?,
            bearer: Some(bearer),
            handshake: true,
        }),
    })
}

/// A running supergateway.
pub struct Gateway {
    /// The node process.
    pub proc: Proc,
    /// Its target.
    pub target: Arc<Target>,
}

/// Installs supergateway into `.test-deps/bench/` (when missing) and returns the path of
/// its entry point; `Err` carries the reason it cannot run here.
pub fn install_supergateway() -> Result<PathBuf> {
    let prefix = repo_root().join(".test-deps/bench");
    let pkg = prefix.join("node_modules/supergateway");
    let entry = pkg.join("dist/index.js");
    let version_ok = std::fs::read_to_string(pkg.join("package.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .is_some_and(|v| Some(v["version"].as_str()) == Some(SUPERGATEWAY.split('@').nth(1)));
    if !(entry.exists() && version_ok) {
        let node_ok = Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !node_ok {
            bail!("node is not installed");
        }
        std::fs::create_dir_all(&prefix)?;
        eprintln!(
            "bench: npm install --prefix {} {SUPERGATEWAY}",
            prefix.display()
        );
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(SUPERGATEWAY)
            .output()
            .context("npm is not installed")?;
        if !out.status.success() {
            bail!(
                "npm install {SUPERGATEWAY} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if !entry.exists() {
            bail!("{} is missing after npm install", entry.display());
        }
    }
    Ok(entry)
}

/// Starts supergateway in stateful Streamable HTTP mode around the echo server, on
/// 127.0.0.1 (the loopback preload) and a free port, logging off.
pub fn supergateway(bins: &Bins, entry: &Path) -> Result<Gateway> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let preload = repo_root().join("tests/clients/loopback.cjs");
    let mut cmd = Command::new("node");
    cmd.arg(entry)
        .arg("--stdio")
        .arg(&bins.echo)
        .args(["--outputTransport", "streamableHttp", "--stateful"])
        .args(["--port", &port.to_string()])
        .args(["--logLevel", "none"])
        .env("NODE_OPTIONS", format!("--require {}", preload.display()));
    let proc = Proc::spawn("supergateway", cmd, &bins.logs)?;
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + READY;
    while TcpStream::connect(&addr).is_err() {
        if Instant::now() > deadline {
            bail!(
                "supergateway did not listen on {addr}; see {}",
                proc.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Gateway {
        proc,
        target: Arc::new(Target {
            label: "supergateway".into(),
            endpoint: Endpoint::parse(&format!("http://{addr}/mcp"))?,
            bearer: None,
            handshake: true,
        }),
    })
}
