//! Two relay nodes on one PostgreSQL database (the same public URL, as behind a load
//! balancer): the node without a tunnel's bridge answers its OAuth metadata and
//! authorization (from the presence the other recorded); a token revoked through one stops
//! working on the other at once, though the other had just checked it; and a bridge token
//! revoked by a command disconnects the bridge on whichever node holds it.

use std::time::Duration;

use e2e::http::BlockingHttp;
use e2e::postgres::Postgres;
use e2e::{BridgeOpts, Relay, unused_port};

#[test]
fn a_second_node_knows_the_tunnel_and_hears_revocations() {
    let url = Postgres::shared().new_database();
    let token = crate::create_token(&url, "alice");
    let public = format!("http://127.0.0.1:{}", unused_port());
    let node = |listen: &str| {
        Relay::start_with_token(
            listen,
            &token,
            &["--database-url", &url, "--public-url", &public],
            &[],
        )
    };
    let a = node(public.trim_start_matches("http://"));
    let b_addr = format!("127.0.0.1:{}", unused_port());
    let b = node(&b_addr);
    let b_url = format!("http://{b_addr}");
    let _bridge = BridgeOpts::default()
        .via_url(&b_url, &token)
        .name("shared")
        .args(&["--auth", "oauth"])
        .start();
    b.proc
        .expect_log("shared", Duration::from_secs(10), "the bridge on node B");

    let resource = format!("{public}/shared/mcp");
    crate::mint_grant(&url, &token, "shared", &resource, &[("access", "at")]);

    // Node A knows the tunnel its bridge holds on B: its OAuth metadata and its
    // authorization endpoint answer for it.
    let http = BlockingHttp::new();
    let on_a = |path: &str| http.get(&format!("{}{path}", a.base), &[]);
    // (B records the presence just after the bridge's welcome.)
    let metadata = e2e::wait::eventually(Duration::from_secs(10), || {
        let answer = on_a("/.well-known/oauth-protected-resource/shared/mcp");
        (answer.status == 200).then_some(answer)
    })
    .expect("node A answering the metadata of a tunnel held on B");
    assert!(String::from_utf8_lossy(&metadata.body).contains("/shared/mcp"));
    let authorize = on_a(&format!(
        "/oauth/authorize?response_type=code&client_id=mcpcl_test&redirect_uri={}\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
         &code_challenge_method=S256&state=s&resource={}",
        "http%3A%2F%2F127.0.0.1%3A9%2Fcb",
        resource.replace(':', "%3A").replace('/', "%2F")
    ));
    let page = String::from_utf8_lossy(&authorize.body);
    assert_eq!(
        authorize.status, 200,
        "the consent page, not a redirect with invalid_target: {page}"
    );

    let on_b = format!("{b_url}/shared/mcp");
    assert_eq!(
        crate::initialize(&http, &on_b, "at"),
        200,
        "checked (and cached) on B"
    );

    // Revoked through node A (RFC 7009).
    let revoked = http.post_form(
        &format!("{}/oauth/revoke", a.base),
        &[("token", "at"), ("client_id", "mcpcl_test")],
        &[],
    );
    assert_eq!(revoked.status, 200);
    b.proc.expect_log(
        "cached token checks cleared",
        Duration::from_secs(10),
        "node B hearing of the revocation",
    );
    assert_eq!(
        crate::initialize(&http, &on_b, "at"),
        401,
        "B forgot its check of the token"
    );

    // A bridge token revoked by a command: B disconnects its bridge on the announcement
    // (its poll, every 30 s with a shared database, would say so without "announced").
    let out = std::process::Command::new(e2e::bin("relay"))
        .args(["token", "revoke", "alice", "--database-url", &url])
        .output()
        .expect("relay token revoke");
    assert!(out.status.success());
    b.proc.expect_log(
        "its bridge token was revoked (announced by the database)",
        Duration::from_secs(10),
        "node B disconnecting the bridge",
    );
}
