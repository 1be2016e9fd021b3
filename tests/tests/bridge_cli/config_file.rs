//! `bridge run --config FILE` and `--claude-config PATH`: several servers behind one
//! in-process relay, each under its own tunnel name; flags and environment variables over
//! the file; errors naming the key; Claude Desktop's `env` reaching the server; and the
//! server's last stderr lines when it cannot start.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::mcp::{McpClient, initialize, no_headers};
use e2e::{Proc, bin};
use serde_json::json;

use crate::{echo, exits_with, tool_names};

/// `bridge run` with a private home and configuration directory.
fn bridge(home: &Path) -> Command {
    crate::bridge_in(home, "run", true)
}

/// One tunnel as printed: name (from the header when there are several), endpoint, token.
#[derive(Debug, Clone)]
struct Printed {
    header: Option<String>,
    mcp_url: String,
    bearer: Option<String>,
}

fn printed(lines: &[String]) -> Vec<Printed> {
    let mut out: Vec<Printed> = Vec::new();
    let mut header = None;
    for l in lines {
        if let Some(h) = l.strip_prefix("Tunnel ") {
            header = Some(h.split_whitespace().next().unwrap_or("").to_owned());
        } else if let Some(u) = l.strip_prefix("MCP endpoint:") {
            out.push(Printed {
                header: header.take(),
                mcp_url: u.trim().to_owned(),
                bearer: None,
            });
        } else if let Some(t) = l.strip_prefix("Bearer token:") {
            out.last_mut().expect("endpoint first").bearer = Some(t.trim().to_owned());
        }
    }
    out
}

fn toml_str(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).unwrap()
}

fn wait_file_contains(path: &Path, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).is_ok_and(|t| t.lines().any(|l| l == needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test]
async fn two_servers_of_a_config_file_share_one_relay() {
    let home = tempfile::tempdir().unwrap();
    let alpha_counts = home.path().join("alpha.txt");
    let beta_counts = home.path().join("beta.txt");
    let config = home.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "# two copies of the fixture\nlisten = \"127.0.0.1:0\"\nmax_in_flight = 32\n\n\
             [servers.alpha]\ncommand = {fx}\nenv = {{ FIXTURE_COUNTS = {a} }}\n\n\
             [servers.beta]\ncommand = {fx}\nargs = []\nenv = {{ FIXTURE_COUNTS = {b} }}\nauth = \"bearer\"\n",
            fx = toml_str(&bin("mcp-fixture")),
            a = toml_str(&alpha_counts),
            b = toml_str(&beta_counts),
        ),
    )
    .unwrap();
    let mut cmd = bridge(home.path());
    cmd.arg("--config").arg(&config);
    let mut run = Proc::start(cmd, "bridge");
    let lines = run.wait_for("Bearer token:", 2);
    let tunnels = printed(&lines);
    assert_eq!(tunnels.len(), 2, "{lines:?}");
    let by_name = |n: &str| {
        tunnels
            .iter()
            .find(|t| t.header.as_deref() == Some(n))
            .unwrap_or_else(|| panic!("no tunnel {n} in {lines:?}"))
            .clone()
    };
    let (alpha, beta) = (by_name("alpha"), by_name("beta"));
    assert!(alpha.mcp_url.ends_with("/alpha/mcp"), "{alpha:?}");
    assert!(beta.mcp_url.ends_with("/beta/mcp"), "{beta:?}");
    let base = |u: &str| u.rsplitn(3, '/').nth(2).unwrap().to_owned();
    assert_eq!(
        base(&alpha.mcp_url),
        base(&beta.mcp_url),
        "one relay serves both"
    );
    assert_ne!(alpha.bearer, beta.bearer, "each tunnel has its own token");

    for t in [&alpha, &beta] {
        let tools = tool_names(&t.mcp_url, t.bearer.as_deref()).await;
        assert!(tools.iter().any(|n| n == "echo"), "{tools:?}");
    }
    // Each server runs with its own environment, so each has its own counts file.
    assert_eq!(
        echo(&alpha.mcp_url, alpha.bearer.as_deref(), "to alpha").await,
        "to alpha"
    );
    assert!(wait_file_contains(&alpha_counts, "call echo"));
    assert!(
        !std::fs::read_to_string(&beta_counts)
            .unwrap_or_default()
            .contains("call echo"),
        "the call went to alpha's server only"
    );
    // Alpha's token does not open beta.
    let status = McpClient::new(&beta.mcp_url, alpha.bearer.as_deref())
        .post(
            &initialize(json!(1), "2025-06-18", json!({}), "x"),
            &no_headers(),
            "initialize with another tunnel's token",
        )
        .await
        .status;
    assert_eq!(status, 403, "a wrong token for this tunnel");
    assert!(
        !run.log_text().contains("\u{1b}[2K") && !run.log_text().contains("● "),
        "no status line when stderr is not a terminal"
    );
}

