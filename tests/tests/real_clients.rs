//! The tunnel driven by real third-party MCP clients: the official conformance suite, the
//! Python SDK (2.x, and 1.x when installed), the TypeScript SDK, the MCP Inspector CLI, and
//! `@modelcontextprotocol/server-everything` as the served server.
//!
//! Every test starts its own bridge (and its own `relay serve` when it tests a separate relay)
//! on free loopback ports, runs the pinned client scripts of `tests/clients/` against it, and
//! asserts on the values they report and on what the fixture server recorded in its counts
//! file. Needs `tests/deps/install.sh` and `cargo build --workspace --bins` first.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use e2e::fixture_truth::fixture_truth;
use e2e::{Bridge, BridgeOpts, Deps, Relay, bin, run_json};
use serde_json::{Value, json};

/// What the fixture's `test_simple_text` tool answers.
const SIMPLE_TEXT: &str = "This is a simple text response for testing.";
/// The text of the fixture's `test://static-text` resource.
const STATIC_TEXT: &str = "This is the content of the static text resource.";
/// Number of scenarios in the active suite of the pinned conformance release (0.1.16).
const CONFORMANCE_SUITE_SIZE: u64 = 30;
/// The protocol version the fixture (a handshake-era server) negotiates with current clients.
const FIXTURE_PROTOCOL: &str = "2025-11-25";

/// The pinned helpers, read once.
fn deps() -> &'static Deps {
    static DEPS: OnceLock<Deps> = OnceLock::new();
    DEPS.get_or_init(Deps::get)
}

// ------------------------------------------------------------------------------------------
// Starting bridges and running the client scripts.

/// Runs `check` against a bridge started with `opts` on the embedded relay, then against one
/// connected to a separate `relay serve` process. `check` gets a label for its messages.
fn on_both_relays(opts: BridgeOpts, check: impl Fn(&Bridge, &str)) {
    check(&Bridge::start(opts.clone()), "embedded relay");
    let relay = Relay::start(&[]);
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        ..opts
    });
    assert!(
        bridge.mcp_url.starts_with(&relay.base),
        "{} is not served by the relay at {}",
        bridge.mcp_url,
        relay.base
    );
    check(&bridge, "separate relay");
}

/// A command running `program` with `args`, carrying the bridge's bearer token (if any) in
/// `MCP_BEARER`, as every client script expects.
fn client<S: AsRef<OsStr>>(bridge: &Bridge, program: impl AsRef<OsStr>, args: &[S]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    match &bridge.bearer {
        Some(t) => cmd.env("MCP_BEARER", t),
        None => cmd.env_remove("MCP_BEARER"),
    };
    cmd
}

/// Runs `tests/clients/<script>` under `interpreter` (a `Deps` variable, or `bash`) and
/// returns its JSON summary; panics if it fails.
fn run_script(bridge: &Bridge, interpreter: &str, script: &str, args: &[&str]) -> Value {
    let program = match interpreter {
        "bash" => "bash".to_owned(),
        var => deps().var(var),
    };
    let mut cmd = client(bridge, program, &[deps().client(script).as_os_str()]);
    cmd.args(args);
    run_json(&mut cmd)
}

/// The strings of a JSON array (panics with the whole value otherwise).
fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap_or_else(|| panic!("not a string: {x}")))
        .collect()
}

/// Checks a `py_client.py` / `py_client_v1.py` summary of a full session on the fixture.
fn assert_fixture_session(out: &Value, what: &str) {
    assert_fixture_session_at(out, FIXTURE_PROTOCOL, what);
}

/// [`assert_fixture_session`] for a client that ended up on `protocol`.
fn assert_fixture_session_at(out: &Value, protocol: &str, what: &str) {
    let truth = fixture_truth();
    assert_eq!(out["ok"], true, "{what}: {out}");
    assert_eq!(out["server"], "mcp-fixture", "{what}: {out}");
    assert_eq!(out["protocol"], protocol, "{what}: {out}");
    assert_eq!(strs(&out["tools"]), truth.tools, "{what}: tools");
    assert_eq!(out["call"]["is_error"], false, "{what}: {out}");
    assert_eq!(strs(&out["call"]["texts"]), [SIMPLE_TEXT], "{what}: call");
    assert_eq!(strs(&out["resource"]), [STATIC_TEXT], "{what}: resource");
    assert_eq!(strs(&out["prompt"]), truth.prompt, "{what}: prompt");
}

