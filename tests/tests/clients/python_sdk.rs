//! The Python SDK 2.x (`py_client.py`: `auto`, `legacy` = the handshake era, the
//! 2026-07-28 pin, HTTP+SSE) and 1.x (`py_client_v1.py`) through the tunnel, with what
//! they really said on the wire.

use std::path::Path;

use e2e::clients::{deps, run_script, run_script_failing};
use e2e::fixture_truth::fixture_truth;
use e2e::mcp::{HANDSHAKE, STATELESS};
use e2e::{Bridge, BridgeOpts};
use serde_json::Value;

use crate::tap::Tap;
use crate::wire::{
    answer, assert_discover_matches_initialize, assert_handshake_wire, assert_stateless_wire,
    methods, requests,
};
use crate::{
    assert_fixture_session, assert_fixture_steps, assert_handshake_client, assert_stateless_client,
    py2,
};

/// A run of `py_client.py` over `transport` that ended in the `version` era, made its one
/// call, and left the child initialized once.
fn assert_one_run(bridge: &Bridge, out: &Value, transport: &str, version: &str, label: &str) {
    assert_eq!(out["transport"], transport, "{label}: {out}");
    assert_fixture_session(out, version, label);
    assert_eq!(bridge.count("call test_simple_text"), 1, "{label}");
    bridge.assert_one_child_initialize(label);
}

#[test]
fn python_sdk_streamable_auto() {
    Bridge::on_both_relays(BridgeOpts::default(), |bridge, label| {
        // Auto mode probes `server/discover` first; the bridge answers it (from the
        // handshake-era child's cached initialize), so the client stays on 2026-07-28.
        let out = run_script(bridge, "PY_SDK", "py_client.py", &[&bridge.mcp_url]);
        assert_eq!(out["mode"], "auto", "{label}: {out}");
        assert_one_run(bridge, &out, "streamable", STATELESS, label);
    });
}

