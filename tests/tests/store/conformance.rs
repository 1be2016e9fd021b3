//! Every store operation, the same on both backends.

use relay::store::trace::TraceEvent;
use relay::store::{Beat, Client, CodeGrant, Grant, Issue, RefreshError, Store, StoreError, now};

use crate::{Backend, Fresh, on_both_backends};

on_both_backends!(
    tokens_and_names,
    revoking_a_bridge_token_revokes_its_grants,
    codes_are_single_use_and_reuse_revokes,
    a_reuse_burns_tokens_issued_after_it,
    refresh_rotation,
    clients,
    authorized_clients_and_revocation,
    trace_keeps_the_newest,
    state_survives_reopening,
    presence,
    heartbeats_and_sign_in_failures,
    tokens_issued_with_the_redemption_and_the_rotation,
);

fn grant(owner: i64) -> Grant {
    Grant {
        client_id: "c".into(),
        tunnel: "t1".into(),
        resource: "https://relay.test/t1/mcp".into(),
        owner_token: owner,
        scope: "mcp".into(),
    }
}

fn code(owner: i64) -> CodeGrant {
    CodeGrant {
        grant: grant(owner),
        redirect_uri: "https://x/cb".into(),
        challenge: "ch".into(),
        expires: now() + 60,
    }
}

async fn tokens_and_names(b: Backend) {
    let db = Fresh::new(b);
    let s = db.open().await;
    let a = s.create_token("alice").await.unwrap();
    let bob = s.create_token("bob").await.unwrap();
    assert!(matches!(
        s.create_token("alice").await,
        Err(StoreError::DuplicateLabel(_))
    ));
    let ida = s.token_id(&a).await.unwrap().unwrap();
    let idb = s.token_id(&bob).await.unwrap().unwrap();
    assert_ne!(ida, idb);
    assert!(s.token_live(ida).await.unwrap());
    assert!(s.claim_name("files", ida).await.unwrap());
    assert!(
        s.claim_name("files", ida).await.unwrap(),
        "claiming again is fine"
    );
    assert!(!s.claim_name("files", idb).await.unwrap());
    assert_eq!(s.name_count().await.unwrap(), 1);
    s.revoke_token("alice").await.unwrap();
    assert_eq!(s.token_id(&a).await.unwrap(), None);
    assert!(!s.token_live(ida).await.unwrap());
    assert!(
        !s.claim_name("files", idb).await.unwrap(),
        "a revoked token's name stays reserved until released"
    );
    assert!(s.release_name("files").await.unwrap());
    assert!(!s.release_name("files").await.unwrap());
    assert!(s.claim_name("files", idb).await.unwrap());
    let list = s.list_tokens().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].label, "alice");
    assert!(list[0].revoked.is_some());
    assert_eq!(list[1].names, vec!["files".to_string()]);
    assert_eq!(
        s.add_token("env", &bob).await.unwrap(),
        idb,
        "adding a known token is a no-op"
    );
    assert!(matches!(
        s.add_token("bob", "another-secret-of-enough-length").await,
        Err(StoreError::DuplicateLabel(_))
    ));
    assert!(matches!(
        s.revoke_token("nobody").await,
        Err(StoreError::NoSuchToken(_))
    ));
}

async fn revoking_a_bridge_token_revokes_its_grants(b: Backend) {
    let db = Fresh::new(b);
    let s = db.open().await;
    let t = s.create_token("alice").await.unwrap();
    let id = s.token_id(&t).await.unwrap().unwrap();
    assert!(s.claim_name("t1", id).await.unwrap());
    s.put_token("access", "at", &grant(id), now() + 60, "f")
        .await
        .unwrap();
    s.put_token("refresh", "rt", &grant(id), now() + 60, "f")
        .await
        .unwrap();
    s.put_code("code", &code(id)).await.unwrap();
    assert_eq!(s.live_owner("t1").await.unwrap(), Some(id));
    s.revoke_token("alice").await.unwrap();
    assert_eq!(s.name_owner("t1").await.unwrap(), Some(id));
    assert_eq!(s.live_owner("t1").await.unwrap(), None);
    assert!(s.access_token("at").await.unwrap().is_none());
    assert!(s.use_refresh("rt").await.unwrap().is_err());
    assert!(s.take_code("code").await.unwrap().is_none());
}

