//! Answers for a tunnel whose desktop is offline (past the grace period), or whose
//! desktop reports its local MCP server unreachable (an HTTP server that is down):
//! `initialize` and `tools/list` from the bridge's last snapshot, `tools/call` as a tool
//! error saying since when, so a hosted connector keeps working while a laptop sleeps or
//! a desktop app is closed.

use std::time::SystemTime;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use protocol::jsonrpc::{
    self, Kind, METHOD_NOT_FOUND, UNAVAILABLE, error_response, result_response,
};

use crate::tunnels::registry::{Away, Offline};
use crate::util::http_error::McpError;
use axum::response::IntoResponse;

pub use protocol::time::rfc3339;

fn since_text(off: &Offline) -> String {
    let ago = SystemTime::now()
        .duration_since(off.since)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ago = if ago < 120 {
        format!("{ago} s ago")
    } else {
        format!("{} min ago", ago / 60)
    };
    format!("{} ({ago})", rfc3339(off.since))
}

/// What is away, and since when, as a sentence's subject and verb.
fn away_text(off: &Offline) -> String {
    match off.away {
        Away::Desktop => format!(
            "the desktop serving this tunnel is offline since {}",
            since_text(off)
        ),
        Away::Server => format!(
            "the local MCP server behind this tunnel is not reachable since {} (the desktop is online and keeps trying it)",
            since_text(off)
        ),
    }
}

/// 503 with a JSON-RPC error saying since when the desktop is offline.
pub fn unavailable(off: &Offline) -> Response {
    McpError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        UNAVAILABLE,
        format!("{}; retry when it is back", away_text(off)),
    )
    .into_response()
}

