//! Real clients of every protocol era through one tunnel URL.
//!
//! The endpoint serves the 2024-11-05 HTTP+SSE transport, the handshake era of Streamable HTTP
//! (2025-03-26 … 2025-11-25: `initialize`, sessions) and the stateless 2026-07-28 revision
//! (`server/discover`, the `_meta` envelope on every request, `resultType`, InputRequiredResult
//! instead of server→client requests). Each test drives pinned third-party clients of one era
//! through `bridge run` with the fixture server: list tools, call a tool, read a resource, get
//! a prompt, and checks both what the client reports and which era it really spoke, from
//! `tests/clients/tap_proxy.mjs`, a recording proxy between the client and the relay.
//!
//! Clients: the Python SDK 2.x (`auto`, `legacy`, and the modern pin; sampling and elicitation
//! answered through InputRequiredResult), the Python SDK 1.x, the TypeScript SDK 1.x (session
//! resumption, Last-Event-ID replay of a finished and of a cut stream, legacy SSE), the
//! TypeScript SDK 2.x client package, and the Inspector CLI in its three `--protocol-era`s.
//!
//! Needs `tests/deps/install.sh` and `cargo build --workspace --bins` first.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use e2e::fixture_truth::fixture_truth;
use e2e::{Bridge, BridgeOpts, Deps, Proc, Relay, run_json};
use serde_json::{Value, json};

/// What the fixture's `test_simple_text` tool answers.
const SIMPLE_TEXT: &str = "This is a simple text response for testing.";
/// The text of the fixture's `test://static-text` resource.
const STATIC_TEXT: &str = "This is the content of the static text resource.";
/// The newest handshake-era version: what the fixture (and so every legacy session) speaks.
const LEGACY_PROTOCOL: &str = "2025-11-25";
/// The stateless protocol revision.
const MODERN_PROTOCOL: &str = "2026-07-28";
/// Every revision a tunnel URL serves, as `server/discover` lists them (newest first).
const SERVED_VERSIONS: [&str; 5] = [
    MODERN_PROTOCOL,
    "2025-11-25",
    "2025-06-18",
    "2025-03-26",
    "2024-11-05",
];
/// Reserved `_meta` keys of the 2026-07-28 request envelope and of the discover result.
const META_PROTOCOL: &str = "io.modelcontextprotocol/protocolVersion";
const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// The pinned helpers, read once.
fn deps() -> &'static Deps {
    static DEPS: OnceLock<Deps> = OnceLock::new();
    DEPS.get_or_init(Deps::get)
}

// ------------------------------------------------------------------------------------------
// Running the client scripts.

/// Runs `check` against a bridge started with `opts` on the embedded relay, then against one
/// connected to a separate `relay serve` process.
fn on_both_relays(opts: BridgeOpts, check: impl Fn(&Bridge, &str)) {
    check(&Bridge::start(opts.clone()), "embedded relay");
    let relay = Relay::start(&[]);
    let bridge = Bridge::start(BridgeOpts {
        relay: Some((relay.base.clone(), relay.token.clone())),
        ..opts
    });
    assert!(
        bridge.mcp_url.starts_with(&relay.base),
        "{}",
        bridge.mcp_url
    );
    check(&bridge, "separate relay");
}

/// A command running `program` with `args`, with the bridge's bearer token (if any) in
/// `MCP_BEARER`, as every client script expects.
fn client<S: AsRef<OsStr>>(bridge: &Bridge, program: impl AsRef<OsStr>, args: &[S]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    match &bridge.bearer {
        Some(t) => cmd.env("MCP_BEARER", t),
        None => cmd.env_remove("MCP_BEARER"),
    };
    cmd
}

/// The command running `tests/clients/<script>` under `interpreter` (a `Deps` variable, or
/// `bash`) with `args`.
fn script(bridge: &Bridge, interpreter: &str, name: &str, args: &[&str]) -> Command {
    let program = match interpreter {
        "bash" => "bash".to_owned(),
        var => deps().var(var),
    };
    let mut cmd = client(bridge, program, &[deps().client(name).as_os_str()]);
    cmd.args(args);
    cmd
}

/// Runs a client script and returns its JSON summary; panics if it fails.
fn run_script(bridge: &Bridge, interpreter: &str, name: &str, args: &[&str]) -> Value {
    run_json(&mut script(bridge, interpreter, name, args))
}

/// Runs a client script that is expected to fail: its JSON summary (the last JSON line of its
/// stdout); panics if it succeeds or prints none.
fn run_script_failing(bridge: &Bridge, interpreter: &str, name: &str, args: &[&str]) -> Value {
    let mut cmd = script(bridge, interpreter, name, args);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{cmd:?} was expected to fail:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("{cmd:?} printed no JSON summary ({e}):\nstdout:\n{stdout}\nstderr:\n{stderr}")
    })
}

/// Python SDK 2.x (`py_client.py`) with `args`.
fn py2(bridge: &Bridge, url: &str, args: &[&str]) -> Value {
    let mut all = vec![url];
    all.extend_from_slice(args);
    run_script(bridge, "PY_SDK", "py_client.py", &all)
}

/// The strings of a JSON array (panics with the whole value otherwise).
fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap_or_else(|| panic!("not a string: {x}")))
        .collect()
}

