//! `bridge run --config FILE`: the options of `bridge run` in a TOML file, and the servers
//! to publish; and `--claude-config`: the servers of a Claude Desktop configuration.
//!
//! Top-level keys are the `bridge run` flags in snake_case (`call_timeout_secs` for
//! `--call-timeout-secs`; the repeatable `--root` is the array `root`). Each
//! `[servers.NAME]` table is one server (`command`, `args`, `env`, `cwd`), published as the
//! tunnel NAME, with optional overrides of the per-server settings (server_settings.rs) and
//! its `[servers.NAME.policy]`. Relative paths are relative to the file's directory, and a
//! leading `~/` is the home directory.
//!
//! The file sits between the defaults and the environment: flags > environment variables >
//! file > defaults. An unknown key or a value of the wrong type is an error naming the file,
//! the line and the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use crate::policy::PolicyConfig;
use crate::server_settings::{ServerOptions, with_server_settings};
use crate::upstream::ServerSource;

/// Declares a table of the file: its own keys, then the per-server settings and
/// `policy` (see [`with_server_settings!`]), then the keys after them. The order of the
/// keys is the order an "unknown key" error lists them in.
macro_rules! file_table {
    (
        [
            $(#[$meta:meta])*
            struct $table:ident { $($own:tt)* }
            then { $($after:tt)* }
        ]
        $( $(#[doc = $doc:literal])* #[arg($($arg:tt)*)] $name:ident : $flag:ty => $value:ty, )*
    ) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $table {
            $($own)*
            $( $name: Option<$value>, )*
            policy: Option<PolicyConfig>,
            $($after)*
        }

        impl $table {
            /// Takes the per-server settings out of the table.
            fn take_server_options(&mut self) -> ServerOptions {
                ServerOptions {
                    $( $name: self.$name.take(), )*
                    policy: self.policy.take(),
                }
            }
        }
    };
}

with_server_settings!(file_table! {
    /// The top level of the file: the settings of `bridge run`.
    #[derive(Default)]
    struct FileTop {
        relay: Option<String>,
        token: Option<String>,
        name: Option<String>,
        listen: Option<SocketAddr>,
        local: Option<bool>,
        quiet: Option<bool>,
        ca_file: Option<PathBuf>,
        keepalive_secs: Option<f64>,
        sse_poll_secs: Option<f64>,
        grace_secs: Option<f64>,
        claude_desktop_config: Option<PathBuf>,
        allow_remote_upstream: Option<bool>,
    }
    then {
        #[serde(default)]
        servers: BTreeMap<String, FileServer>,
    }
});

with_server_settings!(file_table! {
    /// One `[servers.NAME]` table.
    struct FileServer {
        command: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
    }
    then {}
});

/// A server to publish: what to run and under which tunnel name.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerEntry {
    /// Tunnel name.
    pub name: String,
    /// Where it was defined (for messages): a file and its key.
    pub origin: String,
    /// What to run, or the local HTTP server.
    pub server: ServerSource,
    /// Its own options (over the top-level ones).
    pub options: ServerOptions,
}

/// A loaded configuration file.
#[derive(Debug, Default)]
pub struct BridgeFile {
    /// The file.
    pub path: PathBuf,
    /// `relay`.
    pub relay: Option<String>,
    /// `token`.
    pub token: Option<String>,
    /// `name` (for a server given after `--`).
    pub name: Option<String>,
    /// `listen`.
    pub listen: Option<SocketAddr>,
    /// `local`.
    pub local: Option<bool>,
    /// `quiet`.
    pub quiet: Option<bool>,
    /// `ca_file`.
    pub ca_file: Option<PathBuf>,
    /// `keepalive_secs`.
    pub keepalive_secs: Option<f64>,
    /// `sse_poll_secs`.
    pub sse_poll_secs: Option<f64>,
    /// `grace_secs`.
    pub grace_secs: Option<f64>,
    /// `claude_desktop_config`.
    pub claude_desktop_config: Option<PathBuf>,
    /// `allow_remote_upstream`.
    pub allow_remote_upstream: Option<bool>,
    /// The top-level server options (defaults for every server).
    pub options: ServerOptions,
    /// `[servers.NAME]`, by name.
    pub servers: Vec<ServerEntry>,
}

/// Line (from 1) of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A path from the file: `~/` is the home directory, relative paths are relative to the
/// file's directory.
fn resolve_path(base: &Path, p: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~")
        && let Ok(home) = crate::login::home_dir()
    {
        return home.join(rest);
    }
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

impl BridgeFile {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        Self::parse(path, &text)
    }

    /// Checks the text of a configuration file (`path` names it in messages and anchors
    /// relative paths).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let file = path.display();
        let de = toml::Deserializer::parse(text).map_err(|e| {
            anyhow!(
                "{file}:{}: {}",
                line_of(text, e.span().map_or(0, |s| s.start)),
                e.message().trim()
            )
        })?;
        let mut top: FileTop = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.inner();
            let line = line_of(text, inner.span().map_or(0, |s| s.start));
            let message = inner.message().trim();
            // serde names an unknown key without its table.
            if let Some(rest) = message.strip_prefix("unknown field `")
                && let Some((field, expected)) = rest.split_once('`')
            {
                let full = if key == "." {
                    field.to_owned()
                } else if key == field || key.ends_with(&format!(".{field}")) {
                    key.clone()
                } else {
                    format!("{key}.{field}")
                };
                let expected = expected.trim_start_matches(", ");
                return anyhow!("{file}:{line}: unknown key `{full}` ({expected})");
            }
            if key == "." {
                anyhow!("{file}:{line}: {message}")
            } else {
                anyhow!("{file}:{line}: key `{key}`: {message}")
            }
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let fix = |p: Option<PathBuf>| p.map(|p| resolve_path(&base, &p));
        let fix_options = |mut o: ServerOptions| {
            o.root = o
                .root
                .map(|v| v.iter().map(|p| resolve_path(&base, p)).collect());
            o.policy = o.policy.map(|mut p| {
                p.roots = p.roots.iter().map(|r| resolve_path(&base, r)).collect();
                p.audit_log = p.audit_log.map(|a| resolve_path(&base, &a));
                p
            });
            o
        };
        let mut servers = Vec::new();
        for (name, mut s) in std::mem::take(&mut top.servers) {
            if !protocol::valid_tunnel_name(&name) {
                bail!(
                    "{file}: [servers.{name}]: {name:?} is not a valid tunnel name (3-40 \
                     characters a-z, 0-9 and '-', not starting or ending with '-')"
                );
            }
            if s.command.trim().is_empty() {
                bail!("{file}: key `servers.{name}.command` is empty");
            }
            let options = fix_options(s.take_server_options());
            servers.push(ServerEntry {
                origin: format!("{file} [servers.{name}]"),
                name,
                server: ServerSource::Command {
                    command: std::iter::once(s.command).chain(s.args).collect(),
                    env: s.env.into_iter().collect(),
                    cwd: fix(s.cwd),
                },
                options,
            });
        }
        let options = fix_options(top.take_server_options());
        Ok(Self {
            path: path.to_path_buf(),
            relay: top.relay,
            token: top.token,
            name: top.name,
            listen: top.listen,
            local: top.local,
            quiet: top.quiet,
            ca_file: fix(top.ca_file),
            keepalive_secs: top.keepalive_secs,
            sse_poll_secs: top.sse_poll_secs,
            grace_secs: top.grace_secs,
            claude_desktop_config: fix(top.claude_desktop_config),
            allow_remote_upstream: top.allow_remote_upstream,
            options,
            servers,
        })
    }
}