fn json(body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Answers a POSTed JSON-RPC message while the desktop is offline.
pub fn post(off: &Offline, body: &[u8]) -> Response {
    let Ok(env) = jsonrpc::parse(body) else {
        return unavailable(off);
    };
    if env.kind != Kind::Request {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::ACCEPTED;
        return r;
    }
    // (The parser gives every request an id.)
    let Some(id) = env.id.clone().map(|range| &body[range]) else {
        return unavailable(off);
    };
    let method = env.method.as_deref().unwrap_or("");
    let snapshot = off.snapshot.as_deref();
    if env
        .meta_protocol_version
        .as_deref()
        .is_some_and(|v| protocol::MODERN_MCP_VERSIONS.contains(&v))
        && let Some(r) = stateless_post(off, id, method, snapshot)
    {
        return r;
    }
    if method == "server/discover" && env.meta_protocol_version.is_none() {
        // A bare probe: what a 2025-era server answers to an unknown method, as online.
        let msg = "Method not found: server/discover needs the 2026-07-28 request envelope \
                   (params._meta); this endpoint also serves initialize";
        return json(error_response(id, METHOD_NOT_FOUND, msg));
    }
    match (method, snapshot) {
        ("initialize", Some(s)) if !s.initialize.is_empty() => {
            let requested = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["params"]["protocolVersion"].as_str().map(str::to_owned));
            let mut result: serde_json::Value =
                serde_json::from_slice(&s.initialize).unwrap_or_default();
            if let (Some(v), Some(obj)) = (requested, result.as_object_mut())
                && protocol::LEGACY_MCP_VERSIONS.contains(&v.as_str())
            {
                obj.insert("protocolVersion".into(), v.into());
            }
            let result = json_bytes(&result);
            json(result_response(id, &result))
        }
        ("tools/list", Some(s)) if !s.tools.is_empty() => json(result_response(id, &s.tools)),
        ("tools/call", _) => json(result_response(id, &json_bytes(&offline_tool_result(off)))),
        ("ping", _) => json(result_response(id, b"{}")),
        _ => {
            let mut r = json(error_response(id, UNAVAILABLE, &away_text(off)));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
    }
}

/// The tool error every call gets while the desktop is offline.
fn offline_tool_result(off: &Offline) -> serde_json::Value {
    let text = match off.away {
        Away::Desktop => format!(
            "The desktop that runs this tool is offline since {}. Try again once it is back online.",
            since_text(off)
        ),
        Away::Server => format!(
            "The local MCP server that runs this tool is not reachable since {} (the desktop is online). Try again once it is back.",
            since_text(off)
        ),
    };
    serde_json::json!({
        "content": [{ "type": "text", "text": text }],
        "isError": true
    })
}

/// Answers of the 2026-07-28 revision from the snapshot (`server/discover`, `tools/list`,
/// `tools/call`); `None` for what the snapshot cannot answer.
fn stateless_post(
    off: &Offline,
    id: &[u8],
    method: &str,
    snapshot: Option<&protocol::Snapshot>,
) -> Option<Response> {
    use protocol::stateless::{LIST_TTL_MS, discover_result};
    let scope = if off.auth == protocol::ClientAuth::None {
        "public"
    } else {
        "private"
    };
    let result = match (method, snapshot) {
        ("server/discover", Some(s)) if !s.initialize.is_empty() => {
            let init: serde_json::Value = serde_json::from_slice(&s.initialize).ok()?;
            discover_result(&init, scope)
        }
        ("tools/list", Some(s)) if !s.tools.is_empty() => {
            let mut r: serde_json::Value = serde_json::from_slice(&s.tools).ok()?;
            let obj = r.as_object_mut()?;
            obj.insert("resultType".into(), "complete".into());
            obj.insert("ttlMs".into(), LIST_TTL_MS.into());
            obj.insert("cacheScope".into(), scope.into());
            r
        }
        ("tools/call", _) => {
            let mut r = offline_tool_result(off);
            r["resultType"] = "complete".into();
            r
        }
        _ => return None,
    };
    Some(json(result_response(id, &json_bytes(&result))))
}

/// A JSON value's bytes (serializing a `Value` cannot fail).
fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    async fn answer(off: &Offline, body: serde_json::Value) -> (StatusCode, serde_json::Value) {
        let r = post(off, &serde_json::to_vec(&body).unwrap());
        (r.status(), crate::testing::json_body(r).await)
    }

    #[tokio::test]
    async fn stateless_requests_are_answered_from_the_snapshot() {
        let off = Offline {
            auth: protocol::ClientAuth::None,
            since: SystemTime::now(),
            snapshot: Some(std::sync::Arc::new(protocol::Snapshot {
                initialize: bytes::Bytes::from_static(
                    br#"{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}"#,
                ),
                tools: bytes::Bytes::from_static(br#"{"tools":[{"name":"t","inputSchema":{}}]}"#),
            })),
            away: Away::Desktop,
        };
        let meta = serde_json::json!({"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}
        }});
        let req = |id: u32, method: &str| serde_json::json!({"jsonrpc":"2.0","id":id,"method":method,"params":meta});
        let (st, d) = answer(&off, req(1, "server/discover")).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(
            d["result"]["supportedVersions"][0], "2026-07-28",
            "the newest first, then the handshake revisions: {d}"
        );
        assert!(
            d["result"]["supportedVersions"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v == "2025-11-25"))
        );
        assert_eq!(
            d["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
            "s"
        );
        assert_eq!(d["result"]["cacheScope"], "public");
        let (_, l) = answer(&off, req(2, "tools/list")).await;
        assert_eq!(l["result"]["tools"][0]["name"], "t");
        assert_eq!(l["result"]["resultType"], "complete");
        assert!(l["result"]["ttlMs"].as_u64().is_some());
        let (_, c) = answer(&off, req(3, "tools/call")).await;
        assert_eq!(c["result"]["isError"], true);
        assert_eq!(c["result"]["resultType"], "complete");
        let (st, p) = answer(&off, req(4, "prompts/list")).await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(p["id"], 4);
        // A 2025-era tools/list stays as it was.
        let (_, old) = answer(
            &off,
            serde_json::json!({"jsonrpc":"2.0","id":5,"method":"tools/list"}),
        )
        .await;
        assert!(old["result"].get("resultType").is_none());
        // A bare server/discover is not a 2026-07-28 request: method not found, HTTP 200.
        let (st, bare) = answer(
            &off,
            serde_json::json!({"jsonrpc":"2.0","id":"openai-mcp-discover","method":"server/discover"}),
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(bare["error"]["code"], METHOD_NOT_FOUND);
        assert_eq!(bare["id"], "openai-mcp-discover");
    }

    #[tokio::test]
    async fn a_server_that_is_away_is_named_not_the_desktop() {
        let off = Offline {
            auth: protocol::ClientAuth::None,
            since: SystemTime::now(),
            snapshot: None,
            away: Away::Server,
        };
        let (_, c) = answer(
            &off,
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}),
        )
        .await;
        let text = c["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(text.contains("local MCP server"), "{text}");
        assert!(!text.contains("desktop that runs"), "{text}");
        assert_eq!(c["result"]["isError"], true);
        let (st, p) = answer(
            &off,
            serde_json::json!({"jsonrpc":"2.0","id":2,"method":"prompts/list"}),
        )
        .await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
        let msg = p["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("not reachable since"), "{msg}");
    }
}
