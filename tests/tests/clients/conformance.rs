//! The official conformance suite (0.1.16, active suite) against the tunnel, embedded and
//! separate relay, with a bearer token injected by `bearer_proxy.mjs`; and its prerelease
//! (0.2.0-alpha.12, pinned in `tests/deps`) once per requirement set it freezes:
//!
//! * `--requirements 2025-11-25`: the handshake era, sessions and all;
//! * `--requirements 2026-07-28`: the stateless era (`server/discover`, per-request `_meta`,
//!   caching hints, `InputRequiredResult` rounds built from the fixture's real server→client
//!   requests, `subscriptions/listen`), served next to the 2025 era by the same bridge and
//!   the same 2025-era child. It needs `--client-roots`, so that the child's `roots/list`
//!   becomes an input request of the client.
//!
//! Every scored scenario must pass; the extension and pending scenarios the alpha also runs
//! are reported by `conformance.sh` but not asserted on. The child must have been
//! initialized exactly once.

use e2e::clients::{deps, one_at_a_time, run_script, script, summary_of};
use e2e::{Bridge, BridgeOpts, Relay, http_post};
use serde_json::{Value, json};

/// Number of scenarios in the active suite of the pinned conformance release (0.1.16).
const CONFORMANCE_SUITE_SIZE: u64 = 30;
/// Scenarios the pinned alpha scores for `--requirements 2025-11-25` (server side).
const SCORED_2025_11_25: u64 = 30;
/// Scenarios the pinned alpha scores for `--requirements 2026-07-28` (server side).
const SCORED_2026_07_28: u64 = 37;

/// The HTTP status of a bare `initialize` POST to `url`, with `Authorization: Bearer <t>`
/// when `bearer` is given (plain HTTP over a raw socket, so nothing adds headers).
fn initialize_status(url: &str, bearer: Option<&str>) -> u16 {
    let body = e2e::mcp::initialize(json!(1), "2025-11-25", json!({}), "raw").to_string();
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    http_post(url, &headers, &body).status
}

/// Runs `conformance.sh` (one run at a time: each is a burst of ~30 parallel-ish sessions and
/// a Node process, and they are the slowest part of this file) and checks that every scenario
/// of the active suite passed and that the child saw a single `initialize` for all of them.
fn assert_conformance_passes(bridge: &Bridge, via_bearer_proxy: bool) {
    let _turn = one_at_a_time();
    let out = tempfile::tempdir().expect("tempdir");
    let s = run_script(
        bridge,
        "bash",
        "conformance.sh",
        &[&bridge.mcp_url, out.path().to_str().expect("utf-8 path")],
    );
    assert_eq!(s["suite_size"], CONFORMANCE_SUITE_SIZE, "{s}");
    assert_eq!(s["scenarios"], CONFORMANCE_SUITE_SIZE, "{s}");
    assert_eq!(s["passed"], CONFORMANCE_SUITE_SIZE, "{s}");
    assert_eq!(s["failed"], json!([]), "{s}");
    assert_eq!(s["no_results"], json!([]), "{s}");
    assert_eq!(s["checks"].get("FAILURE"), None, "{s}");
    assert_eq!(s["conformance_exit"], 0, "{s}");
    assert_eq!(s["via_bearer_proxy"], via_bearer_proxy, "{s}");
    bridge.assert_one_child_initialize("conformance");
}

#[test]
fn conformance_embedded() {
    let bridge = Bridge::start(BridgeOpts {
        no_auth: true,
        ..Default::default()
    });
    assert_eq!(bridge.bearer, None);
    assert_conformance_passes(&bridge, false);
}

#[test]
fn conformance_separate_relay() {
    let relay = Relay::start(&[]);
    // The relay's public URL is loopback, so it accepts a tunnel without client auth.
    let bridge = BridgeOpts::default().via(&relay).no_auth().start();
    assert!(
        bridge.mcp_url.starts_with(&relay.base),
        "{}",
        bridge.mcp_url
    );
    assert_conformance_passes(&bridge, false);
}

/// The suite has no header option, so `conformance.sh` puts `bearer_proxy.mjs` (inject mode)
/// in front. The proxy passes `Host` through unchanged and the suite's own requests carry
/// the proxy's loopback address, so `dns-rebinding-protection` stays meaningful: its
/// `Host: evil.example.com` request still reaches the relay and must be refused. No expected
/// failures are needed.
#[test]
fn conformance_with_bearer() {
    let bridge = Bridge::start(BridgeOpts::default());
    let token = bridge.bearer.clone().expect("bearer auth is the default");
    // The token is really required (else this test would not show the proxy's header works).
    for (bearer, status) in [
        (None, 401),
        (Some("not-the-token"), 403),
        (Some(&*token), 200),
    ] {
        assert_eq!(
            initialize_status(&bridge.mcp_url, bearer),
            status,
            "{bearer:?}"
        );
    }
    assert_conformance_passes(&bridge, true);
}

/// The end of the suite's own console output (its per-scenario summary and the "Not scored"
/// section), for failure messages.
fn output_tail(summary: &Value) -> String {
    let text = summary["output"]
        .as_str()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    match text.rfind("=== SUMMARY ===") {
        Some(at) => text[at..].to_owned(),
        None => text[text.len().saturating_sub(4000)..].to_owned(),
    }
}

