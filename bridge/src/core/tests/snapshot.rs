//! Rule: the relay keeps an offline snapshot, the shared child's initialize result and
//! tools list, sent when it changed (and in full on every new link).

use protocol::{Frame, Snapshot};
use serde_json::{Value, json};

use super::super::testing::{Harness, notification, server_info};

fn snapshot(frame: Option<Frame>) -> Option<(Value, Value)> {
    match frame? {
        Frame::Snapshot(Snapshot { initialize, tools }) => Some((
            serde_json::from_slice(&initialize).expect("json"),
            serde_json::from_slice(&tools).expect("json"),
        )),
        other => panic!("not a snapshot: {other:?}"),
    }
}

#[test]
fn there_is_no_snapshot_before_the_child_is_initialized() {
    let mut h = Harness::new(|_| {});
    h.core.start_default_child().expect("starts");
    assert!(h.core.snapshot(true).is_none());
}

#[test]
fn the_snapshot_holds_the_initialize_result_and_the_tools_and_is_sent_when_changed() {
    let mut h = Harness::ready(|_| {});
    let (init, tools) = snapshot(h.core.snapshot(false)).expect("changed since start");
    assert_eq!(init, server_info());
    assert_eq!(tools["tools"][0]["name"], "echo");
    assert!(h.core.snapshot(false).is_none(), "unchanged since");
    assert!(h.core.snapshot(true).is_some(), "but always on a new link");
}

#[test]
fn a_tools_list_change_refreshes_the_snapshot() {
    let mut h = Harness::ready(|_| {});
    h.core.snapshot(false);
    h.child_says(
        1,
        notification("notifications/tools/list_changed", json!({})),
    );
    let list = h.take_request(1, "tools/list");
    assert!(
        h.core.snapshot(false).is_none(),
        "not before the new list is known"
    );
    h.child_answers(1, &list, json!({ "tools": [ { "name": "new" } ] }));
    let (_, tools) = snapshot(h.core.snapshot(false)).expect("changed");
    assert_eq!(tools, json!({ "tools": [ { "name": "new" } ] }));
}
