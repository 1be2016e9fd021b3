//! `bridge run --config FILE` and `--claude-config PATH`: several servers behind one
//! in-process relay, each under its own tunnel name; flags and environment variables over
//! the file; errors naming the key; Claude Desktop's `env` reaching the server; and the
//! server's last stderr lines when it cannot start.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::bin;
use serde_json::{Value, json};

/// A `bridge` process: stdout read line by line, stderr in a file, killed with its process
/// group when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(mut cmd: Command) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().expect("bridge");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines: rx,
            seen: Vec::new(),
            log,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Reads stdout until `n` lines start with `prefix`; all lines so far.
    fn wait_for(&mut self, prefix: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.seen.iter().filter(|l| l.starts_with(prefix)).count() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!(
                    "no {n} lines {prefix:?}; stdout: {:?}; stderr:\n{}",
                    self.seen,
                    self.stderr()
                ),
            }
        }
        self.seen.clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: killing the process group created for this child.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// `bridge run` with a private configuration directory and none of the BRIDGE_* variables.
fn bridge(home: &Path) -> Command {
    let mut cmd = Command::new(bin("bridge"));
    cmd.arg("run")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("RUST_LOG", "info");
    for v in [
        "BRIDGE_RELAY",
        "BRIDGE_TOKEN",
        "BRIDGE_NAME",
        "BRIDGE_CLIENT_TOKEN",
        "BRIDGE_CONFIG",
        "FIXTURE_COUNTS",
    ] {
        cmd.env_remove(v);
    }
    cmd
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

fn http() -> reqwest::Client {
    e2e::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// POSTs one JSON-RPC message; the status, the session id, and the answer (JSON or SSE).
async fn post(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    session: Option<&str>,
    body: Value,
) -> (u16, Option<String>, Option<Value>) {
    let mut rb = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(b) = bearer {
        rb = rb.bearer_auth(b);
    }
    if let Some(s) = session {
        rb = rb
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-06-18");
    }
    let resp = rb.send().await.expect("POST");
    let status = resp.status().as_u16();
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.unwrap();
    let answer = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find(|d| d.contains("\"id\""))
        .map(str::to_owned)
        .or_else(|| (!text.trim().is_empty()).then(|| text.clone()))
        .and_then(|d| serde_json::from_str(&d).ok());
    (status, session, answer)
}

/// Initializes a session and lists the tools: their names.
async fn tool_names(url: &str, bearer: Option<&str>) -> Vec<String> {
    let http = http();
    let (status, session, _) = post(
        &http,
        url,
        bearer,
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},
            "clientInfo":{"name":"config-test","version":"1"}}}),
    )
    .await;
    assert_eq!(status, 200, "initialize at {url}");
    let session = session.expect("a session id");
    let (status, _, _) = post(
        &http,
        url,
        bearer,
        Some(&session),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202);
    let (status, _, answer) = post(
        &http,
        url,
        bearer,
        Some(&session),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
    )
    .await;
    assert_eq!(status, 200);
    let answer = answer.expect("a tools/list answer");
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Calls the fixture's `echo` in a fresh session; the text echoed back.
async fn echo(url: &str, bearer: Option<&str>, text: &str) -> String {
    let http = http();
    let (_, session, _) = post(
        &http,
        url,
        bearer,
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},
            "clientInfo":{"name":"config-test","version":"1"}}}),
    )
    .await;
    let session = session.expect("session");
    let (status, _, answer) = post(
        &http,
        url,
        bearer,
        Some(&session),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":text}}}),
    )
    .await;
    assert_eq!(status, 200);
    let answer = answer.expect("echo answer");
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("unexpected echo answer {answer}"))
        .to_owned()
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
    let mut run = Running::start(cmd);
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
    let (status, _, _) = post(
        &http(),
        &beta.mcp_url,
        alpha.bearer.as_deref(),
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},
            "clientInfo":{"name":"x","version":"1"}}}),
    )
    .await;
    assert_eq!(status, 403, "a wrong token for this tunnel");
    assert!(
        !run.stderr().contains("\u{1b}[2K") && !run.stderr().contains("● "),
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
    let mut run = Running::start(cmd);
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
    let mut run = Running::start(cmd);
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
    ];
    for (text, key, line) in cases {
        let config = home.path().join("bad.toml");
        std::fs::write(&config, text).unwrap();
        let out = bridge(home.path())
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {stderr}");
        let file_line = format!("{}{line}", config.display());
        assert!(
            stderr.contains(&file_line) && stderr.contains(&format!("`{key}`")),
            "{text}: the error should name {file_line} and `{key}`: {stderr}"
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
    let mut run = Running::start(cmd);
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
    let stderr = run.stderr();
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
    let out = bridge(home.path())
        .args(["--listen", "127.0.0.1:0", "--claude-config"])
        .arg(&claude)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("both become the tunnel name \"notes-app\""),
        "{stderr}"
    );
}

#[test]
fn a_server_that_cannot_start_shows_its_last_stderr_lines() {
    let home = tempfile::tempdir().unwrap();
    // The fixture refuses to start when its counts file cannot be opened, saying why on
    // stderr.
    let out = bridge(home.path())
        .args(["--listen", "127.0.0.1:0", "--"])
        .arg(bin("mcp-fixture"))
        .env("FIXTURE_COUNTS", home.path().join("missing/dir/counts.txt"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("the MCP server could not start")
            && stderr.contains("the last lines of its stderr")
            && stderr.contains("    | [mcp-fixture] cannot open FIXTURE_COUNTS file"),
        "{stderr}"
    );
    assert!(stderr.contains("the command: "), "{stderr}");
}

#[test]
fn nothing_to_run_says_what_to_give() {
    let home = tempfile::tempdir().unwrap();
    let out = bridge(home.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nothing to run") && stderr.contains("--config"),
        "{stderr}"
    );
}

/// A bridge running `script` (a `sh -c` line) as its server, with a configuration file that
/// gives the server `BRIDGE_SETTING_FOR_SERVER` and an environment full of the bridge's own
/// secrets; its endpoint and token.
fn bridge_with_secrets(home: &Path, script: &str) -> (Running, Printed) {
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
    let mut run = Running::start(cmd);
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
    while !run.stderr().contains("FORGED consent approved") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = run.stderr();
    assert!(
        !log.contains("\rINFO bridge: FORGED") && !log.contains('\u{1b}'),
        "the server's stderr reached the terminal raw:\n{log:?}"
    );
    assert!(log.contains("loading\u{FFFD}INFO bridge: FORGED"), "{log}");
}
