//! Rule: the child is initialized once; every remote `initialize` is answered from the
//! cache (with the version negotiated per client).

use std::collections::HashSet;

use protocol::jsonrpc::INTERNAL_ERROR;
use serde_json::{Value, json};

use super::super::testing::{Harness, body, initialize, notification, server_info};

#[test]
fn the_child_is_initialized_once_and_every_initialize_is_answered_from_the_cache() {
    let mut h = Harness::ready(|_| {});
    let mut sessions = HashSet::new();
    for exchange in 1..=3 {
        h.post(exchange, None, initialize(Some("2025-06-18")));
        let r = h.one_frame();
        assert_eq!((r.exchange, r.status, r.is_final()), (exchange, 200, true));
        let result = &body(&r)["result"];
        assert_eq!(result["serverInfo"], server_info()["serverInfo"]);
        assert_eq!(result["capabilities"], server_info()["capabilities"]);
        sessions.insert(r.session.expect("each initialize makes a session"));
    }
    assert_eq!(sessions.len(), 3);
    assert!(h.lines(1).is_empty(), "no initialize reached the child");
    assert_eq!(h.children.borrow().spawned, [1]);
}

#[test]
fn the_version_is_the_clients_when_the_bridge_serves_it_else_the_childs() {
    let mut h = Harness::ready(|_| {});
    let cases = [
        (Some("2025-03-26"), "2025-03-26"),
        (Some("2024-11-05"), "2024-11-05"),
        (Some("2025-11-25"), "2025-11-25"),
        (Some("2099-01-01"), "2025-06-18"),
        (None, "2025-06-18"),
    ];
    for (n, (asked, answered)) in cases.into_iter().enumerate() {
        h.post(n as u64 + 1, None, initialize(asked));
        let r = h.one_frame();
        assert_eq!(body(&r)["result"]["protocolVersion"], answered, "{asked:?}");
    }
}

#[test]
fn an_initialize_waits_for_its_child_to_start() {
    let mut h = Harness::new(|_| {});
    h.post(1, None, initialize(Some("2025-06-18")));
    assert!(h.outbox().is_empty(), "nothing to answer from yet");
    assert_eq!(h.children.borrow().spawned, [1], "started on demand");
    let init = h.take_request(1, "initialize");
    h.child_answers(1, &init, server_info());
    let r = h.frame_on(1);
    assert_eq!(r.status, 200);
    assert!(r.session.is_some());
    let initialized: Vec<Value> = h
        .lines(1)
        .into_iter()
        .filter(|l| l["method"] == "notifications/initialized")
        .collect();
    assert_eq!(
        initialized.len(),
        1,
        "the child's handshake is completed once"
    );
}

#[test]
fn a_child_that_refuses_initialize_fails_the_initializes_waiting_for_it() {
    let mut h = Harness::new(|_| {});
    h.core.start_default_child().expect("starts");
    h.post(1, None, initialize(None));
    let init = h.take_request(1, "initialize");
    h.child_says(
        1,
        json!({ "jsonrpc": "2.0", "id": init["id"], "error": { "code": -32603, "message": "no config" } }),
    );
    let r = h.one_frame();
    let error = &body(&r)["error"];
    assert_eq!(error["code"], INTERNAL_ERROR);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("no config")),
        "{error}"
    );
    assert_eq!(h.core.default_child_state(), Some(Err("no config".into())));
}

#[test]
fn client_notifications_are_forwarded_only_when_defined_for_clients() {
    let mut h = Harness::ready(|_| {});
    let sid = h.session(1);
    let cases = [
        ("notifications/initialized", false),
        ("notifications/roots/list_changed", false),
        ("notifications/progress", true),
        ("tools/call", false),
        ("notifications/message", false),
    ];
    for (n, (method, forwarded)) in cases.into_iter().enumerate() {
        h.post(10 + n as u64, Some(&sid), notification(method, json!({})));
        assert_eq!(h.one_frame().status, 202, "{method}");
        assert_eq!(h.lines(1).len(), usize::from(forwarded), "{method}");
    }
}

/// Rule (the owner's dashboard): each client's sessions are listed with what the client
/// called itself in `initialize`.
#[test]
fn the_owner_sees_each_clients_sessions_and_name() {
    let mut h = super::super::testing::Harness::ready(|_| {});
    h.session_for("alice", 1, serde_json::json!({}));
    h.session_for("alice", 2, serde_json::json!({}));
    h.session_for("bob", 3, serde_json::json!({}));
    let v = h.core.owner_view();
    let alice = v
        .clients
        .iter()
        .find(|c| c.principal == "alice")
        .expect("alice");
    assert_eq!(alice.sessions, 2);
    assert_eq!(alice.names, ["test 1"]);
    assert_eq!(alice.versions, ["2025-06-18"]);
    assert_eq!(v.clients.len(), 2);
    assert!(!v.paused);
}
