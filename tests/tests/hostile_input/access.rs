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
    // With another token: 403 (signing in again cannot help), and the message says so.
    const NO_TOKEN: (u16, &str, &str) = (
        401,
        "Bearer realm=\"mcp\"",
        "needs the bearer token that `bridge run` printed",
    );
    const WRONG_TOKEN: (u16, &str, &str) = (403, "", "wrong bearer token");
    let sse = format!("{}/sse", ep.tunnel());
    let messages = format!("{}/messages?sessionId=whatever", ep.tunnel());
    let get_sse = |who: &Endpoint| {
        who.request(Method::GET, &sse)
            .header(header::ACCEPT, "text/event-stream")
    };
    let delete = |who: &Endpoint| {
        who.request(Method::DELETE, &ep.mcp)
            .header("mcp-session-id", "whatever")
    };
    let with_auth = |value: String| anonymous.post(body).header(header::AUTHORIZATION, value);
    let cases: Vec<(&str, RequestBuilder, (u16, &str, &str))> = vec![
        ("no token", anonymous.post(body), NO_TOKEN),
        (
            "Basic instead of Bearer",
            with_auth(format!("Basic {token}")),
            NO_TOKEN,
        ),
        ("a bare token", with_auth(token.clone()), NO_TOKEN),
        ("GET /sse without a token", get_sse(&anonymous), NO_TOKEN),
        ("DELETE without a token", delete(&anonymous), NO_TOKEN),
        ("a wrong token", wrong.post(body), WRONG_TOKEN),
        (
            "the token with a suffix",
            Endpoint::new(&ep.mcp, Some(&format!("{token}x"))).post(body),
            WRONG_TOKEN,
        ),
        ("GET /sse with a wrong token", get_sse(&wrong), WRONG_TOKEN),
        (
            "POST /messages with a wrong token",
            wrong
                .request(Method::POST, &messages)
                .header(header::CONTENT_TYPE, "application/json")
                .body(body),
            WRONG_TOKEN,
        ),
        ("DELETE with a wrong token", delete(&wrong), WRONG_TOKEN),
    ];
    for (what, rb, (status, challenge, says)) in cases {
        let a = send(rb, what).await;
        a.assert_error(status, INVALID_REQUEST, what);
        assert_eq!(a.header("www-authenticate"), challenge, "{what}");
        assert!(a.text().contains(says), "{what}: {}", a.text());
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
