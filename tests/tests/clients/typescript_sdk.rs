//! The TypeScript SDK 1.x (`ts_client.mjs`: session resumption, Last-Event-ID replay of a
//! finished and of a cut stream, HTTP+SSE) and the 2.x client package (`ts_client_v2.mjs`,
//! the Inspector's client) in each of its eras.

use e2e::clients::{run_script, strs};
use e2e::fixture_truth::{SIMPLE_TEXT, STATIC_TEXT, fixture_truth};
use e2e::{Bridge, BridgeOpts};
use serde_json::{Value, json};

use crate::tap::Tap;
use crate::wire::{assert_handshake_wire, assert_one_round, assert_stateless_wire};
use crate::{
    SERVED_VERSIONS, assert_fixture_steps, assert_handshake_client, assert_stateless_client,
};

#[test]
fn typescript_sdk() {
    let truth = fixture_truth();
    Bridge::on_both_relays(BridgeOpts::default(), |bridge, label| {
        let out = run_script(bridge, "NODE22", "ts_client.mjs", &[&bridge.mcp_url]);
        assert_eq!(out["ok"], true, "{label}: {out}");
        assert_eq!(out["server"], "mcp-fixture", "{label}: {out}");
        assert_eq!(out["tools"], truth.tools.len(), "{label}: {out}");
        assert_eq!(strs(&out["tool_names"]), truth.tools, "{label}");
        assert_eq!(strs(&out["call"]["texts"]), [SIMPLE_TEXT], "{label}: {out}");
        assert_eq!(strs(&out["resource"]), [STATIC_TEXT], "{label}: {out}");

        // Every progress notification the fixture sent (steps 0, 50, 100 of 100) reached the
        // caller, in order, before the result.
        assert_eq!(out["progress"], expected_progress(), "{label}: {out}");
        assert_eq!(out["progress_call"]["is_error"], false, "{label}: {out}");

        // The session id works on a new connection without a second initialize.
        assert_eq!(
            strs(&out["resumed_call"]["texts"]),
            [SIMPLE_TEXT],
            "{label}: {out}"
        );
        // DELETE ends the session; the old id then gets 404 (so clients re-initialize).
        let delete = out["delete_status"].as_u64().unwrap_or_default();
        assert!(
            (200..300).contains(&delete),
            "{label}: DELETE answered {delete}: {out}"
        );
        assert_eq!(out["after_delete_status"], 404, "{label}: {out}");

        let sse = run_script(
            bridge,
            "NODE22",
            "ts_client.mjs",
            &[&bridge.sse_url, "--sse"],
        );
        assert_eq!(sse["tools"], truth.tools.len(), "{label}: {sse}");
        assert_eq!(strs(&sse["call"]["texts"]), [SIMPLE_TEXT], "{label}: {sse}");
        assert_eq!(strs(&sse["resource"]), [STATIC_TEXT], "{label}: {sse}");

        assert_eq!(bridge.count("call test_simple_text"), 3, "{label}");
        assert_eq!(bridge.count("call test_tool_with_progress"), 1, "{label}");
        bridge.assert_one_child_initialize(label);
    });
}

/// The data-carrying events of an SSE event list, as (id, data).
fn data_events(events: &Value) -> Vec<(Value, Value)> {
    events
        .as_array()
        .unwrap_or_else(|| panic!("not an event list: {events}"))
        .iter()
        .filter(|e| !e["data"].is_null())
        .map(|e| (e["id"].clone(), e["data"].clone()))
        .collect()
}

/// What the fixture's `test_tool_with_progress` reports, for any progress token.
fn expected_progress() -> Value {
    json!([0, 50, 100]
        .iter()
        .map(|s| json!({"progress": s, "total": 100, "message": format!("Completed step {s} of 100")}))
        .collect::<Vec<_>>())
}

