//! Two relay nodes on one PostgreSQL database (the same public URL, as behind a load
//! balancer): the node without a tunnel's bridge answers its OAuth metadata and
//! authorization (from the presence the other recorded); a token revoked through one stops
//! working on the other at once, though the other had just checked it; a browser signed in
//! on one node's status page is signed in on the other's; and a bridge token revoked by a
//! command disconnects the bridge on whichever node holds it.

use std::time::Duration;

use e2e::http::BlockingHttp;
use e2e::postgres::Postgres;
use e2e::{BridgeOpts, Relay, unused_port};

#[test]
fn a_second_node_knows_the_tunnel_and_hears_revocations() {
    let url = Postgres::shared().new_database();
    let token = crate::create_token(&url, "alice");
    let public = format!("http://127.0.0.1:{}", unused_port());
    let node = |listen: &str, id: &str| {
        Relay::start_with_token(
            listen,
            &token,
            &[
                "--database-url",
                &url,
                "--public-url",
                &public,
                "--node-id",
                id,
            ],
            &[],
        )
    };
    let a = node(public.trim_start_matches("http://"), "node-a");
    let b_addr = format!("127.0.0.1:{}", unused_port());
    let b = node(&b_addr, "node-b");
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
    // The consent page, not a redirect back with invalid_target.
    crate::authorize(&http, &a.base, &resource);

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

    // Signed in on A's status page, the browser is signed in on B's too.
    let form = http.get(&format!("{}/status", a.base), &[]);
    let login_cookie = form
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap_or("")
        .to_owned();
    let csrf = e2e::status_page::csrf_of(&String::from_utf8_lossy(&form.body));
    let signed = http.post_form(
        &format!("{}/status", a.base),
        &[("op", "login"), ("csrf", &csrf), ("secret", &token)],
        &[("cookie", &login_cookie)],
    );
    assert_eq!(
        signed.status,
        303,
        "{}",
        String::from_utf8_lossy(&signed.body)
    );
    let session = signed
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("relay_status="))
        .and_then(|v| v.split(';').next())
        .expect("the session cookie")
        .to_owned();
    let on_b = http.get(&format!("{b_url}/status"), &[("cookie", &session)]);
    let page = String::from_utf8_lossy(&on_b.body);
    assert_eq!(on_b.status, 200, "{page}");
    assert!(
        !page.contains("id=login") && page.contains("shared"),
        "B knows the session and shows its tunnel: {page}"
    );
    // A's page says where the tunnel's bridge is.
    let on_a = http.get(&format!("{}/status", a.base), &[("cookie", &session)]);
    let page = String::from_utf8_lossy(&on_a.body);
    assert!(
        page.contains("connected to node node-b since"),
        "A shows the tunnel held by B: {page}"
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

#[test]
fn an_authorization_split_across_nodes() {
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
    let _b = node(&b_addr);
    let b_url = format!("http://{b_addr}");
    let mut bridge = BridgeOpts {
        piped_stdin: true,
        ..BridgeOpts::default()
    }
    .via_url(&b_url, &token)
    .name("split")
    .args(&["--auth", "oauth"])
    .start();
    let resource = format!("{public}/split/mcp");
    crate::mint_grant(&url, &token, "split", &resource, &[]);
    let http = BlockingHttp::new();
    e2e::wait::eventually(Duration::from_secs(10), || {
        let r = http.get(
            &format!("{}/.well-known/oauth-protected-resource/split/mcp", a.base),
            &[],
        );
        (r.status == 200).then_some(())
    })
    .expect("node A knowing the tunnel held on B");

    // The authorization starts on A; the consent page shows a code.
    let started = crate::authorize(&http, &a.base, &resource);

    // The bridge on B is asked, and its owner types the code there.
    bridge.proc.expect_log(
        "Access request for this tunnel",
        Duration::from_secs(10),
        "the bridge on B prompted for a consent made on A",
    );
    bridge.proc.write_line(&started.code);

    // The browser's next refresh, on B, finishes it: back to the client with a code,
    // which is exchanged on A; the token works on B.
    let auth_code = started.finished_at(&http, &b_url);
    let access = crate::exchange(&http, &a.base, &auth_code);
    assert_eq!(
        crate::initialize(&http, &format!("{b_url}/split/mcp"), &access),
        200
    );

    // Another authorization started on B, approved with `bridge approve` against A, and
    // finished on B.
    let started = crate::authorize(&http, &b_url, &resource);
    e2e::relay::approve(&a.base, &token, &started.code, "split");
    let auth_code = started.finished_at(&http, &b_url);
    assert!(!auth_code.is_empty(), "approved on A, finished on B");
}