/// Checks that the fixture was initialized exactly once, whatever the clients did.
fn assert_one_child_initialize(bridge: &Bridge, what: &str) {
    assert_eq!(
        bridge.count("initialize"),
        1,
        "{what}: the child must be initialized once; fixture counts: {:?}",
        bridge.counts()
    );
}

/// The HTTP status of a bare `initialize` POST to `url`, with `Authorization: Bearer <t>`
/// when `bearer` is given (plain HTTP over a raw socket, so nothing adds headers).
fn initialize_status(url: &str, bearer: Option<&str>) -> u16 {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": FIXTURE_PROTOCOL, "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})
    .to_string();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut s = TcpStream::connect(host).expect("connect");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n{auth}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut head = [0u8; 12];
    s.read_exact(&mut head).expect("status line");
    std::str::from_utf8(&head[9..12])
        .expect("utf-8")
        .parse()
        .expect("status code")
}

// ------------------------------------------------------------------------------------------
// Conformance suite.

/// Runs `conformance.sh` (one run at a time: each is a burst of ~30 parallel-ish sessions and
/// a Node process, and they are the slowest part of this file) and checks that every scenario
/// of the active suite passed and that the child saw a single `initialize` for all of them.
fn assert_conformance_passes(bridge: &Bridge, via_bearer_proxy: bool) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().expect("tempdir");
    let s = run_script(
        bridge,
        "bash",
        "conformance.sh",
        &[&bridge.mcp_url, out.path().to_str().expect("utf-8 path")],
    );
    assert_eq!(s["suite_size"], CONFORMANCE_SUITE_SIZE, "{s}");
    assert_eq!(s["scenarios"], CONFORMANCE_SUITE_SIZE, "{s}");
    assert_eq!(s["passed"], CONFORMANCE_SUITE_SIZE, "{s}");
    assert_eq!(s["failed"], json!([]), "{s}");
    assert_eq!(s["no_results"], json!([]), "{s}");
    assert_eq!(s["checks"].get("FAILURE"), None, "{s}");
    assert_eq!(s["conformance_exit"], 0, "{s}");
    assert_eq!(s["via_bearer_proxy"], via_bearer_proxy, "{s}");
    assert_one_child_initialize(bridge, "conformance");
}

#[test]
fn conformance_embedded() {
    let bridge = Bridge::start(BridgeOpts {
        no_auth: true,
        ..Default::default()
    });
    assert_eq!(bridge.bearer, None);
    assert_conformance_passes(&bridge, false);
}

#[test]
fn conformance_separate_relay() {
    let relay = Relay::start(&[]);
    // The relay's public URL is loopback, so it accepts a tunnel without client auth.
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        no_auth: true,
        ..Default::default()
    });
    assert!(
        bridge.mcp_url.starts_with(&relay.base),
        "{}",
        bridge.mcp_url
    );
    assert_conformance_passes(&bridge, false);
}

/// The suite has no header option, so `conformance.sh` puts `bearer_proxy.mjs` (inject mode)
/// in front. The proxy passes `Host` through unchanged and the suite's own requests carry
/// the proxy's loopback address, so `dns-rebinding-protection` stays meaningful: its
/// `Host: evil.example.com` request still reaches the relay and must be refused. No expected
/// failures are needed.
#[test]
fn conformance_with_bearer() {
    let bridge = Bridge::start(BridgeOpts::default());
    let token = bridge.bearer.clone().expect("bearer auth is the default");
    // The token is really required (else this test would not show the proxy's header works).
    assert_eq!(initialize_status(&bridge.mcp_url, None), 401);
    assert_eq!(
        initialize_status(&bridge.mcp_url, Some("not-the-token")),
        403
    );
    assert_eq!(initialize_status(&bridge.mcp_url, Some(&token)), 200);
    assert_conformance_passes(&bridge, true);
}

