//! Several servers behind one tunnel (`tunnel = "NAME"` in a `--config` file): a stdio
//! server (the fixture) and a Python SDK server over Streamable HTTP, used by the Python
//! SDK in both eras. Their tools are listed under public names prefixed with the server's
//! name, calls reach the right server under its own name, a server's request to the client
//! (sampling) reaches the client whose call caused it, and a member that stops leaves the
//! other usable.

use e2e::clients::run_json;
use e2e::upstreams::{Transport, Upstream};
use e2e::{BridgeOpts, bin};
use serde_json::{Value, json};

use crate::{assert_handshake_client, assert_stateless_client};

/// The names `out`'s client listed.
fn tools(out: &Value) -> Vec<String> {
    out["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_stdio_and_an_http_server_behind_one_url() {
    let mut notes = Upstream::python(Transport::Streamable);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[servers.files]\ncommand = {fx}\ntunnel = \"work\"\n\n\
             [servers.notes]\nurl = \"{url}\"\ntunnel = \"work\"\n",
            fx = serde_json::to_string(&bin("mcp-fixture").display().to_string()).unwrap(),
            url = notes.url(),
        ),
    )
    .unwrap();
    let bridge = BridgeOpts::default().no_auth().config(&config).start();
    assert!(bridge.mcp_url.ends_with("/work/mcp"), "{}", bridge.mcp_url);
    let py = |mode: &str, tool: &str, args: Value| {
        let args = args.to_string();
        let all = [
            bridge.mcp_url.as_str(),
            "--mode",
            mode,
            "--tool",
            tool,
            "--args",
            &args,
            "--resource",
            "",
            "--prompt",
            "",
            "--sampling-text",
            "from the client",
        ];
        run_json(&mut e2e::clients::script(
            &bridge,
            "PY_SDK",
            "py_client.py",
            &all,
        ))
    };
    for (mode, stateless) in [("legacy", false), ("auto", true)] {
        let what = format!("Python SDK, {mode}");
        let out = py(mode, "notes_sample", json!({"prompt": "hi"}));
        if stateless {
            assert_stateless_client(&out, &what);
        } else {
            assert_handshake_client(&out, &what);
        }
        let names = tools(&out);
        for n in ["files_echo", "notes_echo", "notes_sample"] {
            assert!(names.iter().any(|x| x == n), "{what}: {n} in {names:?}");
        }
        assert!(
            !names.iter().any(|x| x == "echo"),
            "{what}: every name is prefixed"
        );
        assert_eq!(
            out["call"]["texts"],
            json!(["sampled: from the client"]),
            "{what}: the member's sampling went to this client: {out}"
        );
        let out = py(mode, "files_echo", json!({"text": "to files"}));
        assert_eq!(out["call"]["texts"], json!(["to files"]), "{what}: {out}");
        let out = py(mode, "notes_echo", json!({"message": "to notes"}));
        assert_eq!(
            out["call"]["texts"],
            json!(["Echo: to notes"]),
            "{what}: {out}"
        );
    }

    // The HTTP member stops: the stdio one stays usable, its tools stay listed.
    notes.kill();
    let out = py("legacy", "files_echo", json!({"text": "still here"}));
    assert_eq!(out["call"]["texts"], json!(["still here"]), "{out}");
    let names = tools(&out);
    assert!(names.iter().any(|x| x == "files_echo"), "{names:?}");
    assert!(!names.iter().any(|x| x.starts_with("notes_")), "{names:?}");
    let out = py("legacy", "notes_echo", json!({"message": "x"}));
    assert_eq!(out["call"]["is_error"], true, "a tool error: {out}");
    let text = out["call"]["texts"][0].as_str().unwrap_or_default();
    assert!(
        text.contains("notes") && text.contains("not reachable"),
        "it names the member that stopped: {text}"
    );
}
