//! Real third-party servers behind the tunnel: `server-everything` run the way its README
//! says, and, each driven by the clients of every protocol
//! era the suite has: a stdio server written with the Python SDK 2.x (`MCPServer`, the SDK's
//! FastMCP; `tests/clients/py_server.py`) and `@modelcontextprotocol/server-everything` (the
//! TypeScript SDK). The project's own fixture is lenient; these are not: the Python SDK's
//! stdio runner fixes the era of its connection on the first message and refuses a request
//! carrying the 2026-07-28 `_meta` envelope on a connection opened with `initialize`.
//!
//! The bridge opens every server with `initialize` (one server serves the sessions of 2025-era
//! clients and the stateless requests of 2026-07-28 clients at once) and speaks to it in that
//! era: the envelope is the bridge's to interpret, never forwarded. Each test checks that
//! every client, whatever era it chose, lists the tools, calls one, and (where the server has
//! them) reads a resource and gets a prompt, through the tunnel.

use e2e::clients::{deps, run_script, strs};
use e2e::mcp::{HANDSHAKE, STATELESS};
use e2e::{Bridge, BridgeOpts, Relay};
use serde_json::{Value, json};

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

/// A server under test and what its answers look like.
struct Server {
    /// For failure messages.
    what: &'static str,
    /// `serverInfo.name`.
    name: &'static str,
    /// The command the bridge runs.
    command: Vec<String>,
    /// A tool to call, its arguments and the one text it answers.
    tool: (&'static str, Value, &'static str),
    /// A resource and its text (empty: the step is skipped).
    resource: (&'static str, &'static str),
    /// A prompt (empty: the step is skipped).
    prompt: &'static str,
}

fn python_server() -> Server {
    let script = deps().client("py_server.py").display().to_string();
    Server {
        what: "Python SDK 2.x server",
        name: "py-sdk-server",
        command: vec![deps().var("PY_SDK"), script],
        tool: ("echo", json!({"message": "hi"}), "Echo: hi"),
        resource: (
            "test://static-text",
            "This is the content of the static text resource.",
        ),
        prompt: "test_simple_prompt",
    }
}

fn typescript_server() -> Server {
    let everything = deps().var("SERVER_EVERYTHING_JS");
    Server {
        command: vec![deps().var("NODE22"), everything, "stdio".into()],
        what: "TypeScript SDK server-everything",
        name: "mcp-servers/everything",
        tool: ("echo", json!({"message": "hi"}), "Echo: hi"),
        resource: ("", ""),
        prompt: "",
    }
}

/// One client program: a name, how to run it, and the era it must end up in.
struct ClientRun {
    what: &'static str,
    interpreter: &'static str,
    script: &'static str,
    args: Vec<&'static str>,
    /// Connect to the HTTP+SSE endpoint instead of the MCP endpoint.
    sse: bool,
    era: &'static str,
}

/// One row of [`CLIENTS`].
type ClientRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    bool,
    &'static str,
);

/// Every client program of every era the suite drives: name, interpreter (a `Deps`
/// variable), script, arguments, whether it uses the SSE endpoint, the era it ends up in.
#[rustfmt::skip]
const CLIENTS: &[ClientRow] = &[
    ("Python 2.x, auto", "PY_SDK", "py_client.py", &["--mode", "auto"], false, "modern"),
    ("Python 2.x, 2026-07-28", "PY_SDK", "py_client.py", &["--mode", "modern"], false, "modern"),
    ("Python 2.x, handshake", "PY_SDK", "py_client.py", &["--mode", "legacy"], false, "legacy"),
    ("Python 2.x, SSE", "PY_SDK", "py_client.py", &["--transport", "sse"], true, "legacy"),
    ("Python 1.x", "PY_SDK1", "py_client_v1.py", &[], false, "legacy"),
    ("TypeScript 1.x", "NODE22", "ts_client.mjs", &["--progress-tool", ""], false, "legacy"),
    ("TypeScript 1.x, SSE", "NODE22", "ts_client.mjs", &["--sse"], true, "legacy"),
    ("TypeScript 2.x, auto", "NODE22", "ts_client_v2.mjs", &["--era", "auto"], false, "modern"),
    ("TypeScript 2.x, 2026-07-28", "NODE22", "ts_client_v2.mjs", &["--era", "modern"], false, "modern"),
    ("TypeScript 2.x, handshake", "NODE22", "ts_client_v2.mjs", &["--era", "legacy"], false, "legacy"),
];

/// [`CLIENTS`], without the Python 1.x client when its optional venv is missing.
fn clients() -> Vec<ClientRun> {
    let has_v1 = std::path::Path::new(&deps().var("TEST_DEPS"))
        .join("venv1/bin/python")
        .exists();
    CLIENTS
        .iter()
        .filter(|c| has_v1 || c.1 != "PY_SDK1")
        .map(|&(what, interpreter, script, args, sse, era)| ClientRun {
            what,
            interpreter,
            script,
            args: args.to_vec(),
            sse,
            era,
        })
        .collect()
}