// ------------------------------------------------------------------------------------------
// Python SDK.

#[test]
fn python_sdk_streamable_auto() {
    on_both_relays(BridgeOpts::default(), |bridge, label| {
        // Auto mode probes `server/discover` first; the bridge answers it (from the
        // handshake-era child's cached initialize), so the client stays on 2026-07-28.
        let out = run_script(bridge, "PY_SDK", "py_client.py", &[&bridge.mcp_url]);
        assert_eq!(out["mode"], "auto", "{label}: {out}");
        assert_eq!(out["transport"], "streamable", "{label}: {out}");
        assert_fixture_session_at(&out, "2026-07-28", label);
        assert_eq!(bridge.count("call test_simple_text"), 1, "{label}");
        assert_one_child_initialize(bridge, label);
    });
}

#[test]
fn python_sdk_sse() {
    on_both_relays(BridgeOpts::default(), |bridge, label| {
        let out = run_script(
            bridge,
            "PY_SDK",
            "py_client.py",
            &[&bridge.sse_url, "--transport", "sse"],
        );
        assert_eq!(out["transport"], "sse", "{label}: {out}");
        assert_fixture_session(&out, label);
        assert_eq!(bridge.count("call test_simple_text"), 1, "{label}");
        assert_one_child_initialize(bridge, label);
    });
}

#[test]
fn python_sdk_v1() {
    // tests/deps/env.sh sets PY_SDK1 only when this optional venv exists.
    let py1 = Path::new(&deps().var("TEST_DEPS")).join("venv1/bin/python");
    if !py1.exists() {
        eprintln!(
            "python_sdk_v1: skipped, the mcp 1.x venv is not installed ({})",
            py1.display()
        );
        return;
    }
    on_both_relays(BridgeOpts::default(), |bridge, label| {
        let out = run_script(bridge, "PY_SDK1", "py_client_v1.py", &[&bridge.mcp_url]);
        assert_fixture_session(&out, &format!("{label}, streamable"));
        let sid = out["session_id"].as_str().unwrap_or_default();
        assert!(
            sid.len() >= 16,
            "{label}: weak or missing Mcp-Session-Id: {out}"
        );

        let out = run_script(
            bridge,
            "PY_SDK1",
            "py_client_v1.py",
            &[&bridge.sse_url, "--transport", "sse"],
        );
        assert_fixture_session(&out, &format!("{label}, sse"));
        assert_eq!(bridge.count("call test_simple_text"), 2, "{label}");
        assert_one_child_initialize(bridge, label);
    });
}

// ------------------------------------------------------------------------------------------
// TypeScript SDK.