async fn codes_are_single_use_and_reuse_revokes(b: Backend) {
    let db = Fresh::new(b);
    let s = db.open().await;
    let c = code(1);
    s.put_code("code1", &c).await.unwrap();
    assert_eq!(
        s.peek_code("code1").await.unwrap(),
        Some((c.clone(), false))
    );
    let (got, family) = s.take_code("code1").await.unwrap().unwrap();
    assert_eq!(got, c);
    assert_eq!(s.peek_code("code1").await.unwrap(), Some((c.clone(), true)));
    s.put_token("access", "at1", &got.grant, now() + 60, &family)
        .await
        .unwrap();
    let live = s.access_token("at1").await.unwrap().unwrap();
    assert_eq!(
        (live.grant, live.family.as_str()),
        (c.grant.clone(), family.as_str())
    );
    assert!(s.take_code("code1").await.unwrap().is_none());
    assert!(
        s.access_token("at1").await.unwrap().is_none(),
        "a reused code revokes what its first use issued"
    );
    let state = s.token_state("at1").await.unwrap().unwrap();
    assert!(state.revoked);
    assert_eq!(state.kind, "access");
    assert!(s.take_code("nope").await.unwrap().is_none());
    // An expired code is used up without a grant.
    let old = CodeGrant {
        expires: now() - 1,
        ..code(1)
    };
    s.put_code("old", &old).await.unwrap();
    assert!(s.take_code("old").await.unwrap().is_none());
}

async fn a_reuse_burns_tokens_issued_after_it(b: Backend) {
    let db = Fresh::new(b);
    let s = db.open().await;
    s.put_code("code", &code(1)).await.unwrap();
    let (c, family) = s.take_code("code").await.unwrap().unwrap();
    // The reuse comes before the winner stored its tokens.
    assert!(s.take_code("code").await.unwrap().is_none());
    s.put_token("access", "late", &c.grant, now() + 60, &family)
        .await
        .unwrap();
    assert!(
        s.access_token("late").await.unwrap().is_none(),
        "tokens of a burned family are born revoked"
    );
}

async fn refresh_rotation(b: Backend) {
    let db = Fresh::new(b);
    let s = db.open().await;
    s.put_token("refresh", "rt1", &grant(1), now() + 60, "f1")
        .await
        .unwrap();
    s.put_token("access", "at1", &grant(1), now() + 60, "f1")
        .await
        .unwrap();
    assert_eq!(s.peek_refresh("rt1").await.unwrap(), Some(grant(1)));
    assert_eq!(s.token_client("rt1").await.unwrap().as_deref(), Some("c"));
    let (g, fam) = s.use_refresh("rt1").await.unwrap().unwrap();
    assert_eq!((g.clone(), fam.as_str()), (grant(1), "f1"));
    s.put_token("refresh", "rt2", &g, now() + 60, &fam)
        .await
        .unwrap();
    assert_eq!(
        s.use_refresh("rt1").await.unwrap(),
        Err(RefreshError::Reused)
    );
    assert_eq!(
        s.use_refresh("rt2").await.unwrap(),
        Err(RefreshError::Reused),
        "the reuse revoked the whole family"
    );
    assert!(s.access_token("at1").await.unwrap().is_none());
    assert_eq!(
        s.use_refresh("zz").await.unwrap(),
        Err(RefreshError::Invalid)
    );
    s.put_token("refresh", "expired", &grant(1), now() - 1, "f2")
        .await
        .unwrap();
    assert_eq!(
        s.use_refresh("expired").await.unwrap(),
        Err(RefreshError::Invalid)
    );
    s.put_token("access", "at9", &grant(1), now() - 1, "f9")
        .await
        .unwrap();
    assert!(s.access_token("at9").await.unwrap().is_none(), "expired");
    // RFC 7009: revoking a refresh token takes its family; an access token goes alone.
    s.put_token("refresh", "rt3", &grant(1), now() + 60, "f3")
        .await
        .unwrap();
    s.put_token("access", "at3", &grant(1), now() + 60, "f3")
        .await
        .unwrap();
    s.put_token("access", "at4", &grant(1), now() + 60, "f4")
        .await
        .unwrap();
    s.put_token("refresh", "rt4", &grant(1), now() + 60, "f4")
        .await
        .unwrap();
    s.revoke("rt3").await.unwrap();
    assert!(s.access_token("at3").await.unwrap().is_none());
    s.revoke("at4").await.unwrap();
    assert!(s.access_token("at4").await.unwrap().is_none());
    assert!(s.use_refresh("rt4").await.unwrap().is_ok());
    s.revoke("unknown").await.unwrap();
    s.sweep().await.unwrap();
}

