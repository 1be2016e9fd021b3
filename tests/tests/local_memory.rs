//! The in-process relay remembers a server's URL and client token: `bridge run -- <server>`
//! started again on the same listen address prints the same URL and token, a client
//! configured during the first run still works, and `--new-token` makes (and remembers) a
//! new token while the old one is refused.

use std::path::Path;
use std::time::Duration;

use e2e::{Bridge, BridgeOpts, unused_port};
use serde_json::{Value, json};

/// `bridge run --listen <listen> [extra] -- mcp-fixture` with `home` as the home and
/// configuration directory, so the real user's files are never touched.
fn start(home: &Path, listen: &str, extra: &[&str]) -> Bridge {
    Bridge::start(BridgeOpts {
        listen: Some(listen.to_owned()),
        args: extra.iter().map(|s| s.to_string()).collect(),
        env: vec![
            ("HOME".into(), home.display().to_string()),
            (
                "XDG_CONFIG_HOME".into(),
                home.join("config").display().to_string(),
            ),
        ],
        ..Default::default()
    })
}

/// Stops a bridge and waits for it to exit (which frees its port).
fn stop(bridge: &mut Bridge) {
    bridge.proc.terminate();
    assert_eq!(
        bridge.proc.wait_exit(Duration::from_secs(30)),
        Some(0),
        "bridge exit; stderr:\n{}",
        bridge.proc.log_text()
    );
}

/// POSTs `initialize` with `bearer`; the status.
async fn initialize(url: &str, bearer: Option<&str>) -> u16 {
    e2e::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut rb = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
                "protocolVersion":"2025-06-18","capabilities":{},
                "clientInfo":{"name":"local-memory-test","version":"1"}}})
            .to_string(),
        );
    if let Some(b) = bearer {
        rb = rb.bearer_auth(b);
    }
    let resp = rb.send().await.expect("POST initialize");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    if status == 200 {
        let answer = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|d| d.contains("\"id\""))
            .unwrap_or(&text);
        let v: Value = serde_json::from_str(answer).expect("a JSON-RPC answer");
        assert!(v["result"]["protocolVersion"].is_string(), "{v}");
    }
    status
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_restarted_bridge_keeps_its_url_and_token_until_told_to_renew_it() {
    let home = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", unused_port());
    let stored = home.path().join("config/mcp-tunnel/local.toml");

    // The first run picks a name and a token, and remembers both (privately, never logged).
    let mut first = start(home.path(), &listen, &[]);
    let url = first.mcp_url.clone();
    let token = first.bearer.clone().expect("a bearer token");
    assert!(url.starts_with(&format!("http://{listen}/")), "{url}");
    assert_eq!(initialize(&url, Some(&token)).await, 200);
    let text = std::fs::read_to_string(&stored).expect("local.toml written");
    let name = url.rsplit('/').nth(1).unwrap();
    assert!(text.contains(name) && text.contains(&token), "{text}");
    #[cfg(unix)]
    assert_eq!(mode(&stored), 0o600);
    stop(&mut first);
    assert!(
        !first.proc.log_text().contains(&token),
        "the token is never logged"
    );

    // Restarted: the same URL and token, and the client configured for the first run works.
    let mut second = start(home.path(), &listen, &[]);
    assert_eq!(second.mcp_url, url);
    assert_eq!(second.bearer.as_deref(), Some(token.as_str()));
    assert_eq!(initialize(&url, Some(&token)).await, 200);
    assert_eq!(initialize(&url, None).await, 401);
    assert!(!second.proc.log_text().contains(&token));
    stop(&mut second);

    // `--new-token`: the same URL, a new token (said so), and the old one is refused.
    let mut third = start(home.path(), &listen, &["--new-token"]);
    assert_eq!(third.mcp_url, url);
    let renewed = third.bearer.clone().expect("a bearer token");
    assert_ne!(renewed, token);
    assert!(
        third
            .proc
            .wait_log("a new client token is remembered", Duration::from_secs(30)),
        "{}",
        third.proc.log_text()
    );
    assert_eq!(
        initialize(&url, Some(&token)).await,
        403,
        "a wrong token is refused"
    );
    assert_eq!(initialize(&url, Some(&renewed)).await, 200);
    assert!(!third.proc.log_text().contains(&renewed));
    stop(&mut third);

    // The new token is the one remembered.
    let fourth = start(home.path(), &listen, &[]);
    assert_eq!(fourth.mcp_url, url);
    assert_eq!(fourth.bearer.as_deref(), Some(renewed.as_str()));
    assert_eq!(initialize(&url, Some(&renewed)).await, 200);
}

#[tokio::test]
async fn a_given_token_is_used_without_replacing_the_remembered_one() {
    let home = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", unused_port());

    let mut first = start(home.path(), &listen, &[]);
    let (url, token) = (first.mcp_url.clone(), first.bearer.clone().unwrap());
    stop(&mut first);

    let given = "a-client-token-given-on-the-command-line";
    let mut second = start(home.path(), &listen, &["--client-token", given]);
    assert_eq!(second.mcp_url, url);
    assert_eq!(second.bearer.as_deref(), Some(given));
    assert_eq!(
        initialize(&url, Some(&token)).await,
        403,
        "a wrong token is refused"
    );
    stop(&mut second);

    let third = start(home.path(), &listen, &[]);
    assert_eq!(third.bearer.as_deref(), Some(token.as_str()));
}