#[test]
fn typescript_sdk() {
    let truth = fixture_truth();
    on_both_relays(BridgeOpts::default(), |bridge, label| {
        let out = run_script(bridge, "NODE22", "ts_client.mjs", &[&bridge.mcp_url]);
        assert_eq!(out["ok"], true, "{label}: {out}");
        assert_eq!(out["server"], "mcp-fixture", "{label}: {out}");
        assert_eq!(out["tools"], truth.tools.len(), "{label}: {out}");
        assert_eq!(strs(&out["tool_names"]), truth.tools, "{label}");
        assert_eq!(strs(&out["call"]["texts"]), [SIMPLE_TEXT], "{label}: {out}");
        assert_eq!(strs(&out["resource"]), [STATIC_TEXT], "{label}: {out}");

        // Every progress notification the fixture sent (steps 0, 50, 100 of 100) reached the
        // caller, in order, before the result.
        let expected: Vec<Value> = [0, 50, 100]
            .iter()
            .map(|s| {
                let message = format!("Completed step {s} of 100");
                json!({"progress": s, "total": 100, "message": message})
            })
            .collect();
        assert_eq!(out["progress"], json!(expected), "{label}: {out}");
        assert_eq!(out["progress_call"]["is_error"], false, "{label}: {out}");

        // The session id works on a new connection without a second initialize.
        assert_eq!(
            strs(&out["resumed_call"]["texts"]),
            [SIMPLE_TEXT],
            "{label}: {out}"
        );
        // DELETE ends the session; the old id then gets 404 (so clients re-initialize).
        let delete = out["delete_status"].as_u64().unwrap_or_default();
        assert!(
            (200..300).contains(&delete),
            "{label}: DELETE answered {delete}: {out}"
        );
        assert_eq!(out["after_delete_status"], 404, "{label}: {out}");

        let sse = run_script(
            bridge,
            "NODE22",
            "ts_client.mjs",
            &[&bridge.sse_url, "--sse"],
        );
        assert_eq!(sse["tools"], truth.tools.len(), "{label}: {sse}");
        assert_eq!(strs(&sse["call"]["texts"]), [SIMPLE_TEXT], "{label}: {sse}");
        assert_eq!(strs(&sse["resource"]), [STATIC_TEXT], "{label}: {sse}");

        assert_eq!(bridge.count("call test_simple_text"), 3, "{label}");
        assert_eq!(bridge.count("call test_tool_with_progress"), 1, "{label}");
        assert_one_child_initialize(bridge, label);
    });
}

// ------------------------------------------------------------------------------------------
// MCP Inspector CLI.

#[test]
fn inspector_cli() {
    let truth = fixture_truth();
    let bridge = Bridge::start(BridgeOpts::default());
    assert!(
        bridge.bearer.is_some(),
        "the Inspector sends the bearer with --header"
    );
    for url in [&bridge.mcp_url, &bridge.sse_url] {
        let list = run_script(&bridge, "bash", "inspector.sh", &[url, "tools/list"]);
        let names: Vec<&str> = list["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{url}: {list}"))
            .iter()
            .map(|t| t["name"].as_str().expect("tool name"))
            .collect();
        assert_eq!(names, truth.tools, "{url}");

        let call = run_script(
            &bridge,
            "bash",
            "inspector.sh",
            &[url, "tools/call", "--tool-name", "test_simple_text"],
        );
        assert_eq!(
            call["result"]["content"],
            json!([{"type": "text", "text": SIMPLE_TEXT}]),
            "{url}: {call}"
        );
    }
    assert_eq!(bridge.count("call test_simple_text"), 2);
    assert_one_child_initialize(&bridge, "inspector");
}

// ------------------------------------------------------------------------------------------
// A real third-party server.

/// `bridge run -- npx -y @modelcontextprotocol/server-everything`, with the pinned copy run
/// in its stdio mode.
#[test]
fn server_everything_readme_command() {
    let bridge = Bridge::start(BridgeOpts {
        command: vec![
            deps().var("NODE22"),
            deps().var("SERVER_EVERYTHING_JS"),
            "stdio".into(),
        ],
        ..Default::default()
    });
    let message = "hello through the tunnel";
    let args = json!({ "message": message }).to_string();
    let out = run_script(
        &bridge,
        "PY_SDK",
        "py_client.py",
        &[
            &bridge.mcp_url,
            "--tool",
            "echo",
            "--args",
            &args,
            "--resource",
            "",
            "--prompt",
            "",
        ],
    );
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["server"], "mcp-servers/everything", "{out}");
    let tools = strs(&out["tools"]);
    for t in ["echo", "get-sum", "trigger-long-running-operation"] {
        assert!(tools.contains(&t), "{t} missing from {tools:?}");
    }
    assert_eq!(out["call"]["is_error"], false, "{out}");
    assert_eq!(
        strs(&out["call"]["texts"]),
        [format!("Echo: {message}")],
        "{out}"
    );
}

// ------------------------------------------------------------------------------------------
// Roots.

