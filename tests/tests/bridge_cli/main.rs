//! The `bridge` command line on a desktop, end to end: configuration files and Claude
//! Desktop's (`config_file`), `bridge login` and `service install` (`login`), the URL and
//! token remembered across restarts (`local_memory`), and `bridge doctor` on healthy and
//! broken deployments (`doctor`), and the owner's dashboard with its approvals and
//! `bridge open` (`dashboard`).
//!
//! Every test runs `bridge` with a private home directory, so the real user's files are
//! never touched. Needs `cargo build --workspace --bins` first (and, for `doctor`, the
//! pinned helpers of `tests/deps/install.sh`).

mod config_file;
mod dashboard;
mod doctor;
mod local_memory;
mod login;

use std::path::Path;
use std::process::Command;

use e2e::bin;
use e2e::mcp::{HANDSHAKE_2025_06, McpClient, first_text};
use serde_json::{Value, json};

/// `bridge <sub>` with `home` as the home directory and none of the BRIDGE_* variables;
/// with `xdg`, `<home>/config` as the configuration directory (else the default one under
/// the home directory).
fn bridge_in(home: &Path, sub: &str, xdg: bool) -> Command {
    let mut cmd = Command::new(bin("bridge"));
    cmd.arg(sub).env("HOME", home).env("RUST_LOG", "info");
    if xdg {
        cmd.env("XDG_CONFIG_HOME", home.join("config"));
    } else {
        cmd.env_remove("XDG_CONFIG_HOME");
    }
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

/// Runs `cmd` to its end and asserts it exits with `code` and says every one of `needles`
/// on stderr; its stderr.
fn exits_with<S: AsRef<str>>(cmd: &mut Command, code: i32, needles: &[S]) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{cmd:?}: {stderr}");
    for needle in needles.iter().map(AsRef::as_ref) {
        assert!(
            stderr.contains(needle),
            "{cmd:?}: no {needle:?} in {stderr}"
        );
    }
    stderr
}

/// The permission bits of a file.
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Initializes a session and lists the tools: their names.
async fn tool_names(url: &str, bearer: Option<&str>) -> Vec<String> {
    let session = McpClient::new(url, bearer).session(HANDSHAKE_2025_06).await;
    let answer = session.call(json!(2), "tools/list", json!({})).await;
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Calls the fixture's `echo` in a fresh session; the text echoed back.
async fn echo(url: &str, bearer: Option<&str>, text: &str) -> String {
    let session = McpClient::new(url, bearer).session(HANDSHAKE_2025_06).await;
    let answer: Value = session
        .call(
            json!(2),
            "tools/call",
            json!({"name": "echo", "arguments": {"text": text}}),
        )
        .await;
    first_text(&answer)
}