#[tokio::test]
async fn flags_and_environment_override_the_file() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("bridge.toml");
    std::fs::write(
        &config,
        "name = \"from-the-file\"\nclient_token = \"token-from-the-file\"\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();

    // A flag wins over the file; what no flag sets comes from the file.
    let mut cmd = bridge(home.path());
    cmd.arg("--config")
        .arg(&config)
        .args(["--name", "from-a-flag", "--"])
        .arg(bin("mcp-fixture"));
    let mut run = Proc::start(cmd, "bridge");
    let t = printed(&run.wait_for("Bearer token:", 1)).remove(0);
    assert!(t.mcp_url.ends_with("/from-a-flag/mcp"), "{t:?}");
    assert_eq!(t.bearer.as_deref(), Some("token-from-the-file"));
    let tools = tool_names(&t.mcp_url, t.bearer.as_deref()).await;
    assert!(tools.iter().any(|n| n == "echo"));
    drop(run);

    // An environment variable wins over the file too (the file itself named by
    // BRIDGE_CONFIG).
    let mut cmd = bridge(home.path());
    cmd.env("BRIDGE_CONFIG", &config)
        .env("BRIDGE_CLIENT_TOKEN", "token-from-the-environment")
        .arg("--")
        .arg(bin("mcp-fixture"));
    let mut run = Proc::start(cmd, "bridge");
    let t = printed(&run.wait_for("Bearer token:", 1)).remove(0);
    assert!(t.mcp_url.ends_with("/from-the-file/mcp"), "{t:?}");
    assert_eq!(t.bearer.as_deref(), Some("token-from-the-environment"));
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key_and_the_file() {
    let home = tempfile::tempdir().unwrap();
    let cases = [
        (
            "max_in_flight = 4\nlisten_adress = \"127.0.0.1:0\"\n",
            "listen_adress",
            ":2",
        ),
        (
            "[servers.files]\ncommand = \"x\"\nargs = \"not a list\"\n",
            "servers.files.args",
            ":3",
        ),
        (
            "[servers.files]\ncommand = \"x\"\nenvironment = {}\n",
            "servers.files.environment",
            ":3",
        ),
        ("max_sessions = \"many\"\n", "max_sessions", ":1"),
        (
            "[servers.files]\ncommand = \"x\"\n[servers.files.policy]\ndeny = [\"a\"]\n",
            "servers.files.policy.deny",
            ":4",
        ),
        (
            "[servers.web]\ncommand = \"x\"\nurl = \"http://127.0.0.1:1/mcp\"\n",
            "servers.web.url",
            ":3",
        ),
        (
            "[servers.web]\nurl = \"http://127.0.0.1:1/mcp\"\n\n[servers.web.headers]\n\
             Authorization = \"Bearer ${env:BRIDGE_TEST_VARIABLE_NEVER_SET}\"\n",
            "servers.web.headers.Authorization",
            ":5",
        ),
    ];
    for (text, key, line) in cases {
        let config = home.path().join("bad.toml");
        std::fs::write(&config, text).unwrap();
        // The error names the file with the line, and the key.
        let file_line = format!("{}{line}", config.display());
        exits_with(
            bridge(home.path()).arg("--config").arg(&config),
            1,
            &[&file_line, &format!("`{key}`")],
        );
    }
}

#[tokio::test]
async fn claude_desktop_servers_are_published_with_their_env() {
    let home = tempfile::tempdir().unwrap();
    let counts = home.path().join("claude-env.txt");
    let claude = home.path().join("claude_desktop_config.json");
    let fixture = bin("mcp-fixture").display().to_string();
    std::fs::write(
        &claude,
        serde_json::to_string_pretty(&json!({
            "globalShortcut": "Ctrl+Space",
            "mcpServers": {
                "My Fixture": {
                    "command": fixture,
                    "args": [],
                    "env": {"FIXTURE_COUNTS": counts.display().to_string()}
                },
                "fx": {"command": fixture},
                "hosted": {"url": "https://mcp.example.com/mcp"},
                "streamed": {"type": "streamable-http", "url": "https://x.example.com/mcp"}
            }
        }))
        .unwrap(),
    )
    .unwrap();
    let mut cmd = bridge(home.path());
    cmd.args(["--listen", "127.0.0.1:0", "--claude-config"])
        .arg(&claude);
    let mut run = Proc::start(cmd, "bridge");
    let lines = run.wait_for("Bearer token:", 2);
    let tunnels = printed(&lines);
    let names: Vec<&str> = tunnels
        .iter()
        .map(|t| t.header.as_deref().unwrap_or(""))
        .collect();
    assert!(
        names.contains(&"my-fixture") && names.contains(&"fx-mcp"),
        "{lines:?}"
    );
    let mine = tunnels
        .iter()
        .find(|t| t.header.as_deref() == Some("my-fixture"))
        .unwrap();
    assert!(mine.mcp_url.ends_with("/my-fixture/mcp"));
    // The entry's `env` reached the server: it writes to the file it names.
    assert!(
        wait_file_contains(&counts, "initialize"),
        "the server did not get FIXTURE_COUNTS"
    );
    assert_eq!(
        echo(&mine.mcp_url, mine.bearer.as_deref(), "hello").await,
        "hello"
    );
    assert!(wait_file_contains(&counts, "call echo"));
    let stderr = run.log_text();
    assert!(
        stderr.contains("skipping the server \"hosted\"")
            && stderr.contains("skipping the server \"streamed\""),
        "remote entries are skipped with a warning: {stderr}"
    );
    drop(run);

    // Two names that become the same tunnel name are reported.
    std::fs::write(
        &claude,
        json!({"mcpServers": {"Notes App": {"command": fixture}, "notes_app": {"command": fixture}}})
            .to_string(),
    )
    .unwrap();
    exits_with(
        bridge(home.path())
            .args(["--listen", "127.0.0.1:0", "--claude-config"])
            .arg(&claude),
        1,
        &["both become the tunnel name \"notes-app\""],
    );
}

#[test]
fn a_server_that_cannot_start_shows_its_last_stderr_lines() {
    let home = tempfile::tempdir().unwrap();
    // The fixture refuses to start when its counts file cannot be opened, saying why on
    // stderr.
    exits_with(
        bridge(home.path())
            .args(["--listen", "127.0.0.1:0", "--"])
            .arg(bin("mcp-fixture"))
            .env("FIXTURE_COUNTS", home.path().join("missing/dir/counts.txt")),
        3,
        &[
            "the MCP server could not start",
            "the last lines of its stderr",
            "    | [mcp-fixture] cannot open FIXTURE_COUNTS file",
            "the command: ",
        ],
    );
}

#[test]
fn nothing_to_run_says_what_to_give() {
    let home = tempfile::tempdir().unwrap();
    exits_with(
        bridge(home.path()).args(["--listen", "127.0.0.1:0"]),
        1,
        &["nothing to run", "--config"],
    );
}

/// A bridge running `script` (a `sh -c` line) as its server, with a configuration file that
/// gives the server `BRIDGE_SETTING_FOR_SERVER` and an environment full of the bridge's own
/// secrets; its endpoint and token.
fn bridge_with_secrets(home: &Path, script: &str) -> (Proc, Printed) {
    let config = home.join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n\n[servers.alpha]\ncommand = \"sh\"\nargs = [\"-c\", {}]\n\
             env = {{ BRIDGE_SETTING_FOR_SERVER = \"given-in-env\" }}\n",
            serde_json::to_string(script).unwrap()
        ),
    )
    .unwrap();
    let mut cmd = bridge(home);
    cmd.arg("--config")
        .arg(&config)
        .env("BRIDGE_TOKEN", "secret-bridge-token-0123456789abcdef0123")
        .env(
            "BRIDGE_CLIENT_TOKEN",
            "secret-client-token-0123456789abcdef",
        )
        .env("RELAY_BRIDGE_TOKENS", "secret-relay-token")
        .env("relay_lowercase_secret", "secret-lowercase")
        .env("SERVER_VISIBLE", "kept");
    let mut run = Proc::start(cmd, "bridge");
    let p = printed(&run.wait_for("Bearer token:", 1)).remove(0);
    (run, p)
}

