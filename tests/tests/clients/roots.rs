//! Roots: a client's own roots are never forwarded to the server through the tunnel (the
//! child gets the bridge's, none or those of `--root`), on both transports.

use std::process::Command;

use e2e::clients::{client, deps, run_json, strs};
use e2e::{Bridge, BridgeOpts, bin};
use serde_json::{Value, json};

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