/// Checks the list/call/read/prompt part of a `py_client.py`-shaped summary on the fixture.
fn assert_fixture_steps(out: &Value, what: &str) {
    let truth = fixture_truth();
    assert_eq!(out["ok"], true, "{what}: {out}");
    assert_eq!(strs(&out["tools"]), truth.tools, "{what}: tools");
    assert_eq!(out["call"]["is_error"], false, "{what}: {out}");
    assert_eq!(strs(&out["call"]["texts"]), [SIMPLE_TEXT], "{what}: call");
    assert_eq!(strs(&out["resource"]), [STATIC_TEXT], "{what}: resource");
    assert_eq!(strs(&out["prompt"]), truth.prompt, "{what}: prompt");
}

/// Checks a summary that must report the handshake era.
fn assert_legacy_client(out: &Value, what: &str) {
    assert_eq!(out["protocol"], LEGACY_PROTOCOL, "{what}: {out}");
    assert_eq!(out["era"], "legacy", "{what}: {out}");
}

/// Checks a summary that must report the stateless era.
fn assert_modern_client(out: &Value, what: &str) {
    assert_eq!(out["protocol"], MODERN_PROTOCOL, "{what}: {out}");
    assert_eq!(out["era"], "modern", "{what}: {out}");
}

/// Checks that the fixture was initialized exactly once, whatever the clients did.
fn assert_one_child_initialize(bridge: &Bridge, what: &str) {
    assert_eq!(
        bridge.count("initialize"),
        1,
        "{what}: the child must be initialized once; fixture counts: {:?}",
        bridge.counts()
    );
}

// ------------------------------------------------------------------------------------------
// The wire: a recording proxy between a client and the relay.

/// A running `tap_proxy.mjs` in front of a bridge's relay.
struct Tap {
    proc: Proc,
    port: u16,
    upstream: String,
    log: PathBuf,
    seen: usize,
    _dir: tempfile::TempDir,
}

/// `scheme://host:port` of a URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    let end = url[after..].find('/').map_or(url.len(), |i| after + i);
    &url[..end]
}

impl Tap {
    /// Starts a tap forwarding to the relay that serves `bridge`.
    fn start(bridge: &Bridge) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("tap.jsonl");
        let upstream = origin(&bridge.mcp_url).to_owned();
        let mut cmd = Command::new(deps().var("NODE22"));
        cmd.arg(deps().client("tap_proxy.mjs"))
            .arg(&upstream)
            .arg("--log")
            .arg(&log);
        let proc = Proc::start(cmd, "tap");
        assert!(
            proc.wait_log("tap_proxy listening port=", Duration::from_secs(20)),
            "tap_proxy.mjs did not start: {}",
            proc.log_text()
        );
        let port = proc
            .log_text()
            .split("listening port=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .expect("tap port");
        Self {
            proc,
            port,
            upstream,
            log,
            seen: 0,
            _dir: dir,
        }
    }

    /// `url` (on the relay) as reached through the tap.
    fn url(&self, url: &str) -> String {
        let rest = url
            .strip_prefix(&self.upstream)
            .unwrap_or_else(|| panic!("{url} is not on {}", self.upstream));
        format!("http://127.0.0.1:{}{rest}", self.port)
    }

