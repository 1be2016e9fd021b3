//! `bridge run --claude-config PATH` (or `--import PATH`): publishes the servers of an MCP
//! client's own configuration file, each under its own tunnel name.
//!
//! The files read:
//! - `{"mcpServers": {NAME: {…}}}`: Claude Desktop's `claude_desktop_config.json`, Claude
//!   Code's `.mcp.json`, Cursor's `mcp.json` (and Windsurf's, whose remote servers have a
//!   `serverUrl`);
//! - `{"servers": {NAME: {…}}, "inputs": […]}`: VS Code's `mcp.json`.
//!
//! They may have comments and trailing commas (jsonc.rs). An entry is a program
//! (`command`, `args`, `env`, `cwd`) or an HTTP server (`url`, `headers`), told apart by
//! its `type` (or `transport`, `transportType`: `stdio`, `http`, `streamable-http`, `sse`)
//! or, without one, by which of `command` and `url` it has. `${…}` references are replaced
//! as the clients replace them (expand.rs).
//!
//! An entry the bridge cannot publish as its client would run it is left out with a
//! warning naming the file, the entry and why: no command and no url, a value only the
//! editor knows (`${input:…}`), an unknown or WebSocket transport, an env file, a sandbox,
//! an OAuth sign-in, a `disabled` entry, or an HTTP server whose host does not resolve, or
//! resolves outside this computer and its private networks (unless remote upstreams are
//! allowed: run.rs checks the addresses again when it starts the tunnels). Names become
//! tunnel names ([`sanitize_name`]); two that become the same one are an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};
use url::Url;

use crate::config::{ServerEntry, check_header, http_url, sanitize_name};
use crate::expand::{Editor, Unresolved, Vars};
use crate::server_settings::ServerOptions;
use crate::upstream::address;
use crate::upstream::{HttpServer, ServerSource, Transport};

/// The servers of an MCP client's file, and why the others were left out.
#[derive(Debug, Default)]
pub struct Imported {
    /// The servers to publish, in the file's order of names.
    pub servers: Vec<ServerEntry>,
    /// One message per entry left out, naming the file, the entry and why.
    pub skipped: Vec<String>,
}

/// What an import reads besides the file.
pub struct Surroundings<'a> {
    /// Reads an environment variable.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The home directory (`${userHome}`).
    pub home: Option<PathBuf>,
    /// Whether an HTTP server at this URL may be published, or why not: its host must
    /// resolve, to this computer or its private networks unless remote upstreams are
    /// allowed.
    pub reachable: &'a dyn Fn(&Url) -> Result<(), String>,
}

/// The servers of the MCP client configuration at `path`; the entries left out are
/// logged as warnings. `allow_remote`: publish HTTP servers outside loopback and private
/// networks too.
pub fn import_servers(path: &Path, allow_remote: bool) -> Result<Vec<ServerEntry>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the MCP client configuration {}",
            path.display()
        )
    })?;
    let reachable = |url: &Url| {
        address::resolve(url, allow_remote)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let around = Surroundings {
        env: &|name| std::env::var(name).ok(),
        home: crate::login::home_dir().ok(),
        reachable: &reachable,
    };
    let imported = read(path, &text, &around)?;
    for why in &imported.skipped {
        tracing::warn!("{why}");
    }
    Ok(imported.servers)
}

