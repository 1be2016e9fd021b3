//! Two relay nodes on one PostgreSQL database (the same public URL, as behind a load
//! balancer): the node without a tunnel's bridge answers its OAuth metadata and
//! authorization (from the presence the other recorded); a token revoked through one stops
//! working on the other at once, though the other had just checked it; a browser signed in
//! on one node's status page is signed in on the other's, whose page shows the gauges and
//! recent calls of the tunnel the other holds, and stays signed in when the first dies; a
//! bridge token revoked by a command disconnects the bridge on whichever node holds it; a
//! second connection of a tunnel through another node meets the one-node rule; and failed
//! sign-ins count on every node.

use std::time::Duration;

use e2e::http::BlockingHttp;
use e2e::postgres::Postgres;
use e2e::{BridgeOpts, Relay, unused_port};

#[test]
fn a_second_node_knows_the_tunnel_and_hears_revocations() {
    let url = Postgres::shared().new_database();
    let token = crate::create_token(&url, "alice");
    let (a, b_url, b) = two_nodes(&url, &token);
    // Node A listens on the public URL.
    let public = a.base.clone();
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
    // With its gauges and recent calls, from B's heartbeats.
    let page = e2e::wait::eventually(Duration::from_secs(20), || {
        let on_a = http.get(&format!("{}/status", a.base), &[("cookie", &session)]);
        let page = String::from_utf8_lossy(&on_a.body).into_owned();
        (page.contains("class=gauges") && page.contains("<table class=calls>")).then_some(page)
    })
    .expect("A showing B's gauges and recent calls of the tunnel");
    assert!(page.contains("initialize"), "{page}");

    // A dies; the browser's session holds on B.
    e2e::process::signal(a.proc.pid(), libc::SIGKILL);
    let on_b = http.get(&format!("{b_url}/status"), &[("cookie", &session)]);
    let page = String::from_utf8_lossy(&on_b.body);
    assert!(
        on_b.status == 200 && !page.contains("id=login") && page.contains("class=gauges"),
        "{page}"
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
    let b = node(&b_addr);
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

    // An authorization started while the bridge is away (restarting, say) is shown to
    // the bridge when it connects again.
    drop(bridge);
    b.proc.expect_log(
        "bridge disconnected",
        Duration::from_secs(10),
        "the bridge gone from B",
    );
    let started = crate::authorize(&http, &a.base, &resource);
    let mut bridge = BridgeOpts {
        piped_stdin: true,
        ..BridgeOpts::default()
    }
    .via_url(&b_url, &token)
    .name("split")
    .args(&["--auth", "oauth"])
    .start();
    bridge.proc.expect_log(
        "Access request for this tunnel",
        Duration::from_secs(10),
        "the bridge shown the consent made while it was away",
    );
    bridge.proc.write_line(&started.code);
    let auth_code = started.finished_at(&http, &a.base);
    assert!(
        !auth_code.is_empty(),
        "approved in the terminal of the returning bridge"
    );
}

/// Two nodes sharing `url` behind one public URL: (node A, node B's base URL, B).
fn two_nodes(url: &str, token: &str) -> (Relay, String, Relay) {
    let public = format!("http://127.0.0.1:{}", unused_port());
    let node = |listen: &str, id: &str| {
        Relay::start_with_token(
            listen,
            token,
            &[
                "--database-url",
                url,
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
    (a, format!("http://{b_addr}"), b)
}

/// A bridge with a tunnel's token connecting to another node than the one holding the
/// tunnel (a load balancer's hash that changed, or a leaked token) meets the rule it would
/// meet on one node: refused while the holder's connection answers (and the holder's
/// owner warned), taking over from a connection that stays silent (a frozen bridge).
#[test]
fn a_second_connection_through_another_node() {
    let pg = Postgres::shared();
    let url = pg.new_database();
    let token = crate::create_token(&url, "alice");
    let (a, b_url, b) = two_nodes(&url, &token);
    let victim = BridgeOpts::default()
        .via_url(&a.base, &token)
        .name("dup")
        .no_auth()
        .start();
    a.proc.expect_log(
        "bridge connected tunnel=dup",
        Duration::from_secs(10),
        "on A",
    );
    // (A records the presence just after the welcome.)
    e2e::wait::eventually(Duration::from_secs(10), || {
        pg.psql(
            &url,
            "SELECT node FROM tunnel_presence WHERE name = 'dup' AND disconnected_at IS NULL",
        )
        .ok()
        .filter(|out| out.contains("node-a"))
    })
    .expect("the presence on A recorded");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let second = runtime.block_on(e2e::bridge::run_until_exit(
        &b_url,
        &token,
        "dup",
        &["--auth", "none"],
    ));
    e2e::bridge::assert_refused_exit(
        &second,
        &["is served by a live bridge connected to relay node node-a"],
    );
    victim.proc.expect_log(
        "through relay node node-b tried to take",
        Duration::from_secs(10),
        "the live bridge warned of the attempt",
    );
    assert!(!b.proc.log_text().contains("bridge connected tunnel=dup"));

    // Frozen, the holder's bridge stays silent: the newcomer on B takes over, and A closes
    // the old connection.
    e2e::process::signal(victim.proc.pid(), libc::SIGSTOP);
    let newcomer = BridgeOpts::default()
        .via_url(&b_url, &token)
        .name("dup")
        .no_auth()
        .start();
    b.proc.expect_log(
        "bridge connected tunnel=dup",
        Duration::from_secs(20),
        "the newcomer on B",
    );
    a.proc.expect_log(
        "a new connection through another node replaced it",
        Duration::from_secs(10),
        "A closing the silent connection",
    );
    e2e::process::signal(victim.proc.pid(), libc::SIGCONT);
    victim.proc.expect_log(
        "was taken over by a bridge connecting through relay node node-b",
        Duration::from_secs(20),
        "the old bridge told why",
    );
    drop(newcomer);
}

/// A guesser spread over the nodes gets the tries one node would allow: failures on A's
/// status page count on B.
#[test]
fn failed_sign_ins_count_on_every_node() {
    let pg = Postgres::shared();
    let url = pg.new_database();
    let token = crate::create_token(&url, "alice");
    let (a, b_url, _b) = two_nodes(&url, &token);
    let http = BlockingHttp::new();
    let try_sign_in = |base: &str, secret: &str| {
        let form = http.get(&format!("{base}/status"), &[]);
        let cookie = form
            .header("set-cookie")
            .split(';')
            .next()
            .unwrap_or("")
            .to_owned();
        let csrf = e2e::status_page::csrf_of(&String::from_utf8_lossy(&form.body));
        http.post_form(
            &format!("{base}/status"),
            &[("op", "login"), ("csrf", &csrf), ("secret", secret)],
            &[("cookie", &cookie)],
        )
        .status
    };
    for _ in 0..5 {
        assert_eq!(try_sign_in(&a.base, "wrong-guess"), 403);
    }
    e2e::wait::eventually(Duration::from_secs(10), || {
        pg.psql(&url, "SELECT COUNT(*) FROM auth_failures")
            .ok()
            .filter(|out| out.trim() == "5")
    })
    .expect("the failures recorded");
    // B refuses the address, the right secret included, as A does.
    assert_eq!(try_sign_in(&b_url, "wrong-guess"), 429);
    assert_eq!(try_sign_in(&b_url, &token), 429);
    assert_eq!(try_sign_in(&a.base, &token), 429);
}