    /// Every exchange recorded so far, request and response merged, once all are complete
    /// (or after 10 s).
    fn exchanges(&self) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut merged: Vec<Value> = Vec::new();
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let rec: Value = serde_json::from_str(line).expect("tap record");
                let n = rec["n"].as_u64().expect("n") as usize;
                if merged.len() < n {
                    merged.resize(n, Value::Null);
                }
                let slot = &mut merged[n - 1];
                if slot.is_null() {
                    *slot = json!({});
                }
                for (k, v) in rec.as_object().expect("record object") {
                    if k != "phase" || v == "done" || slot.get("phase").is_none() {
                        slot[k] = v.clone();
                    }
                }
            }
            let complete = merged.iter().all(|r| r["phase"] == "done");
            if complete || Instant::now() >= deadline {
                assert!(
                    complete,
                    "tap: exchanges still open after 10 s: {merged:#?}\ntap log: {}",
                    self.proc.log_text()
                );
                return merged;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exchanges recorded since the previous call (one client run's traffic).
    fn take(&mut self) -> Vec<Value> {
        let all = self.exchanges();
        let new = all[self.seen..].to_vec();
        self.seen = all.len();
        new
    }
}

/// The JSON-RPC requests (with their exchange) sent in POST bodies, in order.
fn requests(exchanges: &[Value]) -> Vec<(&Value, &Value)> {
    let mut out = Vec::new();
    for ex in exchanges.iter().filter(|e| e["method"] == "POST") {
        let msgs: Vec<&Value> = match &ex["rpc"] {
            Value::Array(a) => a.iter().collect(),
            v @ Value::Object(_) => vec![v],
            _ => vec![],
        };
        for m in msgs {
            if m.get("method").is_some() && m.get("id").is_some() {
                out.push((ex, m));
            }
        }
    }
    out
}

/// The answer to `request` recorded anywhere in `exchanges` (its own POST response on
/// Streamable HTTP, the GET stream on legacy HTTP+SSE).
fn answer<'a>(exchanges: &'a [Value], own: &'a Value, request: &Value) -> Option<&'a Value> {
    let id = &request["id"];
    let is_answer =
        |m: &&Value| &m["id"] == id && (m.get("result").is_some() || m.get("error").is_some());
    let in_own = own["messages"]
        .as_array()
        .and_then(|a| a.iter().find(is_answer));
    in_own.or_else(|| {
        exchanges
            .iter()
            .filter_map(|e| e["messages"].as_array())
            .flatten()
            .find(is_answer)
    })
}

/// The methods of the POSTed requests, in order.
fn methods(exchanges: &[Value]) -> Vec<&str> {
    requests(exchanges)
        .iter()
        .map(|(_, m)| m["method"].as_str().unwrap_or("?"))
        .collect()
}

/// Checks that `exchanges` are a handshake-era conversation: one `initialize` answered with
/// [`LEGACY_PROTOCOL`] (after a refused `server/discover` probe when `probed`), no request
/// carrying the 2026 envelope; over Streamable HTTP, every later request carries the session
/// id and the protocol version in headers. Returns the `initialize` result.
fn assert_legacy_wire(exchanges: &[Value], probed: bool, streamable: bool, what: &str) -> Value {
    let reqs = requests(exchanges);
    let names = methods(exchanges);
    let first = if probed {
        assert_eq!(names.first(), Some(&"server/discover"), "{what}: {names:?}");
        let (ex, probe) = reqs[0];
        let a = answer(exchanges, ex, probe).unwrap_or_else(|| panic!("{what}: probe unanswered"));
        assert!(
            a.get("error").is_some(),
            "{what}: discover must be refused: {a}"
        );
        1
    } else {
        assert!(!names.contains(&"server/discover"), "{what}: {names:?}");
        0
    };
    assert_eq!(names.get(first), Some(&"initialize"), "{what}: {names:?}");
    assert_eq!(
        names.iter().filter(|m| **m == "initialize").count(),
        1,
        "{what}: {names:?}"
    );
    let (init_ex, init) = reqs[first];
    let init_answer = answer(exchanges, init_ex, init).expect("initialize answered");
    assert_eq!(
        init_answer["result"]["protocolVersion"], LEGACY_PROTOCOL,
        "{what}: {init_answer}"
    );
    let session = init_ex["response_headers"]["mcp-session-id"].clone();
    if streamable {
        assert!(session.is_string(), "{what}: no Mcp-Session-Id: {init_ex}");
    }
    for (ex, m) in &reqs[first + 1..] {
        assert!(
            m["params"]["_meta"].get(META_PROTOCOL).is_none(),
            "{what}: a legacy request carries the 2026 envelope: {m}"
        );
        if streamable {
            assert_eq!(ex["headers"]["mcp-session-id"], session, "{what}: {ex}");
            assert_eq!(
                ex["headers"]["mcp-protocol-version"], LEGACY_PROTOCOL,
                "{what}: {ex}"
            );
        }
        let a = answer(exchanges, ex, m).unwrap_or_else(|| panic!("{what}: unanswered {m}"));
        assert!(a.get("result").is_some(), "{what}: {m} failed: {a}");
    }
    init_answer["result"].clone()
}

/// Checks that `exchanges` are a 2026-07-28 conversation: no `initialize`, no session; every
/// request (after the `server/discover` probe when `probed`) carries the `_meta` envelope and
/// the `MCP-Protocol-Version` header; every answer has a `resultType`, list answers carry
/// `ttlMs` and `cacheScope`. Returns the discover result (Null when not `probed`).
fn assert_modern_wire(exchanges: &[Value], probed: bool, what: &str) -> Value {
    assert_modern_wire_failing(exchanges, probed, &[], what)
}

/// [`assert_modern_wire`], where the requests of the `failing` methods are answered with an
/// error (checked by the caller) instead of a result.
fn assert_modern_wire_failing(
    exchanges: &[Value],
    probed: bool,
    failing: &[&str],
    what: &str,
) -> Value {
    let reqs = requests(exchanges);
    let names = methods(exchanges);
    assert!(!names.contains(&"initialize"), "{what}: {names:?}");
    assert!(
        !names.contains(&"notifications/initialized"),
        "{what}: {names:?}"
    );
    for ex in exchanges {
        assert!(
            ex["headers"].get("mcp-session-id").is_none()
                && ex["response_headers"].get("mcp-session-id").is_none(),
            "{what}: a session appeared on a stateless connection: {ex}"
        );
    }
    let mut discover = Value::Null;
    for (i, (ex, m)) in reqs.iter().enumerate() {
        let method = m["method"].as_str().unwrap_or_default();
        let meta = &m["params"]["_meta"];
        assert_eq!(meta[META_PROTOCOL], MODERN_PROTOCOL, "{what}: {m}");
        assert!(meta[META_CLIENT_INFO].is_object(), "{what}: {m}");
        assert!(meta[META_CLIENT_CAPABILITIES].is_object(), "{what}: {m}");
        assert_eq!(
            ex["headers"]["mcp-protocol-version"], MODERN_PROTOCOL,
            "{what}: {ex}"
        );
        let a = answer(exchanges, ex, m).unwrap_or_else(|| panic!("{what}: unanswered {m}"));
        if failing.contains(&method) {
            assert!(
                a.get("error").is_some(),
                "{what}: {method} should fail: {a}"
            );
            continue;
        }
        let result = a
            .get("result")
            .unwrap_or_else(|| panic!("{what}: {method} failed: {a}"));
        if method == "server/discover" {
            assert!(probed && i == 0, "{what}: unexpected discover: {names:?}");
            discover = result.clone();
            continue;
        }
        assert!(
            matches!(
                result["resultType"].as_str(),
                Some("complete" | "input_required")
            ),
            "{what}: {method} answered without a resultType: {result}"
        );
        if method.ends_with("/list") {
            assert!(result["ttlMs"].is_u64(), "{what}: {method}: {result}");
            assert!(
                result["cacheScope"].is_string(),
                "{what}: {method}: {result}"
            );
        }
    }
    if probed {
        assert_eq!(names.first(), Some(&"server/discover"), "{what}: {names:?}");
        assert_eq!(
            discover["supportedVersions"],
            json!(SERVED_VERSIONS),
            "{what}: {discover}"
        );
    } else {
        assert!(!names.contains(&"server/discover"), "{what}: {names:?}");
    }
    discover
}

/// Checks that a discover result says what `initialize` says: the same capabilities,
/// instructions and server identity (in `_meta`).
fn assert_discover_matches_initialize(discover: &Value, initialize: &Value, what: &str) {
    assert_eq!(
        discover["capabilities"], initialize["capabilities"],
        "{what}: capabilities"
    );
    assert_eq!(
        discover.get("instructions"),
        initialize.get("instructions"),
        "{what}: instructions"
    );
    assert_eq!(
        discover["_meta"][META_SERVER_INFO], initialize["serverInfo"],
        "{what}: serverInfo"
    );
}

// ------------------------------------------------------------------------------------------
// Python SDK 2.x.

/// `auto` (the SDK's default) probes `server/discover`; the tunnel offers 2026-07-28, so the
/// connection must stay modern: no `initialize`, no session, the envelope on every request.
#[test]
fn python2_auto_ends_modern() {
    let truth = fixture_truth();
    on_both_relays(BridgeOpts::default(), |bridge, label| {
        let mut tap = Tap::start(bridge);
        let url = tap.url(&bridge.mcp_url);

        let out = py2(bridge, &url, &["--mode", "auto"]);
        assert_eq!(out["mode"], "auto", "{label}: {out}");
        assert_modern_client(&out, label);
        assert_fixture_steps(&out, label);
        assert_eq!(out["server"], "mcp-fixture", "{label}: {out}");
        assert_eq!(
            out["discover"]["source"], "server/discover",
            "{label}: {out}"
        );
        assert_eq!(out["initialize"], Value::Null, "{label}: {out}");
        let discover = assert_modern_wire(&tap.take(), true, label);
        assert_discover_matches_initialize(&discover, &truth.initialize, label);

        // What the tunnel's initialize says, for comparison (a legacy client on the same URL).
        let legacy = py2(bridge, &url, &["--mode", "legacy"]);
        assert_legacy_client(&legacy, label);
        let initialize = assert_legacy_wire(&tap.take(), false, true, label);
        assert_discover_matches_initialize(&discover, &initialize, label);
        assert_eq!(
            out["discover"]["capabilities"], legacy["initialize"]["capabilities"],
            "{label}: the SDK's views of discover and initialize differ"
        );

        assert_eq!(bridge.count("call test_simple_text"), 2, "{label}");
        assert_one_child_initialize(bridge, label);
    });
}

/// `legacy` mode: the `initialize` handshake, 2025-11-25, a session; and the 2024-11-05
/// HTTP+SSE transport (always the handshake).
#[test]
fn python2_legacy_mode_and_sse() {
    let bridge = Bridge::start(BridgeOpts::default());
    let mut tap = Tap::start(&bridge);

    let out = py2(&bridge, &tap.url(&bridge.mcp_url), &["--mode", "legacy"]);
    assert_eq!(out["mode"], "legacy", "{out}");
    assert_legacy_client(&out, "legacy mode");
    assert_fixture_steps(&out, "legacy mode");
    assert_eq!(out["server"], "mcp-fixture", "{out}");
    assert_eq!(out["discover"], Value::Null, "{out}");
    assert_legacy_wire(&tap.take(), false, true, "legacy mode");

    let sse = py2(&bridge, &tap.url(&bridge.sse_url), &["--transport", "sse"]);
    assert_eq!(sse["transport"], "sse", "{sse}");
    assert_legacy_client(&sse, "sse");
    assert_fixture_steps(&sse, "sse");
    let wire = tap.take();
    assert_eq!(wire[0]["method"], "GET", "sse: {wire:#?}");
    assert_legacy_wire(&wire, false, false, "sse");

    assert_eq!(bridge.count("call test_simple_text"), 2);
    assert_one_child_initialize(&bridge, "python 2.x legacy");
}

/// The modern pin (`mode="2026-07-28"`): no probe, no handshake; the very first request is a
/// stateless `tools/list` with the envelope.
#[test]
fn python2_modern_pinned() {
    let bridge = Bridge::start(BridgeOpts::default());
    let mut tap = Tap::start(&bridge);
    let out = py2(&bridge, &tap.url(&bridge.mcp_url), &["--mode", "modern"]);
    assert_eq!(out["sdk_mode"], MODERN_PROTOCOL, "{out}");
    assert_modern_client(&out, "modern pin");
    assert_fixture_steps(&out, "modern pin");
    let wire = tap.take();
    assert_modern_wire(&wire, false, "modern pin");
    assert_eq!(methods(&wire).first(), Some(&"tools/list"), "{wire:#?}");
    assert_eq!(bridge.count("call test_simple_text"), 1);
    assert_one_child_initialize(&bridge, "modern pin");
}

/// The POSTs of `<rpc_method> <name>` (`tools/call` and `prompts/get` carry `params.name`) in
/// `exchanges`, with their requests and answers.
fn calls_of<'a>(
    exchanges: &'a [Value],
    rpc_method: &str,
    name: &str,
) -> Vec<(&'a Value, &'a Value, &'a Value)> {
    requests(exchanges)
        .into_iter()
        .filter(|(_, m)| m["method"] == rpc_method && m["params"]["name"] == name)
        .map(|(ex, m)| {
            let a = answer(exchanges, ex, m).unwrap_or_else(|| panic!("unanswered {m}"));
            (ex, m, a)
        })
        .collect()
}

