//! The initialize handshake: the bridge initializes each child once and answers every
//! remote `initialize` from that cached result, negotiating the protocol version per
//! the MCP lifecycle rules.

use bytes::Bytes;
use serde_json::{Value, json};

use super::sessions::ClientCaps;

/// A remote `initialize` waiting for its child to finish starting.
pub(super) struct WaitingInit {
    /// Where the answer goes; `None` once that exchange is gone (link down).
    pub(super) exchange: Option<u64>,
    /// The request's id (raw JSON).
    pub(super) id: Bytes,
    /// The protocol version the client asked for.
    pub(super) requested: Option<String>,
    /// What the client can answer.
    pub(super) caps: ClientCaps,
    /// Who asked.
    pub(super) principal: String,
    /// What the client called itself (`clientInfo` name and version), for the owner.
    pub(super) client: Option<String>,
    /// For an HTTP+SSE session: the session (already created), whose stream gets the answer.
    pub(super) http_sse_session: Option<String>,
}

/// The `initialize` request the bridge sends to a child, with its child-side id.
///
/// The bridge declares sampling and elicitation (it routes them to a client that can
/// answer, or refuses them) and roots (it answers `roots/list` itself from local
/// configuration).
pub fn child_initialize_request(id: u64) -> Vec<u8> {
    let msg = json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": protocol::LATEST_LEGACY_MCP_VERSION,
            "capabilities": {
                "roots": { "listChanged": false },
                "sampling": {},
                "elicitation": {}
            },
            "clientInfo": { "name": "mcp-tunnel-bridge", "version": env!("CARGO_PKG_VERSION") }
        }
    });
    msg.to_string().into_bytes()
}

/// The notification that completes the child's handshake.
pub const INITIALIZED_NOTIFICATION: &[u8] =
    br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// The version to answer a client that asked for `requested`: the same if the bridge
/// supports it, otherwise the version the child agreed to.
pub fn negotiate(requested: Option<&str>, child_version: &str) -> String {
    match requested {
        Some(v) if protocol::LEGACY_MCP_VERSIONS.contains(&v) => v.to_owned(),
        _ => child_version.to_owned(),
    }
}

/// The cached initialize result with the negotiated version, serialised.
pub fn result_for(cached: &Value, version: &str) -> Vec<u8> {
    let mut r = cached.clone();
    if let Some(obj) = r.as_object_mut() {
        obj.insert("protocolVersion".into(), Value::String(version.to_owned()));
    }
    r.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("2025-03-26"), "2025-11-25"), "2025-03-26");
        assert_eq!(negotiate(Some("2099-01-01"), "2025-06-18"), "2025-06-18");
        assert_eq!(negotiate(None, "2025-06-18"), "2025-06-18");
    }

    #[test]
    fn result_keeps_everything_else() {
        let cached = json!({"protocolVersion":"2025-11-25","serverInfo":{"name":"x"},"capabilities":{"tools":{}}});
        let out: Value = serde_json::from_slice(&result_for(&cached, "2025-03-26")).unwrap();
        assert_eq!(out["protocolVersion"], "2025-03-26");
        assert_eq!(out["serverInfo"]["name"], "x");
        let req: Value = serde_json::from_slice(&child_initialize_request(5)).unwrap();
        assert_eq!(req["id"], 5);
        assert_eq!(req["method"], "initialize");
    }
}
