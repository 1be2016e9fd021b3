//! Ground truth: what the project's fixture server lists and answers when spoken to
//! directly over stdio, without the tunnel, for the tests to compare with what clients get
//! through it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::process::bin;

/// What the fixture's `test_simple_text` tool answers.
pub const SIMPLE_TEXT: &str = "This is a simple text response for testing.";
/// The text of the fixture's `test://static-text` resource.
pub const STATIC_TEXT: &str = "This is the content of the static text resource.";

/// What the fixture itself lists and answers.
pub struct FixtureTruth {
    /// Names from `tools/list`, in order.
    pub tools: Vec<String>,
    /// The message texts of `prompts/get test_simple_prompt`.
    pub prompt: Vec<String>,
    /// Its `initialize` result (capabilities, serverInfo, instructions) for 2025-11-25.
    pub initialize: Value,
}

/// Asks the fixture binary once (newline-delimited JSON-RPC on its stdin/stdout).
pub fn fixture_truth() -> &'static FixtureTruth {
    static TRUTH: OnceLock<FixtureTruth> = OnceLock::new();
    TRUTH.get_or_init(|| {
        let mut child = Command::new(bin("mcp-fixture"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env_remove("FIXTURE_COUNTS")
            .spawn()
            .expect("start mcp-fixture");
        let mut stdin = child.stdin.take().expect("stdin");
        for msg in [
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "fixture-truth", "version": "0"}}}),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
            json!({"jsonrpc": "2.0", "id": 3, "method": "prompts/get",
                   "params": {"name": "test_simple_prompt"}}),
        ] {
            writeln!(stdin, "{msg}").expect("write to the fixture");
        }
        let mut results = std::collections::HashMap::new();
        for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
            let msg: Value = serde_json::from_str(&line.expect("fixture stdout")).expect("JSON");
            if let Some(id) = msg["id"].as_i64() {
                results.insert(id, msg["result"].clone());
            }
            if (1..=3).all(|id| results.contains_key(&id)) {
                break;
            }
        }
        drop(stdin);
        let _ = child.kill();
        let _ = child.wait();
        let strings = |v: &Value, ptr: &str| -> Vec<String> {
            v.as_array()
                .expect("array")
                .iter()
                .map(|x| {
                    x.pointer(ptr)
                        .and_then(Value::as_str)
                        .expect(ptr)
                        .to_owned()
                })
                .collect()
        };
        let truth = FixtureTruth {
            tools: strings(&results[&2]["tools"], "/name"),
            prompt: strings(&results[&3]["messages"], "/content/text"),
            initialize: results[&1].clone(),
        };
        assert!(truth.tools.iter().any(|t| t == "test_simple_text"));
        assert!(!truth.prompt.is_empty() && truth.prompt.iter().all(|t| !t.is_empty()));
        assert_eq!(truth.initialize["serverInfo"]["name"], "mcp-fixture");
        truth
    })
}