async fn clients(b: Backend) {
    let db = Fresh::new(b);
    let s = db.open().await;
    let mut c = Client {
        client_id: "mcpcl_1".into(),
        kind: "dcr".into(),
        name: Some("ChatGPT".into()),
        redirect_uris: vec!["https://chatgpt.com/cb".into()],
        auth_method: "client_secret_post".into(),
        secret_hash: Some([7; 32]),
        metadata: "{}".into(),
        created: 5,
    };
    s.put_client(&c).await.unwrap();
    assert_eq!(s.client("mcpcl_1").await.unwrap(), Some(c.clone()));
    c.name = None;
    c.secret_hash = None;
    s.put_client(&c).await.unwrap();
    assert_eq!(
        s.client("mcpcl_1").await.unwrap(),
        Some(c.clone()),
        "replaced"
    );
    s.put_client(&Client {
        client_id: "https://claude.ai/oauth/client.json".into(),
        kind: "cimd".into(),
        ..c.clone()
    })
    .await
    .unwrap();
    assert_eq!(s.dcr_client_count().await.unwrap(), 1);
    assert_eq!(s.client("nobody").await.unwrap(), None);
}

async fn authorized_clients_and_revocation(b: Backend) {
    let db = Fresh::new(b);
    let s = db.open().await;
    let t = s.create_token("alice").await.unwrap();
    let id = s.token_id(&t).await.unwrap().unwrap();
    assert!(s.claim_name("t1", id).await.unwrap());
    for (client, at) in [("c", 100), ("d", 200)] {
        let g = Grant {
            client_id: client.into(),
            ..grant(id)
        };
        s.put_token("access", &format!("at-{client}"), &g, now() + 60, client)
            .await
            .unwrap();
        s.client_used("t1", client, at).await.unwrap();
    }
    s.client_used("t1", "c", 50).await.unwrap();
    let list = s.authorized_clients("t1").await.unwrap();
    let ids: Vec<&str> = list.iter().map(|c| c.client_id.as_str()).collect();
    assert_eq!(ids, ["d", "c"], "most recently used first");
    assert_eq!(
        (list[1].first_used, list[1].last_used),
        (Some(100), Some(100)),
        "an older use does not move last_used back"
    );
    s.put_code(
        "code-c",
        &CodeGrant {
            grant: Grant {
                client_id: "c".into(),
                ..grant(id)
            },
            ..code(id)
        },
    )
    .await
    .unwrap();
    assert_eq!(s.revoke_client("t1", "c").await.unwrap(), 1);
    assert!(s.access_token("at-c").await.unwrap().is_none());
    assert!(
        s.take_code("code-c").await.unwrap().is_none(),
        "its codes burned"
    );
    assert!(s.access_token("at-d").await.unwrap().is_some());
    let ids: Vec<String> = s
        .authorized_clients("t1")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    assert_eq!(ids, ["d"]);
}

fn event(tunnel: Option<&str>, reason: &str, unverified: bool) -> TraceEvent {
    TraceEvent {
        time_ms: 1_000,
        tunnel: tunnel.map(str::to_owned),
        step: "token".into(),
        outcome: "ok".into(),
        reason: reason.into(),
        client_id: Some("mcpcl_1".into()),
        ip: Some("203.0.113.9".into()),
        unverified,
        ..TraceEvent::default()
    }
}

async fn trace_keeps_the_newest(b: Backend) {
    let db = Fresh::new(b);
    let s = db.open().await;
    let mut last = 0;
    for i in 0..8 {
        let id = s
            .trace_add(&event(Some("t1"), &format!("real{i}"), false), 5)
            .await
            .unwrap();
        assert!(id > last, "ids grow");
        last = id;
    }
    for i in 0..8 {
        s.trace_add(&event(Some("t1"), &format!("flood{i}"), true), 3)
            .await
            .unwrap();
    }
    s.trace_add(&event(None, "relay-wide", false), 5)
        .await
        .unwrap();
    s.trace_add(&event(Some("t2"), "other", false), 5)
        .await
        .unwrap();
    let mine = s.trace_for_tunnel("t1", 100, 60_000).await.unwrap();
    let reasons: Vec<&str> = mine.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "relay-wide",
            "flood7",
            "flood6",
            "flood5",
            "real7",
            "real6",
            "real5",
            "real4",
            "real3"
        ],
        "the newest of each kind, with the relay-wide events of its client, newest first"
    );
    assert!(mine[1].unverified);
    assert_eq!(mine[0].tunnel, None);
    assert_eq!(s.trace_all(100, true).await.unwrap().len(), 1);
    assert_eq!(s.trace_all(3, false).await.unwrap().len(), 3);
    assert_eq!(s.trace_all(100, false).await.unwrap()[0].reason, "other");
    // Releasing the name forgets its trace.
    let t = s.create_token("x").await.unwrap();
    let id = s.token_id(&t).await.unwrap().unwrap();
    assert!(s.claim_name("t1", id).await.unwrap());
    assert!(s.release_name("t1").await.unwrap());
    let after: Vec<String> = s
        .trace_for_tunnel("t1", 100, 60_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert!(after.is_empty(), "{after:?}");
}

