//! Shapes of MCP 2026-07-28 (the stateless revision) messages that both the bridge and the relay's
//! offline answers build.

use serde_json::{Value, json};

/// `_meta` key of the protocol version a stateless request announces.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the client capabilities a stateless request declares.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of the lowest log severity a stateless request wants.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key of the client's name and version in a stateless request.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key of the server's name and version in results.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// `_meta` key of a `subscriptions/listen` stream's id.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// The `_meta` keys that make a request's per-request envelope (2026-07-28). They are the
/// bridge's to interpret: a server opened with `initialize` speaks the handshake era on
/// that connection, and dual-era servers (the Python SDK 2.x) refuse a request that
/// carries them there.
pub const ENVELOPE_KEYS: &[&str] = &[
    META_PROTOCOL_VERSION,
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_LOG_LEVEL,
];

/// Turns the `params` of a stateless request into the `params` of the same request in the
/// handshake era: removes the envelope keys from `_meta`, and `_meta` itself when nothing
/// else (a `progressToken`, the client's own keys) is left in it. Returns whether anything
/// was removed.
pub fn strip_envelope(params: &mut serde_json::Map<String, Value>) -> bool {
    let Some(Value::Object(meta)) = params.get_mut("_meta") else {
        return false;
    };
    let before = meta.len();
    meta.retain(|k, _| !ENVELOPE_KEYS.contains(&k.as_str()));
    let removed = meta.len() != before;
    if meta.is_empty() {
        params.remove("_meta");
    }
    removed
}

/// Freshness hint (`ttlMs`) of lists and `server/discover`.
pub const LIST_TTL_MS: u64 = 60_000;

/// Every protocol revision a tunnel URL serves, newest first: the 2026-07-28 revision
/// (stateless requests) and the handshake revisions (`initialize`). `server/discover` lists
/// them all, as dual-era servers do, so a client that knows only the handshake revisions
/// sees one it shares and falls back to `initialize` instead of giving up.
pub fn served_versions() -> Vec<&'static str> {
    crate::MODERN_MCP_VERSIONS
        .iter()
        .chain(crate::LEGACY_MCP_VERSIONS)
        .copied()
        .collect()
}

/// The `server/discover` result for a server whose initialize result is `init`: the same
/// capabilities, instructions and server info an `initialize` gets, and every revision the
/// URL serves ([`served_versions`]).
pub fn discover_result(init: &Value, cache_scope: &str) -> Value {
    let mut result = json!({
        "resultType": "complete",
        "supportedVersions": served_versions(),
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
    fn the_envelope_is_removed_and_the_rest_of_meta_kept() {
        let mut p = json!({
            "name": "t",
            "_meta": {
                META_PROTOCOL_VERSION: "2026-07-28",
                META_CLIENT_CAPABILITIES: {},
                META_CLIENT_INFO: {"name": "c", "version": "1"},
                META_LOG_LEVEL: "info",
                "progressToken": 7,
                "com.example/trace": "x"
            }
        });
        let p = p.as_object_mut().unwrap();
        assert!(strip_envelope(p));
        assert_eq!(
            Value::Object(p.clone()),
            json!({"name": "t", "_meta": {"progressToken": 7, "com.example/trace": "x"}})
        );
        assert!(!strip_envelope(p), "nothing left to remove");

        let mut only =
            json!({"_meta": {META_PROTOCOL_VERSION: "2026-07-28", META_CLIENT_CAPABILITIES: {}}});
        let only = only.as_object_mut().unwrap();
        assert!(strip_envelope(only));
        assert!(only.is_empty(), "an empty _meta goes too: {only:?}");

        let mut other = json!({"_meta": "not an object", "x": 1});
        assert!(!strip_envelope(other.as_object_mut().unwrap()));
        assert_eq!(other["_meta"], "not an object");
    }

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
        assert_eq!(
            d["supportedVersions"],
            json!([
                "2026-07-28",
                "2025-11-25",
                "2025-06-18",
                "2025-03-26",
                "2024-11-05"
            ])
        );
        assert_eq!(d["resultType"], "complete");
        assert_eq!(d["cacheScope"], "private");
        let bare = discover_result(&json!({}), "public");
        assert_eq!(bare["capabilities"], json!({}));
        assert!(bare.get("_meta").is_none() && bare.get("instructions").is_none());
    }
}