#[test]
fn typescript_sdk_resumption_and_replay() {
    let truth = fixture_truth();
    Bridge::on_both_relays(BridgeOpts::default(), |bridge, label| {
        let out = run_script(
            bridge,
            "NODE22",
            "ts_client.mjs",
            &[&bridge.mcp_url, "--interrupt"],
        );
        assert_eq!(out["ok"], true, "{label}: {out}");
        assert_handshake_client(&out, label);
        assert_eq!(out["server"], "mcp-fixture", "{label}: {out}");
        assert_eq!(strs(&out["tool_names"]), truth.tools, "{label}");
        assert_eq!(strs(&out["call"]["texts"]), [SIMPLE_TEXT], "{label}: {out}");
        assert_eq!(strs(&out["resource"]), [STATIC_TEXT], "{label}: {out}");
        assert_eq!(strs(&out["prompt"]), truth.prompt, "{label}: {out}");
        assert_eq!(out["progress"], expected_progress(), "{label}: {out}");

        // Every message of the progress call's SSE stream carries an event id, ids unique.
        let stream = data_events(&out["progress_stream"]);
        assert_eq!(stream.len(), 4, "{label}: 3 progress + result: {out}");
        let ids: Vec<&str> = stream
            .iter()
            .map(|(id, _)| {
                id.as_str()
                    .unwrap_or_else(|| panic!("{label}: event without id: {out}"))
            })
            .collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{label}: {ids:?}");
        assert_eq!(
            stream.last().map(|(_, d)| d["result"]["content"].clone()),
            Some(json!([{"type": "text", "text": out["progress_call"]["texts"][0]}])),
            "{label}: {out}"
        );

        // Session resumption: the same session on a new connection, no second initialize.
        assert_eq!(
            strs(&out["resumed_call"]["texts"]),
            [SIMPLE_TEXT],
            "{label}: {out}"
        );

        // Replay of the finished stream: the GET carried the first event id and got exactly
        // the events after it, ids and payloads unchanged, ending with the original result.
        let replay = &out["replay"];
        assert_eq!(replay["attempted"], true, "{label}: {out}");
        let first_id = out["event_ids"][0].clone();
        assert_eq!(replay["last_event_id"], first_id, "{label}: {replay}");
        assert_eq!(replay["sent_last_event_id"], first_id, "{label}: {replay}");
        assert_eq!(replay["status"], 200, "{label}: {replay}");
        let all = data_events(&out["progress_stream"]);
        let after = match all.iter().position(|(id, _)| *id == first_id) {
            Some(i) => all[i + 1..].to_vec(),
            // The first id was a priming event without data: everything is after it.
            None => all,
        };
        assert_eq!(data_events(&replay["events"]), after, "{label}: {replay}");
        assert_eq!(replay["ok"], true, "{label}: {replay}");
        assert_eq!(
            replay["call"]["texts"], out["progress_call"]["texts"],
            "{label}"
        );

        // A stream cut after its first message: the SDK resumed it with Last-Event-ID and got
        // the rest, nothing twice, nothing lost.
        let cut = &out["interrupted"];
        assert_eq!(cut["attempted"], true, "{label}: {out}");
        assert_eq!(cut["cut"], true, "{label}: {cut}");
        let before = data_events(&cut["events_before_cut"]);
        assert_eq!(before.len(), 1, "{label}: {cut}");
        assert_eq!(before[0].0, cut["cut_after_id"], "{label}: {cut}");
        assert!(cut["cut_after_id"].is_string(), "{label}: {cut}");
        let resumes = cut["resumes"].as_array().expect("resumes");
        assert!(!resumes.is_empty(), "{label}: no Last-Event-ID GET: {cut}");
        assert_eq!(
            resumes[0]["last_event_id"], cut["cut_after_id"],
            "{label}: {cut}"
        );
        assert_eq!(resumes[0]["status"], 200, "{label}: {cut}");
        let mut rest = Vec::new();
        for r in resumes {
            rest.extend(data_events(&r["events"]));
        }
        assert_eq!(
            rest.len(),
            3,
            "{label}: 2 progress + result after the cut: {cut}"
        );
        assert!(
            rest.iter()
                .all(|(id, _)| id.is_string() && *id != before[0].0),
            "{label}: {cut}"
        );
        assert_eq!(cut["ok"], true, "{label}: {cut}");
        assert_eq!(cut["progress"], expected_progress(), "{label}: {cut}");
        assert_eq!(cut["call"]["is_error"], false, "{label}: {cut}");

        // DELETE ends the session; the old id then gets 404.
        let delete = out["delete_status"].as_u64().unwrap_or_default();
        assert!(
            (200..300).contains(&delete),
            "{label}: DELETE answered {delete}"
        );
        assert_eq!(out["after_delete_status"], 404, "{label}: {out}");

        // The replay re-ran nothing: the progress tool ran for the first call and the cut one.
        assert_eq!(bridge.count("call test_tool_with_progress"), 2, "{label}");
        assert_eq!(bridge.count("call test_simple_text"), 2, "{label}");

        // The 2024-11-05 transport.
        let sse = run_script(
            bridge,
            "NODE22",
            "ts_client.mjs",
            &[&bridge.sse_url, "--sse"],
        );
        assert_handshake_client(&sse, label);
        assert_eq!(strs(&sse["tool_names"]), truth.tools, "{label}: {sse}");
        assert_eq!(strs(&sse["call"]["texts"]), [SIMPLE_TEXT], "{label}: {sse}");
        assert_eq!(strs(&sse["resource"]), [STATIC_TEXT], "{label}: {sse}");
        assert_eq!(strs(&sse["prompt"]), truth.prompt, "{label}: {sse}");
        bridge.assert_one_child_initialize(label);
    });
}