/// The POSTs of `tools/call <tool>` in `exchanges`, with their requests and answers.
fn tool_calls<'a>(exchanges: &'a [Value], tool: &str) -> Vec<(&'a Value, &'a Value, &'a Value)> {
    calls_of(exchanges, "tools/call", tool)
}

/// One InputRequiredResult round trip seen on the wire.
struct Round {
    /// The input key (the child's own request id).
    key: String,
    /// The final result.
    result: Value,
    /// The client's answer sent back under `key`.
    response: Value,
}

/// Checks one InputRequiredResult round trip on the wire: the first `<rpc_method> <name>` is
/// answered `input_required` with one input request of `method` (whose params satisfy
/// `check_params`) and a request state; the retry carries the client's answer under the same
/// key and the state unchanged, and gets the final result.
fn assert_one_round(
    exchanges: &[Value],
    (rpc_method, name): (&str, &str),
    method: &str,
    check_params: impl Fn(&Value),
    what: &str,
) -> Round {
    let calls = calls_of(exchanges, rpc_method, name);
    assert_eq!(calls.len(), 2, "{what}: {:?}", methods(exchanges));
    let (_, first, first_answer) = calls[0];
    let (_, retry, retry_answer) = calls[1];
    assert!(
        first["params"].get("inputResponses").is_none(),
        "{what}: {first}"
    );

    let ir = &first_answer["result"];
    assert_eq!(ir["resultType"], "input_required", "{what}: {first_answer}");
    let requests = ir["inputRequests"]
        .as_object()
        .expect("inputRequests object");
    assert_eq!(requests.len(), 1, "{what}: {ir}");
    let (key, request) = requests.iter().next().expect("one input request");
    assert_eq!(request["method"], method, "{what}: {ir}");
    check_params(&request["params"]);
    let state = ir["requestState"].as_str().expect("requestState");
    assert!(!state.is_empty(), "{what}: {ir}");

    assert_eq!(retry["params"]["requestState"], state, "{what}: {retry}");
    let responses = retry["params"]["inputResponses"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: the retry carries no inputResponses: {retry}"));
    assert_eq!(
        responses.keys().collect::<Vec<_>>(),
        [key],
        "{what}: {retry}"
    );
    let result = &retry_answer["result"];
    assert_eq!(result["resultType"], "complete", "{what}: {retry_answer}");
    Round {
        key: key.clone(),
        result: result.clone(),
        response: responses[key].clone(),
    }
}

/// A modern client answers the child's elicitation and sampling requests through
/// InputRequiredResult: the bridge turns the child's server→client request into
/// `inputRequests` (keyed by the child's request id), the SDK calls its callback and retries
/// with `inputResponses`, and the child's tool or prompt (run once) gets the answer. Without
/// the capability the call fails at once with -32021; a legacy client gets the same request
/// as a server→client request.
#[test]
fn python2_modern_input_required() {
    let bridge = Bridge::start(BridgeOpts::default());
    let mut tap = Tap::start(&bridge);
    let url = tap.url(&bridge.mcp_url);
    let skip = ["--resource", "", "--prompt", ""];

    // Elicitation.
    let mut args = vec!["--mode", "auto", "--tool", "elicit_echo"];
    args.extend([
        "--args",
        r#"{"payload":"p-modern"}"#,
        "--elicit-answer",
        "yes-modern",
    ]);
    args.extend(skip);
    let out = py2(&bridge, &url, &args);
    assert_modern_client(&out, "elicitation");
    assert_eq!(out["call"]["is_error"], false, "{out}");
    assert_eq!(
        strs(&out["call"]["texts"]),
        ["p-modern|accept|yes-modern"],
        "{out}"
    );
    assert_eq!(
        out["elicitations"],
        json!([{"message": "payload:p-modern", "properties": ["answer"],
                "answered": {"answer": "yes-modern"}}]),
        "{out}"
    );
    let wire = tap.take();
    assert_modern_wire(&wire, true, "elicitation");
    let Round {
        result, response, ..
    } = assert_one_round(
        &wire,
        ("tools/call", "elicit_echo"),
        "elicitation/create",
        |p| assert_eq!(p["message"], "payload:p-modern", "{p}"),
        "elicitation",
    );
    assert_eq!(
        response,
        json!({"action": "accept", "content": {"answer": "yes-modern"}})
    );
    assert_eq!(
        result["content"],
        json!([{"type": "text", "text": "p-modern|accept|yes-modern"}])
    );
    assert_eq!(bridge.count("call elicit_echo"), 1, "the tool ran again");

    // Sampling.
    let mut args = vec!["--mode", "auto", "--tool", "test_sampling"];
    args.extend([
        "--args",
        r#"{"prompt":"What is 2+2?"}"#,
        "--sampling-text",
        "four",
    ]);
    args.extend(skip);
    let out = py2(&bridge, &url, &args);
    assert_modern_client(&out, "sampling");
    assert_eq!(strs(&out["call"]["texts"]), ["LLM response: four"], "{out}");
    assert_eq!(
        out["samplings"],
        json!([{"texts": ["What is 2+2?"], "answered": "four"}]),
        "{out}"
    );
    let wire = tap.take();
    assert_modern_wire(&wire, true, "sampling");
    let Round { response, .. } = assert_one_round(
        &wire,
        ("tools/call", "test_sampling"),
        "sampling/createMessage",
        |p| assert_eq!(p["messages"][0]["content"]["text"], "What is 2+2?", "{p}"),
        "sampling",
    );
    assert_eq!(response["content"]["text"], "four", "{response}");
    assert_eq!(bridge.count("call test_sampling"), 1);

    // A prompt that needs input: `prompts/get` goes through the same rounds, and the input key
    // is the child's own request id (this fixture prompt asks with the id `user_context`).
    let out = py2(
        &bridge,
        &url,
        &[
            "--mode",
            "auto",
            "--tool",
            "",
            "--resource",
            "",
            "--prompt",
            "test_input_required_result_prompt",
            "--elicit-answer",
            "ctx-modern",
        ],
    );
    assert_modern_client(&out, "prompt input");
    assert_eq!(
        strs(&out["prompt"]),
        ["Use this context: ctx-modern"],
        "{out}"
    );
    let wire = tap.take();
    assert_modern_wire(&wire, true, "prompt input");
    let round = assert_one_round(
        &wire,
        ("prompts/get", "test_input_required_result_prompt"),
        "elicitation/create",
        |_| {},
        "prompt input",
    );
    assert_eq!(
        round.key, "user_context",
        "the key is the child's request id"
    );
    assert_eq!(
        round.response["content"]["context"], "ctx-modern",
        "{}",
        round.response
    );
    assert_eq!(
        bridge.count("prompt test_input_required_result_prompt"),
        1,
        "the prompt ran again"
    );

    // No elicitation capability declared: the call fails at once with -32021 naming the
    // capability (nothing is asked, nothing hangs).
    let mut args = vec![url.as_str(), "--mode", "auto", "--tool", "elicit_echo"];
    args.extend(["--args", r#"{"payload":"p-none"}"#]);
    args.extend(skip);
    let out = run_script_failing(&bridge, "PY_SDK", "py_client.py", &args);
    assert_modern_client(&out, "no capability");
    assert_eq!(out["failed_step"], "tools/call", "{out}");
    assert_eq!(out["elicitations"], Value::Null, "{out}");
    let wire = tap.take();
    assert_modern_wire_failing(&wire, true, &["tools/call"], "no capability");
    let calls = tool_calls(&wire, "elicit_echo");
    assert_eq!(calls.len(), 1, "{:?}", methods(&wire));
    let (ex, _, refused) = calls[0];
    assert_eq!(ex["status"], 400, "{ex}");
    assert_eq!(refused["error"]["code"], -32021, "{refused}");
    assert!(
        refused["error"]["data"]["requiredCapabilities"]
            .get("elicitation")
            .is_some(),
        "{refused}"
    );

    // The same prompt for a legacy client: a server→client request on its POST stream.
    let mut args = vec!["--mode", "legacy", "--tool", "elicit_echo"];
    args.extend([
        "--args",
        r#"{"payload":"p-legacy"}"#,
        "--elicit-answer",
        "yes-legacy",
    ]);
    args.extend(skip);
    let out = py2(&bridge, &url, &args);
    assert_legacy_client(&out, "legacy elicitation");
    assert_eq!(
        strs(&out["call"]["texts"]),
        ["p-legacy|accept|yes-legacy"],
        "{out}"
    );
    let wire = tap.take();
    assert_legacy_wire(&wire, false, true, "legacy elicitation");
    assert_eq!(tool_calls(&wire, "elicit_echo").len(), 1);

    assert_eq!(bridge.count("call elicit_echo"), 3);
    assert_one_child_initialize(&bridge, "input required");
}

/// `bridge run --protocol legacy` serves only the handshake era: `server/discover` is refused
/// the way a 2025-era server refuses an unknown method, so `auto` falls back to `initialize`,
/// and a client pinned to 2026-07-28 gets the same refusal.
#[test]
fn python2_auto_falls_back_when_the_bridge_is_legacy() {
    let bridge = Bridge::start(BridgeOpts {
        args: vec!["--protocol".into(), "legacy".into()],
        ..Default::default()
    });
    let mut tap = Tap::start(&bridge);
    let out = py2(&bridge, &tap.url(&bridge.mcp_url), &["--mode", "auto"]);
    assert_eq!(out["mode"], "auto", "{out}");
    assert_legacy_client(&out, "--protocol legacy");
    assert_fixture_steps(&out, "--protocol legacy");
    assert_eq!(out["discover"], Value::Null, "{out}");
    let wire = tap.take();
    assert_legacy_wire(&wire, true, true, "--protocol legacy");
    let (ex, probe) = requests(&wire)[0];
    let refused = answer(&wire, ex, probe).expect("probe answered");
    assert_eq!(refused["error"]["code"], -32601, "{refused}");

    // A client pinned to the stateless era has nothing to fall back to: refused the same way.
    let url = tap.url(&bridge.mcp_url);
    let out = run_script_failing(
        &bridge,
        "PY_SDK",
        "py_client.py",
        &[&url, "--mode", "modern"],
    );
    assert_eq!(out["failed_step"], "tools/list", "{out}");
    let wire = tap.take();
    assert_eq!(methods(&wire), ["tools/list"], "{wire:#?}");
    let (ex, list) = requests(&wire)[0];
    let refused = answer(&wire, ex, list).expect("tools/list answered");
    assert_eq!(refused["error"]["code"], -32601, "{refused}");
    assert_eq!(bridge.count("call test_simple_text"), 1);
    assert_one_child_initialize(&bridge, "--protocol legacy");
}

// ------------------------------------------------------------------------------------------
// Python SDK 1.x.

#[test]
fn python1_handshake_era() {
    let bridge = Bridge::start(BridgeOpts::default());
    let mut tap = Tap::start(&bridge);
    let out = run_script(
        &bridge,
        "PY_SDK1",
        "py_client_v1.py",
        &[&tap.url(&bridge.mcp_url)],
    );
    assert_legacy_client(&out, "1.x streamable");
    assert_fixture_steps(&out, "1.x streamable");
    assert_eq!(out["server"], "mcp-fixture", "{out}");
    let wire = tap.take();
    assert_legacy_wire(&wire, false, true, "1.x streamable");
    assert_eq!(
        wire.iter()
            .find_map(|e| e["response_headers"]["mcp-session-id"].as_str()),
        out["session_id"].as_str(),
        "{out}"
    );

    let out = run_script(
        &bridge,
        "PY_SDK1",
        "py_client_v1.py",
        &[&tap.url(&bridge.sse_url), "--transport", "sse"],
    );
    assert_legacy_client(&out, "1.x sse");
    assert_fixture_steps(&out, "1.x sse");
    assert_legacy_wire(&tap.take(), false, false, "1.x sse");

    assert_eq!(bridge.count("call test_simple_text"), 2);
    assert_one_child_initialize(&bridge, "python 1.x");
}

// ------------------------------------------------------------------------------------------
// TypeScript SDK 1.x: session resumption and Last-Event-ID replay.

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
    on_both_relays(BridgeOpts::default(), |bridge, label| {
        let out = run_script(
            bridge,
            "NODE22",
            "ts_client.mjs",
            &[&bridge.mcp_url, "--interrupt"],
        );
        assert_eq!(out["ok"], true, "{label}: {out}");
        assert_legacy_client(&out, label);
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
        assert_legacy_client(&sse, label);
        assert_eq!(strs(&sse["tool_names"]), truth.tools, "{label}: {sse}");
        assert_eq!(strs(&sse["call"]["texts"]), [SIMPLE_TEXT], "{label}: {sse}");
        assert_eq!(strs(&sse["resource"]), [STATIC_TEXT], "{label}: {sse}");
        assert_eq!(strs(&sse["prompt"]), truth.prompt, "{label}: {sse}");
        assert_one_child_initialize(bridge, label);
    });
}

// ------------------------------------------------------------------------------------------
// TypeScript SDK 2.x client package (the Inspector's client).

#[test]
fn typescript_v2_client_eras() {
    let bridge = Bridge::start(BridgeOpts::default());
    let mut tap = Tap::start(&bridge);
    let url = tap.url(&bridge.mcp_url);
    for era in ["legacy", "auto", "modern"] {
        let out = run_script(&bridge, "NODE22", "ts_modern.mjs", &[&url, "--era", era]);
        assert_eq!(out["era_option"], era, "{out}");
        assert_fixture_steps(&out, era);
        assert_eq!(out["server"], "mcp-fixture", "{era}: {out}");
        let wire = tap.take();
        if era == "legacy" {
            assert_legacy_client(&out, era);
            assert_legacy_wire(&wire, false, true, era);
        } else {
            assert_modern_client(&out, era);
            assert_eq!(out["discover"]["supportedVersions"], json!(SERVED_VERSIONS));
            assert_modern_wire(&wire, true, era);
        }
    }

    let out = run_script(
        &bridge,
        "NODE22",
        "ts_modern.mjs",
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
    assert_modern_client(&out, "ts elicitation");
    assert_eq!(strs(&out["call"]["texts"]), ["p-ts|accept|yes-ts"], "{out}");
    assert_eq!(out["elicitations"][0]["message"], "payload:p-ts", "{out}");
    let wire = tap.take();
    assert_modern_wire(&wire, true, "ts elicitation");
    assert_one_round(
        &wire,
        ("tools/call", "elicit_echo"),
        "elicitation/create",
        |p| assert_eq!(p["message"], "payload:p-ts", "{p}"),
        "ts elicitation",
    );
    assert_eq!(bridge.count("call elicit_echo"), 1);
    assert_eq!(bridge.count("call test_simple_text"), 3);
    assert_one_child_initialize(&bridge, "ts 2.x");
}

// ------------------------------------------------------------------------------------------
// MCP Inspector CLI.

#[test]
fn inspector_cli_every_era() {
    let truth = fixture_truth();
    let bridge = Bridge::start(BridgeOpts::default());
    let cases = [
        (&bridge.mcp_url, "legacy"),
        (&bridge.mcp_url, "auto"),
        (&bridge.mcp_url, "modern"),
        (&bridge.sse_url, "legacy"),
    ];
    let mut calls = 0;
    for (url, era) in cases {
        let what = format!("{url} --protocol-era {era}");
        let run = |args: &[&str]| -> Value {
            let mut all = vec![url.as_str()];
            all.extend_from_slice(args);
            all.extend(["--protocol-era", era, "--report-era"]);
            let out = run_script(&bridge, "bash", "inspector.sh", &all);
            let wire = &out["wire"];
            if era == "legacy" {
                assert_eq!(wire["era"], "legacy", "{what}: {out}");
                assert_eq!(wire["protocol"], LEGACY_PROTOCOL, "{what}: {out}");
                assert_eq!(wire["discover"], Value::Null, "{what}: {out}");
                assert_eq!(wire["initialize"], 1, "{what}: {out}");
            } else {
                assert_eq!(wire["era"], "modern", "{what}: {out}");
                assert_eq!(wire["protocol"], MODERN_PROTOCOL, "{what}: {out}");
                assert_eq!(wire["initialize"], 0, "{what}: {out}");
                assert_eq!(wire["discover"]["status"], 200, "{what}: {out}");
                assert_eq!(
                    wire["discover"]["result"]["supportedVersions"],
                    json!(SERVED_VERSIONS),
                    "{what}: {out}"
                );
                assert_eq!(wire["session_ids"], json!([]), "{what}: {out}");
            }
            out
        };

        let list = run(&["tools/list"]);
        let names: Vec<&str> = list["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: {list}"))
            .iter()
            .map(|t| t["name"].as_str().expect("tool name"))
            .collect();
        assert_eq!(names, truth.tools, "{what}");

        let call = run(&["tools/call", "--tool-name", "test_simple_text"]);
        calls += 1;
        assert_eq!(
            call["result"]["content"],
            json!([{"type": "text", "text": SIMPLE_TEXT}]),
            "{what}: {call}"
        );

        let read = run(&["resources/read", "--uri", "test://static-text"]);
        assert_eq!(
            read["result"]["contents"][0]["text"], STATIC_TEXT,
            "{what}: {read}"
        );

        let prompt = run(&["prompts/get", "--prompt-name", "test_simple_prompt"]);
        let texts: Vec<&str> = prompt["result"]["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: {prompt}"))
            .iter()
            .map(|m| m["content"]["text"].as_str().expect("text"))
            .collect();
        assert_eq!(texts, truth.prompt, "{what}");
    }
    assert_eq!(bridge.count("call test_simple_text"), calls);
    assert_one_child_initialize(&bridge, "inspector");
}

// ------------------------------------------------------------------------------------------
// Every era at once.

/// Clients of every era on one URL at the same time: Python 2.x auto (modern), Python 2.x
/// legacy, Python 1.x, the TypeScript SDK over HTTP+SSE, the Inspector pinned modern; all
/// succeed with the era they asked for, and the child is initialized once.
#[test]
fn every_era_at_once_on_one_url() {
    let bridge = Bridge::start(BridgeOpts::default());
    let mcp = bridge.mcp_url.as_str();
    let sse = bridge.sse_url.as_str();
    let runs: Vec<(&str, Command)> = vec![
        (
            "py2 auto",
            script(&bridge, "PY_SDK", "py_client.py", &[mcp]),
        ),
        (
            "py2 legacy",
            script(
                &bridge,
                "PY_SDK",
                "py_client.py",
                &[mcp, "--mode", "legacy"],
            ),
        ),
        ("py1", script(&bridge, "PY_SDK1", "py_client_v1.py", &[mcp])),
        (
            "ts sse",
            script(&bridge, "NODE22", "ts_client.mjs", &[sse, "--sse"]),
        ),
        (
            "inspector modern",
            script(
                &bridge,
                "bash",
                "inspector.sh",
                &[
                    mcp,
                    "tools/call",
                    "--tool-name",
                    "test_simple_text",
                    "--protocol-era",
                    "modern",
                    "--report-era",
                ],
            ),
        ),
    ];
    let outs: Vec<(&str, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .into_iter()
            .map(|(name, mut cmd)| (name, s.spawn(move || run_json(&mut cmd))))
            .collect();
        handles
            .into_iter()
            .map(|(name, h)| (name, h.join().unwrap_or_else(|_| panic!("{name} failed"))))
            .collect()
    });
    for (name, out) in &outs {
        match *name {
            "py2 auto" => assert_modern_client(out, name),
            "inspector modern" => {
                assert_eq!(out["wire"]["era"], "modern", "{name}: {out}");
                assert_eq!(
                    out["result"]["content"][0]["text"], SIMPLE_TEXT,
                    "{name}: {out}"
                );
                continue;
            }
            _ => assert_legacy_client(out, name),
        }
        assert_eq!(out["ok"], true, "{name}: {out}");
        assert_eq!(strs(&out["call"]["texts"]), [SIMPLE_TEXT], "{name}: {out}");
    }
    assert_eq!(bridge.count("call test_simple_text"), outs.len());
    assert_one_child_initialize(&bridge, "every era at once");
}