/// The servers of an MCP client configuration whose text is `text` (`path` names it in
/// messages and locates its workspace).
pub fn read(path: &Path, text: &str, around: &Surroundings<'_>) -> Result<Imported> {
    let file = path.display();
    let doc: Value =
        serde_json::from_str(&crate::jsonc::strip(text)).map_err(|e| anyhow!("{file}: {e}"))?;
    let Some(top) = doc.as_object() else {
        bail!("{file}: not an MCP client configuration (a JSON object)");
    };
    let mut lists: Vec<(&str, &Map<String, Value>)> = Vec::new();
    for key in ["mcpServers", "servers"] {
        match top.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(servers)) => lists.push((key, servers)),
            Some(_) => bail!("{file}: `{key}` is not an object of servers"),
        }
    }
    if lists.is_empty() {
        bail!(
            "{file}: neither `mcpServers` (Claude Desktop, Claude Code, Cursor) nor `servers` \
             (VS Code) is there: is it an MCP client's configuration?"
        );
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let editor = Editor {
        home: around.home.clone(),
        workspace: workspace_of(&absolute, around.home.as_deref()),
    };
    let base = editor
        .workspace
        .clone()
        .or_else(|| absolute.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let vars = Vars {
        env: around.env,
        editor: Some(&editor),
    };
    let mut out = Imported::default();
    let mut from: BTreeMap<String, String> = BTreeMap::new();
    for (key, servers) in lists {
        for (raw, value) in servers {
            let server = match entry(value, &vars, &base, around.reachable) {
                Ok(server) => server,
                Err(why) => {
                    out.skipped
                        .push(format!("{file}: skipping the server {raw:?}: {why}"));
                    continue;
                }
            };
            let name = sanitize_name(raw);
            if let Some(first) = from.get(&name) {
                bail!(
                    "{file}: the servers {first:?} and {raw:?} both become the tunnel name \
                     {name:?}: rename one of them, or define them in a --config file as \
                     [servers.NAME]"
                );
            }
            from.insert(name.clone(), raw.clone());
            if name != *raw {
                tracing::info!("{file}: the server {raw:?} is published as the tunnel {name:?}");
            }
            out.servers.push(ServerEntry {
                origin: format!("{file} {key}.{raw:?}"),
                name,
                server,
                options: ServerOptions::default(),
                tunnel: None,
                assets: None,
            });
        }
    }
    Ok(out)
}

/// The workspace folder of a workspace's `.vscode/mcp.json` or `.cursor/mcp.json` (not of
/// the user-wide `~/.cursor/mcp.json`).
fn workspace_of(path: &Path, home: Option<&Path>) -> Option<PathBuf> {
    let dir = path.parent()?;
    let name = dir.file_name()?;
    if name != ".vscode" && name != ".cursor" {
        return None;
    }
    let workspace = dir.parent()?;
    (Some(workspace) != home && workspace.parent().is_some()).then(|| workspace.to_path_buf())
}

/// How an entry is reached.
enum Kind {
    Stdio,
    Http(Transport),
}

/// What one entry publishes, or why it cannot be published.
fn entry(
    value: &Value,
    vars: &Vars<'_>,
    base: &Path,
    reachable: &dyn Fn(&Url) -> Result<(), String>,
) -> Result<ServerSource, String> {
    let Some(obj) = value.as_object() else {
        return Err("it is not a JSON object".into());
    };
    if obj.get("disabled") == Some(&Value::Bool(true)) {
        return Err("it is disabled (`\"disabled\": true`)".into());
    }
    // Some write `"transport": {"type": …, "url": …, "headers": …}`.
    let nested = obj.get("transport").and_then(Value::as_object);
    let get = |k: &str| {
        obj.get(k)
            .or_else(|| nested.and_then(|n| n.get(k)))
            .filter(|v| !v.is_null())
    };
    let text = |k: &str| match get(k) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(format!("`{k}` is not a string")),
    };
    let expand = |field: &str, s: &str| {
        vars.expand(s)
            .map_err(|e| format!("`{field}`: {}", explain(&e)))
    };
    let transport = match obj.get("transport") {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let written_kind = text("type")?.or(text("transportType")?).or(transport);
    let kind = match written_kind.map(|k| k.to_ascii_lowercase().replace(['-', '_'], "")) {
        None => None,
        Some(k) => Some(match k.as_str() {
            "stdio" => Kind::Stdio,
            "http" | "streamablehttp" | "streamable" => Kind::Http(Transport::Http),
            "sse" => Kind::Http(Transport::Sse),
            "ws" | "websocket" => {
                return Err("it is a WebSocket server, which the bridge cannot publish".into());
            }
            _ => {
                return Err(format!(
                    "its type {:?} is not stdio, http or sse",
                    written_kind.unwrap_or_default()
                ));
            }
        }),
    };
    let command = text("command")?.filter(|c| !c.trim().is_empty());
    let url = match text("url")? {
        Some(u) => Some(u),
        None => text("serverUrl")?,
    };
    let kind = match (kind, command, url) {
        (Some(kind), _, _) => kind,
        (None, Some(_), Some(_)) => {
            return Err(
                "it has both a `command` and a `url`: say which with `\"type\": \"stdio\"` or \
                 `\"type\": \"http\"`"
                    .into(),
            );
        }
        (None, Some(_), None) => Kind::Stdio,
        (None, None, Some(_)) => Kind::Http(Transport::Auto),
        (None, None, None) => return Err("it has no `command` and no `url`".into()),
    };
    match kind {
        Kind::Stdio => {
            let Some(command) = command else {
                return Err("it is a stdio server without a `command`".into());
            };
            if get("envFile").is_some() {
                return Err(
                    "it reads variables from its `envFile`, which the bridge does not: give \
                     them in `env`, or publish it from a --config file"
                        .into(),
                );
            }
            if get("sandboxEnabled") == Some(&Value::Bool(true)) {
                return Err(
                    "its client runs it in a sandbox (`sandboxEnabled`), and the bridge has none"
                        .into(),
                );
            }
            let mut words = vec![expand("command", command)?];
            match get("args") {
                None => {}
                Some(Value::Array(args)) => {
                    for a in args {
                        let Some(a) = a.as_str() else {
                            return Err("`args` is not a list of strings".into());
                        };
                        words.push(expand("args", a)?);
                    }
                }
                Some(_) => return Err("`args` is not a list of strings".into()),
            }
            let mut env = Vec::new();
            match get("env") {
                None => {}
                Some(Value::Object(vars)) => {
                    for (k, v) in vars {
                        let field = format!("env.{k}");
                        let v = match v {
                            Value::String(s) => expand(&field, s)?,
                            Value::Number(n) => n.to_string(),
                            Value::Bool(b) => b.to_string(),
                            _ => return Err(format!("`{field}` is not a string")),
                        };
                        env.push((k.clone(), v));
                    }
                }
                Some(_) => return Err("`env` is not an object of strings".into()),
            }
            let cwd = match text("cwd")? {
                Some(c) => Some(base.join(expand("cwd", c)?)),
                None => None,
            };
            Ok(ServerSource::Command {
                command: words,
                env,
                cwd,
            })
        }
        Kind::Http(transport) => {
            let Some(written) = url else {
                return Err("it is an HTTP server without a `url`".into());
            };
            if get("oauth").is_some() {
                return Err("it signs in with OAuth (`oauth`), which only its client does".into());
            }
            let expanded = expand("url", written)?;
            if let Ok(u) = Url::parse(&expanded)
                && matches!(u.scheme(), "ws" | "wss")
            {
                return Err("it is a WebSocket server, which the bridge cannot publish".into());
            }
            let url = http_url(written, &expanded).map_err(|e| format!("`url`: {e}"))?;
            let mut headers = Vec::new();
            match get("headers") {
                None => {}
                Some(Value::Object(given)) => {
                    for (name, v) in given {
                        let field = format!("headers.{name}");
                        let Some(v) = v.as_str() else {
                            return Err(format!("`{field}` is not a string"));
                        };
                        let v = expand(&field, v)?;
                        check_header(name, &v).map_err(|e| format!("`{field}`: {e}"))?;
                        headers.push((name.clone(), v));
                    }
                }
                Some(_) => return Err("`headers` is not an object of strings".into()),
            }
            reachable(&url)?;
            Ok(ServerSource::Http(HttpServer {
                url,
                transport,
                headers,
            }))
        }
    }
}

/// Why a reference cannot be replaced, and what to do instead.
fn explain(e: &Unresolved) -> String {
    match e {
        Unresolved::Input(_) | Unresolved::EditorOnly(_) => format!(
            "{e}; set the value in an environment variable and write `${{env:NAME}}`, or \
             publish the server from a --config file"
        ),
        Unresolved::Unset(_) | Unresolved::Unclosed => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "API_KEY" => Some("k3y".into()),
            "PORT" => Some("3845".into()),
            _ => None,
        }
    }

    fn home() -> PathBuf {
        PathBuf::from("/home/me")
    }

    /// Hosts under `.example` are remote, `.invalid` ones do not resolve.
    fn reachable(url: &Url) -> Result<(), String> {
        match url.host_str().unwrap_or_default() {
            h if h.ends_with(".example") => Err(format!("{h} is remote")),
            h if h.ends_with(".invalid") => Err(format!("cannot resolve {h}")),
            _ => Ok(()),
        }
    }

    fn read_at(path: &str, text: &str) -> Result<Imported> {
        read(
            Path::new(path),
            text,
            &Surroundings {
                env: &env,
                home: Some(home()),
                reachable: &reachable,
            },
        )
    }

    fn names(i: &Imported) -> Vec<&str> {
        i.servers.iter().map(|s| s.name.as_str()).collect()
    }

    fn http(s: &ServerEntry) -> &HttpServer {
        match &s.server {
            ServerSource::Http(h) => h,
            other => panic!("an HTTP server: {other:?}"),
        }
    }

    fn command(s: &ServerEntry) -> (&[String], &[(String, String)], Option<&Path>) {
        match &s.server {
            ServerSource::Command { command, env, cwd } => (command, env, cwd.as_deref()),
            other => panic!("a command: {other:?}"),
        }
    }

    /// The one skip message about `name`.
    fn skipped<'a>(i: &'a Imported, name: &str) -> &'a str {
        let found: Vec<&String> = i
            .skipped
            .iter()
            .filter(|s| s.contains(&format!("server {name:?}")))
            .collect();
        assert_eq!(found.len(), 1, "{name} in {:?}", i.skipped);
        found[0]
    }

    #[test]
    fn claude_desktop() {
        let i = read_at(
            "/home/me/Library/Application Support/Claude/claude_desktop_config.json",
            r#"{
  "mcpServers": {
    "My Files": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/notes"],
      "env": {"NODE_OPTIONS": "--max-old-space-size=512", "DEBUG": 1}
    },
    "fs": {"command": "uvx", "args": ["mcp-server-fetch"]}
  },
  "globalShortcut": "Ctrl+Space"
}"#,
        )
        .unwrap();
        assert_eq!(names(&i), ["my-files", "fs-mcp"]);
        assert!(i.skipped.is_empty(), "{:?}", i.skipped);
        let (words, env, cwd) = command(&i.servers[0]);
        assert_eq!(words[0], "npx");
        assert_eq!(words[3], "/home/me/notes");
        assert_eq!(
            env,
            [
                ("DEBUG".to_owned(), "1".to_owned()),
                (
                    "NODE_OPTIONS".to_owned(),
                    "--max-old-space-size=512".to_owned()
                )
            ]
        );
        assert_eq!(cwd, None);
        assert!(i.servers[0].origin.ends_with(r#"mcpServers."My Files""#));
    }

    #[test]
    fn claude_code() {
        let i = read_at(
            "/work/project/.mcp.json",
            r#"{
  "mcpServers": {
    "figma": {"type": "http", "url": "http://127.0.0.1:${PORT}/mcp",
              "headers": {"Authorization": "Bearer ${API_KEY}", "X-Mode": "${MODE:-dev}"}},
    "events": {"type": "sse", "url": "http://localhost:8080/sse"},
    "local": {"type": "stdio", "command": "${HOME_BIN:-/usr/local/bin}/server",
              "args": ["--key", "${API_KEY}"], "env": {"KEY": "${API_KEY}"}}
  }
}"#,
        )
        .unwrap();
        assert_eq!(names(&i), ["events", "figma", "local"]);
        let events = http(&i.servers[0]);
        assert_eq!(events.transport, Transport::Sse);
        assert_eq!(events.url.as_str(), "http://localhost:8080/sse");
        let figma = http(&i.servers[1]);
        assert_eq!(figma.transport, Transport::Http);
        assert_eq!(figma.url.as_str(), "http://127.0.0.1:3845/mcp");
        assert_eq!(
            figma.headers,
            [
                ("Authorization".to_owned(), "Bearer k3y".to_owned()),
                ("X-Mode".to_owned(), "dev".to_owned())
            ]
        );
        let (words, env, _) = command(&i.servers[2]);
        assert_eq!(words, ["/usr/local/bin/server", "--key", "k3y"]);
        assert_eq!(env, [("KEY".to_owned(), "k3y".to_owned())]);
    }

    #[test]
    fn cursor() {
        let i = read_at(
            "/home/me/.cursor/mcp.json",
            r#"{
  "mcpServers": {
    "design": {"url": "http://127.0.0.1:3845/mcp", "headers": {"API_KEY": "${env:API_KEY}"}},
    "playwright": {"command": "npx", "args": ["-y", "@playwright/mcp@latest"]},
    "context7": {"url": "https://mcp.context7.example/mcp"},
    "notes": {"command": "notes-mcp", "args": ["${userHome}/notes", "${workspaceFolder}"]}
  }
}"#,
        )
        .unwrap();
        assert_eq!(names(&i), ["design", "playwright"]);
        let design = http(&i.servers[0]);
        assert_eq!(design.transport, Transport::Auto);
        assert_eq!(design.headers, [("API_KEY".to_owned(), "k3y".to_owned())]);
        let why = skipped(&i, "context7");
        assert!(
            why.starts_with("/home/me/.cursor/mcp.json: skipping"),
            "{why}"
        );
        assert!(why.contains("mcp.context7.example is remote"), "{why}");
        // The user-wide file has no workspace folder.
        let why = skipped(&i, "notes");
        assert!(why.contains("${workspaceFolder}"), "{why}");
    }

    #[test]
    fn vs_code_with_comments_inputs_and_editor_variables() {
        let i = read_at(
            "/work/project/.vscode/mcp.json",
            r#"{
  // Secrets asked by VS Code.
  "inputs": [
    {"type": "promptString", "id": "key", "description": "API key", "password": true},
  ],
  "servers": {
    "memory": {
      "type": "stdio",
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-memory", "${workspaceFolder}/memory.json"],
      "cwd": "tools", /* relative to the workspace */
    },
    "Perplexity": {
      "type": "stdio",
      "command": "npx",
      "env": {"PERPLEXITY_API_KEY": "${input:key}"},
    },
    "figma": {"type": "http", "url": "http://127.0.0.1:3845/mcp"},
    "events": {"type": "sse", "url": "http://[::1]:8080/sse", "headers": {"X-Key": "${env:API_KEY}"}},
    "home": {"command": "srv", "args": ["${userHome}${/}x", "${workspaceFolderBasename}"]},
  },
}
"#,
        )
        .unwrap();
        assert_eq!(names(&i), ["events", "figma", "home", "memory"]);
        assert_eq!(http(&i.servers[0]).transport, Transport::Sse);
        assert_eq!(http(&i.servers[0]).headers[0].1, "k3y");
        assert_eq!(http(&i.servers[1]).transport, Transport::Http);
        let sep = std::path::MAIN_SEPARATOR;
        assert_eq!(
            command(&i.servers[2]).0[1..],
            [format!("/home/me{sep}x"), "project".to_owned()]
        );
        let (words, _, cwd) = command(&i.servers[3]);
        assert_eq!(words[3], "/work/project/memory.json");
        assert_eq!(cwd, Some(Path::new("/work/project/tools")));
        let why = skipped(&i, "Perplexity");
        assert!(why.contains("`env.PERPLEXITY_API_KEY`"), "{why}");
        assert!(why.contains("${input:key}"), "{why}");
        assert!(i.servers[0].origin.ends_with(r#"servers."events""#));
    }

    #[test]
    fn other_spellings_of_the_transport_and_url() {
        let i = read_at(
            "/x/mcp_config.json",
            r#"{"mcpServers": {
  "windsurf": {"serverUrl": "http://127.0.0.1:1/mcp"},
  "cline": {"type": "streamableHttp", "url": "http://127.0.0.1:2/mcp"},
  "older": {"transportType": "sse", "url": "http://127.0.0.1:3/sse"},
  "named": {"transport": "streamable-http", "url": "http://127.0.0.1:4/mcp"},
  "nested": {"transport": {"type": "http", "url": "http://127.0.0.1:5/mcp",
                           "headers": {"X-Key": "${API_KEY}"}}},
  "upper": {"type": "SSE", "url": "http://127.0.0.1:6/sse"}
}}"#,
        )
        .unwrap();
        assert!(i.skipped.is_empty(), "{:?}", i.skipped);
        let by_name: BTreeMap<&str, &HttpServer> = i
            .servers
            .iter()
            .map(|s| (s.name.as_str(), http(s)))
            .collect();
        assert_eq!(by_name["windsurf"].transport, Transport::Auto);
        assert_eq!(by_name["cline"].transport, Transport::Http);
        assert_eq!(by_name["older"].transport, Transport::Sse);
        assert_eq!(by_name["named"].transport, Transport::Http);
        assert_eq!(by_name["nested"].url.port(), Some(5));
        assert_eq!(by_name["nested"].headers[0].1, "k3y");
        assert_eq!(by_name["upper"].transport, Transport::Sse);
    }

    #[test]
    fn entries_that_cannot_be_published_are_skipped_with_the_reason() {
        let i = read_at(
            "/home/me/.cursor/mcp.json",
            r#"{"mcpServers": {
  "fine": {"command": "srv"},
  "nothing": {"args": ["x"]},
  "empty": {"command": "  "},
  "input": {"url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "Bearer ${input:tok}"}},
  "unset": {"url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "Bearer ${env:NOPE}"}},
  "unset-arg": {"command": "srv", "args": ["${NOPE}"]},
  "unclosed": {"command": "srv", "args": ["${API_KEY"]},
  "editor": {"command": "srv", "args": ["${command:pick}"]},
  "strange": {"type": "carrier-pigeon", "url": "http://127.0.0.1:1/mcp"},
  "ws-type": {"type": "websocket", "url": "ws://127.0.0.1:1/mcp"},
  "ws-url": {"url": "ws://127.0.0.1:1/mcp"},
  "socket": {"type": "http", "url": "unix:///tmp/mcp.sock"},
  "both": {"command": "srv", "url": "http://127.0.0.1:1/mcp"},
  "stdio-no-command": {"type": "stdio", "url": "http://127.0.0.1:1/mcp"},
  "http-no-url": {"type": "http", "command": "srv"},
  "off": {"command": "srv", "disabled": true},
  "env-file": {"type": "stdio", "command": "srv", "envFile": "${workspaceFolder}/.env"},
  "sandboxed": {"type": "stdio", "command": "srv", "sandboxEnabled": true},
  "oauth": {"type": "http", "url": "http://127.0.0.1:1/mcp", "oauth": {"clientId": "x"}},
  "bad-header": {"url": "http://127.0.0.1:1/mcp", "headers": {"Bad Name": "x"}},
  "own-header": {"url": "http://127.0.0.1:1/mcp", "headers": {"Mcp-Session-Id": "x"}},
  "bad-value": {"url": "http://127.0.0.1:1/mcp", "headers": {"X-Key": "a\nb"}},
  "number-header": {"url": "http://127.0.0.1:1/mcp", "headers": {"X-Key": 1}},
  "bad-args": {"command": "srv", "args": "x"},
  "not-a-url": {"url": "127.0.0.1:1/mcp"},
  "remote": {"url": "http://far.example/mcp"},
  "unresolved": {"url": "http://nowhere.invalid/mcp"},
  "scalar": "srv"
}}"#,
        )
        .unwrap();
        assert_eq!(names(&i), ["fine"]);
        let cases = [
            ("nothing", "no `command` and no `url`"),
            ("empty", "no `command` and no `url`"),
            ("input", "`headers.Authorization`: `${input:tok}`"),
            (
                "unset",
                "`headers.Authorization`: the environment variable NOPE is not set",
            ),
            (
                "unset-arg",
                "`args`: the environment variable NOPE is not set",
            ),
            ("unclosed", "not closed"),
            ("editor", "`${command:pick}` is known only to the editor"),
            (
                "strange",
                "type \"carrier-pigeon\" is not stdio, http or sse",
            ),
            ("ws-type", "WebSocket"),
            ("ws-url", "WebSocket"),
            ("socket", "not an http:// or https:// URL"),
            ("both", "both a `command` and a `url`"),
            ("stdio-no-command", "stdio server without a `command`"),
            ("http-no-url", "HTTP server without a `url`"),
            ("off", "disabled"),
            ("env-file", "`envFile`"),
            ("sandboxed", "sandbox"),
            ("oauth", "OAuth"),
            ("bad-header", "\"Bad Name\" is not a valid HTTP header name"),
            (
                "own-header",
                "the bridge sets the header Mcp-Session-Id itself",
            ),
            ("bad-value", "not a valid HTTP header value"),
            ("number-header", "`headers.X-Key` is not a string"),
            ("bad-args", "`args` is not a list of strings"),
            ("not-a-url", "is not"),
            ("remote", "far.example is remote"),
            ("unresolved", "cannot resolve nowhere.invalid"),
            ("scalar", "not a JSON object"),
        ];
        for (name, want) in cases {
            let why = skipped(&i, name);
            assert!(why.contains(want), "{name}: {want:?} in {why}");
            assert!(
                why.starts_with(&format!(
                    "/home/me/.cursor/mcp.json: skipping the server {name:?}: "
                )),
                "{why}"
            );
            // Secrets are never shown.
            assert!(!why.contains("k3y"), "{why}");
        }
        assert_eq!(i.skipped.len(), cases.len(), "{:?}", i.skipped);
    }

    #[test]
    fn file_errors() {
        let cases = [
            ("[]", "not an MCP client configuration"),
            ("{\"mcpServers\": []}", "`mcpServers` is not an object"),
            ("{\"other\": {}}", "neither `mcpServers`"),
            (
                "{\"mcpServers\": {\n  \"a\": }",
                "/x/c.json: expected value at line 2",
            ),
            (
                "{\"mcpServers\": {\"My Server\": {\"command\": \"a\"}, \"my-server\": {\"command\": \"b\"}}}",
                "\"My Server\" and \"my-server\" both become the tunnel name \"my-server\"",
            ),
            (
                "{\"mcpServers\": {\"abc\": {\"command\": \"a\"}}, \"servers\": {\"ABC\": {\"command\": \"b\"}}}",
                "both become the tunnel name \"abc\"",
            ),
        ];
        for (text, want) in cases {
            let e = read_at("/x/c.json", text).unwrap_err().to_string();
            assert!(e.contains(want), "{want:?} in {e}");
        }
        // An empty list, and a skipped entry's name, are no errors.
        let i = read_at(
            "/x/c.json",
            "{\"mcpServers\": {}, \"servers\": {\"my-server\": {\"command\": \"b\"}, \"My Server\": {}}}",
        )
        .unwrap();
        assert_eq!(names(&i), ["my-server"]);
    }

    #[test]
    fn workspace_folders() {
        let home = home();
        let ws = |p: &str| workspace_of(Path::new(p), Some(&home));
        assert_eq!(ws("/w/p/.vscode/mcp.json"), Some(PathBuf::from("/w/p")));
        assert_eq!(ws("/w/p/.cursor/mcp.json"), Some(PathBuf::from("/w/p")));
        assert_eq!(ws("/home/me/.cursor/mcp.json"), None);
        assert_eq!(ws("/w/p/.mcp.json"), None);
        assert_eq!(ws("/.vscode/mcp.json"), None);
    }

    #[test]
    fn debug_hides_secrets() {
        let i = read_at(
            "/x/c.json",
            r#"{"mcpServers": {
  "web": {"url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "Bearer ${API_KEY}"}},
  "cmd": {"command": "srv", "env": {"TOKEN": "${API_KEY}"}}
}}"#,
        )
        .unwrap();
        let shown = format!("{:?}", i.servers);
        assert!(!shown.contains("k3y"), "{shown}");
        assert!(shown.contains("Authorization=<hidden>"), "{shown}");
        assert!(shown.contains("TOKEN=<hidden>"), "{shown}");
    }
}
