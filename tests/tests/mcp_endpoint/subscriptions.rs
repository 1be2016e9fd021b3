//! `subscriptions/listen` is acknowledged first, carries only what it opted into, tagged
//! with its subscription id, and unsubscribes on the server when it closes.

use e2e::mcp::{META_SUBSCRIPTION, McpClient, request, stateless, stateless_headers, tool_call};
use serde_json::json;

use crate::{HTTP_LIMIT, teed_bridge};

/// The fixture's resource meant for subscriptions.
const WATCHED: &str = "test://watched-resource";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_carries_what_it_opted_into_and_unsubscribes_on_close() {
    // The fixture behind a `tee` of its standard input, to see the bridge's requests.
    let (bridge, stdin_log) = teed_bridge();
    let c = McpClient::of(&bridge);

    let body = stateless(
        request(
            json!("listen-7"),
            "subscriptions/listen",
            json!({"notifications": {
                "resourceSubscriptions": [WATCHED],
                "toolsListChanged": true,
            }}),
        ),
        json!({}),
        &[],
    );
    let mut listen = c.open(&body, &stateless_headers(&body), "listen").await;
    assert_eq!(listen.status, 200, "listen status");
    assert!(listen.is_sse(), "listen: {}", listen.content_type);
    let ack = listen.next_message(HTTP_LIMIT, "listen ack").await;
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert!(
        ack.get("id").is_none(),
        "the acknowledgement is a notification: {ack}"
    );
    assert_eq!(
        ack["params"]["_meta"][META_SUBSCRIPTION], "listen-7",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["notifications"]["toolsListChanged"], true,
        "{ack}"
    );
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"],
        json!([WATCHED]),
        "{ack}"
    );
    stdin_log
        .wait_wrote(
            "resources/subscribe",
            WATCHED,
            1,
            "no resources/subscribe reached the server",
        )
        .await;

    // Changes, in this order: a prompt list change (not asked for), an update of another
    // resource (not subscribed), the watched resource, the tool list.
    let calls = [
        ("test_trigger_prompt_change", json!({})),
        ("touch_resource", json!({"uri": "test://static-text"})),
        ("touch_resource", json!({"uri": WATCHED})),
        ("trigger_list_changed", json!({})),
    ];
    for (i, (tool, args)) in calls.into_iter().enumerate() {
        let body = stateless(tool_call(json!(100 + i), tool, args), json!({}), &[]);
        let r = c.post_stateless(&body, tool).await;
        assert_eq!(r.status, 200, "{tool}: {r:?}");
        assert!(r.answer().get("result").is_some(), "{tool}: {r:?}");
    }

    // The server's notifications come in order: once the tool list change is in, anything
    // delivered for the earlier changes is in too.
    let mut got = Vec::new();
    loop {
        let m = listen
            .next_message(HTTP_LIMIT, "listen notifications")
            .await;
        let done = m["method"] == "notifications/tools/list_changed";
        got.push(m);
        if done {
            break;
        }
    }
    let methods: Vec<&str> = got
        .iter()
        .map(|m| m["method"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        methods,
        [
            "notifications/resources/updated",
            "notifications/tools/list_changed"
        ],
        "{got:?}"
    );
    assert_eq!(got[0]["params"]["uri"], WATCHED, "{got:?}");
    for m in &got {
        assert_eq!(m["params"]["_meta"][META_SUBSCRIPTION], "listen-7", "{m}");
    }

    // Closing the stream unsubscribes on the server.
    assert_eq!(stdin_log.wrote("resources/unsubscribe", WATCHED), 0);
    drop(listen);
    stdin_log
        .wait_wrote(
            "resources/unsubscribe",
            WATCHED,
            1,
            "closing the listen stream did not unsubscribe",
        )
        .await;
    assert_eq!(stdin_log.wrote("resources/subscribe", WATCHED), 1);
}
