//! Log messages reach a stateless call only at or above the level it asked for.

use e2e::mcp::{META_LOG_LEVEL, McpClient, stateless, texts, tool_call};
use e2e::{Bridge, BridgeOpts};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_calls_get_log_messages_only_at_the_level_they_asked() {
    let bridge = Bridge::start(BridgeOpts::default());
    let c = McpClient::of(&bridge);
    let cases: [(Option<&str>, &[&str]); 3] = [
        (Some("info"), &["info", "warning"]),
        (Some("warning"), &["warning"]),
        (None, &[]),
    ];
    for (i, (level, want)) in cases.into_iter().enumerate() {
        let meta: Vec<(&str, Value)> = level
            .map(|l| vec![(META_LOG_LEVEL, json!(l))])
            .unwrap_or_default();
        let body = stateless(
            tool_call(json!(i + 1), "test_logging_tool", json!({})),
            json!({}),
            &meta,
        );
        let what = format!("logLevel {level:?}");
        let r = c.post_stateless(&body, &what).await;
        assert_eq!(r.status, 200, "{what}: {r:?}");
        let a = r.answer();
        assert_eq!(a["id"], i + 1, "{what}: {a}");
        assert_eq!(a["result"]["resultType"], "complete", "{what}: {a}");
        assert_eq!(
            texts(&a["result"]),
            ["Logging tool sent 3 log messages"],
            "{what}: {a}"
        );
        let levels: Vec<String> = r
            .notifications("notifications/message")
            .iter()
            .map(|m| m["params"]["level"].as_str().unwrap_or("?").to_owned())
            .collect();
        assert_eq!(levels, want, "{what}: {r:?}");
        if !want.is_empty() {
            assert!(r.sse, "{what}: log messages need a stream: {r:?}");
        }
    }
    assert_eq!(
        bridge.count("call test_logging_tool"),
        3,
        "{:?}",
        bridge.counts()
    );
}