/// One entry of `mcpServers` in `claude_desktop_config.json`. Other keys are ignored, as
/// Claude Desktop does.
#[derive(Debug, Deserialize)]
struct ClaudeServer {
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    url: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    transport: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ClaudeConfig {
    #[serde(rename = "mcpServers", default)]
    mcp_servers: serde_json::Map<String, serde_json::Value>,
}

/// Turns a Claude Desktop server name into a tunnel name (`[a-z0-9-]{3,40}`): lower case,
/// other characters become `-`, padded with `-mcp` when too short or reserved.
pub fn sanitize_name(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.truncate(40);
    let mut out = out.trim_end_matches('-').to_owned();
    if out.is_empty() {
        out = "server".into();
    }
    if !protocol::valid_tunnel_name(&out) {
        out.truncate(36);
        out = format!("{}-mcp", out.trim_end_matches('-'));
    }
    out
}

/// The stdio servers of a Claude Desktop configuration (`{"mcpServers": {…}}`), named by
/// [`sanitize_name`]. Entries with a `url` or a transport other than stdio are skipped with
/// a warning; two names that become the same tunnel name are an error.
pub fn claude_servers(path: &Path) -> Result<Vec<ServerEntry>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the Claude Desktop configuration {}",
            path.display()
        )
    })?;
    let config: ClaudeConfig =
        serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let file = path.display();
    let mut out: Vec<ServerEntry> = Vec::new();
    let mut from: BTreeMap<String, String> = BTreeMap::new();
    for (raw, value) in config.mcp_servers {
        let s: ClaudeServer = serde_json::from_value(value)
            .map_err(|e| anyhow!("{file}: mcpServers.{raw:?}: {e}"))?;
        let transport = s.kind.as_deref().or(s.transport.as_deref());
        if s.url.is_some() || transport.is_some_and(|t| !t.eq_ignore_ascii_case("stdio")) {
            tracing::warn!(
                "{file}: skipping the server {raw:?}: it is a remote server ({}), not a stdio command",
                s.url.as_deref().or(transport).unwrap_or("no command")
            );
            continue;
        }
        let Some(command) = s.command.filter(|c| !c.trim().is_empty()) else {
            tracing::warn!("{file}: skipping the server {raw:?}: it has no command");
            continue;
        };
        let name = sanitize_name(&raw);
        if let Some(first) = from.get(&name) {
            bail!(
                "{file}: the servers {first:?} and {raw:?} both become the tunnel name {name:?}: \
                 rename one of them, or define them in a --config file as [servers.NAME]"
            );
        }
        from.insert(name.clone(), raw.clone());
        if name != raw {
            tracing::info!("{file}: the server {raw:?} is published as the tunnel {name:?}");
        }
        out.push(ServerEntry {
            origin: format!("{file} mcpServers.{raw:?}"),
            name,
            server: ServerSource::Command {
                command: std::iter::once(command).chain(s.args).collect(),
                env: s.env.into_iter().collect(),
                cwd: None,
            },
            options: ServerOptions::default(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server_settings::{AuthMode, ProtocolMode};

    fn parse(text: &str) -> Result<BridgeFile> {
        BridgeFile::parse(Path::new("/etc/bridge.toml"), text)
    }

    #[test]
    fn reads_settings_and_servers() {
        let f = parse(
            r#"
relay = "https://relay.example.com"
listen = "127.0.0.1:0"
auth = "bearer"
max_in_flight = 8
root = ["notes", "~/x"]
protocol = "legacy"

[servers.files]
command = "npx"
args = ["-y", "server-filesystem"]
env = { A = "1" }
cwd = "work"
auth = "oauth"

[servers.files.policy]
deny_tools = ["write_*"]
"#,
        )
        .unwrap();
        assert_eq!(f.relay.as_deref(), Some("https://relay.example.com"));
        assert_eq!(f.options.auth, Some(AuthMode::Bearer));
        assert_eq!(f.options.max_in_flight, Some(8));
        assert_eq!(f.options.protocol, Some(ProtocolMode::Handshake));
        assert_eq!(
            f.options.root.as_ref().unwrap()[0],
            PathBuf::from("/etc/notes")
        );
        let s = &f.servers[0];
        assert_eq!(s.name, "files");
        let ServerSource::Command { command, env, cwd } = &s.server else {
            panic!("a command server: {:?}", s.server);
        };
        assert_eq!(command[1..], ["-y", "server-filesystem"]);
        assert_eq!(env, &[("A".to_owned(), "1".to_owned())]);
        assert_eq!(cwd.as_deref(), Some(Path::new("/etc/work")));
        assert_eq!(s.options.auth, Some(AuthMode::Oauth));
        assert_eq!(s.options.policy.as_ref().unwrap().deny_tools, ["write_*"]);
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let cases: &[(&str, &[&str])] = &[
            (
                "relay = \"x\"\nbogus = 1\n",
                &["/etc/bridge.toml:2", "`bogus`"],
            ),
            (
                "[servers.abc]\ncommand = \"x\"\nargs = \"y\"\n",
                &["/etc/bridge.toml:3", "servers.abc.args"],
            ),
            (
                "[servers.abc]\ncommand = \"x\"\nwat = 1\n",
                &["`servers.abc.wat`"],
            ),
            (
                "[servers.abc.policy]\nallow = 1\n",
                &["servers.abc.policy.allow"],
            ),
            ("max_in_flight = \"many\"\n", &["`max_in_flight`"]),
            (
                "[servers.A_B]\ncommand = \"x\"\n",
                &["not a valid tunnel name"],
            ),
            ("relay = \n", &["/etc/bridge.toml:1"]),
        ];
        for (text, wants) in cases {
            let e = parse(text).unwrap_err().to_string();
            for want in *wants {
                assert!(e.contains(want), "{want} in {e}");
            }
        }
    }

    #[test]
    fn claude_names() {
        assert_eq!(sanitize_name("filesystem"), "filesystem");
        assert_eq!(sanitize_name("My Files!"), "my-files");
        assert_eq!(sanitize_name("fs"), "fs-mcp");
        assert_eq!(sanitize_name("__"), "server");
        assert_eq!(sanitize_name("token"), "token-mcp");
        assert_eq!(sanitize_name(&"x".repeat(60)).len(), 40);
        for raw in ["a", "Ω", "--a--", "a_b_c_d", &"ab-".repeat(30)] {
            assert!(protocol::valid_tunnel_name(&sanitize_name(raw)), "{raw}");
        }
    }
}