#[test]
fn typescript_v2_client_eras() {
    let (bridge, mut tap) = Tap::with_bridge();
    let url = tap.url(&bridge.mcp_url);
    for era in ["legacy", "auto", "modern"] {
        let out = run_script(&bridge, "NODE22", "ts_client_v2.mjs", &[&url, "--era", era]);
        assert_eq!(out["era_option"], era, "{out}");
        assert_fixture_steps(&out, era);
        assert_eq!(out["server"], "mcp-fixture", "{era}: {out}");
        let wire = tap.take();
        if era == "legacy" {
            assert_handshake_client(&out, era);
            assert_handshake_wire(&wire, false, true, era);
        } else {
            assert_stateless_client(&out, era);
            assert_eq!(out["discover"]["supportedVersions"], json!(SERVED_VERSIONS));
            assert_stateless_wire(&wire, true, era);
        }
    }

    let out = run_script(
        &bridge,
        "NODE22",
        "ts_client_v2.mjs",
        &[
            &url,
            "--era",
            "auto",
            "--tool",
            "elicit_echo",
            "--args",
            r#"{"payload":"p-ts"}"#,
            "--elicit-answer",
            "yes-ts",
            "--resource",
            "",
            "--prompt",
            "",
        ],
    );
    assert_stateless_client(&out, "ts elicitation");
    assert_eq!(strs(&out["call"]["texts"]), ["p-ts|accept|yes-ts"], "{out}");
    assert_eq!(out["elicitations"][0]["message"], "payload:p-ts", "{out}");
    let wire = tap.take();
    assert_stateless_wire(&wire, true, "ts elicitation");
    assert_one_round(
        &wire,
        ("tools/call", "elicit_echo"),
        "elicitation/create",
        |p| assert_eq!(p["message"], "payload:p-ts", "{p}"),
        "ts elicitation",
    );
    assert_eq!(bridge.count("call elicit_echo"), 1);
    assert_eq!(bridge.count("call test_simple_text"), 3);
    bridge.assert_one_child_initialize("ts 2.x");
}
