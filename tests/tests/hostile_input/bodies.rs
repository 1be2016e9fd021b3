//! Malformed, non-JSON-RPC, mistyped and oversized bodies, wrong content types and
//! unacceptable `Accept` headers: each refused with its exact HTTP status and a JSON-RPC
//! error body, after which a valid `initialize` proves the relay still serves.

use e2e::Relay;
use protocol::jsonrpc::{INVALID_REQUEST, PARSE_ERROR};
use reqwest::Method;
use reqwest::header;
use serde_json::json;

use crate::endpoint::{Endpoint, bridge_on, chunked, embedded, padded_request, raw_post};
use e2e::http::send;
use e2e::mcp::ACCEPT_BOTH;

#[tokio::test]
async fn malformed_and_non_jsonrpc_bodies_get_400() {
    let (_bridge, ep) = embedded();
    let cases: &[(&str, &str, i64)] = &[
        (
            "truncated JSON",
            r#"{"jsonrpc":"2.0","id":1,"method":"#,
            PARSE_ERROR,
        ),
        ("not JSON at all", "hello there", PARSE_ERROR),
        (
            "garbage after an object",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"} x"#,
            PARSE_ERROR,
        ),
        (
            "a batch",
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            INVALID_REQUEST,
        ),
        ("an empty batch", "[]", INVALID_REQUEST),
        (
            "no jsonrpc member",
            r#"{"id":1,"method":"ping"}"#,
            INVALID_REQUEST,
        ),
        (
            "jsonrpc 1.0",
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            INVALID_REQUEST,
        ),
        (
            "an object id",
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#,
            INVALID_REQUEST,
        ),
        (
            "an array id",
            r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
            INVALID_REQUEST,
        ),
        (
            "neither request nor response",
            r#"{"jsonrpc":"2.0","id":1}"#,
            INVALID_REQUEST,
        ),
        ("a JSON string", r#""ping""#, INVALID_REQUEST),
        ("a JSON number", "42", INVALID_REQUEST),
        (
            "params that are a string",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#,
            INVALID_REQUEST,
        ),
        ("an empty body", "", PARSE_ERROR),
        ("a blank body", " \r\n\t", PARSE_ERROR),
    ];
    for (what, body, code) in cases {
        let a = send(ep.post(*body), what).await;
        a.assert_error(400, *code, what);
        ep.still_serves(what).await;
    }
    // The same checks apply on an established session.
    let session = ep.initialize().await;
    let a = send(
        ep.post("{nope").header("mcp-session-id", &session),
        "malformed JSON on a session",
    )
    .await;
    a.assert_error(400, PARSE_ERROR, "malformed JSON on a session");
    let pong = ep.call(&session, 5, "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
}

/// Valid JSON whose envelope fields have the wrong type is an invalid request, not a
/// parse error (JSON-RPC 2.0: -32700 is for invalid JSON only).
#[tokio::test]
async fn wrongly_typed_envelope_fields_are_invalid_requests() {
    let (_bridge, ep) = embedded();
    let cases = [
        (
            "a numeric jsonrpc",
            r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#,
        ),
        ("a numeric method", r#"{"jsonrpc":"2.0","id":1,"method":5}"#),
        (
            "an object method",
            r#"{"jsonrpc":"2.0","id":1,"method":{"a":1}}"#,
        ),
    ];
    for (what, body) in cases {
        send(ep.post(body), what)
            .await
            .assert_error(400, INVALID_REQUEST, what);
        ep.still_serves(what).await;
    }
    // A well-formed envelope with a `_meta` of the wrong type: invalid params, answered
    // with the request's id.
    let what = "a numeric _meta";
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":5}}"#;
    send(ep.post(body), what)
        .await
        .assert_jsonrpc_error(&serde_json::json!(1), 400, -32602, what);
    ep.still_serves(what).await;
}

#[tokio::test]
async fn wrong_content_type_gets_415_and_unacceptable_accept_gets_406() {
    let (_bridge, ep) = embedded();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let cases = [
        (
            "Content-Type: text/plain",
            Some("text/plain"),
            ACCEPT_BOTH,
            415,
        ),
        (
            "Content-Type: application/x-www-form-urlencoded",
            Some("application/x-www-form-urlencoded"),
            ACCEPT_BOTH,
            415,
        ),
        (
            "Content-Type: application/jsonx",
            Some("application/jsonx"),
            ACCEPT_BOTH,
            415,
        ),
        ("no Content-Type", None, ACCEPT_BOTH, 415),
        (
            "Accept: text/html",
            Some("application/json"),
            "text/html",
            406,
        ),
        (
            "Accept: image/png, text/plain",
            Some("application/json"),
            "image/png, text/plain",
            406,
        ),
    ];
    for (what, content_type, accept, status) in cases {
        send(ep.post_as(content_type, accept, body), what)
            .await
            .assert_error(status, INVALID_REQUEST, what);
        ep.still_serves(what).await;
    }
    // Media-type parameters and case do not matter.
    for ct in ["application/json; charset=utf-8", "Application/JSON"] {
        let a = send(ep.post_as(Some(ct), ACCEPT_BOTH, body), ct).await;
        assert_eq!(a.status, 200, "{ct}: {}", a.text());
    }
}

// ----- oversized bodies ----------------------------------------------------------------

#[tokio::test]
async fn bodies_over_max_body_get_413() {
    let relay = Relay::start(&["--max-body", "1000"]);
    let bridge = bridge_on(&relay, "small-bodies");
    let ep = Endpoint::of(&bridge);

    let big = padded_request(2000);
    let a = send(ep.post(big.clone()), "2000 bytes with Content-Length").await;
    a.assert_error(413, INVALID_REQUEST, "2000 bytes with Content-Length");
    ep.still_serves("2000 bytes with Content-Length").await;

    let a = send(ep.post(chunked(big.clone())), "2000 bytes chunked").await;
    a.assert_error(413, INVALID_REQUEST, "2000 bytes chunked");
    ep.still_serves("2000 bytes chunked").await;

    // HTTP+SSE messages have the same limit (checked before the session is looked up).
    let url = format!("{}/messages?sessionId=whatever", ep.tunnel());
    let a = send(
        ep.request(Method::POST, &url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(big),
        "2000 bytes on /messages",
    )
    .await;
    a.assert_error(413, INVALID_REQUEST, "2000 bytes on /messages");

    // Just under the limit is fine.
    let fits = padded_request(900);
    assert!(fits.len() <= 1000);
    let a = send(ep.post(fits), "a body under the limit").await;
    assert_eq!(a.status, 200, "a body under the limit: {}", a.text());
    ep.still_serves("a body under the limit").await;
}

#[tokio::test]
async fn embedded_relay_answers_413_to_17_mib() {
    let (_bridge, ep) = embedded();
    let big = padded_request(17 << 20);
    for (what, chunked) in [
        ("17 MiB with Content-Length", false),
        ("17 MiB chunked", true),
    ] {
        let a = raw_post(&ep, big.clone(), chunked, what).await;
        a.assert_error(413, INVALID_REQUEST, what);
        ep.still_serves(what).await;
    }
}

/// The same 413 as seen by an ordinary client (hyper, via reqwest), which only reads the
/// answer once it has sent the body or the connection fails.
#[tokio::test]
async fn embedded_relay_413_reaches_an_ordinary_client() {
    let (_bridge, ep) = embedded();
    let big = padded_request(17 << 20);
    let a = send(ep.post(big.clone()), "17 MiB with Content-Length").await;
    a.assert_error(413, INVALID_REQUEST, "17 MiB with Content-Length");
    ep.still_serves("17 MiB with Content-Length").await;
    let a = send(ep.post(chunked(big)), "17 MiB chunked").await;
    a.assert_error(413, INVALID_REQUEST, "17 MiB chunked");
    ep.still_serves("17 MiB chunked").await;
}
