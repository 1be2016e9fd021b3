//! Foreign `Host` and `Origin` (DNS rebinding), missing or wrong bearer tokens, unknown
//! and invalid tunnel names.

use protocol::jsonrpc::{INVALID_REQUEST, UNAVAILABLE};
use reqwest::header;
use reqwest::{Method, RequestBuilder};

use crate::endpoint::{Endpoint, embedded};
use e2e::http::send;
use e2e::mcp::ACCEPT_BOTH;

#[tokio::test]
async fn foreign_host_and_origin_get_403() {
    let (_bridge, ep) = embedded();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let cases = [
        ("Host: evil.example.com", header::HOST, "evil.example.com"),
        (
            "Host: evil.example.com:80",
            header::HOST,
            "evil.example.com:80",
        ),
        (
            "Origin: http://evil.example.com",
            header::ORIGIN,
            "http://evil.example.com",
        ),
        ("Origin: null", header::ORIGIN, "null"),
    ];
    for (what, name, value) in cases {
        let a = send(ep.post(body).header(name.clone(), value), what).await;
        a.assert_error(403, INVALID_REQUEST, what);
        let sse = ep
            .request(Method::GET, &format!("{}/sse", ep.tunnel()))
            .header(header::ACCEPT, "text/event-stream")
            .header(name, value);
        send(sse, what)
            .await
            .assert_error(403, INVALID_REQUEST, what);
        ep.still_serves(what).await;
    }
    // A loopback browser origin is allowed on a loopback relay.
    let a = send(
        ep.post(body)
            .header(header::ORIGIN, "http://localhost:3000"),
        "Origin: http://localhost:3000",
    )
    .await;
    assert_eq!(a.status, 200, "loopback origin: {}", a.text());
}

#[tokio::test]
async fn bearer_token_is_required() {
    let (bridge, ep) = embedded();
    let token = bridge.bearer.clone().expect("bearer");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let anonymous = Endpoint::new(&ep.mcp, None);
    let wrong = Endpoint::new(&ep.mcp, Some("not-the-token"));
    // Without a token: 401 and a plain Bearer challenge (no OAuth metadata to look for).
    let missing: Vec<(&str, RequestBuilder)> = vec![
        ("no token", anonymous.post(body)),
        (
            "Basic instead of Bearer",
            anonymous
                .post(body)
                .header(header::AUTHORIZATION, format!("Basic {token}")),
        ),
        (
            "a bare token",
            anonymous
                .post(body)
                .header(header::AUTHORIZATION, token.as_str()),
        ),
        (
            "GET /sse without a token",
            anonymous
                .request(Method::GET, &format!("{}/sse", ep.tunnel()))
                .header(header::ACCEPT, "text/event-stream"),
        ),
        (
            "DELETE without a token",
            anonymous
                .request(Method::DELETE, &ep.mcp)
                .header("mcp-session-id", "whatever"),
        ),
    ];
    for (what, rb) in missing {
        let a = send(rb, what).await;
        a.assert_error(401, INVALID_REQUEST, what);
        assert_eq!(
            a.header("www-authenticate"),
            "Bearer realm=\"mcp\"",
            "{what}"
        );
        assert!(
            a.text()
                .contains("needs the bearer token that `bridge run` printed"),
            "{what}: {}",
            a.text()
        );
        ep.still_serves(what).await;
    }
    // With another token: 403 (signing in again cannot help), and the message says so.
    let wrong_token: Vec<(&str, RequestBuilder)> = vec![
        ("a wrong token", wrong.post(body)),
        (
            "the token with a suffix",
            Endpoint::new(&ep.mcp, Some(&format!("{token}x"))).post(body),
        ),
        (
            "GET /sse with a wrong token",
            wrong
                .request(Method::GET, &format!("{}/sse", ep.tunnel()))
                .header(header::ACCEPT, "text/event-stream"),
        ),
        (
            "POST /messages with a wrong token",
            wrong
                .request(
                    Method::POST,
                    &format!("{}/messages?sessionId=whatever", ep.tunnel()),
                )
                .header(header::CONTENT_TYPE, "application/json")
                .body(body),
        ),
        (
            "DELETE with a wrong token",
            wrong
                .request(Method::DELETE, &ep.mcp)
                .header("mcp-session-id", "whatever"),
        ),
    ];
    for (what, rb) in wrong_token {
        let a = send(rb, what).await;
        a.assert_error(403, INVALID_REQUEST, what);
        assert_eq!(a.header("www-authenticate"), "", "{what}");
        assert!(
            a.text().contains("wrong bearer token"),
            "{what}: {}",
            a.text()
        );
        ep.still_serves(what).await;
    }
    let a = send(ep.post(body), "the right token").await;
    assert_eq!(a.status, 200, "the right token: {}", a.text());
}

#[tokio::test]
async fn unknown_tunnels_get_503_and_invalid_names_404() {
    let (_bridge, ep) = embedded();
    let relay = ep.relay().to_owned();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let post = |path: &str| {
        ep.request(Method::POST, &format!("{relay}{path}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, ACCEPT_BOTH)
            .body(body)
    };
    let cases: Vec<(&str, RequestBuilder, u16, i64)> = vec![
        (
            "POST to an unknown tunnel",
            post("/nobody-here/mcp"),
            503,
            UNAVAILABLE,
        ),
        (
            "GET /sse of an unknown tunnel",
            ep.request(Method::GET, &format!("{relay}/nobody-here/sse")),
            503,
            UNAVAILABLE,
        ),
        (
            "POST /messages of an unknown tunnel",
            post("/nobody-here/messages?sessionId=x"),
            503,
            UNAVAILABLE,
        ),
        ("an upper-case name", post("/A_B/mcp"), 404, INVALID_REQUEST),
        ("a two-letter name", post("/ab/mcp"), 404, INVALID_REQUEST),
        (
            "a name ending in '-'",
            post("/abc-/mcp"),
            404,
            INVALID_REQUEST,
        ),
        (
            "a reserved name",
            post("/healthz/mcp"),
            404,
            INVALID_REQUEST,
        ),
        (
            "an unknown route",
            post("/nobody-here/other"),
            404,
            INVALID_REQUEST,
        ),
    ];
    for (what, rb, status, code) in cases {
        send(rb, what).await.assert_error(status, code, what);
        ep.still_serves(what).await;
    }
}
