//! A server that takes long to start (an `npx` download, a slow runtime): the bridge dials the
//! relay while the server starts, so a client hears that the server is starting, not that no
//! bridge is connected; an `initialize` sent meanwhile waits for the server and is answered;
//! the endpoints are printed once the server answered its own `initialize`.
//!
//! The server here waits for a file to appear before it becomes the fixture, so the test
//! decides when it is ready.

use std::time::{Duration, Instant};

use e2e::{Bridge, BridgeOpts, Relay, bin, http_post};
use serde_json::{Value, json};

/// The 2026-07-28 headers of a `tools/list`.
const STATELESS_HEADERS: [(&str, &str); 2] = [
    ("MCP-Protocol-Version", "2026-07-28"),
    ("Mcp-Method", "tools/list"),
];

#[test]
fn clients_hear_that_the_server_is_starting() {
    let relay = Relay::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go");
    let name = "slowstart";
    let client_token = "slow-start-client-token-0123456789abcdef";
    let url = format!("{}/{name}/mcp", relay.base);
    let auth = format!("Bearer {client_token}");

    let opts = BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        name: Some(name.into()),
        args: vec!["--client-token".into(), client_token.into()],
        command: vec![
            "sh".into(),
            "-c".into(),
            r#"while [ ! -e "$1" ]; do sleep 0.05; done; exec "$2""#.into(),
            "sh".into(),
            go.display().to_string(),
            bin("mcp-fixture").display().to_string(),
        ],
        ..BridgeOpts::default()
    };
    // Bridge::start returns once the endpoints are printed, i.e. once the server is ready.
    let bridge = std::thread::spawn(move || Bridge::start(opts));

    // Until the bridge is connected the relay knows nothing of the tunnel; then, while the
    // server starts, requests are answered by the bridge: "starting", never "no bridge".
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    }}})
    .to_string();
    let mut headers = STATELESS_HEADERS.to_vec();
    headers.push(("Authorization", &auth));
    let deadline = Instant::now() + Duration::from_secs(60);
    let starting = loop {
        let a = http_post(&url, &headers, &list);
        if a.body.contains("starting") {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "never told that the server is starting; last answer {} {}",
            a.status,
            a.body
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(starting.status, 503, "{}", starting.body);
    let answer: Value = serde_json::from_str(&starting.body).expect("a JSON-RPC answer");
    let message = answer["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("the local MCP server is starting"),
        "{message}"
    );
    assert!(!message.contains("no bridge"), "{message}");
    assert!(
        !bridge.is_finished(),
        "the endpoints were printed before the server was ready"
    );

    // An initialize sent now waits for the server and gets its answer.
    let init = json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "slow-start-test", "version": "0"}}})
    .to_string();
    let (init_url, init_auth) = (url.clone(), auth.clone());
    let initialize = std::thread::spawn(move || {
        http_post(&init_url, &[("Authorization", init_auth.as_str())], &init)
    });
    std::fs::write(&go, b"").expect("let the server start");
    let a = initialize.join().expect("initialize");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("mcp-fixture"), "{}", a.body);

    let bridge = bridge.join().expect("the bridge started");
    assert_eq!(bridge.mcp_url, url);
    let a = http_post(&url, &headers, &list);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("test_simple_text"), "{}", a.body);
}
