//! `--protocol legacy` answers stateless requests -32601 (HTTP 200) and still initializes;
//! without it, `server/discover` mirrors the `initialize` result and a stateless
//! `tools/list` lists the same tools with the caching hints, while the server (opened with
//! `initialize`) never sees the envelope.

use e2e::mcp::{
    HANDSHAKE, Headers, META_SERVER_INFO, McpClient, STATELESS, request, session_headers, stateless,
};
use e2e::{Bridge, BridgeOpts};
use protocol::jsonrpc::METHOD_NOT_FOUND;
use serde_json::{Value, json};

use crate::teed_bridge;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_legacy_refuses_stateless_requests_and_discover_mirrors_initialize() {
    // --protocol legacy: stateless requests are unknown methods, initialize works.
    let handshake_only = Bridge::start(BridgeOpts {
        args: vec!["--protocol".into(), "legacy".into()],
        ..BridgeOpts::default()
    });
    let c = McpClient::of(&handshake_only);
    for (id, method) in [(json!("d-1"), "server/discover"), (json!(7), "tools/list")] {
        let body = stateless(request(id.clone(), method, json!({})), json!({}), &[]);
        let r = c.post_stateless(&body, method).await;
        assert_eq!(r.status, 200, "{method} with --protocol legacy: {r:?}");
        let a = r.answer();
        assert_eq!(a["id"], id, "{method}: {a}");
        assert_eq!(a["error"]["code"], METHOD_NOT_FOUND, "{method}: {a}");
        assert!(a.get("result").is_none(), "{method}: {a}");
    }
    let (_, init) = c.initialize(HANDSHAKE).await;
    assert_eq!(init["serverInfo"]["name"], "mcp-fixture", "{init}");
    drop(handshake_only);

    // Without the flag: server/discover answers what initialize answers. The fixture runs
    // behind a `tee` of its standard input, to see what the bridge writes to it.
    let (bridge, stdin_log) = teed_bridge();
    let c = McpClient::of(&bridge);
    let (session, init) = c.initialize(HANDSHAKE).await;

    // A bare server/discover (no envelope, no 2026-07-28 header, as a connector's first
    // probe may be) is not a 2026-07-28 request: what a 2025-era server answers to an
    // unknown method, HTTP 200 and -32601, with or without a session.
    let bare = request(json!("openai-mcp-discover"), "server/discover", json!({}));
    for (headers, what) in [
        (Headers::new(), "bare server/discover"),
        (
            session_headers(&session, HANDSHAKE),
            "bare server/discover in a session",
        ),
    ] {
        let r = c.post(&bare, &headers, what).await;
        assert_eq!(r.status, 200, "{what}: {r:?}");
        let a = r.answer();
        assert_eq!(a["id"], "openai-mcp-discover", "{what}: {a}");
        assert_eq!(a["error"]["code"], METHOD_NOT_FOUND, "{what}: {a}");
    }
    let discover = request(json!("d-2"), "server/discover", json!({}));
    let a = c.stateless_answer(discover, 200, "server/discover").await;
    let d = &a["result"];
    // Every revision the URL serves, newest first (as dual-era servers list them).
    assert_eq!(
        d["supportedVersions"],
        json!([
            STATELESS,
            "2025-11-25",
            "2025-06-18",
            "2025-03-26",
            "2024-11-05"
        ]),
        "{a}"
    );
    assert_eq!(d["resultType"], "complete", "{a}");
    assert!(init["capabilities"].is_object(), "{init}");
    assert_eq!(
        d["capabilities"], init["capabilities"],
        "discover: {a}; init: {init}"
    );
    assert_eq!(
        d.get("instructions"),
        init.get("instructions"),
        "discover: {a}; init: {init}"
    );
    assert!(init["serverInfo"].is_object(), "{init}");
    assert_eq!(
        d["_meta"][META_SERVER_INFO], init["serverInfo"],
        "discover: {a}; init: {init}"
    );

    // A stateless tools/list lists what the session's tools/list does, with caching hints.
    let list = request(json!(3), "tools/list", json!({}));
    let r = c
        .post(
            &list,
            &session_headers(&session, HANDSHAKE),
            "2025 tools/list",
        )
        .await;
    assert_eq!(r.status, 200, "2025 tools/list: {r:?}");
    let old = r.answer()["result"].clone();
    assert!(
        old["tools"].as_array().is_some_and(|t| t.len() > 5),
        "2025 tools/list: {old}"
    );
    let body = stateless(request(json!(4), "tools/list", json!({})), json!({}), &[]);
    let r = c.post_stateless(&body, "stateless tools/list").await;
    assert_eq!(r.status, 200, "stateless tools/list: {r:?}");
    let a = r.answer();
    assert_eq!(a["id"], 4, "{a}");
    let new = &a["result"];
    assert_eq!(
        new["tools"], old["tools"],
        "stateless tools/list differs: {a}"
    );
    assert_eq!(new["resultType"], "complete", "{a}");
    assert!(new["ttlMs"].as_u64().is_some(), "ttlMs: {a}");
    assert!(
        matches!(new["cacheScope"].as_str(), Some("private" | "public")),
        "cacheScope: {a}"
    );
    assert!(
        old.get("resultType").is_none(),
        "2025 answer changed: {old}"
    );

    // The server was opened with initialize: it got the stateless tools/list without the
    // envelope, and no server/discover at all.
    let written = stdin_log.written();
    let lists: Vec<&Value> = written
        .iter()
        .filter(|m| m["method"] == "tools/list")
        .collect();
    // (the session's, the stateless one, and the bridge's own for its offline snapshot)
    assert!(lists.len() >= 2, "{:?}", stdin_log.requests());
    for m in &lists {
        let meta = m["params"]["_meta"].as_object();
        assert!(
            meta.is_none_or(|meta| !meta
                .keys()
                .any(|k| k.starts_with("io.modelcontextprotocol/"))),
            "the envelope reached the server: {m}"
        );
    }
    assert!(
        !written.iter().any(|m| m["method"] == "server/discover"),
        "{:?}",
        stdin_log.requests()
    );
}
