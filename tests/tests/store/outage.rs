//! The database goes away under a running node: clients get 503s they retry, never the
//! 401 or `invalid_grant` after which they would sign in again or drop their refresh
//! token, and connected bridges stay connected.

use std::time::Duration;

use e2e::http::BlockingHttp;
use e2e::postgres::Postgres;
use e2e::{BridgeOpts, Relay};

#[test]
fn a_database_outage_answers_503_and_keeps_bridges() {
    let pg = Postgres::start().expect("a PostgreSQL server of this test");
    let url = pg.new_database();
    let token = crate::create_token(&url, "alice");
    let node = Relay::start_with_token("127.0.0.1:0", &token, &["--database-url", &url], &[]);
    let _bridge = node.bridge(
        BridgeOpts::default()
            .name("outage")
            .args(&["--auth", "oauth"]),
    );
    let mcp = format!("{}/outage/mcp", node.base);

    // A client's grant, minted straight into the database.
    crate::mint_grant(
        &url,
        &token,
        "outage",
        &mcp,
        &[
            ("access", "at-before"),
            ("access", "at-during"),
            ("refresh", "rt"),
        ],
    );
    let http = BlockingHttp::new();
    assert_eq!(
        crate::initialize(&http, &mcp, "at-before"),
        200,
        "the grant works"
    );

    drop(pg);

    assert_eq!(
        crate::initialize(&http, &mcp, "at-during"),
        503,
        "an access token the node cannot check: retry, not sign in again"
    );
    let refresh = http.post_form(
        &format!("{}/oauth/token", node.base),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "rt"),
            ("client_id", "mcpcl_test"),
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
