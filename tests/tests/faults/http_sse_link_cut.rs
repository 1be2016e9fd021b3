//! An HTTP+SSE session of a real Python SDK 2.x client (`mcp.client.sse.sse_client` with
//! `mcp.Client`) across a short cut of the bridge⇄relay link: it opens `/<name>/sse`
//! through the relay and calls a tool; it starts a slow call, the link between bridge and
//! relay is cut (a TCP proxy drops it and refuses new connections) while the call runs,
//! and restored within the relay's grace period. The same client session then gets the
//! slow call's answer (the server gave it while the link was down: the bridge kept it),
//! calls tools again with the same `sessionId`, and a server notification reaches it on
//! the same stream.

use std::time::{Duration, Instant};

use e2e::clients::{client, deps};
use e2e::cut_proxy::CutProxy;
use e2e::mcp::McpClient;
use e2e::{BridgeOpts, Proc, Relay, addr_of, teed};
use serde_json::{Value, json};

/// usage: python -c SSE_BLIP URL ECHO_ARGUMENT. Prints `{"phase": "cut-me"}` once a slow call is on its
/// way, waits for a line on stdin (the link was cut and restored), then prints the summary.
const SSE_BLIP: &str = r#"
import asyncio, json, os, sys
import anyio
from mcp import Client
from mcp.client.sse import sse_client

def texts(r):
    return [getattr(x, "text", None) for x in r.content]

async def main(url, key):
    token = os.environ.get("MCP_BEARER")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    sessions, notes, out = [], [], {}

    async def on_message(m):
        method = getattr(m, "method", None)
        if method:
            notes.append(method)

    transport = sse_client(url, headers=headers, timeout=30.0, sse_read_timeout=120.0,
                           on_session_created=sessions.append)
    async with Client(transport, mode="legacy", message_handler=on_message) as c:
        out["before"] = texts(await c.call_tool("echo", {key: "before"}))
        async with anyio.create_task_group() as tg:
            async def slow():
                # Answered by the server while the link is down.
                out["during"] = texts(await c.call_tool("slow", {"ms": 1500, "tag": "cut"}))
            tg.start_soon(slow)
            print(json.dumps({"phase": "cut-me"}), flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
        out["after"] = texts(await c.call_tool("echo", {key: "after"}))
        out["again"] = texts(await c.call_tool("echo", {key: "again"}))
        out["trigger"] = texts(await c.call_tool("trigger_list_changed", {}))
        for _ in range(100):
            if "notifications/tools/list_changed" in notes:
                break
            await asyncio.sleep(0.05)
    out.update(ok=True, sessions=sessions, notifications=notes)
    print(json.dumps(out), flush=True)

asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 90))
"#;

/// A server for the cut: its command (empty: the fixture), the argument name of its `echo`
/// tool and what `echo` puts before the text. Both servers also have `slow(ms, tag)` and
/// `trigger_list_changed`.
struct BlipServer {
    command: Vec<String>,
    echo_key: &'static str,
    echo_prefix: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sse_session_survives_a_link_cut() {
    survives_a_link_cut(BlipServer {
        command: Vec::new(),
        echo_key: "text",
        echo_prefix: "",
    })
    .await;
}

/// The same with a real third-party server: one written with the Python SDK 2.x.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sse_session_on_a_python_sdk_server_survives_a_link_cut() {
    let deps = deps();
    survives_a_link_cut(BlipServer {
        command: vec![
            deps.var("PY_SDK"),
            deps.client("py_server.py").display().to_string(),
        ],
        echo_key: "message",
        echo_prefix: "Echo: ",
    })
    .await;
}

async fn survives_a_link_cut(server: BlipServer) {
    let fixture = server.command.is_empty();
    let dir = tempfile::tempdir().expect("tempdir");
    let stdin_log = dir.path().join("stdin.jsonl");
    // Keep-alives every second: the client's stream gets some while the bridge is away.
    let relay = Relay::start(&["--keepalive-secs", "1"]);
    let proxy = CutProxy::start(addr_of(&relay.base)).await;
    // The fixture counts the calls it gets; another server's standard input is recorded.
    let command = if fixture {
        Vec::new()
    } else {
        teed(&stdin_log, &server.command)
    };
    let bridge = BridgeOpts::default()
        .via_url(&proxy.url(), &relay.token)
        .command(command)
        .start();
    let mcp = McpClient::of(&bridge);
    // Whether the server got the slow call.
    let slow_reached = || {
        if fixture {
            bridge.count("call slow") > 0
        } else {
            std::fs::read_to_string(&stdin_log).is_ok_and(|l| l.contains(r#""name":"slow""#))
        }
    };
    mcp.wait_connected(true, Duration::from_secs(10), "start")
        .await;

    let mut cmd = client(&bridge, deps().var("PY_SDK"), &["-c", SSE_BLIP]);
    cmd.args([&bridge.sse_url, server.echo_key]);
    let mut py = Proc::start_piped(cmd, "python");
    let mut next_line = |what: &str| -> String {
        py.next_line(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("the Python client printed nothing ({what})"))
    };
    let ready = next_line("ready");
    assert!(ready.contains("cut-me"), "{ready}");

    // The slow call reached the server: cut the link while it runs, past its end.
    let start = Instant::now();
    while !slow_reached() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the slow call never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.cut();
    mcp.wait_connected(false, Duration::from_secs(3), "cut")
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!mcp.connected().await, "the link stayed cut");
    proxy.resume();
    // Back well within the relay's 10 s grace period.
    mcp.wait_connected(true, Duration::from_secs(6), "reconnect")
        .await;
    py.write_line("go");
    py.close_stdin();

    let line = py.next_line(Duration::from_secs(60));
    let status = py.wait_exit(Duration::from_secs(60));
    let err = py.log_text();
    let line = line.unwrap_or_else(|| panic!("no summary ({status:?}); stderr:\n{err}"));
    assert_eq!(status, Some(0), "client failed: {line}\nstderr:\n{err}");
    let out: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
    assert_eq!(out["ok"], true, "{out}");
    let echo = |t: &str| json!([format!("{}{t}", server.echo_prefix)]);
    assert_eq!(out["before"], echo("before"), "{out}");
    assert_eq!(
        out["during"],
        json!(["done cut"]),
        "the answer given while the link was down: {out}"
    );
    assert_eq!(out["after"], echo("after"), "{out}");
    assert_eq!(out["again"], echo("again"), "{out}");
    assert_eq!(out["trigger"], json!(["ok"]), "{out}");
    assert!(
        out["notifications"]
            .as_array()
            .expect("notifications")
            .contains(&json!("notifications/tools/list_changed")),
        "the server's notification after the reconnect: {out}"
    );
    assert_eq!(
        out["sessions"].as_array().map(Vec::len),
        Some(1),
        "one endpoint event, one session: {out}"
    );
    // Each call ran once on the server.
    for (line, n) in [("call echo", 3), ("call slow", 1)] {
        if fixture {
            assert_eq!(bridge.count(line), n, "{line}");
        }
    }
}