/// Runs `conformance.sh URL OUT --requirements <revision>` with the alpha against `bridge`
/// (one run at a time: each is a burst of requests and a Node process) and returns its
/// summary with a readable description of what went wrong or warned, for assertion messages.
fn run_alpha(bridge: &Bridge, revision: &str) -> (Value, String) {
    let _turn = one_at_a_time();
    let out = tempfile::tempdir().expect("tempdir");
    let out_dir = out.path().to_str().expect("a UTF-8 path");
    let mut cmd = script(
        bridge,
        "bash",
        "conformance.sh",
        &[&bridge.mcp_url, out_dir, "--requirements", revision],
    );
    cmd.env("CONFORMANCE_JS", deps().var("CONFORMANCE_ALPHA_JS"))
        .env("NODE22", deps().var("NODE22"));
    let (run, summary) = summary_of(&mut cmd);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let report = format!(
        "conformance {revision}: {}/{} scored scenarios passed (exit {}, script {})\n\
         failed: {}\nfailed checks: {}\nno results: {}\nwarnings: {}\n\
         not scored, failing (ignored): {}\nscript stderr:\n{stderr}\nsuite output:\n{}\n\
         bridge log tail:\n{}",
        summary["passed"],
        summary["scored"],
        summary["conformance_exit"],
        run.status,
        summary["failed"],
        summary["failures"],
        summary["no_results"],
        summary["warning_checks"],
        summary["not_scored_failed"],
        output_tail(&summary),
        tail(&bridge.proc.log_text(), 6000),
    );
    if summary["warnings"]
        .as_array()
        .is_some_and(|w| !w.is_empty())
    {
        eprintln!(
            "conformance {revision}: warnings: {}",
            summary["warning_checks"]
        );
    }
    (summary, report)
}

/// The last `max` bytes of `text` (cut at a character boundary).
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Checks that every scored scenario of `revision` passed, and that the fixture saw exactly
/// one `initialize` for all of them.
fn assert_all_scored_pass(bridge: &Bridge, revision: &str, scored: u64) -> (Value, String) {
    let (s, report) = run_alpha(bridge, revision);
    assert_eq!(s["requirements"], revision, "{report}");
    assert_eq!(s["scored"], scored, "{report}");
    assert_eq!(s["passed"], s["scored"], "{report}");
    assert_eq!(s["failed"], json!([]), "{report}");
    assert_eq!(s["no_results"], json!([]), "{report}");
    assert_eq!(s["checks"].get("FAILURE"), None, "{report}");
    assert_eq!(s["conformance_exit"], 0, "{report}");
    bridge.assert_one_child_initialize(&format!("{revision}\n{report}"));
    (s, report)
}

/// Checks that these not-scored (pending) scenarios passed too, without warnings.
fn assert_also_passed(s: &Value, report: &str, scenarios: &[&str]) {
    for name in scenarios {
        let passed = s["not_scored_passed"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == name));
        assert!(passed, "{name} must pass as well\n{report}");
        assert!(
            s["not_scored_warning_checks"].get(name).is_none(),
            "{name} passed with warnings\n{report}"
        );
    }
}

#[test]
fn conformance_alpha_2025_11_25() {
    // `--sse-poll-secs 1`: the relay closes slow answers' streams after a second, so the
    // pending SSE-polling scenario (priming event, retry, GET + Last-Event-ID) runs too.
    let bridge = Bridge::start(BridgeOpts {
        no_auth: true,
        args: vec!["--sse-poll-secs".to_owned(), "1".to_owned()],
        ..Default::default()
    });
    let (s, report) = assert_all_scored_pass(&bridge, "2025-11-25", SCORED_2025_11_25);
    assert_also_passed(&s, &report, &["server-sse-polling", "json-schema-2020-12"]);
}

#[test]
fn conformance_alpha_2026_07_28() {
    let bridge = Bridge::start(BridgeOpts {
        no_auth: true,
        args: vec!["--client-roots".to_owned()],
        ..Default::default()
    });
    let (s, report) = assert_all_scored_pass(&bridge, "2026-07-28", SCORED_2026_07_28);
    // Pending scenarios of the revision (not the tasks extension, which the bridge does
    // not offer): header validation, including `Mcp-Param-*` against the tool schema.
    assert_also_passed(
        &s,
        &report,
        &[
            "http-header-validation",
            "http-custom-header-server-validation",
            "json-schema-2020-12",
        ],
    );
    // Retries with inputResponses continue the child's call that asked: each of these
    // multi-round flows (one scenario each) started exactly one call on the child.
    for line in [
        "call test_input_required_result_request_state",
        "call test_input_required_result_multiple_inputs",
        "call test_input_required_result_multi_round",
        "prompt test_input_required_result_prompt",
    ] {
        assert_eq!(
            bridge.count(line),
            1,
            "`{line}`: a retry must continue the running call, not start another; fixture counts: {:?}",
            bridge.counts()
        );
    }
}
