//! The release build that `scripts/dist.sh --host --windows` leaves in `dist/`, as the
//! install and Wine tests use it.

use std::path::PathBuf;
use std::process::Command;

use crate::repo_root;

/// The folder holding the release build: `MCP_TUNNEL_DIST`, else the checkout's `dist/`.
pub fn dist_dir() -> PathBuf {
    std::env::var_os("MCP_TUNNEL_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("dist"))
}

/// What `--version` of the release's bridge must print: this checkout's version and commit.
pub fn expected_version() -> String {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo_root())
        .output()
        .expect("git");
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    format!("bridge {} (commit {commit})", env!("CARGO_PKG_VERSION"))
}
