//! A stable identity: `bridge login` against a real `relay serve` whose token comes from
//! `relay token create` (a wrong token refused with what to do; the credentials private),
//! then `bridge run -- <server>` with no flags, the same URL after a restart, `bridge
//! approve` and `bridge logout` with the stored login; and `bridge service install`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::mcp::{McpClient, request, stateless};
use e2e::relay::create_bridge_token;
use e2e::{Proc, Relay, bin};
use serde_json::json;

use crate::{exits_with, mode};

/// `bridge <sub>` with `home` as the home directory and the default configuration
/// directory under it.
fn bridge(home: &Path, sub: &str) -> Command {
    crate::bridge_in(home, sub, false)
}

/// `bridge service install FLAGS -- FIXTURE` in `home`: its output.
fn service_install(home: &Path, flags: &[&str], fixture: &Path) -> std::process::Output {
    bridge(home, "service")
        .arg("install")
        .args(flags)
        .arg("--")
        .arg(fixture)
        .output()
        .expect("bridge service install")
}

/// What `bridge` says when the relay refuses its bridge token: that, and how to log in
/// again with a new token.
fn refused_token_hints(base: &str) -> [String; 3] {
    [
        "the relay refused the bridge token".into(),
        format!("bridge login {base}"),
        "relay token create".into(),
    ]
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

/// Lists the tools through `url` with a stateless request; their number.
async fn tool_count(url: &str, bearer: &str) -> usize {
    let body = stateless(request(json!(1), "tools/list", json!({})), json!({}), &[]);
    let r = McpClient::new(url, Some(bearer))
        .post_stateless(&body, "tools/list")
        .await;
    assert_eq!(r.status, 200);
    r.answer()["result"]["tools"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn login_then_run_without_flags_keeps_the_url() {
    let data = tempfile::tempdir().unwrap();
    let token = create_bridge_token(data.path(), "laptop");
    let relay = Relay::start(&["--data-dir", data.path().to_str().unwrap()]);
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".config/mcp-tunnel");
    let credentials = dir.join("credentials.toml");

    // A wrong token: refused, with what to do, and nothing stored.
    exits_with(
        bridge(home.path(), "login")
            .arg(&relay.base)
            .args(["--token", "brt_not-a-token-of-this-relay"]),
        2,
        &refused_token_hints(&relay.base),
    );
    assert!(!credentials.exists());

    // An unreachable relay: which URL, what to check.
    exits_with(
        bridge(home.path(), "login").args(["http://127.0.0.1:9", "--token", &token]),
        1,
        &["cannot reach the relay at http://127.0.0.1:9", "DNS"],
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
        Proc::start(cmd, "bridge")
    };
    let mut run = start();
    let url = run.field("MCP endpoint:");
    let bearer = run.field("Bearer token:");
    assert!(url.starts_with(&format!("{}/", relay.base)), "{url}");
    assert!(url.ends_with("/mcp"));
    assert!(tool_count(&url, &bearer).await > 0);
    assert!(
        !run.log_text().contains(&token),
        "the token is never logged"
    );
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
    exits_with(
        bridge(home.path(), "approve").arg("ABCD-EFGH"),
        2,
        &["the relay refused ("],
    );
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
    let token = create_bridge_token(data.path(), "old-laptop");
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
    exits_with(
        bridge(home.path(), "run").arg("--").arg(bin("mcp-fixture")),
        2,
        &refused_token_hints(&relay.base),
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

    // A local HTTP server instead of a command.
    let out = bridge(home.path(), "service")
        .args(["install", "--name", "figma", "--print", "systemd"])
        .args(["--upstream", "http://127.0.0.1:3845/mcp"])
        .output()
        .unwrap();
    let unit = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(
        unit.lines().any(|l| l
            == format!(
                "ExecStart={} run --name figma --quiet --upstream http://127.0.0.1:3845/mcp",
                bridge_bin.display()
            )),
        "{unit}"
    );

    let out = service_install(
        home.path(),
        &["--name", "my-files", "--print", "launchd"],
        &fixture,
    );
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
        let out = service_install(home.path(), &["--name", "my-files"], &fixture);
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
    let out = service_install(home.path(), &["--print", "systemd"], &fixture);
    let unit = String::from_utf8_lossy(&out.stdout);
    let name = unit
        .split("--name ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("a --name in ExecStart")
        .to_owned();
    let state = std::fs::read_to_string(dir.join("state.toml")).unwrap();
    assert!(state.contains(&name), "{state}");
    let out = service_install(home.path(), &["--print", "systemd"], &fixture);
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
