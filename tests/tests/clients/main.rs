//! The tunnel driven by real third-party MCP clients, and real third-party servers behind
//! it.
//!
//! - The official conformance suite, its prerelease's requirement sets for 2025-11-25 and
//!   2026-07-28 (`conformance`).
//! - The Python SDK 2.x and 1.x (`python_sdk`, `python_input_required`), the TypeScript
//!   SDK 1.x and the 2.x client package (`typescript_sdk`), the MCP Inspector CLI
//!   (`inspector`), all of them at once on one URL (`every_era`), in every protocol era the
//!   endpoint serves: the 2024-11-05 HTTP+SSE transport, the handshake revisions
//!   (2025-03-26 … 2025-11-25: `initialize`, sessions) and the stateless 2026-07-28
//!   revision (`server/discover`, the `_meta` envelope, `resultType`, InputRequiredResult).
//!   Which era a client really spoke is read from `tests/clients/tap_proxy.mjs` (`tap`,
//!   `wire`).
//! - Roots never forwarded to the client (`roots`); `mcp-remote` refused with a wrong token
//!   without an OAuth sign-in (`mcp_remote`); a server that starts slowly (`slow_start`).
//! - Real servers: the Python SDK's and `server-everything` (`real_servers`), and the same
//!   served over HTTP behind `bridge run --upstream URL` (`upstream_http`); a widget's
//!   local asset server published under the tunnel, shown in a real browser
//!   (`widget_assets`).
//!
//! Every test starts its own bridge (and its own `relay serve` when it tests a separate
//! relay) on free loopback ports, runs the pinned client scripts of `tests/clients/`
//! against it, and asserts on the values they report and on what the fixture server
//! recorded in its counts file. Needs `tests/deps/install.sh` and
//! `cargo build --workspace --bins` first.

mod aggregated;
mod conformance;
mod every_era;
mod inspector;
mod mcp_remote;
mod python_input_required;
mod python_sdk;
mod real_servers;
mod roots;
mod slow_start;
mod tap;
mod typescript_sdk;
mod upstream_http;
mod widget_assets;
mod wire;

use e2e::Bridge;
use e2e::clients::{run_script, strs};
use e2e::fixture_truth::{SIMPLE_TEXT, STATIC_TEXT, fixture_truth};
use e2e::mcp::{HANDSHAKE, STATELESS};
use serde_json::Value;

/// Every revision a tunnel URL serves, as `server/discover` lists them (newest first).
const SERVED_VERSIONS: [&str; 5] = [
    STATELESS,
    "2025-11-25",
    "2025-06-18",
    "2025-03-26",
    "2024-11-05",
];

/// Python SDK 2.x (`py_client.py`) with `args`.
fn py2(bridge: &Bridge, url: &str, args: &[&str]) -> Value {
    let mut all = vec![url];
    all.extend_from_slice(args);
    run_script(bridge, "PY_SDK", "py_client.py", &all)
}

/// Checks the list/call/read/prompt part of a `py_client.py`-shaped summary on the fixture.
fn assert_fixture_steps(out: &Value, what: &str) {
    let truth = fixture_truth();
    assert_eq!(out["ok"], true, "{what}: {out}");
    assert_eq!(strs(&out["tools"]), truth.tools, "{what}: tools");
    assert_eq!(out["call"]["is_error"], false, "{what}: {out}");
    assert_eq!(strs(&out["call"]["texts"]), [SIMPLE_TEXT], "{what}: call");
    assert_eq!(strs(&out["resource"]), [STATIC_TEXT], "{what}: resource");
    assert_eq!(strs(&out["prompt"]), truth.prompt, "{what}: prompt");
}

/// [`assert_fixture_steps`] for a whole session of a client that ended up on `protocol`
/// with the fixture as its server.
fn assert_fixture_session(out: &Value, protocol: &str, what: &str) {
    assert_eq!(out["server"], "mcp-fixture", "{what}: {out}");
    assert_eq!(out["protocol"], protocol, "{what}: {out}");
    assert_fixture_steps(out, what);
}

/// Checks a summary that must report the handshake era (a client script's `"legacy"`).
fn assert_handshake_client(out: &Value, what: &str) {
    assert_eq!(out["protocol"], HANDSHAKE, "{what}: {out}");
    assert_eq!(out["era"], "legacy", "{what}: {out}");
}

/// Checks a summary that must report the stateless era (a client script's `"modern"`).
fn assert_stateless_client(out: &Value, what: &str) {
    assert_eq!(out["protocol"], STATELESS, "{what}: {out}");
    assert_eq!(out["era"], "modern", "{what}: {out}");
}
