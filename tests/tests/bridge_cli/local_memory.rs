//! The in-process relay remembers a server's URL and client token: `bridge run -- <server>`
//! started again on the same listen address prints the same URL and token, a client
//! configured during the first run still works, and `--new-token` makes (and remembers) a
//! new token while the old one is refused.

use std::path::Path;
use std::time::Duration;

use e2e::mcp::{McpClient, initialize as initialize_request, no_headers};
use e2e::{Bridge, BridgeOpts, unused_port};
use serde_json::json;

use crate::mode;

/// `bridge run --listen <listen> [extra] -- mcp-fixture` with `home` as the home and
/// configuration directory, so the real user's files are never touched.
fn start(home: &Path, listen: &str, extra: &[&str]) -> Bridge {
    Bridge::start(BridgeOpts {
        listen: Some(listen.to_owned()),
        ..BridgeOpts::default().args(extra).env(&[
            ("HOME", &home.display().to_string()),
            (
                "XDG_CONFIG_HOME",
                &home.join("config").display().to_string(),
            ),
        ])
    })
}

/// POSTs `initialize` with `bearer`; the status (and, when 200, checks the answer).
async fn initialize(url: &str, bearer: Option<&str>) -> u16 {
    let r = McpClient::new(url, bearer)
        .post(
            &initialize_request(json!(1), "2025-06-18", json!({}), "local-memory-test"),
            &no_headers(),
            "initialize",
        )
        .await;
    if r.status == 200 {
        let v = r.answer();
        assert!(v["result"]["protocolVersion"].is_string(), "{v}");
    }
    r.status
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
    assert_eq!(mode(&stored), 0o600);
    first.stop();
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
    second.stop();

    // `--new-token`: the same URL, a new token (said so), and the old one is refused.
    let mut third = start(home.path(), &listen, &["--new-token"]);
    assert_eq!(third.mcp_url, url);
    let renewed = third.bearer.clone().expect("a bearer token");
    assert_ne!(renewed, token);
    let remembered = "a new client token is remembered";
    third
        .proc
        .expect_log(remembered, Duration::from_secs(30), "the third run");
    assert_eq!(
        initialize(&url, Some(&token)).await,
        403,
        "a wrong token is refused"
    );
    assert_eq!(initialize(&url, Some(&renewed)).await, 200);
    assert!(!third.proc.log_text().contains(&renewed));
    third.stop();

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
    first.stop();

    let given = "a-client-token-given-on-the-command-line";
    let mut second = start(home.path(), &listen, &["--client-token", given]);
    assert_eq!(second.mcp_url, url);
    assert_eq!(second.bearer.as_deref(), Some(given));
    assert_eq!(
        initialize(&url, Some(&token)).await,
        403,
        "a wrong token is refused"
    );
    second.stop();

    let third = start(home.path(), &listen, &[]);
    assert_eq!(third.bearer.as_deref(), Some(token.as_str()));
}