/// The attack: a server whose tools read its environment (server-everything's `get-env`)
/// would hand any client the bridge token, with which it could take over the tunnel. The
/// bridge's own `BRIDGE_*` and `RELAY_*` variables never reach the server; variables named
/// in a server's `env` do.
#[tokio::test]
async fn bridge_secrets_stay_out_of_the_server_environment() {
    let home = tempfile::tempdir().unwrap();
    let env_file = home.path().join("server-env.txt");
    let script = format!(
        "env > '{}'; exec '{}'",
        env_file.display(),
        bin("mcp-fixture").display()
    );
    let (_run, p) = bridge_with_secrets(home.path(), &script);
    let _ = tool_names(&p.mcp_url, p.bearer.as_deref()).await;
    assert!(wait_file_contains(&env_file, "SERVER_VISIBLE=kept"));
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(!env.contains("secret-"), "the server saw a secret:\n{env}");
    for line in env.lines() {
        let name = line.split('=').next().unwrap_or("").to_ascii_uppercase();
        assert!(
            !(name.starts_with("BRIDGE_") || name.starts_with("RELAY_"))
                || name == "BRIDGE_SETTING_FOR_SERVER",
            "{line}"
        );
    }
    assert!(
        env.contains("BRIDGE_SETTING_FOR_SERVER=given-in-env"),
        "{env}"
    );
}

