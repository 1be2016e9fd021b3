//! `bridge run --config FILE`: the options of `bridge run` in a TOML file, and the servers
//! to publish.
//!
//! Top-level keys are the `bridge run` flags in snake_case (`call_timeout_secs` for
//! `--call-timeout-secs`; the repeatable `--root` is the array `root`). Each
//! `[servers.NAME]` table is one server, published as the tunnel NAME: a program to run
//! (`command`, `args`, `env`, `cwd`) or a local HTTP server (`url`, `type`, `headers`; the
//! url and the header values may name environment variables as `${env:NAME}` or
//! `${NAME}`), with optional overrides of the per-server settings (server_settings.rs) and
//! its `[servers.NAME.policy]`. Relative paths are relative to the file's directory, and a
//! leading `~/` is the home directory.
//!
//! The file sits between the defaults and the environment: flags > environment variables >
//! file > defaults. An unknown key, a value of the wrong type or a server that is neither
//! a command nor a URL is an error naming the file, the line and the key.
//!
//! The servers of MCP clients' own files (`--claude-config`) are read by imports.rs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use url::Url;

use crate::expand::Vars;
use crate::policy::PolicyConfig;
use crate::server_settings::{ServerOptions, with_server_settings};
use crate::upstream::{HttpServer, ServerSource, Transport};

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
    /// One `[servers.NAME]` table: `command` and its keys, or `url` and its keys.
    struct FileServer {
        command: Option<String>,
        args: Option<Vec<String>>,
        env: Option<BTreeMap<String, String>>,
        cwd: Option<PathBuf>,
        url: Option<String>,
        #[serde(rename = "type")]
        kind: Option<Transport>,
        headers: Option<BTreeMap<String, String>>,
        tunnel: Option<String>,
        assets: Option<String>,
    }
    then {}
});

/// A server to publish: what to run and under which tunnel name. Its `Debug` leaves out
/// the values of environment variables and headers (API keys).
#[derive(Clone, PartialEq)]
pub struct ServerEntry {
    /// Tunnel name.
    pub name: String,
    /// Where it was defined (for messages): a file and its key.
    pub origin: String,
    /// What to run, or the local HTTP server.
    pub server: ServerSource,
    /// Its own options (over the top-level ones).
    pub options: ServerOptions,
    /// The tunnel it is published in with others (`tunnel = "NAME"`): servers naming the
    /// same one share its URL, their tools prefixed with their names.
    pub tunnel: Option<String>,
    /// The local asset origin its widgets load files from (`assets = "http://…"`),
    /// published under the tunnel's `/assets/`.
    pub assets: Option<url::Url>,
}

impl fmt::Debug for ServerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerEntry")
            .field("name", &self.name)
            .field("origin", &self.origin)
            .field("server", &Redacted(&self.server))
            .field("options", &self.options)
            .finish()
    }
}

/// A server, its secrets left out.
struct Redacted<'a>(&'a ServerSource);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |pairs: &[(String, String)]| {
            pairs
                .iter()
                .map(|(k, _)| format!("{k}=<hidden>"))
                .collect::<Vec<_>>()
        };
        match self.0 {
            ServerSource::Command { command, env, cwd } => f
                .debug_struct("Command")
                .field("command", command)
                .field("env", &hidden(env))
                .field("cwd", cwd)
                .finish(),
            ServerSource::Http(h) => f
                .debug_struct("Http")
                .field("url", &h.url.as_str())
                .field("transport", &h.transport)
                .field("headers", &hidden(&h.headers))
                .finish(),
        }
    }
}

/// Headers the bridge sets itself on its requests to an HTTP server: a server's `headers`
/// may not set them.
const OWN_HEADERS: &[&str] = &[
    "accept",
    "connection",
    "content-length",
    "content-type",
    "host",
    "last-event-id",
    "mcp-protocol-version",
    "mcp-session-id",
    "transfer-encoding",
];

/// Checks a header to send to an HTTP server. The error does not show the value (a
/// secret).
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("{name:?} is not a valid HTTP header name"));
    }
    if OWN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "the bridge sets the header {name} itself (it carries the MCP session)"
        ));
    }
    if reqwest::header::HeaderValue::from_str(value).is_err() {
        return Err(format!(
            "the value of the header {name} is not a valid HTTP header value (a line break, a \
             control or a non-ASCII character)"
        ));
    }
    Ok(())
}

/// The URL of an HTTP server: `expanded`, the URL once its references are replaced, must
/// be an `http://` or `https://` URL with a host. The error shows `written`, the URL as
/// written (a replaced part may be a secret).
pub fn http_url(written: &str, expanded: &str) -> Result<Url, String> {
    let url = Url::parse(expanded).map_err(|e| format!("{written:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "{written:?} is not an http:// or https:// URL with a host"
        ));
    }
    Ok(url)
}

