//! The version the binaries print: the release, and the commit it was built from when the
//! build said so (`MCP_TUNNEL_COMMIT`, set by `scripts/dist.sh`).

use std::sync::LazyLock;

/// The commit of a distribution build, if the build named one.
pub const COMMIT: Option<&str> = option_env!("MCP_TUNNEL_COMMIT");

static VERSION: LazyLock<String> = LazyLock::new(|| describe(env!("CARGO_PKG_VERSION"), COMMIT));

/// `0.1.0 (commit 1a2b3c4d5e6f)`, or `0.1.0` for a build that named no commit.
pub fn long_version() -> &'static str {
    VERSION.as_str()
}

fn describe(version: &str, commit: Option<&str>) -> String {
    match commit.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => format!("{version} (commit {c})"),
        None => version.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_and_without_a_commit() {
        assert_eq!(describe("1.2.3", Some("abc123")), "1.2.3 (commit abc123)");
        assert_eq!(describe("1.2.3", Some(" ")), "1.2.3");
        assert_eq!(describe("1.2.3", None), "1.2.3");
    }
}