/// The attack: a server writing a carriage return (or an escape sequence) on its stderr to
/// overwrite a line of the owner's terminal with a forged bridge message. Its stderr is
/// shown with such characters replaced.
#[tokio::test]
async fn server_stderr_cannot_forge_bridge_lines() {
    let home = tempfile::tempdir().unwrap();
    let script = format!(
        "printf 'loading\\rINFO bridge: FORGED consent approved\\033[2K\\n' >&2; exec '{}'",
        bin("mcp-fixture").display()
    );
    let (run, p) = bridge_with_secrets(home.path(), &script);
    let _ = tool_names(&p.mcp_url, p.bearer.as_deref()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !run.log_text().contains("FORGED consent approved") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = run.log_text();
    assert!(
        !log.contains("\rINFO bridge: FORGED") && !log.contains('\u{1b}'),
        "the server's stderr reached the terminal raw:\n{log:?}"
    );
    assert!(log.contains("loading\u{FFFD}INFO bridge: FORGED"), "{log}");
}

/// The HTTP entries of an MCP client's file are published: a VS Code `mcp.json` (JSONC,
/// `servers`, `type: "http"` with a header from the environment, `type: "sse"`) next to a
/// stdio entry, each under its own tunnel; calls reach each server, and the header reaches
/// the HTTP server.
#[tokio::test]
async fn an_imported_files_http_servers_are_published() {
    use e2e::upstreams::{Transport, Upstream};
    let streamable = Upstream::python(Transport::Streamable);
    let sse = Upstream::python(Transport::Sse);
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("mcp.json");
    std::fs::write(
        &file,
        format!(
            r#"{{
  // as VS Code writes it
  "servers": {{
    "notes": {{
      "type": "http",
      "url": "{streamable}",
      "headers": {{ "X-Notes-Key": "${{env:NOTES_KEY_FOR_TEST}}" }},
    }},
    "board": {{ "type": "sse", "url": "{sse}" }},
    "files": {{ "type": "stdio", "command": {fx} }},
  }}
}}"#,
            streamable = streamable.url(),
            sse = sse.url(),
            fx = serde_json::to_string(&bin("mcp-fixture").display().to_string()).unwrap(),
        ),
    )
    .unwrap();
    let mut cmd = bridge(home.path());
    cmd.args(["--listen", "127.0.0.1:0", "--auth", "none", "--import"])
        .arg(&file)
        .env("NOTES_KEY_FOR_TEST", "k-123");
    let mut run = Proc::start(cmd, "bridge");
    let lines = run.wait_for("Client auth:", 3);
    let tunnels = printed(&lines);
    let url_of = |n: &str| {
        tunnels
            .iter()
            .find(|t| t.header.as_deref() == Some(n))
            .unwrap_or_else(|| panic!("no tunnel {n} in {lines:?}"))
            .mcp_url
            .clone()
    };
    let call = |url: String, name: &'static str, args: serde_json::Value| async move {
        let session = McpClient::new(&url, None)
            .session(crate::HANDSHAKE_2025_06)
            .await;
        let a = session
            .call(
                json!(2),
                "tools/call",
                json!({"name": name, "arguments": args}),
            )
            .await;
        a["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        call(url_of("notes"), "echo", json!({"message": "n"})).await,
        "Echo: n"
    );
    assert_eq!(
        call(url_of("notes"), "header", json!({"name": "X-Notes-Key"})).await,
        "k-123",
        "the header from the environment reaches the server"
    );
    assert_eq!(
        call(url_of("board"), "echo", json!({"message": "b"})).await,
        "Echo: b"
    );
    assert_eq!(echo(&url_of("files"), None, "f").await, "f");
}
