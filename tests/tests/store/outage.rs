//! The database goes away under a running node: clients get 503s they retry, never the
//! 401 or `invalid_grant` after which they would sign in again or drop their refresh
//! token, and connected bridges stay connected.

use std::time::Duration;

use relay::store::{Client, Grant, Storage, Store, now};
use serde_json::json;

use e2e::http::BlockingHttp;
use e2e::postgres::Postgres;
use e2e::{BridgeOpts, Relay, bin};

/// `relay token create LABEL --database-url URL`: the token.
fn create_token(url: &str, label: &str) -> String {
    let out = std::process::Command::new(bin("relay"))
        .args(["token", "create", label, "--database-url", url])
        .output()
        .expect("relay token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_database_outage_answers_503_and_keeps_bridges() {
    let pg = Postgres::start().expect("a PostgreSQL server of this test");
    let url = pg.new_database();
    let token = create_token(&url, "alice");
    let node = Relay::start_with_token("127.0.0.1:0", &token, &["--database-url", &url], &[]);
    let _bridge = node.bridge(
        BridgeOpts::default()
            .name("outage")
            .args(&["--auth", "oauth"]),
    );
    let mcp = format!("{}/outage/mcp", node.base);

    // A client's grant, minted straight into the database.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = Store::connect(&Storage::Postgres(url.clone()), None)
            .await
            .expect("store");
        let owner = store.token_id(&token).await.unwrap().expect("alice");
        let grant = Grant {
            client_id: "mcpcl_outage".into(),
            tunnel: "outage".into(),
            resource: mcp.clone(),
            owner_token: owner,
            scope: "mcp".into(),
        };
        store
            .put_client(&Client {
                client_id: "mcpcl_outage".into(),
                kind: "dcr".into(),
                name: None,
                redirect_uris: vec!["http://127.0.0.1:9/cb".into()],
                auth_method: "none".into(),
                secret_hash: None,
                metadata: "{}".into(),
                created: now(),
            })
            .await
            .unwrap();
        for (kind, value) in [
            ("access", "at-before"),
            ("access", "at-during"),
            ("refresh", "rt"),
        ] {
            store
                .put_token(kind, value, &grant, now() + 3600, "fam")
                .await
                .unwrap();
        }
    });
    let http = BlockingHttp::new();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "outage-test", "version": "1"}}});
    let post = |bearer: &str| {
        http.post(
            &mcp,
            "application/json",
            initialize.to_string(),
            &[
                ("accept", "application/json, text/event-stream"),
                ("authorization", &format!("Bearer {bearer}")),
            ],
        )
    };
    assert_eq!(post("at-before").status, 200, "the grant works");

    drop(pg);

    let during = post("at-during");
    assert_eq!(
        during.status, 503,
        "an access token the node cannot check: retry, not sign in again"
    );
    let refresh = http.post_form(
        &format!("{}/oauth/token", node.base),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "rt"),
            ("client_id", "mcpcl_outage"),
        ],
        &[],
    );
    let body = String::from_utf8_lossy(&refresh.body);
    assert_eq!(refresh.status, 503, "{body}");
    assert!(body.contains("temporarily_unavailable"), "{body}");
    // The node keeps its bridge: a failed check of its token is not a revocation.
    assert!(
        !node
            .proc
            .wait_log("its bridge token was revoked", Duration::from_secs(3)),
        "{}",
        node.proc.log_text()
    );
    assert_eq!(http.get(&format!("{}/healthz", node.base), &[]).status, 200);
}
