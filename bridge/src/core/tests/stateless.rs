//! Rules of 2026-07-28 requests (see `stateless.rs`): the envelope is checked and
//! stripped, results are completed, the client closing its stream cancels the call, and
//! log messages reach a call only at the level it asked.

use protocol::jsonrpc::{INVALID_PARAMS, METHOD_NOT_FOUND, UNSUPPORTED_PROTOCOL_VERSION};
use protocol::stateless::{LIST_TTL_MS, META_LOG_LEVEL, META_PROTOCOL_VERSION, META_SERVER_INFO};
use serde_json::json;

use super::super::testing::{
    Harness, body, call, notification, server_info, stateless, stateless_echo,
};

/// A 2026-07-28 `server/discover`, posted on exchange 10; the one frame answering it.
fn discover(h: &mut Harness) -> protocol::Response {
    h.post(
        10,
        None,
        stateless(1, "server/discover", json!({}), json!({})),
    );
    h.one_frame()
}

#[test]
fn a_stateless_call_reaches_the_child_without_its_envelope_and_comes_back_complete() {
    let mut h = Harness::ready(|_| {});
    let params = json!({ "name": "echo", "arguments": { "x": 1 } });
    h.post(10, None, stateless(7, "tools/call", params, json!({})));
    let sent = h.take_request(1, "tools/call");
    assert!(sent["params"].get("_meta").is_none(), "{sent}");
    assert_eq!(sent["params"]["arguments"], json!({ "x": 1 }));
    h.child_answers(1, &sent, json!({ "content": [] }));
    let answer = h.frame_on(10);
    assert_eq!((answer.status, answer.is_final()), (200, true));
    let answer = body(&answer);
    assert_eq!(answer["id"], 7);
    assert_eq!(
        answer["result"],
        json!({ "resultType": "complete", "content": [] })
    );
}

#[test]
fn stateless_results_get_their_caching_hints() {
    let cases = [
        (
            false,
            "tools/list",
            json!({}),
            Some((LIST_TTL_MS, "private")),
        ),
        (true, "tools/list", json!({}), Some((LIST_TTL_MS, "public"))),
        (
            true,
            "resources/read",
            json!({ "uri": "file:///a" }),
            Some((0, "private")),
        ),
        (false, "prompts/get", json!({ "name": "p" }), None),
    ];
    for (public, method, params, hints) in cases {
        let mut h = Harness::ready(|c| c.public_cache = public);
        h.post(10, None, stateless(1, method, params, json!({})));
        let sent = h.take_request(1, method);
        h.child_answers(1, &sent, json!({ "x": 1 }));
        let result = body(&h.one_frame())["result"].clone();
        assert_eq!(result["resultType"], "complete", "{method}");
        assert_eq!(result["x"], 1);
        let got = result["ttlMs"].as_u64().map(|ttl| {
            (
                ttl,
                result["cacheScope"].as_str().unwrap_or_default().to_owned(),
            )
        });
        assert_eq!(
            got,
            hints.map(|(t, s)| (t, s.to_owned())),
            "{method} public={public}"
        );
    }
}

#[test]
fn server_discover_is_answered_from_the_cached_initialize_result() {
    let mut h = Harness::ready(|_| {});
    let answer = discover(&mut h);
    assert_eq!(answer.status, 200);
    let result = body(&answer)["result"].clone();
    assert_eq!(result["_meta"][META_SERVER_INFO]["name"], "fake");
    assert_eq!(result["capabilities"], server_info()["capabilities"]);
    assert!(h.lines(1).is_empty());
}

#[test]
fn requests_with_a_bad_envelope_or_an_unknown_method_are_refused() {
    let mut h = Harness::ready(|_| {});
    let no_caps = call(
        1,
        "tools/list",
        json!({ "_meta": { META_PROTOCOL_VERSION: "2026-07-28" } }),
    );
    let mut future = stateless(2, "tools/list", json!({}), json!({}));
    future["params"]["_meta"][META_PROTOCOL_VERSION] = json!("2030-01-01");
    let cases = [
        (no_caps, 400, INVALID_PARAMS),
        (future, 400, UNSUPPORTED_PROTOCOL_VERSION),
        (
            stateless(3, "foo/bar", json!({}), json!({})),
            404,
            METHOD_NOT_FOUND,
        ),
        (
            stateless(4, "completion/complete", json!({}), json!({})),
            404,
            METHOD_NOT_FOUND,
        ),
    ];
    for (n, (request, status, code)) in cases.into_iter().enumerate() {
        h.post(10 + n as u64, None, request);
        let refused = h.one_frame();
        assert_eq!(
            (refused.status, body(&refused)["error"]["code"].clone()),
            (status, json!(code)),
            "case {n}"
        );
    }
    assert!(h.lines(1).is_empty());
}

#[test]
fn without_the_stateless_revision_its_requests_get_method_not_found() {
    let mut h = Harness::ready(|c| c.stateless = false);
    let answer = discover(&mut h);
    assert_eq!(
        (answer.status, body(&answer)["error"]["code"].clone()),
        (200, json!(METHOD_NOT_FOUND))
    );
}

#[test]
fn closing_a_stateless_stream_cancels_the_call_on_the_child() {
    let mut h = Harness::ready(|_| {});
    let sent = h.stateless_echo_in_flight(10, 1, json!({}));
    h.cancel(10);
    let told = h.take_request(1, "notifications/cancelled");
    assert_eq!(told["params"]["requestId"], sent["id"]);
    assert_eq!(h.core.client_pending(), 0);
}

#[test]
fn log_messages_reach_a_stateless_call_only_at_the_level_it_asked() {
    let cases = [
        (None, "error", false),
        (Some("warning"), "info", false),
        (Some("warning"), "warning", true),
        (Some("warning"), "emergency", true),
        (Some("debug"), "debug", true),
    ];
    for (asked, level, delivered) in cases {
        let mut h = Harness::ready(|_| {});
        let mut request = stateless_echo(1, json!({}));
        if let Some(asked) = asked {
            request["params"]["_meta"][META_LOG_LEVEL] = json!(asked);
        }
        h.post(10, None, request);
        h.lines(1);
        h.child_says(
            1,
            notification(
                "notifications/message",
                json!({ "level": level, "data": "x" }),
            ),
        );
        assert_eq!(
            h.outbox().len(),
            usize::from(delivered),
            "asked {asked:?}, sent {level}"
        );
    }
}
