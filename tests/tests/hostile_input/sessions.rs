//! Unknown and deleted sessions, unsupported protocol versions, and HTTP+SSE messages
//! without a known session.

use protocol::jsonrpc::{INVALID_REQUEST, SESSION_NOT_FOUND};
use reqwest::Method;
use reqwest::header;
use serde_json::json;

use crate::endpoint::{MCP_VERSION, embedded};
use e2e::http::send;

#[tokio::test]
async fn unknown_and_deleted_sessions_get_404() {
    let (_bridge, ep) = embedded();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let unknown = "no-such-session-0123456789";

    let a = send(ep.post_in(unknown, &list), "POST, unknown session").await;
    a.assert_error(404, SESSION_NOT_FOUND, "POST, unknown session");
    ep.still_serves("POST, unknown session").await;

    let get = |sid: &str| {
        ep.request(Method::GET, &ep.mcp)
            .header(header::ACCEPT, "text/event-stream")
            .header("mcp-session-id", sid)
            .header("mcp-protocol-version", MCP_VERSION)
    };
    let delete = |sid: &str| {
        ep.request(Method::DELETE, &ep.mcp)
            .header("mcp-session-id", sid)
            .header("mcp-protocol-version", MCP_VERSION)
    };

    let a = send(get(unknown), "GET, unknown session").await;
    a.assert_error(404, SESSION_NOT_FOUND, "GET, unknown session");
    ep.still_serves("GET, unknown session").await;

    let a = send(delete(unknown), "DELETE, unknown session").await;
    a.assert_error(404, SESSION_NOT_FOUND, "DELETE, unknown session");
    ep.still_serves("DELETE, unknown session").await;

    let a = send(
        ep.request(Method::DELETE, &ep.mcp),
        "DELETE without a session",
    )
    .await;
    a.assert_error(400, INVALID_REQUEST, "DELETE without a session");
    ep.still_serves("DELETE without a session").await;

    // A deleted session is gone for every method.
    let session = ep.initialize().await;
    let tools = ep.call(&session, 3, "tools/list", json!({})).await;
    assert!(tools["result"]["tools"].is_array(), "{tools}");
    let a = send(delete(&session), "DELETE").await;
    assert_eq!(a.status, 200, "DELETE: {}", a.text());
    let a = send(ep.post_in(&session, &list), "POST, deleted session").await;
    a.assert_error(404, SESSION_NOT_FOUND, "POST, deleted session");
    let a = send(get(&session), "GET, deleted session").await;
    a.assert_error(404, SESSION_NOT_FOUND, "GET, deleted session");
    let a = send(delete(&session), "DELETE, deleted session").await;
    a.assert_error(404, SESSION_NOT_FOUND, "DELETE, deleted session");
    ep.still_serves("requests on a deleted session").await;
}

#[tokio::test]
async fn unsupported_protocol_version_gets_400() {
    let (_bridge, ep) = embedded();
    let session = ep.initialize().await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let a = send(
        ep.post(list.to_string())
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "1999-01-01"),
        "MCP-Protocol-Version 1999-01-01",
    )
    .await;
    a.assert_error(400, INVALID_REQUEST, "MCP-Protocol-Version 1999-01-01");
    let a = send(
        ep.request(Method::GET, &ep.mcp)
            .header(header::ACCEPT, "text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "1999-01-01"),
        "GET with MCP-Protocol-Version 1999-01-01",
    )
    .await;
    a.assert_error(
        400,
        INVALID_REQUEST,
        "GET with MCP-Protocol-Version 1999-01-01",
    );
    // The session is unharmed.
    let tools = ep.call(&session, 3, "tools/list", json!({})).await;
    assert!(tools["result"]["tools"].is_array(), "{tools}");
    ep.still_serves("an unsupported protocol version").await;
}

#[tokio::test]
async fn http_sse_messages_need_a_known_session() {
    let (_bridge, ep) = embedded();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let messages = |query: &str| {
        ep.request(Method::POST, &format!("{}/messages{query}", ep.tunnel()))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
    };
    let cases = [
        ("no query", "", 400, INVALID_REQUEST),
        ("no sessionId", "?other=1", 400, INVALID_REQUEST),
        ("an empty sessionId", "?sessionId=", 400, INVALID_REQUEST),
        (
            "an unknown sessionId",
            "?sessionId=no-such-session",
            404,
            SESSION_NOT_FOUND,
        ),
    ];
    for (what, query, status, code) in cases {
        send(messages(query), what)
            .await
            .assert_error(status, code, what);
        ep.still_serves(what).await;
    }
}