/// Runs `client` against `bridge` on `server`'s tool, resource and prompt.
fn run_client(bridge: &Bridge, server: &Server, client: &ClientRun) -> Value {
    let url = if client.sse {
        &bridge.sse_url
    } else {
        &bridge.mcp_url
    };
    let (tool, args, _) = &server.tool;
    let args = args.to_string();
    let mut all = vec![url.as_str()];
    all.extend(&client.args);
    all.extend(["--tool", tool, "--args", &args]);
    all.extend(["--resource", server.resource.0, "--prompt", server.prompt]);
    run_script(bridge, client.interpreter, client.script, &all)
}

/// Checks one client's summary.
fn check(out: &Value, server: &Server, client: &ClientRun, relay: &str) {
    let what = format!("{} → {} ({relay})", client.what, server.what);
    assert_eq!(out["ok"], true, "{what}: {out}");
    assert_eq!(out["era"], client.era, "{what}: {out}");
    let protocol = if client.era == "modern" {
        STATELESS
    } else {
        HANDSHAKE
    };
    assert_eq!(out["protocol"], protocol, "{what}: {out}");
    let tools = match &out["tools"] {
        Value::Array(names) => names.clone(),
        _ => out["tool_names"].as_array().cloned().unwrap_or_default(),
    };
    assert!(
        tools.iter().any(|t| t == server.tool.0),
        "{what}: {} missing from the tools: {out}",
        server.tool.0
    );
    assert_eq!(out["call"]["is_error"], false, "{what}: {out}");
    assert_eq!(
        out["call"]["texts"],
        json!([server.tool.2]),
        "{what}: {out}"
    );
    if !server.resource.0.is_empty() {
        assert_eq!(out["resource"], json!([server.resource.1]), "{what}: {out}");
    }
    if !server.prompt.is_empty() {
        let prompt = out["prompt"].as_array().map_or(0, Vec::len);
        assert_eq!(prompt, 1, "{what}: the prompt's messages: {out}");
    }
    if let Some(name) = out["server"].as_str() {
        assert_eq!(name, server.name, "{what}: {out}");
    }
}

/// Every client against `server` behind the in-process relay.
fn every_client_on(server: Server) {
    let bridge = Bridge::start(BridgeOpts {
        command: server.command.clone(),
        ..Default::default()
    });
    for client in clients() {
        let out = run_client(&bridge, &server, &client);
        check(&out, &server, &client, "embedded relay");
    }
}

#[test]
fn every_client_on_a_python_sdk_server() {
    every_client_on(python_server());
}

#[test]
fn every_client_on_a_typescript_sdk_server() {
    every_client_on(typescript_server());
}

/// The same through a separate `relay serve`, with the clients that choose 2026-07-28 by
/// themselves, and an elicitation the Python server asks for in the middle of a call: on the
/// 2026-07-28 path it reaches the client as an InputRequiredResult, whose answer the bridge
/// hands to the server on the connection it opened with `initialize`.
#[test]
fn python_sdk_server_behind_relay_serve_with_elicitation() {
    let server = python_server();
    let relay = Relay::start(&[]);
    let bridge = relay.bridge(BridgeOpts::default().command(server.command.clone()));
    for client in clients().into_iter().filter(|c| c.args.contains(&"auto")) {
        let out = run_client(&bridge, &server, &client);
        check(&out, &server, &client, "relay serve");

        // The client is on 2026-07-28; the server, opened with initialize, stays in the
        // handshake era it negotiated (the bridge's deliberate choice), and says so.
        let era = Server {
            tool: ("era", json!({}), HANDSHAKE),
            resource: ("", ""),
            prompt: "",
            ..python_server()
        };
        let out = run_client(&bridge, &era, &client);
        check(&out, &era, &client, "relay serve, the server's era");

        let mut args = vec![bridge.mcp_url.as_str()];
        args.extend(&client.args);
        args.extend(["--tool", "ask_name", "--elicit-answer", "Ann"]);
        args.extend(["--resource", "", "--prompt", ""]);
        let out = run_script(&bridge, client.interpreter, client.script, &args);
        let what = format!("{}: ask_name", client.what);
        assert_eq!(out["ok"], true, "{what}: {out}");
        assert_eq!(out["era"], "modern", "{what}: {out}");
        assert_eq!(out["call"]["texts"], json!(["hello Ann"]), "{what}: {out}");
        assert_eq!(
            out["elicitations"].as_array().map_or(0, Vec::len),
            1,
            "{what}: {out}"
        );
    }
}
