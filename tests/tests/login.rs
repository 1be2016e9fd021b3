//! A stable identity: `bridge login` against a real `relay serve` whose token comes from
//! `relay token create` (a wrong token refused with what to do; the credentials private),
//! then `bridge run -- <server>` with no flags, the same URL after a restart, `bridge
//! approve` and `bridge logout` with the stored login; and `bridge service install`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::{Relay, bin};

/// A `bridge run`: stdout read line by line, stderr in a file, killed with its process
/// group when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
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
            log,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first stdout line starting with `prefix`, without it.
    fn field(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(v) = l.strip_prefix(prefix) {
                        return v.trim().to_owned();
                    }
                }
                Err(_) => panic!("no {prefix:?} line; stderr:\n{}", self.stderr()),
            }
        }
    }

    /// SIGTERM, then waits for the exit.
    fn stop(&mut self) -> Option<i32> {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
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

/// `bridge <sub>` with `home` as the home directory, the default configuration directory
/// (no XDG_CONFIG_HOME) and none of the BRIDGE_* variables.
fn bridge(home: &Path, sub: &str) -> Command {
    let mut cmd = Command::new(bin("bridge"));
    cmd.arg(sub).env("HOME", home).env("RUST_LOG", "info");
    for v in [
        "XDG_CONFIG_HOME",
        "BRIDGE_RELAY",
        "BRIDGE_TOKEN",
        "BRIDGE_NAME",
        "BRIDGE_CLIENT_TOKEN",
        "BRIDGE_CONFIG",
    ] {
        cmd.env_remove(v);
    }
    cmd
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Runs `cmd` with `input` on its standard input.
fn output_with_stdin(mut cmd: Command, input: &str) -> std::process::Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Lists the tools through `url`; their number.
async fn tool_count(url: &str, bearer: &str) -> usize {
    e2e::install_crypto_provider();
    let http = reqwest::Client::new();
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/list",
        "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}
        }}
    });
    let resp = http
        .post(url)
        .bearer_auth(bearer)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let json = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find(|d| d.contains("\"result\""))
        .map(str::to_owned)
        .unwrap_or(text);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["result"]["tools"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn login_then_run_without_flags_keeps_the_url() {
    let data = tempfile::tempdir().unwrap();
    let created = Command::new(bin("relay"))
        .args(["token", "create", "laptop", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(!token.is_empty());
    let relay = Relay::start(&["--data-dir", data.path().to_str().unwrap()]);
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".config/mcp-tunnel");
    let credentials = dir.join("credentials.toml");

    // A wrong token: refused, with what to do, and nothing stored.
    let out = bridge(home.path(), "login")
        .arg(&relay.base)
        .args(["--token", "brt_not-a-token-of-this-relay"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the relay refused the bridge token")
            && stderr.contains(&format!("bridge login {}", relay.base))
            && stderr.contains("relay token create"),
        "{stderr}"
    );
    assert!(!credentials.exists());

    // An unreachable relay: which URL, what to check.
    let out = bridge(home.path(), "login")
        .args(["http://127.0.0.1:9", "--token", &token])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach the relay at http://127.0.0.1:9") && stderr.contains("DNS"),
        "{stderr}"
    );

    // The right token, typed on standard input (not a terminal here): checked and stored,
    // private, and not printed.
    let out = output_with_stdin(
        {
            let mut c = bridge(home.path(), "login");
            c.arg(&relay.base);
            c
        },
        &format!("{token}\n"),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains(&token) && !stderr.contains(&token));
    assert_eq!(mode(&credentials), 0o600);
    assert_eq!(mode(&dir), 0o700);
    let stored = std::fs::read_to_string(&credentials).unwrap();
    assert!(
        stored.contains(&relay.base) && stored.contains(&token),
        "{stored}"
    );

    // `bridge run -- <server>` with no flags: the stored relay and token.
    let start = || {
        let mut cmd = bridge(home.path(), "run");
        cmd.arg("--").arg(bin("mcp-fixture"));
        Running::start(cmd)
    };
    let mut run = start();
    let url = run.field("MCP endpoint:");
    let bearer = run.field("Bearer token:");
    assert!(url.starts_with(&format!("{}/", relay.base)), "{url}");
    assert!(url.ends_with("/mcp"));
    assert!(tool_count(&url, &bearer).await > 0);
    assert!(!run.stderr().contains(&token), "the token is never logged");
    assert_eq!(run.stop(), Some(0));
    let state = std::fs::read_to_string(dir.join("state.toml")).unwrap();
    let name = url.rsplit('/').nth(1).unwrap();
    assert!(state.contains(name), "{state}");

    // Restarted: the same URL.
    let mut again = start();
    assert_eq!(again.field("MCP endpoint:"), url);
    let bearer = again.field("Bearer token:");
    assert!(tool_count(&url, &bearer).await > 0);

    // `bridge approve` uses the stored login too: the relay answers (no such code).
    let out = bridge(home.path(), "approve")
        .arg("ABCD-EFGH")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the relay refused ("), "{stderr}");
    assert_eq!(again.stop(), Some(0));

    // Logout removes the credentials.
    let out = bridge(home.path(), "logout").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!credentials.exists());
    let out = bridge(home.path(), "approve")
        .arg("ABCD-EFGH")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bridge login"),
        "{out:?}"
    );
}

#[test]
fn a_revoked_token_stops_run_with_what_to_do() {
    let data = tempfile::tempdir().unwrap();
    let created = Command::new(bin("relay"))
        .args(["token", "create", "old-laptop", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let relay = Relay::start(&["--data-dir", data.path().to_str().unwrap()]);
    let home = tempfile::tempdir().unwrap();
    let out = bridge(home.path(), "login")
        .arg(&relay.base)
        .env("BRIDGE_TOKEN", &token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let revoked = Command::new(bin("relay"))
        .args(["token", "revoke", "old-laptop", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(revoked.status.success(), "{revoked:?}");
    let out = bridge(home.path(), "run")
        .arg("--")
        .arg(bin("mcp-fixture"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the relay refused the bridge token")
            && stderr.contains(&format!("bridge login {}", relay.base))
            && stderr.contains("relay token create"),
        "{stderr}"
    );
}

#[test]
fn service_install_prints_and_writes_units_without_secrets() {
    let home = tempfile::tempdir().unwrap();
    // A stored login whose token must not end up in the unit.
    let dir = home.path().join(".config/mcp-tunnel");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("credentials.toml"),
        "relay = \"https://relay.example.com\"\ntoken = \"brt_secret-never-in-a-unit\"\n",
    )
    .unwrap();
    let fixture = bin("mcp-fixture");
    let bridge_bin = std::fs::canonicalize(bin("bridge")).unwrap();

    let out = bridge(home.path(), "service")
        .args(["install", "--name", "my-files", "--print", "systemd", "--"])
        .arg(&fixture)
        .args(["--root", "/tmp/a b", "100%"])
        .env("BRIDGE_TOKEN", "brt_env-secret")
        .output()
        .unwrap();
    let unit = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    let exec = unit
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("ExecStart");
    assert_eq!(
        exec,
        format!(
            "ExecStart={} run --name my-files --quiet -- {} --root \"/tmp/a b\" \"100%%\"",
            bridge_bin.display(),
            std::fs::canonicalize(&fixture).unwrap().display()
        )
    );
    assert!(unit.contains("\nRestart=on-failure\n"), "{unit}");
    assert!(unit.contains("\nWantedBy=default.target\n"), "{unit}");
    assert!(unit.contains("\nEnvironment=\"PATH="), "{unit}");
    assert!(!unit.contains("secret"), "no token in the unit: {unit}");
    assert!(
        !home.path().join(".config/systemd").exists(),
        "--print writes nothing"
    );

    let out = bridge(home.path(), "service")
        .args(["install", "--name", "my-files", "--print", "launchd", "--"])
        .arg(&fixture)
        .output()
        .unwrap();
    let plist = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        plist.contains("<key>Label</key>\n  <string>mcp-bridge-my-files</string>")
            && plist.contains(&format!("<string>{}</string>", bridge_bin.display()))
            && plist.contains("<key>KeepAlive</key>")
            && !plist.contains("secret"),
        "{plist}"
    );

    // Written (on Linux: the systemd user unit), with the commands to enable it.
    if cfg!(target_os = "linux") {
        let out = bridge(home.path(), "service")
            .args(["install", "--name", "my-files", "--"])
            .arg(&fixture)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        let path = home
            .path()
            .join(".config/systemd/user/mcp-bridge-my-files.service");
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.contains("ExecStart=") && !written.contains("secret"));
        assert!(
            stdout.contains("systemctl --user enable --now mcp-bridge-my-files.service")
                && stdout.contains("bridge approve")
                && stdout.contains("https://relay.example.com/my-files/mcp"),
            "{stdout}"
        );
        // systemd's own check, where it can run.
        if let Ok(out) = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
        {
            let text = String::from_utf8_lossy(&out.stderr);
            if text.contains("Failed to initialize manager") {
                eprintln!("systemd-analyze cannot run here: {text}");
            } else {
                assert!(out.status.success(), "systemd-analyze verify: {text}");
                assert!(!text.contains("mcp-bridge-my-files"), "{text}");
            }
        }
    }

    // Without --name: the name remembered for this command on the stored relay.
    let out = bridge(home.path(), "service")
        .args(["install", "--print", "systemd", "--"])
        .arg(&fixture)
        .output()
        .unwrap();
    let unit = String::from_utf8_lossy(&out.stdout);
    let name = unit
        .split("--name ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("a --name in ExecStart")
        .to_owned();
    let state = std::fs::read_to_string(dir.join("state.toml")).unwrap();
    assert!(state.contains(&name), "{state}");
    let out = bridge(home.path(), "service")
        .args(["install", "--print", "systemd", "--"])
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("--name {name} ")));
}

/// The attack: a bridge token sent over cleartext HTTP to a relay on another host can be
/// read by anyone on the path. `run`, `login` and `approve` refuse such a relay before
/// connecting (the host below does not resolve, so nothing leaves this machine either way),
/// and say how to fix it; loopback relays stay allowed for local use.
#[test]
fn a_cleartext_relay_off_this_machine_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let relay = "http://relay.invalid:7171";
    let token = "cleartext-test-token-0123456789abcdef0123";
    let with_deadline = |mut cmd: Command| {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("still running: it did not refuse the cleartext relay");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };
    let mut run = bridge(home.path(), "run");
    run.args(["--relay", relay, "--"])
        .arg(bin("mcp-fixture"))
        .env("BRIDGE_TOKEN", token);
    let mut login = bridge(home.path(), "login");
    login.args([relay, "--token", token]);
    let mut approve = bridge(home.path(), "approve");
    approve
        .args(["ABCD-EFGH", "--relay", relay])
        .env("BRIDGE_TOKEN", token);
    for (what, cmd) in [("run", run), ("login", login), ("approve", approve)] {
        let out = with_deadline(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: {stderr}");
        assert!(
            stderr.contains("refusing to send the bridge token in cleartext")
                && stderr.contains("https://"),
            "{what}: {stderr}"
        );
    }
}