/// A Python SDK 2.x client that declares a root (`file:///etc`), calls the fixture's
/// `test_roots` (which asks its client for `roots/list` and returns the raw answer) and reports
/// that answer and how often its own roots callback ran.
/// usage: python -c ROOTS_PROBE (URL [streamable|sse] | stdio COMMAND)
const ROOTS_PROBE: &str = r#"
import asyncio, json, os, sys
import httpx2
from mcp import Client, StdioServerParameters, types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

asked = 0

async def list_roots(context):
    global asked
    asked += 1
    return types.ListRootsResult(roots=[types.Root(uri="file:///etc", name="client-root")])

async def main(target, kind):
    token = os.environ.get("MCP_BEARER")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=30.0)
    if target == "stdio":
        server = StdioServerParameters(command=kind)
    elif kind == "sse":
        server = sse_client(target, headers=headers or None)
    else:
        server = streamable_http_client(target, http_client=http)
    async with http, Client(server, list_roots_callback=list_roots) as c:
        r = await c.call_tool("test_roots", {})
    print(json.dumps({"is_error": bool(r.is_error), "texts": [x.text for x in r.content],
                      "client_asked": asked}))

asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 60))
"#;

/// Runs [`ROOTS_PROBE`] and returns (the roots answer the server saw, client callback runs).
fn roots_probe(bridge: Option<&Bridge>, target: &str, kind: &str) -> (Value, u64) {
    let py = deps().var("PY_SDK");
    let args = ["-c", ROOTS_PROBE, target, kind];
    let mut cmd = match bridge {
        Some(b) => client(b, py, &args),
        None => {
            let mut c = Command::new(py);
            c.args(args).env_remove("MCP_BEARER");
            c
        }
    };
    let out = run_json(&mut cmd);
    assert_eq!(out["is_error"], false, "{out}");
    let text = strs(&out["texts"]).concat();
    let seen = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    (seen, out["client_asked"].as_u64().expect("client_asked"))
}

/// The `roots <json>` lines the fixture recorded, parsed.
fn recorded_roots(bridge: &Bridge) -> Vec<Value> {
    bridge
        .counts()
        .iter()
        .filter_map(|l| l.strip_prefix("roots "))
        .map(|j| serde_json::from_str(j).expect("roots JSON"))
        .collect()
}

#[test]
fn roots_never_forwarded() {
    // Control, without the tunnel: the probe's roots do reach a server that asks for them.
    let fixture = bin("mcp-fixture");
    let (seen, asked) = roots_probe(None, "stdio", fixture.to_str().expect("utf-8 path"));
    assert_eq!(seen["roots"][0]["uri"], "file:///etc", "{seen}");
    assert_eq!(asked, 1);

    // Through the bridge: the child gets the bridge's roots (none configured), on both
    // transports, and the client is never asked.
    let bridge = Bridge::start(BridgeOpts::default());
    for (url, kind) in [(&bridge.mcp_url, "streamable"), (&bridge.sse_url, "sse")] {
        let (seen, asked) = roots_probe(Some(&bridge), url, kind);
        assert_eq!(seen, json!({ "roots": [] }), "{kind}");
        assert_eq!(
            asked, 0,
            "{kind}: the client's roots/list callback was called"
        );
    }
    assert_eq!(
        recorded_roots(&bridge),
        [json!({ "roots": [] }), json!({ "roots": [] })]
    );

    // With --root: exactly that directory, as a file URI.
    let dir = tempfile::tempdir().expect("tempdir");
    let canonical = dir.path().canonicalize().expect("canonical tempdir");
    let bridge = Bridge::start(BridgeOpts {
        args: vec![
            "--root".into(),
            dir.path().to_str().expect("utf-8 path").into(),
        ],
        ..Default::default()
    });
    let (seen, asked) = roots_probe(Some(&bridge), &bridge.mcp_url, "streamable");
    let expected = json!({ "roots": [{
        "uri": format!("file://{}", canonical.display()),
        "name": canonical.file_name().expect("dir name").to_str().expect("utf-8"),
    }]});
    assert_eq!(seen, expected);
    assert_eq!(asked, 0);
    assert_eq!(recorded_roots(&bridge), [expected]);
}
