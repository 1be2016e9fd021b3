//! Shapes of MCP 2026-07-28 ("modern") messages that both the bridge and the relay's
//! offline answers build.

use serde_json::{Value, json};

/// `_meta` key of the protocol version a modern request announces.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the client capabilities a modern request declares.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of the lowest log severity a modern request wants.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key of the server's name and version in results.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// `_meta` key of a `subscriptions/listen` stream's id.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// Freshness hint (`ttlMs`) of lists and `server/discover`.
pub const LIST_TTL_MS: u64 = 60_000;

/// The `server/discover` result for a server whose initialize result is `init`: the same
/// capabilities, instructions and server info an `initialize` gets.
pub fn discover_result(init: &Value, cache_scope: &str) -> Value {
    let mut result = json!({
        "resultType": "complete",
        "supportedVersions": crate::MODERN_MCP_VERSIONS,
        "capabilities": init.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "ttlMs": LIST_TTL_MS,
        "cacheScope": cache_scope,
    });
    if let Some(i) = init.get("instructions").filter(|i| i.is_string()) {
        result["instructions"] = i.clone();
    }
    if let Some(info) = init.get("serverInfo").filter(|i| i.is_object()) {
        result["_meta"] = json!({ META_SERVER_INFO: info });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_mirrors_initialize() {
        let init = json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {"listChanged": true}},
            "serverInfo": {"name": "s", "version": "1"},
            "instructions": "use it"
        });
        let d = discover_result(&init, "private");
        assert_eq!(d["capabilities"], init["capabilities"]);
        assert_eq!(d["_meta"][META_SERVER_INFO], init["serverInfo"]);
        assert_eq!(d["instructions"], "use it");
        assert_eq!(d["supportedVersions"], json!(["2026-07-28"]));
        assert_eq!(d["resultType"], "complete");
        assert_eq!(d["cacheScope"], "private");
        let bare = discover_result(&json!({}), "public");
        assert_eq!(bare["capabilities"], json!({}));
        assert!(bare.get("_meta").is_none() && bare.get("instructions").is_none());
    }
}
