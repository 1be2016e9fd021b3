//! `bridge run` as a real process serving the fixture (or another server), with the
//! endpoints it prints.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{Proc, bin};
use crate::relay::Relay;

/// Options for starting a bridge.
#[derive(Default, Clone)]
pub struct BridgeOpts {
    /// Connect to this relay (base URL, bridge token) instead of the embedded one.
    pub relay: Option<(String, String)>,
    /// `--listen` address of the in-process relay (default `127.0.0.1:0`, any free port);
    /// unused with `relay`.
    pub listen: Option<String>,
    /// `--auth none` instead of a bearer token.
    pub no_auth: bool,
    /// `--isolate`.
    pub isolate: bool,
    /// `--name`.
    pub name: Option<String>,
    /// More flags.
    pub args: Vec<String>,
    /// The server command; the fixture when empty (and no `upstream`).
    pub command: Vec<String>,
    /// `--upstream URL`: publish this HTTP MCP server instead of running a command (`command`
    /// is then ignored; upstream flags such as `--upstream-transport` go in `args`).
    pub upstream: Option<String>,
    /// `--config FILE`: publish the servers of this file (`command` and `upstream` are then
    /// ignored; the file's tunnel must be the only one).
    pub config: Option<PathBuf>,
    /// Environment for the bridge (and so its child).
    pub env: Vec<(String, String)>,
    /// Give the bridge a piped stdin ([`Proc::write_line`] types into its terminal, e.g.
    /// the code of an OAuth consent); otherwise its stdin is empty.
    pub piped_stdin: bool,
    /// The program to run instead of the workspace's `bridge` (an installed package's
    /// command, say).
    pub program: Option<PathBuf>,
}

impl BridgeOpts {
    /// Connects to `relay` with its bridge token.
    pub fn via(self, relay: &Relay) -> Self {
        self.via_url(&relay.base, &relay.token)
    }

    /// Serves the tunnel without client authentication (`--auth none`).
    pub fn no_auth(mut self) -> Self {
        self.no_auth = true;
        self
    }

    /// Connects to the relay at `base` with `token`.
    pub fn via_url(mut self, base: &str, token: &str) -> Self {
        self.relay = Some((base.to_owned(), token.to_owned()));
        self
    }

    /// `--name NAME`.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// More flags.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// More flags, written as on a command line (split on white space; for values without
    /// spaces).
    pub fn flags(self, line: &str) -> Self {
        let args: Vec<&str> = line.split_whitespace().collect();
        self.args(&args)
    }

    /// More environment variables.
    pub fn env(mut self, env: &[(&str, &str)]) -> Self {
        self.env
            .extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self
    }

    /// Serves `command` instead of the fixture.
    pub fn command(mut self, command: Vec<String>) -> Self {
        self.command = command;
        self
    }

    /// Publishes the HTTP MCP server at `url` (`--upstream URL`) instead of a command.
    pub fn upstream(mut self, url: &str) -> Self {
        self.upstream = Some(url.to_owned());
        self
    }

    /// Publishes the servers of the configuration file `path` (`--config`).
    pub fn config(mut self, path: &std::path::Path) -> Self {
        self.config = Some(path.to_owned());
        self
    }

    /// Starts the bridge.
    pub fn start(self) -> Bridge {
        Bridge::start(self)
    }
}

/// A running bridge with the endpoints it printed.
pub struct Bridge {
    /// The process.
    pub proc: Proc,
    /// `MCP endpoint:` URL.
    pub mcp_url: String,
    /// `SSE endpoint:` URL.
    pub sse_url: String,
    /// The bearer token clients must send, when auth is on.
    pub bearer: Option<String>,
    /// The lines it printed up to the client auth line (endpoints, assets, auth).
    pub welcome: Vec<String>,
    /// The fixture's counts file.
    pub counts: PathBuf,
    _dir: tempfile::TempDir,
}