async fn state_survives_reopening(b: Backend) {
    let db = Fresh::new(b);
    let secret = {
        let s = db.open().await;
        s.put_token("access", "at", &grant(1), now() + 60, "f")
            .await
            .unwrap();
        s.create_token("t").await.unwrap()
    };
    let s: Store = db.open().await;
    assert!(s.token_id(&secret).await.unwrap().is_some());
    assert!(s.access_token("at").await.unwrap().is_some());
}

async fn presence(b: Backend) {
    let db = Fresh::new(b);
    let s = db.open().await;
    assert_eq!(s.presence("t1").await.unwrap(), None);
    s.set_presence("t1", "node-a", 7, "oauth", "0.9.0")
        .await
        .unwrap();
    let p = s.presence("t1").await.unwrap().unwrap();
    assert_eq!(
        (p.node.as_str(), p.auth.as_str(), p.bridge_version.as_str()),
        ("node-a", "oauth", "0.9.0")
    );
    assert_eq!(p.disconnected_at, None);
    // The bridge moved to node B; node A's late news of its old connection changes nothing.
    s.set_presence("t1", "node-b", 7, "bearer", "0.9.1")
        .await
        .unwrap();
    s.clear_presence("t1", "node-a", 7).await.unwrap();
    let p = s.presence("t1").await.unwrap().unwrap();
    assert_eq!((p.node.as_str(), p.disconnected_at), ("node-b", None));
    s.clear_presence("t1", "node-b", 7).await.unwrap();
    assert!(
        s.presence("t1")
            .await
            .unwrap()
            .unwrap()
            .disconnected_at
            .is_some()
    );
    // Releasing the name forgets it.
    let t = s.create_token("x").await.unwrap();
    let id = s.token_id(&t).await.unwrap().unwrap();
    assert!(s.claim_name("t1", id).await.unwrap());
    assert!(s.release_name("t1").await.unwrap());
    assert_eq!(s.presence("t1").await.unwrap(), None);
}

fn issue(n: u32) -> Issue {
    Issue {
        access: format!("at-{n}"),
        access_expires: now() + 60,
        refresh: format!("rt-{n}"),
        refresh_expires: now() + 600,
    }
}

async fn tokens_issued_with_the_redemption_and_the_rotation(b: Backend) {
    let db = Fresh::new(b);
    let s = db.open().await;
    s.put_code("code", &code(1)).await.unwrap();
    let (c, family) = s.redeem_code("code", &issue(1)).await.unwrap().unwrap();
    assert_eq!(c, code(1));
    let at = s
        .access_token("at-1")
        .await
        .unwrap()
        .expect("issued with it");
    assert_eq!((at.grant, at.family.as_str()), (grant(1), family.as_str()));
    // A second redemption issues nothing and revokes what the first did.
    assert!(s.redeem_code("code", &issue(2)).await.unwrap().is_none());
    assert_eq!(s.token_state("at-2").await.unwrap(), None);
    assert!(s.access_token("at-1").await.unwrap().is_none());
    assert_eq!(
        s.rotate_refresh("rt-1", &issue(3)).await.unwrap(),
        Err(RefreshError::Reused)
    );
    // A rotation issues its tokens; the old refresh token used again revokes them.
    s.put_token("refresh", "rt-9", &grant(1), now() + 600, "f9")
        .await
        .unwrap();
    let (g, fam) = s.rotate_refresh("rt-9", &issue(4)).await.unwrap().unwrap();
    assert_eq!((g, fam.as_str()), (grant(1), "f9"));
    assert!(s.access_token("at-4").await.unwrap().is_some());
    let (g, _) = s.rotate_refresh("rt-4", &issue(5)).await.unwrap().unwrap();
    assert_eq!(g, grant(1));
    assert_eq!(
        s.rotate_refresh("rt-9", &issue(6)).await.unwrap(),
        Err(RefreshError::Reused)
    );
    for gone in ["at-4", "at-5"] {
        assert!(s.access_token(gone).await.unwrap().is_none(), "{gone}");
    }
    assert_eq!(
        s.token_state("at-6").await.unwrap(),
        None,
        "a reuse issues nothing"
    );
    // An expired code issues nothing.
    s.put_code(
        "old",
        &CodeGrant {
            expires: now() - 1,
            ..code(1)
        },
    )
    .await
    .unwrap();
    assert!(s.redeem_code("old", &issue(7)).await.unwrap().is_none());
    assert_eq!(s.token_state("at-7").await.unwrap(), None);
}

