//! The MCP Inspector CLI (`inspector.sh`) on both endpoints, and in its three
//! `--protocol-era`s with the era it really spoke read from the wire.

use e2e::clients::run_script;
use e2e::fixture_truth::{SIMPLE_TEXT, STATIC_TEXT, fixture_truth};
use e2e::mcp::{HANDSHAKE, STATELESS};
use e2e::{Bridge, BridgeOpts};
use serde_json::{Value, json};

use crate::SERVED_VERSIONS;

/// Through `inspector` (the script with the URL and its options around `args`):
/// `tools/list` names the fixture's tools, `tools/call test_simple_text` answers its text.
fn assert_lists_and_calls(inspector: impl Fn(&[&str]) -> Value, what: &str) {
    let list = inspector(&["tools/list"]);
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: {list}"))
        .iter()
        .map(|t| t["name"].as_str().expect("tool name"))
        .collect();
    assert_eq!(names, fixture_truth().tools, "{what}");
    let call = inspector(&["tools/call", "--tool-name", "test_simple_text"]);
    assert_eq!(
        call["result"]["content"],
        json!([{"type": "text", "text": SIMPLE_TEXT}]),
        "{what}: {call}"
    );
}

#[test]
fn inspector_cli() {
    let bridge = Bridge::start(BridgeOpts::default());
    assert!(
        bridge.bearer.is_some(),
        "the Inspector sends the bearer with --header"
    );
    for url in [&bridge.mcp_url, &bridge.sse_url] {
        let inspector = |args: &[&str]| {
            let all = [&[url.as_str()][..], args].concat();
            run_script(&bridge, "bash", "inspector.sh", &all)
        };
        assert_lists_and_calls(inspector, url);
    }
    assert_eq!(bridge.count("call test_simple_text"), 2);
    bridge.assert_one_child_initialize("inspector");
}

#[test]
fn inspector_cli_every_era() {
    let truth = fixture_truth();
    let bridge = Bridge::start(BridgeOpts::default());
    let cases = [
        (&bridge.mcp_url, "legacy"),
        (&bridge.mcp_url, "auto"),
        (&bridge.mcp_url, "modern"),
        (&bridge.sse_url, "legacy"),
    ];
    let mut calls = 0;
    for (url, era) in cases {
        let what = format!("{url} --protocol-era {era}");
        let run = |args: &[&str]| -> Value {
            let mut all = vec![url.as_str()];
            all.extend_from_slice(args);
            all.extend(["--protocol-era", era, "--report-era"]);
            let out = run_script(&bridge, "bash", "inspector.sh", &all);
            let wire = &out["wire"];
            if era == "legacy" {
                assert_eq!(wire["era"], "legacy", "{what}: {out}");
                assert_eq!(wire["protocol"], HANDSHAKE, "{what}: {out}");
                assert_eq!(wire["discover"], Value::Null, "{what}: {out}");
                assert_eq!(wire["initialize"], 1, "{what}: {out}");
            } else {
                assert_eq!(wire["era"], "modern", "{what}: {out}");
                assert_eq!(wire["protocol"], STATELESS, "{what}: {out}");
                assert_eq!(wire["initialize"], 0, "{what}: {out}");
                assert_eq!(wire["discover"]["status"], 200, "{what}: {out}");
                assert_eq!(
                    wire["discover"]["result"]["supportedVersions"],
                    json!(SERVED_VERSIONS),
                    "{what}: {out}"
                );
                assert_eq!(wire["session_ids"], json!([]), "{what}: {out}");
            }
            out
        };

        assert_lists_and_calls(run, &what);
        calls += 1;

        let read = run(&["resources/read", "--uri", "test://static-text"]);
        assert_eq!(
            read["result"]["contents"][0]["text"], STATIC_TEXT,
            "{what}: {read}"
        );

        let prompt = run(&["prompts/get", "--prompt-name", "test_simple_prompt"]);
        let texts: Vec<&str> = prompt["result"]["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: {prompt}"))
            .iter()
            .map(|m| m["content"]["text"].as_str().expect("text"))
            .collect();
        assert_eq!(texts, truth.prompt, "{what}");
    }
    assert_eq!(bridge.count("call test_simple_text"), calls);
    bridge.assert_one_child_initialize("inspector");
}
