//! What a client said on the wire, from a tap's exchanges: the requests and their
//! answers, whether the conversation was a handshake-era or a stateless one, and the
//! InputRequiredResult rounds of a stateless call.

use e2e::mcp::{HANDSHAKE, META_CAPS, META_CLIENT_INFO, META_SERVER_INFO, META_VERSION, STATELESS};
use serde_json::{Value, json};

use crate::SERVED_VERSIONS;

/// The JSON-RPC requests (with their exchange) sent in POST bodies, in order.
pub(crate) fn requests(exchanges: &[Value]) -> Vec<(&Value, &Value)> {
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
/// Streamable HTTP, the GET stream on HTTP+SSE).
pub(crate) fn answer<'a>(
    exchanges: &'a [Value],
    own: &'a Value,
    request: &Value,
) -> Option<&'a Value> {
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
pub(crate) fn methods(exchanges: &[Value]) -> Vec<&str> {
    requests(exchanges)
        .iter()
        .map(|(_, m)| m["method"].as_str().unwrap_or("?"))
        .collect()
}

/// Checks that `exchanges` are a handshake-era conversation: one `initialize` answered with
/// [`HANDSHAKE`] (after a refused `server/discover` probe when `probed`), no request
/// carrying the 2026 envelope; over Streamable HTTP, every later request carries the session
/// id and the protocol version in headers. Returns the `initialize` result.
pub(crate) fn assert_handshake_wire(
    exchanges: &[Value],
    probed: bool,
    streamable: bool,
    what: &str,
) -> Value {
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
        init_answer["result"]["protocolVersion"], HANDSHAKE,
        "{what}: {init_answer}"
    );
    let session = init_ex["response_headers"]["mcp-session-id"].clone();
    if streamable {
        assert!(session.is_string(), "{what}: no Mcp-Session-Id: {init_ex}");
    }
    for (ex, m) in &reqs[first + 1..] {
        assert!(
            m["params"]["_meta"].get(META_VERSION).is_none(),
            "{what}: a handshake-era request carries the 2026 envelope: {m}"
        );
        if streamable {
            assert_eq!(ex["headers"]["mcp-session-id"], session, "{what}: {ex}");
            assert_eq!(
                ex["headers"]["mcp-protocol-version"], HANDSHAKE,
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
pub(crate) fn assert_stateless_wire(exchanges: &[Value], probed: bool, what: &str) -> Value {
    assert_stateless_wire_failing(exchanges, probed, &[], what)
}

/// [`assert_stateless_wire`], where the requests of the `failing` methods are answered with an
/// error (checked by the caller) instead of a result.
pub(crate) fn assert_stateless_wire_failing(
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
        assert_eq!(meta[META_VERSION], STATELESS, "{what}: {m}");
        assert!(meta[META_CLIENT_INFO].is_object(), "{what}: {m}");
        assert!(meta[META_CAPS].is_object(), "{what}: {m}");
        assert_eq!(
            ex["headers"]["mcp-protocol-version"], STATELESS,
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
pub(crate) fn assert_discover_matches_initialize(discover: &Value, initialize: &Value, what: &str) {
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

/// The POSTs of `<rpc_method> <name>` (`tools/call` and `prompts/get` carry `params.name`) in
/// `exchanges`, with their requests and answers.
pub(crate) fn calls_of<'a>(
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
pub(crate) fn tool_calls<'a>(
    exchanges: &'a [Value],
    tool: &str,
) -> Vec<(&'a Value, &'a Value, &'a Value)> {
    calls_of(exchanges, "tools/call", tool)
}

/// One InputRequiredResult round trip seen on the wire.
pub(crate) struct Round {
    /// The input key (the child's own request id).
    pub(crate) key: String,
    /// The final result.
    pub(crate) result: Value,
    /// The client's answer sent back under `key`.
    pub(crate) response: Value,
}

/// Checks one InputRequiredResult round trip on the wire: the first `<rpc_method> <name>` is
/// answered `input_required` with one input request of `method` (whose params satisfy
/// `check_params`) and a request state; the retry carries the client's answer under the same
/// key and the state unchanged, and gets the final result.
pub(crate) fn assert_one_round(
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