async fn heartbeats_and_sign_in_failures(b: Backend) {
    let db = Fresh::new(b);
    let s = db.open().await;
    s.set_presence("t1", "node-a", 7, "oauth", "0.9.0")
        .await
        .unwrap();
    let p = s.presence("t1").await.unwrap().unwrap();
    assert_eq!((p.gauges, p.recent, p.node_seen_ms), (None, None, None));
    let beat = |conn: i64, gauges: &str, recent: Option<&str>| Beat {
        name: "t1".into(),
        conn,
        gauges: gauges.into(),
        recent: recent.map(str::to_owned),
    };
    let started = relay::store::now() * 1000;
    s.heartbeat(
        "node-a",
        started,
        "0.9.0",
        &[beat(7, "[1,0,1,0,0]", Some("[]"))],
    )
    .await
    .unwrap();
    let p = s.presence("t1").await.unwrap().unwrap();
    assert_eq!(p.gauges.as_deref(), Some("[1,0,1,0,0]"));
    assert_eq!(p.recent.as_deref(), Some("[]"));
    let now = protocol::time::now_ms();
    let seen = p.node_seen_ms.expect("the node's heartbeat");
    assert!((now - seen).abs() < 5_000, "{now} {seen}");
    assert!(!p.node_silent(now));
    assert_eq!(p.gone_since(now), None);
    // Silent past the limit: gone since its last heartbeat.
    let later = seen + relay::store::NODE_SILENT_MS + 1;
    assert!(p.node_silent(later));
    assert_eq!(p.gone_since(later), Some(seen / 1000));
    // Unchanged calls are not sent again and stay; a beat of an older connection, or
    // another node's, changes nothing.
    s.heartbeat("node-a", started, "0.9.0", &[beat(7, "[2,1,1,0,1]", None)])
        .await
        .unwrap();
    s.heartbeat(
        "node-a",
        started,
        "0.9.0",
        &[beat(6, "[9,9,9,9,9]", Some("[1]"))],
    )
    .await
    .unwrap();
    s.heartbeat(
        "node-b",
        started,
        "0.9.0",
        &[beat(7, "[8,8,8,8,8]", Some("[2]"))],
    )
    .await
    .unwrap();
    let p = s.presence("t1").await.unwrap().unwrap();
    assert_eq!(
        (p.gauges.as_deref(), p.recent.as_deref()),
        (Some("[2,1,1,0,1]"), Some("[]"))
    );
    // A new connection starts without gauges, its calls kept.
    s.set_presence("t1", "node-a", 8, "oauth", "0.9.0")
        .await
        .unwrap();
    let p = s.presence("t1").await.unwrap().unwrap();
    assert_eq!((p.gauges, p.recent.as_deref()), (None, Some("[]")));

    // Failed sign-ins, counted per kind and address.
    let t0 = 1_000_000;
    for at in [t0, t0 + 10, t0 + 20] {
        s.add_auth_failure("password", "192.0.2.1", at)
            .await
            .unwrap();
    }
    s.add_auth_failure("approve", "192.0.2.1", t0)
        .await
        .unwrap();
    s.add_auth_failure("password", "192.0.2.2", t0)
        .await
        .unwrap();
    assert_eq!(
        s.auth_failures("password", "192.0.2.1", t0).await.unwrap(),
        3
    );
    assert_eq!(
        s.auth_failures("password", "192.0.2.1", t0 + 15)
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.auth_failures("approve", "192.0.2.1", 0).await.unwrap(), 1);
    assert_eq!(
        s.auth_failures("password", "192.0.2.3", 0).await.unwrap(),
        0
    );
}