impl Bridge {
    /// Starts a bridge serving the fixture (or `opts.command`, or `opts.upstream`).
    pub fn start(opts: BridgeOpts) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let counts = dir.path().join("counts.txt");
        let mut cmd = Command::new(opts.program.clone().unwrap_or_else(|| bin("bridge")));
        cmd.arg("run");
        match &opts.relay {
            Some((url, token)) => {
                cmd.arg("--relay").arg(url).env("BRIDGE_TOKEN", token);
            }
            None => {
                cmd.arg("--listen")
                    .arg(opts.listen.as_deref().unwrap_or("127.0.0.1:0"));
            }
        }
        if opts.no_auth {
            cmd.arg("--auth").arg("none");
        }
        if opts.isolate {
            cmd.arg("--isolate");
        }
        if let Some(n) = &opts.name {
            cmd.arg("--name").arg(n);
        }
        cmd.args(&opts.args);
        if let Some(path) = &opts.config {
            cmd.arg("--config").arg(path);
        } else if let Some(url) = &opts.upstream {
            cmd.arg("--upstream").arg(url);
        } else {
            cmd.arg("--");
            if opts.command.is_empty() {
                cmd.arg(bin("mcp-fixture"));
            } else {
                cmd.args(&opts.command);
            }
        }
        cmd.env("FIXTURE_COUNTS", &counts)
            .env("RUST_LOG", "info")
            .env_remove("BRIDGE_CLIENT_TOKEN");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut proc = if opts.piped_stdin {
            Proc::start_piped(cmd, "bridge")
        } else {
            Proc::start(cmd, "bridge")
        };
        let lines = proc.stdout_until("bridge", |l| {
            l.iter()
                .any(|x| x.starts_with("Bearer token:") || x.starts_with("Client auth:"))
        });
        let field = |prefix: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(prefix).map(|s| s.trim().to_owned()))
        };
        Self {
            mcp_url: field("MCP endpoint:").expect("MCP endpoint line"),
            sse_url: field("SSE endpoint:").expect("SSE endpoint line"),
            bearer: field("Bearer token:"),
            welcome: lines.clone(),
            counts,
            proc,
            _dir: dir,
        }
    }

    /// Runs `check` against a bridge started with `opts` on the embedded relay, then
    /// against one connected to a separate `relay serve` process. `check` gets a label for
    /// its messages.
    pub fn on_both_relays(opts: BridgeOpts, check: impl Fn(&Bridge, &str)) {
        check(&Bridge::start(opts.clone()), "embedded relay");
        let relay = Relay::start(&[]);
        let bridge = opts.via(&relay).start();
        assert!(
            bridge.mcp_url.starts_with(&relay.base),
            "{} is not served by the relay at {}",
            bridge.mcp_url,
            relay.base
        );
        check(&bridge, "separate relay");
    }

    /// The relay's base URL (`scheme://host:port`, what comes before `/<name>/mcp`).
    pub fn relay_base(&self) -> &str {
        let tunnel = self
            .mcp_url
            .strip_suffix("/mcp")
            .expect("the MCP endpoint ends in /mcp");
        &tunnel[..tunnel.rfind('/').expect("…/<name>/mcp")]
    }

    /// The owner's dashboard address it printed (`Dashboard: …`, with its secret).
    pub fn dashboard_url(&self) -> String {
        self.welcome
            .iter()
            .find_map(|l| l.strip_prefix("Dashboard: "))
            .unwrap_or_else(|| panic!("a Dashboard: line in {:?}", self.welcome))
            .trim()
            .to_owned()
    }

    /// The tunnel name (the path segment before `/mcp`).
    pub fn name(&self) -> &str {
        let tunnel = self
            .mcp_url
            .strip_suffix("/mcp")
            .expect("the MCP endpoint ends in /mcp");
        &tunnel[tunnel.rfind('/').expect("…/<name>/mcp") + 1..]
    }

    /// Lines the fixture recorded.
    pub fn counts(&self) -> Vec<String> {
        std::fs::read_to_string(&self.counts)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// How many recorded lines equal `line` exactly.
    pub fn count(&self, line: &str) -> usize {
        self.counts().iter().filter(|l| *l == line).count()
    }

    /// Checks that the fixture was initialized exactly once, whatever the clients did.
    pub fn assert_one_child_initialize(&self, what: &str) {
        assert_eq!(
            self.count("initialize"),
            1,
            "{what}: the child must be initialized once; fixture counts: {:?}",
            self.counts()
        );
    }

    /// SIGTERM, and asserts the bridge exits with 0 within 30 s (which frees its port).
    pub fn stop(&mut self) {
        self.proc.terminate();
        assert_eq!(
            self.proc.wait_exit(std::time::Duration::from_secs(30)),
            Some(0),
            "bridge exit; stderr:\n{}",
            self.proc.log_text()
        );
    }
}

/// The command that runs `command` (a server) with a copy of everything written to its
/// standard input appended to `log`, to see what the bridge sends it.
pub fn teed(log: &Path, command: &[String]) -> Vec<String> {
    let mut all = vec![
        "sh".into(),
        "-c".into(),
        r#"log="$1"; shift; tee -a "$log" | "$@""#.into(),
        "sh".into(),
        log.display().to_string(),
    ];
    all.extend_from_slice(command);
    all
}

/// Runs `bridge run --relay RELAY --name NAME [flags] -- mcp-fixture` with the bridge token
/// `token` until it exits (within a minute): a bridge the relay is expected to refuse or
/// replace. Its output.
pub async fn run_until_exit(
    relay: &str,
    token: &str,
    name: &str,
    flags: &[&str],
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(bin("bridge"));
    cmd.args(["run", "--relay", relay, "--name", name])
        .args(flags)
        .arg("--")
        .arg(bin("mcp-fixture"))
        .env("BRIDGE_TOKEN", token)
        .env("RUST_LOG", "info")
        .env_remove("BRIDGE_CLIENT_TOKEN")
        .env_remove("BRIDGE_RELAY")
        .env_remove("BRIDGE_NAME")
        .kill_on_drop(true);
    tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("the bridge did not exit within 60 s")
        .expect("cannot run bridge")
}

/// Asserts that a bridge run by [`run_until_exit`] stopped with exit code 2 (refused) and
/// said every one of `needles` on stderr: its stderr.
pub fn assert_refused_exit(out: &std::process::Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    crate::text::assert_contains_all(&stderr, needles, &format!("stderr:\n{stderr}\n"));
    stderr
}