/// Where the keys of a TOML file are, for the errors of checks made once it is read.
struct KeyLines<'a> {
    text: &'a str,
    doc: Option<DeTable<'a>>,
}

impl<'a> KeyLines<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            doc: DeTable::parse(text).ok().map(toml::Spanned::into_inner),
        }
    }

    /// `file:line` of the key at `path` (of the deepest table of it found), or `file`.
    fn at(&self, file: &impl fmt::Display, path: &[&str]) -> String {
        let mut table = self.doc.as_ref();
        let mut span = None;
        for key in path {
            let Some((k, v)) = table.and_then(|t| t.iter().find(|(k, _)| k.get_ref() == key))
            else {
                break;
            };
            span = Some(k.span());
            table = match v.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        match span {
            Some(s) => format!("{file}:{}", line_of(self.text, s.start)),
            None => file.to_string(),
        }
    }
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
        Self::parse(path, &text, &|name| std::env::var(name).ok())
    }

    /// Checks the text of a configuration file (`path` names it in messages and anchors
    /// relative paths); `env` reads the environment variables its servers name.
    pub fn parse(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
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
        let lines = KeyLines::new(text);
        let vars = Vars { env, editor: None };
        let mut servers = Vec::new();
        for (name, mut s) in std::mem::take(&mut top.servers) {
            if !protocol::valid_tunnel_name(&name) {
                bail!(
                    "{}: [servers.{name}]: {name:?} is not a valid tunnel name (3-40 \
                     characters a-z, 0-9 and '-', not starting or ending with '-')",
                    lines.at(&file, &["servers", &name])
                );
            }
            let options = fix_options(s.take_server_options());
            let tunnel = s.tunnel.take();
            if let Some(t) = &tunnel
                && !protocol::valid_tunnel_name(t)
            {
                bail!(
                    "{}: key `servers.{name}.tunnel`: {t:?} is not a valid tunnel name (3-40 \
                     characters a-z, 0-9 and '-', not starting or ending with '-')",
                    lines.at(&file, &["servers", &name, "tunnel"])
                );
            }
            let assets = match s.assets.take() {
                None => None,
                Some(a) => Some(crate::assets::parse_origin(&a).map_err(|e| {
                    anyhow!(
                        "{}: key `servers.{name}.assets`: {e}",
                        lines.at(&file, &["servers", &name, "assets"])
                    )
                })?),
            };
            let server = server_source(&lines, &file, &name, s, &base, &vars)?;
            servers.push(ServerEntry {
                origin: format!("{file} [servers.{name}]"),
                name,
                server,
                options,
                tunnel,
                assets,
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

/// What one `[servers.NAME]` table publishes: exactly one of `command` and `url`, each
/// with its own keys only.
fn server_source(
    lines: &KeyLines<'_>,
    file: &impl fmt::Display,
    name: &str,
    s: FileServer,
    base: &Path,
    vars: &Vars<'_>,
) -> Result<ServerSource> {
    let at = |key: &[&str]| {
        let mut path = vec!["servers", name];
        path.extend_from_slice(key);
        lines.at(file, &path)
    };
    let key = |key: &str| format!("servers.{name}.{key}");
    let for_command = [
        ("args", s.args.is_some()),
        ("env", s.env.is_some()),
        ("cwd", s.cwd.is_some()),
    ];
    let for_url = [("type", s.kind.is_some()), ("headers", s.headers.is_some())];
    match (s.command, s.url) {
        (Some(_), Some(_)) => bail!(
            "{}: key `{}`: a server has either `command` (a program to run) or `url` (a local \
             HTTP server), not both",
            at(&["url"]),
            key("url")
        ),
        (None, None) => bail!(
            "{}: [servers.{name}] needs `command` (a program to run) or `url` (a local HTTP \
             server)",
            at(&[])
        ),
        (Some(command), None) => {
            if let Some((k, _)) = for_url.iter().find(|(_, given)| *given) {
                bail!(
                    "{}: key `{}`: `type` and `headers` are for a server with a `url`; this one \
                     has a `command` (with `args`, `env` and `cwd`)",
                    at(&[k]),
                    key(k)
                );
            }
            if command.trim().is_empty() {
                bail!("{}: key `{}` is empty", at(&["command"]), key("command"));
            }
            Ok(ServerSource::Command {
                command: std::iter::once(command)
                    .chain(s.args.unwrap_or_default())
                    .collect(),
                env: s.env.unwrap_or_default().into_iter().collect(),
                cwd: s.cwd.map(|c| resolve_path(base, &c)),
            })
        }
        (None, Some(written)) => {
            if let Some((k, _)) = for_command.iter().find(|(_, given)| *given) {
                bail!(
                    "{}: key `{}`: `args`, `env` and `cwd` are for a server with a `command`; \
                     this one has a `url` (with `type` and `headers`)",
                    at(&[k]),
                    key(k)
                );
            }
            let url = vars
                .expand(&written)
                .map_err(|e| e.to_string())
                .and_then(|expanded| http_url(&written, &expanded))
                .map_err(|e| anyhow!("{}: key `{}`: {e}", at(&["url"]), key("url")))?;
            let mut headers = Vec::new();
            for (h, value) in s.headers.unwrap_or_default() {
                let value = vars
                    .expand(&value)
                    .map_err(|e| e.to_string())
                    .and_then(|v| check_header(&h, &v).map(|()| v))
                    .map_err(|e| {
                        anyhow!(
                            "{}: key `{}`: {e}",
                            at(&["headers", &h]),
                            key(&format!("headers.{h}"))
                        )
                    })?;
                headers.push((h, value));
            }
            Ok(ServerSource::Http(HttpServer {
                url,
                transport: s.kind.unwrap_or_default(),
                headers,
            }))
        }
    }
}

/// Turns a server name of an MCP client's file into a tunnel name (`[a-z0-9-]{3,40}`):
/// lower case, other characters become `-`, padded with `-mcp` when too short or reserved.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server_settings::{AuthMode, ProtocolMode};

    fn env(name: &str) -> Option<String> {
        match name {
            "FIGMA_TOKEN" => Some("s3cret".into()),
            "PORT" => Some("3845".into()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<BridgeFile> {
        BridgeFile::parse(Path::new("/etc/bridge.toml"), text, &env)
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
            (
                "[servers.abc]\ncommand = \"x\"\nassets = \"http://127.0.0.1:4444/static\"\n",
                &["/etc/bridge.toml:3", "servers.abc.assets", "no path"],
            ),
        ];
        for (text, wants) in cases {
            let e = parse(text).unwrap_err().to_string();
            for want in *wants {
                assert!(e.contains(want), "{want} in {e}");
            }
        }
    }

    #[test]
    fn reads_a_servers_asset_origin() {
        let f =
            parse("[servers.abc]\ncommand = \"x\"\nassets = \"http://127.0.0.1:4444/\"\n").unwrap();
        let origin = f.servers[0].assets.as_ref().expect("assets");
        assert_eq!(
            origin.origin().ascii_serialization(),
            "http://127.0.0.1:4444"
        );
    }

    #[test]
    fn reads_http_servers() {
        let f = parse(
            r#"
[servers.figma]
url = "http://127.0.0.1:${PORT}/mcp"
headers = { Authorization = "Bearer ${env:FIGMA_TOKEN}", X-Client = "bridge" }

[servers.events]
url = "http://localhost:8080/sse"
type = "sse"
auth = "none"

[servers.streamed]
url = "https://192.168.1.20/mcp"
type = "streamable-http"

[servers.newer]
url = "http://[::1]:9000/mcp"
type = "http"
"#,
        )
        .unwrap();
        let http = |name: &str| match &f.servers.iter().find(|s| s.name == name).unwrap().server {
            ServerSource::Http(h) => h.clone(),
            other => panic!("an HTTP server: {other:?}"),
        };
        let figma = http("figma");
        assert_eq!(figma.url.as_str(), "http://127.0.0.1:3845/mcp");
        assert_eq!(figma.transport, Transport::Auto);
        assert_eq!(
            figma.headers,
            [
                ("Authorization".to_owned(), "Bearer s3cret".to_owned()),
                ("X-Client".to_owned(), "bridge".to_owned())
            ]
        );
        assert_eq!(http("events").transport, Transport::Sse);
        assert_eq!(http("streamed").transport, Transport::Http);
        assert_eq!(http("newer").transport, Transport::Http);
        let events = f.servers.iter().find(|s| s.name == "events").unwrap();
        assert_eq!(events.options.auth, Some(AuthMode::None));
        // Debug leaves the header values out.
        let shown = format!("{f:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("Authorization=<hidden>"), "{shown}");
    }

    #[test]
    fn a_server_is_a_command_or_a_url() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[servers.abc]\ncommand = \"x\"\nurl = \"http://127.0.0.1/mcp\"\n",
                &["/etc/bridge.toml:3", "`servers.abc.url`", "not both"],
            ),
            (
                "relay = \"x\"\n[servers.abc]\nauth = \"none\"\n",
                &[
                    "/etc/bridge.toml:2",
                    "[servers.abc] needs `command`",
                    "or `url`",
                ],
            ),
            (
                "[servers.abc]\nurl = \"http://127.0.0.1/mcp\"\nargs = [\"x\"]\n",
                &[
                    "/etc/bridge.toml:3",
                    "`servers.abc.args`",
                    "for a server with a `command`",
                ],
            ),
            (
                "[servers.abc]\nurl = \"http://127.0.0.1/mcp\"\n\nenv = {}\n",
                &["/etc/bridge.toml:4", "`servers.abc.env`"],
            ),
            (
                "[servers.abc]\nurl = \"http://127.0.0.1/mcp\"\ncwd = \"x\"\n",
                &["/etc/bridge.toml:3", "`servers.abc.cwd`"],
            ),
            (
                "[servers.abc]\ncommand = \"x\"\nheaders = { A = \"b\" }\n",
                &[
                    "/etc/bridge.toml:3",
                    "`servers.abc.headers`",
                    "for a server with a `url`",
                ],
            ),
            (
                "[servers.abc]\ncommand = \"x\"\ntype = \"sse\"\n",
                &["/etc/bridge.toml:3", "`servers.abc.type`"],
            ),
            (
                "[servers.abc]\ncommand = \" \"\n",
                &["/etc/bridge.toml:2", "`servers.abc.command` is empty"],
            ),
            (
                "[servers.abc]\nurl = \"http://127.0.0.1/mcp\"\ntype = \"websocket\"\n",
                &[
                    "/etc/bridge.toml:3",
                    "servers.abc.type",
                    "unknown variant `websocket`",
                ],
            ),
        ];
        for (text, wants) in cases {
            let e = parse(text).unwrap_err().to_string();
            for want in *wants {
                assert!(e.contains(want), "{want} in {e}");
            }
        }
    }

    #[test]
    fn urls_and_headers_are_checked() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[servers.abc]\nurl = \"http://127.0.0.1:${NOPE}/mcp\"\n",
                &[
                    "/etc/bridge.toml:2",
                    "`servers.abc.url`",
                    "the environment variable NOPE is not set",
                ],
            ),
            (
                "[servers.abc]\nurl = \"ws://127.0.0.1/mcp\"\n",
                &[
                    "`servers.abc.url`",
                    "\"ws://127.0.0.1/mcp\" is not an http:// or https://",
                ],
            ),
            (
                "[servers.abc]\nurl = \"127.0.0.1:3845/mcp\"\n",
                &["`servers.abc.url`", "is not a URL"],
            ),
            (
                "[servers.abc]\nurl = \"http://x/?k=${env:FIGMA_TOKEN}\"\ntype = \"http\"\n[servers.abc.headers]\nA = \"1\"\nB = \"${env:NOPE}\"\n",
                &[
                    "/etc/bridge.toml:6",
                    "`servers.abc.headers.B`",
                    "the environment variable NOPE is not set",
                ],
            ),
            (
                "[servers.abc]\nurl = \"http://127.0.0.1/mcp\"\nheaders = { \"Bad Name\" = \"x\" }\n",
                &[
                    "/etc/bridge.toml:3",
                    "\"Bad Name\" is not a valid HTTP header name",
                ],
            ),
            (
                "[servers.abc]\nurl = \"http://127.0.0.1/mcp\"\nheaders = { Host = \"x\" }\n",
                &[
                    "`servers.abc.headers.Host`",
                    "the bridge sets the header Host itself",
                ],
            ),
            (
                "[servers.abc]\nurl = \"http://127.0.0.1/mcp\"\nheaders = { X-Key = \"a\\nb\" }\n",
                &[
                    "`servers.abc.headers.X-Key`",
                    "not a valid HTTP header value",
                ],
            ),
            (
                "[servers.abc]\nurl = \"http://127.0.0.1/mcp\"\nheaders = { X-Key = \"${input:key}\" }\n",
                &["`servers.abc.headers.X-Key`", "${input:key}"],
            ),
            (
                "[servers.abc]\nurl = \"http://127.0.0.1/mcp\"\nheaders = { X-Key = 1 }\n",
                &[
                    "/etc/bridge.toml:3",
                    "`servers.abc.headers.X-Key`",
                    "invalid type",
                ],
            ),
        ];
        for (text, wants) in cases {
            let e = parse(text).unwrap_err().to_string();
            for want in *wants {
                assert!(e.contains(want), "{want} in {e}");
            }
            // A secret from the environment is never shown.
            assert!(!e.contains("s3cret"), "{e}");
        }
        // An invalid value made of a variable does not show the variable's value either.
        let e = BridgeFile::parse(
            Path::new("/etc/bridge.toml"),
            "[servers.abc]\nurl = \"http://127.0.0.1/mcp\"\nheaders = { X-Key = \"${K}\" }\n",
            &|_| Some("sec\nret".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("not a valid HTTP header value") && !e.contains("sec"),
            "{e}"
        );
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
