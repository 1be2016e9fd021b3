//! The server and the bridge misbehave: a stdio server that prints a line that is not
//! JSON, a bridge killed while calls run (answered once the relay's grace period is over,
//! never a hang), and a request refused before its body is read.

use std::time::Duration;

use e2e::Relay;
use e2e::http::{Answer, send};
use e2e::mcp::ACCEPT_BOTH;
use protocol::jsonrpc::UNAVAILABLE;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::endpoint::{Endpoint, HTTP_TIMEOUT, bridge_on, embedded};

#[tokio::test]
async fn non_json_server_output_is_skipped() {
    let (bridge, ep) = embedded();
    let session = ep.initialize().await;
    let text = ep
        .tool_text(
            &session,
            10,
            "garbage_then_echo",
            json!({"text": "through the noise"}),
        )
        .await;
    assert_eq!(text, "through the noise");
    assert_eq!(
        ep.tool_text(&session, 11, "echo", json!({"text": "again"}))
            .await,
        "again"
    );
    let text = ep
        .tool_text(&session, 12, "garbage_then_echo", json!({"text": "twice"}))
        .await;
    assert_eq!(text, "twice");
    ep.still_serves("non-JSON server output").await;
    assert_eq!(
        bridge.count("call garbage_then_echo"),
        2,
        "{:?}",
        bridge.counts()
    );
    assert_eq!(
        bridge.count("initialize"),
        1,
        "the server was restarted: {:?}",
        bridge.counts()
    );
}

/// How long the relay holds requests for a bridge that just left before answering for it
/// as offline (`RelayConfig::grace`, which `relay serve` does not let us shorten).
const GRACE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn killed_bridge_gets_503_not_a_hang() {
    let relay = Relay::start(&[]);
    let bridge = bridge_on(&relay, "doomed-tunnel");
    let ep = Endpoint::of(&bridge);
    let session = ep.initialize().await;

    // A slow call in flight when the bridge dies is answered at once, naming the request.
    let in_flight = {
        let call = json!({
            "jsonrpc": "2.0", "id": 20, "method": "tools/call",
            "params": {"name": "slow", "arguments": {"ms": 60000}}
        });
        let rb = ep.post_in(&session, &call);
        tokio::spawn(async move { send(rb, "a call in flight when the bridge died").await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(bridge); // SIGKILL to the bridge and its server.
    let a = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the call in flight hung after the bridge died")
        .expect("task");
    a.assert_jsonrpc_error(
        &json!(20),
        503,
        UNAVAILABLE,
        "a call in flight when the bridge died",
    );

    // Later requests wait out the grace period for the bridge to come back, then get 503
    // (for a method the relay cannot answer offline), never a hang.
    let list = json!({"jsonrpc": "2.0", "id": 21, "method": "resources/list"});
    let fresh = Endpoint::new(&ep.mcp, ep.bearer.as_deref());
    let patience = GRACE + Duration::from_secs(5);
    let (on_session, new_client) = tokio::join!(
        send(
            ep.post_in(&session, &list).timeout(patience),
            "a request on a session of the killed bridge",
        ),
        send(
            fresh.post(list.to_string()).timeout(patience),
            "a new client of the killed bridge",
        ),
    );
    on_session.assert_jsonrpc_error(
        &json!(21),
        503,
        UNAVAILABLE,
        "a request on a session of the killed bridge",
    );
    new_client.assert_jsonrpc_error(
        &json!(21),
        503,
        UNAVAILABLE,
        "a new client of the killed bridge",
    );

    // The relay still serves: the same token reclaims the name.
    let again = bridge_on(&relay, "doomed-tunnel");
    Endpoint::of(&again).still_serves("a killed bridge").await;
}

/// A request refused before its body is read (401 without a token) leaves the connection
/// usable for the client's next request: clients (the OAuth ones first of all) reuse it.
#[tokio::test]
async fn an_early_refusal_keeps_the_connection_usable() {
    let (_bridge, ep) = embedded();
    let rest = ep.mcp.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut tcp = TcpStream::connect(authority).await.expect("connect");
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let refused = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Accept: {ACCEPT_BOTH}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // The body follows the head a moment later, as it does from a real network.
    tcp.write_all(refused.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    tcp.write_all(body).await.expect("write");
    let mut buf = Vec::new();
    let first = read_answer(&mut tcp, &mut buf).await;
    assert_eq!(first.status, 401, "{:?}", String::from_utf8_lossy(&buf));
    assert!(
        !first
            .headers
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close")),
        "a small unread body is read off, not a reason to close: {:?}",
        first.headers
    );
    // The same connection serves the next request.
    let again = format!("GET /healthz HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    tcp.write_all(again.as_bytes()).await.expect("write again");
    buf.clear();
    let second = read_answer(&mut tcp, &mut buf).await;
    assert_eq!(second.status, 200, "{:?}", String::from_utf8_lossy(&buf));
}

/// Reads one complete answer from `tcp`.
async fn read_answer(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Answer {
    tokio::time::timeout(HTTP_TIMEOUT, async {
        let mut chunk = vec![0u8; 16 << 10];
        loop {
            if let Some(a) = Answer::from_raw(buf) {
                return a;
            }
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => panic!(
                    "the connection ended without a complete answer; got {:?}",
                    String::from_utf8_lossy(buf)
                ),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("an answer in time")
}
