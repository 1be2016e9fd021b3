//! Rule: under `isolate` (and always for HTTP servers), sessionless traffic is served by
//! one child per principal, never one shared across principals; a request waits while its
//! principal's child starts; the least recently used principal's child is stopped to make
//! room. With `keep_shared`, the bridge's own child is restarted after it exits and serves
//! no client. A server that cannot be reached answers what waited for it with an error.

use serde_json::{Value, json};

use super::super::testing::{Harness, body, echo, result_for, server_info};
use crate::child::{ChildEvent, ChildId};

/// Answers the bridge's `initialize` on `child`; the other lines written to it since.
fn ready(h: &mut Harness, child: ChildId) -> Vec<Value> {
    let init = h.take_request(child, "initialize");
    h.child_says(child, result_for(&init, server_info()));
    h.lines(child)
}

/// The `tools/call` among `lines`.
fn the_call(lines: &[Value]) -> Value {
    lines
        .iter()
        .find(|l| l["method"] == "tools/call")
        .cloned()
        .unwrap_or_else(|| panic!("no tools/call among {lines:?}"))
}

#[test]
fn two_principals_never_share_a_child_for_sessionless_requests() {
    let mut h = Harness::new(|c| c.isolate = true);
    h.post_as("alice", 1, None, echo(1));
    h.post_as("bob", 2, None, echo(2));
    assert_eq!(h.children.borrow().spawned, [1, 2], "one child each");
    let alices = the_call(&ready(&mut h, 1));
    let bobs = the_call(&ready(&mut h, 2));
    h.child_says(1, result_for(&alices, json!({ "content": [] })));
    h.child_says(2, result_for(&bobs, json!({ "content": [] })));
    let mut answered: Vec<(u64, Value)> = h
        .outbox()
        .iter()
        .map(|r| (r.exchange, body(r)["id"].clone()))
        .collect();
    answered.sort_by_key(|(e, _)| *e);
    assert_eq!(answered, [(1, json!(1)), (2, json!(2))]);
    h.post_as("alice", 3, None, echo(3));
    assert_eq!(
        h.children.borrow().spawned,
        [1, 2],
        "alice's child is reused"
    );
    the_call(&h.lines(1));
}

#[test]
fn a_request_waits_while_its_principals_child_starts() {
    let mut h = Harness::new(|c| c.isolate = true);
    h.post_as("alice", 1, None, echo(7));
    assert!(h.outbox().is_empty(), "no 'starting, retry' error");
    let call = the_call(&ready(&mut h, 1));
    h.child_says(1, result_for(&call, json!({ "content": [] })));
    let r = h.frame_on(1);
    assert_eq!(body(&r)["id"], 7);
    assert!(body(&r)["result"].is_object(), "{r:?}");
}

#[test]
fn the_least_recently_used_principals_child_makes_room() {
    let mut h = Harness::new(|c| {
        c.isolate = true;
        c.max_children = 1;
    });
    h.post_as("alice", 1, None, echo(1));
    let alices = the_call(&ready(&mut h, 1));
    h.post_as("bob", 2, None, echo(2));
    assert_eq!(h.children.borrow().killed, [1], "alice's child stopped");
    let r = h.frame_on(1);
    let err = body(&r)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(err.contains("make room"), "{err}");
    // Her child's late answer reaches nobody.
    h.child_says(1, result_for(&alices, json!({ "content": [] })));
    assert!(h.outbox().is_empty());
}

#[test]
fn the_bridges_own_child_is_restarted_and_serves_no_client() {
    let mut h = Harness::new(|c| {
        c.isolate = true;
        c.keep_shared = true;
    });
    h.core.start_default_child().expect("starts");
    ready(&mut h, 1);
    h.post_as("alice", 1, None, echo(1));
    assert_eq!(h.children.borrow().spawned, [1, 2], "alice gets her own");
    h.child_exits(1);
    h.advance(std::time::Duration::from_secs(1));
    h.tick();
    assert_eq!(h.children.borrow().spawned, [1, 2, 3], "restarted");
}

#[test]
fn an_unreachable_server_answers_what_waited_at_once() {
    let mut h = Harness::new(|c| c.isolate = true);
    h.post_as("alice", 1, None, echo(1));
    h.core.on_child_event(
        ChildEvent::Unreachable(1, "connection refused".into()),
        h.now,
    );
    let r = h.frame_on(1);
    let err = body(&r)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(err.contains("not reachable"), "{err}");
    assert!(
        !err.contains("connection refused"),
        "local details stay local: {err}"
    );
    h.post_as("alice", 2, None, echo(2));
    assert_eq!(
        h.children.borrow().spawned,
        [1, 2],
        "tried again for the next request"
    );
}
