//! Clients of every era on one URL at the same time.

use std::process::Command;

use e2e::clients::{run_json, script, strs};
use e2e::fixture_truth::SIMPLE_TEXT;
use e2e::{Bridge, BridgeOpts};
use serde_json::Value;

use crate::{assert_handshake_client, assert_stateless_client};

/// Clients of every era on one URL at the same time: Python 2.x auto (stateless), Python
/// 2.x handshake, Python 1.x, the TypeScript SDK over HTTP+SSE, the Inspector pinned to
/// 2026-07-28; all
/// succeed with the era they asked for, and the child is initialized once.
#[test]
fn every_era_at_once_on_one_url() {
    let bridge = Bridge::start(BridgeOpts::default());
    let mcp = bridge.mcp_url.as_str();
    let sse = bridge.sse_url.as_str();
    let runs: Vec<(&str, Command)> = vec![
        (
            "py2 auto",
            script(&bridge, "PY_SDK", "py_client.py", &[mcp]),
        ),
        (
            "py2 handshake",
            script(
                &bridge,
                "PY_SDK",
                "py_client.py",
                &[mcp, "--mode", "legacy"],
            ),
        ),
        ("py1", script(&bridge, "PY_SDK1", "py_client_v1.py", &[mcp])),
        (
            "ts sse",
            script(&bridge, "NODE22", "ts_client.mjs", &[sse, "--sse"]),
        ),
        (
            "inspector stateless",
            script(
                &bridge,
                "bash",
                "inspector.sh",
                &[
                    mcp,
                    "tools/call",
                    "--tool-name",
                    "test_simple_text",
                    "--protocol-era",
                    "modern",
                    "--report-era",
                ],
            ),
        ),
    ];
    let outs: Vec<(&str, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .into_iter()
            .map(|(name, mut cmd)| (name, s.spawn(move || run_json(&mut cmd))))
            .collect();
        handles
            .into_iter()
            .map(|(name, h)| (name, h.join().unwrap_or_else(|_| panic!("{name} failed"))))
            .collect()
    });
    for (name, out) in &outs {
        match *name {
            "py2 auto" => assert_stateless_client(out, name),
            "inspector stateless" => {
                assert_eq!(out["wire"]["era"], "modern", "{name}: {out}");
                assert_eq!(
                    out["result"]["content"][0]["text"], SIMPLE_TEXT,
                    "{name}: {out}"
                );
                continue;
            }
            _ => assert_handshake_client(out, name),
        }
        assert_eq!(out["ok"], true, "{name}: {out}");
        assert_eq!(strs(&out["call"]["texts"]), [SIMPLE_TEXT], "{name}: {out}");
    }
    assert_eq!(bridge.count("call test_simple_text"), outs.len());
    bridge.assert_one_child_initialize("every era at once");
}