#[test]
fn python_sdk_sse() {
    Bridge::on_both_relays(BridgeOpts::default(), |bridge, label| {
        let out = run_script(
            bridge,
            "PY_SDK",
            "py_client.py",
            &[&bridge.sse_url, "--transport", "sse"],
        );
        assert_one_run(bridge, &out, "sse", HANDSHAKE, label);
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
    Bridge::on_both_relays(BridgeOpts::default(), |bridge, label| {
        let out = run_script(bridge, "PY_SDK1", "py_client_v1.py", &[&bridge.mcp_url]);
        assert_fixture_session(&out, HANDSHAKE, &format!("{label}, streamable"));
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
        assert_fixture_session(&out, HANDSHAKE, &format!("{label}, sse"));
        assert_eq!(bridge.count("call test_simple_text"), 2, "{label}");
        bridge.assert_one_child_initialize(label);
    });
}

/// `auto` (the SDK's default) probes `server/discover`; the tunnel offers 2026-07-28, so the
/// connection must stay stateless: no `initialize`, no session, the envelope on every request.
#[test]
fn python2_auto_ends_stateless() {
    let truth = fixture_truth();
    Bridge::on_both_relays(BridgeOpts::default(), |bridge, label| {
        let mut tap = Tap::start(bridge);
        let url = tap.url(&bridge.mcp_url);

        let out = py2(bridge, &url, &["--mode", "auto"]);
        assert_eq!(out["mode"], "auto", "{label}: {out}");
        assert_stateless_client(&out, label);
        assert_fixture_steps(&out, label);
        assert_eq!(out["server"], "mcp-fixture", "{label}: {out}");
        assert_eq!(
            out["discover"]["source"], "server/discover",
            "{label}: {out}"
        );
        assert_eq!(out["initialize"], Value::Null, "{label}: {out}");
        let discover = assert_stateless_wire(&tap.take(), true, label);
        assert_discover_matches_initialize(&discover, &truth.initialize, label);

        // What the tunnel's initialize says, for comparison (a handshake-era client on the same URL).
        let handshake = py2(bridge, &url, &["--mode", "legacy"]);
        assert_handshake_client(&handshake, label);
        let initialize = assert_handshake_wire(&tap.take(), false, true, label);
        assert_discover_matches_initialize(&discover, &initialize, label);
        assert_eq!(
            out["discover"]["capabilities"], handshake["initialize"]["capabilities"],
            "{label}: the SDK's views of discover and initialize differ"
        );

        assert_eq!(bridge.count("call test_simple_text"), 2, "{label}");
        bridge.assert_one_child_initialize(label);
    });
}

/// `legacy` mode (the SDK's name for the handshake era): the `initialize` handshake,
/// 2025-11-25, a session; and the 2024-11-05
/// HTTP+SSE transport (always the handshake).
#[test]
fn python2_handshake_mode_and_http_sse() {
    let (bridge, mut tap) = Tap::with_bridge();

    let out = py2(&bridge, &tap.url(&bridge.mcp_url), &["--mode", "legacy"]);
    assert_eq!(out["mode"], "legacy", "{out}");
    assert_handshake_client(&out, "handshake mode");
    assert_fixture_steps(&out, "handshake mode");
    assert_eq!(out["server"], "mcp-fixture", "{out}");
    assert_eq!(out["discover"], Value::Null, "{out}");
    assert_handshake_wire(&tap.take(), false, true, "handshake mode");

    let sse = py2(&bridge, &tap.url(&bridge.sse_url), &["--transport", "sse"]);
    assert_eq!(sse["transport"], "sse", "{sse}");
    assert_handshake_client(&sse, "sse");
    assert_fixture_steps(&sse, "sse");
    let wire = tap.take();
    assert_eq!(wire[0]["method"], "GET", "sse: {wire:#?}");
    assert_handshake_wire(&wire, false, false, "sse");

    assert_eq!(bridge.count("call test_simple_text"), 2);
    bridge.assert_one_child_initialize("python 2.x handshake");
}

/// The stateless pin (`mode="2026-07-28"`): no probe, no handshake; the very first request is a
/// stateless `tools/list` with the envelope.
#[test]
fn python2_stateless_pinned() {
    let (bridge, mut tap) = Tap::with_bridge();
    let out = py2(&bridge, &tap.url(&bridge.mcp_url), &["--mode", "modern"]);
    assert_eq!(out["sdk_mode"], STATELESS, "{out}");
    assert_stateless_client(&out, "stateless pin");
    assert_fixture_steps(&out, "stateless pin");
    let wire = tap.take();
    assert_stateless_wire(&wire, false, "stateless pin");
    assert_eq!(methods(&wire).first(), Some(&"tools/list"), "{wire:#?}");
    assert_eq!(bridge.count("call test_simple_text"), 1);
    bridge.assert_one_child_initialize("stateless pin");
}

/// `bridge run --protocol legacy` serves only the handshake era: `server/discover` is refused
/// the way a 2025-era server refuses an unknown method, so `auto` falls back to `initialize`,
/// and a client pinned to 2026-07-28 gets the same refusal.
#[test]
fn python2_auto_falls_back_when_the_bridge_serves_only_the_handshake_era() {
    let bridge = Bridge::start(BridgeOpts {
        args: vec!["--protocol".into(), "legacy".into()],
        ..Default::default()
    });
    let mut tap = Tap::start(&bridge);
    let out = py2(&bridge, &tap.url(&bridge.mcp_url), &["--mode", "auto"]);
    assert_eq!(out["mode"], "auto", "{out}");
    assert_handshake_client(&out, "--protocol legacy");
    assert_fixture_steps(&out, "--protocol legacy");
    assert_eq!(out["discover"], Value::Null, "{out}");
    let wire = tap.take();
    assert_handshake_wire(&wire, true, true, "--protocol legacy");
    let (ex, probe) = requests(&wire)[0];
    let refused = answer(&wire, ex, probe).expect("probe answered");
    assert_eq!(refused["error"]["code"], -32601, "{refused}");

    // A client pinned to the stateless era has nothing to fall back to: refused the same way.
    let url = tap.url(&bridge.mcp_url);
    let out = run_script_failing(
        &bridge,
        "PY_SDK",
        "py_client.py",
        &[&url, "--mode", "modern"],
    );
    assert_eq!(out["failed_step"], "tools/list", "{out}");
    let wire = tap.take();
    assert_eq!(methods(&wire), ["tools/list"], "{wire:#?}");
    let (ex, list) = requests(&wire)[0];
    let refused = answer(&wire, ex, list).expect("tools/list answered");
    assert_eq!(refused["error"]["code"], -32601, "{refused}");
    assert_eq!(bridge.count("call test_simple_text"), 1);
    bridge.assert_one_child_initialize("--protocol legacy");
}

// ------------------------------------------------------------------------------------------
// Python SDK 1.x.

#[test]
fn python1_handshake_era() {
    let (bridge, mut tap) = Tap::with_bridge();
    let out = run_script(
        &bridge,
        "PY_SDK1",
        "py_client_v1.py",
        &[&tap.url(&bridge.mcp_url)],
    );
    assert_handshake_client(&out, "1.x streamable");
    assert_fixture_steps(&out, "1.x streamable");
    assert_eq!(out["server"], "mcp-fixture", "{out}");
    let wire = tap.take();
    assert_handshake_wire(&wire, false, true, "1.x streamable");
    assert_eq!(
        wire.iter()
            .find_map(|e| e["response_headers"]["mcp-session-id"].as_str()),
        out["session_id"].as_str(),
        "{out}"
    );

    let out = run_script(
        &bridge,
        "PY_SDK1",
        "py_client_v1.py",
        &[&tap.url(&bridge.sse_url), "--transport", "sse"],
    );
    assert_handshake_client(&out, "1.x sse");
    assert_fixture_steps(&out, "1.x sse");
    assert_handshake_wire(&tap.take(), false, false, "1.x sse");

    assert_eq!(bridge.count("call test_simple_text"), 2);
    bridge.assert_one_child_initialize("python 1.x");
}
