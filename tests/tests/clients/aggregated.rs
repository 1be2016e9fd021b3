//! Several servers behind one tunnel (`tunnel = "NAME"` in a `--config` file): a stdio
//! server (the fixture) and a Python SDK server over Streamable HTTP, used by the Python
//! SDK in both eras and by the MCP Inspector. Their tools are listed under public names prefixed with the server's
//! name, calls reach the right server under its own name, a server's request to the client
//! (sampling) reaches the client whose call caused it, a member's own policy hides its
//! tools, and a member that stops leaves the other usable.

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
             [servers.files.policy]\ndeny_tools = [\"test_*\"]\n\n\
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
        assert!(
            !names.iter().any(|x| x.starts_with("files_test_")),
            "{what}: files' own policy hides its test_* tools: {names:?}"
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

    // The MCP Inspector (CLI) sees one server too.
    let inspector = |args: &[&str]| {
        let all = [&[bridge.mcp_url.as_str()][..], args].concat();
        e2e::clients::run_script(&bridge, "bash", "inspector.sh", &all)
    };
    let list = inspector(&["tools/list"]);
    let listed: Vec<&str> = list["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        listed.contains(&"files_echo") && listed.contains(&"notes_add"),
        "{list}"
    );
    let call = inspector(&[
        "tools/call",
        "--tool-name",
        "notes_add",
        "--tool-arg",
        "a=2",
        "--tool-arg",
        "b=3",
    ]);
    assert_eq!(call["result"]["content"][0]["text"], "5", "{call}");

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

/// Names that would exceed 64 characters get a shortened public name that every hosted
/// client accepts, still unique and callable, and the owner's log reports each renaming;
/// a member that exits is started again and answers again.
#[test]
fn long_names_are_shortened_and_still_reach_their_tool() {
    let long = "files-with-a-very-long-name-for-testing";
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bridge.toml");
    let fx = serde_json::to_string(&bin("mcp-fixture").display().to_string()).unwrap();
    std::fs::write(
        &config,
        format!(
            "[servers.files]\ncommand = {fx}\ntunnel = \"work\"\n\n\
             [servers.{long}]\ncommand = {fx}\ntunnel = \"work\"\n"
        ),
    )
    .unwrap();
    let bridge = BridgeOpts::default().no_auth().config(&config).start();
    let list = |tool: &str| {
        let all = [
            bridge.mcp_url.as_str(),
            "--mode",
            "legacy",
            "--tool",
            tool,
            "--resource",
            "",
            "--prompt",
            "",
        ];
        run_json(&mut e2e::clients::script(
            &bridge,
            "PY_SDK",
            "py_client.py",
            &all,
        ))
    };
    let out = list("files_echo");
    let names = tools(&out);
    let mut seen = std::collections::HashSet::new();
    for n in &names {
        assert!(
            (1..=64).contains(&n.len())
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{n:?} is not a name every client accepts"
        );
        assert!(seen.insert(n), "{n} listed twice");
    }
    // `<long>_test_multiple_content_types` has 67 characters.
    let short: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with(&long[..20]) && n.len() == 64)
        .collect();
    assert!(!short.is_empty(), "no shortened name among {names:?}");
    let hashed = names
        .iter()
        .find(|n| n.starts_with(&format!("{long}_test_multiple_c")))
        .unwrap_or_else(|| panic!("test_multiple_content_types of {long} in {names:?}"));
    let out = list(hashed);
    assert_eq!(
        out["call"]["texts"][0], "Multiple content types test:",
        "the shortened name reaches its tool: {out}"
    );
    assert!(
        bridge
            .proc
            .log_text()
            .contains("test_multiple_content_types"),
        "the renaming is in the owner's log"
    );

    // A member that exits is started again (with backoff); its tools come back.
    let http = e2e::http::BlockingHttp::new();
    let post = |body: Value| http.post_mcp(&bridge.mcp_url, &body);
    let exit = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "files_exit", "arguments": {}}});
    let _ = post(exit);
    let echo = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "files_echo", "arguments": {"text": "back"}}});
    let back = e2e::wait::eventually(std::time::Duration::from_secs(30), || {
        let r = post(echo.clone()).response_to(&json!(2));
        (r["result"]["content"][0]["text"] == "back").then_some(r)
    });
    assert!(back.is_some(), "files answers again after it exited");
    assert!(
        bridge.proc.log_text().contains("starting it again"),
        "the owner's log says the member stopped"
    );
}

/// A ChatGPT Apps / MCP Apps tool works through an aggregated tunnel unchanged: its
/// `_meta` names the widget template, and the template (with its CSP) is read from the
/// member that serves it.
#[test]
fn a_widget_tool_and_its_template_pass_unchanged() {
    let notes = Upstream::python(Transport::Streamable);
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
    let http = e2e::http::BlockingHttp::new();
    let post = |body: Value| http.post_mcp(&bridge.mcp_url, &body);
    let listed =
        post(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).response_to(&json!(1));
    let board = listed["result"]["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "notes_board"))
        .cloned()
        .unwrap_or_else(|| panic!("notes_board in {listed}"));
    let uri = "ui://widget/board.html";
    assert_eq!(board["_meta"]["openai/outputTemplate"], uri, "{board}");
    assert_eq!(board["_meta"]["ui"]["resourceUri"], uri, "{board}");
    let read = post(
        json!({"jsonrpc": "2.0", "id": 2, "method": "resources/read",
                           "params": {"uri": uri}}),
    )
    .response_to(&json!(2));
    let content = &read["result"]["contents"][0];
    assert_eq!(content["uri"], uri, "{read}");
    assert_eq!(content["mimeType"], "text/html+skybridge", "{read}");
    assert!(
        content["text"]
            .as_str()
            .is_some_and(|t| t.contains("id=\"board\"")),
        "{read}"
    );
    let called = post(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                             "params": {"name": "notes_board", "arguments": {"title": "q4"}}}))
    .response_to(&json!(3));
    assert_eq!(
        called["result"]["content"][0]["text"], "board q4",
        "{called}"
    );
    // Without `assets`, the tunnel publishes none.
    let assets = http.get(
        &format!("{}/work/assets/board.js", bridge.relay_base()),
        &[],
    );
    assert_eq!(assets.status, 404, "{}", assets.text());
    assert!(
        assets.text().contains("publishes no assets"),
        "{}",
        assets.text()
    );
}
