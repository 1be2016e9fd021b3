//! What a JSON-RPC request is, as both binaries log and count it: the request id the relay
//! and the bridge both print ([`RequestId`]), the kind of call ([`CallKind`], a metric label),
//! and a one-pass [`peek`] at a body's `method`, `id` and `params` that never parses it.

use std::fmt;

/// A request id as both binaries log it: the relay's exchange number in lower-case hex
/// (the same digits that name a resumable stream in SSE event ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// What a public MCP request was, as a metric label: the JSON-RPC method of a POST, or
/// what the HTTP request itself does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// `initialize`.
    Initialize,
    /// `ping`.
    Ping,
    /// `tools/list`.
    ToolsList,
    /// `tools/call`.
    ToolsCall,
    /// `resources/list`.
    ResourcesList,
    /// `resources/templates/list`.
    ResourcesTemplatesList,
    /// `resources/read`.
    ResourcesRead,
    /// `resources/subscribe`.
    ResourcesSubscribe,
    /// `resources/unsubscribe`.
    ResourcesUnsubscribe,
    /// `prompts/list`.
    PromptsList,
    /// `prompts/get`.
    PromptsGet,
    /// `completion/complete`.
    CompletionComplete,
    /// `logging/setLevel`.
    LoggingSetLevel,
    /// `server/discover`.
    ServerDiscover,
    /// `subscriptions/listen`.
    SubscriptionsListen,
    /// Any other request method.
    Other,
    /// A JSON-RPC notification.
    Notification,
    /// A JSON-RPC response (a client answering a server request).
    Response,
    /// `GET /<name>/mcp`: a session's stream, a resumption, or a connector's probe.
    Stream,
    /// `DELETE /<name>/mcp`: the end of a session.
    Delete,
    /// `GET /<name>/sse`: an HTTP+SSE stream.
    SseOpen,
    /// A request refused before its body was read (authentication, origin, unknown
    /// tunnel, wrong content type, malformed JSON…).
    Unknown,
}

impl CallKind {
    /// Every kind, in label order.
    pub const ALL: [CallKind; 22] = [
        CallKind::Initialize,
        CallKind::Ping,
        CallKind::ToolsList,
        CallKind::ToolsCall,
        CallKind::ResourcesList,
        CallKind::ResourcesTemplatesList,
        CallKind::ResourcesRead,
        CallKind::ResourcesSubscribe,
        CallKind::ResourcesUnsubscribe,
        CallKind::PromptsList,
        CallKind::PromptsGet,
        CallKind::CompletionComplete,
        CallKind::LoggingSetLevel,
        CallKind::ServerDiscover,
        CallKind::SubscriptionsListen,
        CallKind::Other,
        CallKind::Notification,
        CallKind::Response,
        CallKind::Stream,
        CallKind::Delete,
        CallKind::SseOpen,
        CallKind::Unknown,
    ];

    /// Number of kinds.
    pub const COUNT: usize = Self::ALL.len();

    /// The label value (the MCP method itself for the methods listed).
    pub const fn as_str(self) -> &'static str {
        match self {
            CallKind::Initialize => "initialize",
            CallKind::Ping => "ping",
            CallKind::ToolsList => "tools/list",
            CallKind::ToolsCall => "tools/call",
            CallKind::ResourcesList => "resources/list",
            CallKind::ResourcesTemplatesList => "resources/templates/list",
            CallKind::ResourcesRead => "resources/read",
            CallKind::ResourcesSubscribe => "resources/subscribe",
            CallKind::ResourcesUnsubscribe => "resources/unsubscribe",
            CallKind::PromptsList => "prompts/list",
            CallKind::PromptsGet => "prompts/get",
            CallKind::CompletionComplete => "completion/complete",
            CallKind::LoggingSetLevel => "logging/setLevel",
            CallKind::ServerDiscover => "server/discover",
            CallKind::SubscriptionsListen => "subscriptions/listen",
            CallKind::Other => "other",
            CallKind::Notification => "notification",
            CallKind::Response => "response",
            CallKind::Stream => "stream",
            CallKind::Delete => "delete",
            CallKind::SseOpen => "sse",
            CallKind::Unknown => "unknown",
        }
    }

    /// Index into [`CallKind::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The kind of a request with this method.
    pub fn of_method(method: &str) -> CallKind {
        match method {
            "initialize" => CallKind::Initialize,
            "ping" => CallKind::Ping,
            "tools/list" => CallKind::ToolsList,
            "tools/call" => CallKind::ToolsCall,
            "resources/list" => CallKind::ResourcesList,
            "resources/templates/list" => CallKind::ResourcesTemplatesList,
            "resources/read" => CallKind::ResourcesRead,
            "resources/subscribe" => CallKind::ResourcesSubscribe,
            "resources/unsubscribe" => CallKind::ResourcesUnsubscribe,
            "prompts/list" => CallKind::PromptsList,
            "prompts/get" => CallKind::PromptsGet,
            "completion/complete" => CallKind::CompletionComplete,
            "logging/setLevel" => CallKind::LoggingSetLevel,
            "server/discover" => CallKind::ServerDiscover,
            "subscriptions/listen" => CallKind::SubscriptionsListen,
            _ => CallKind::Other,
        }
    }
}

/// What [`peek`] finds in a JSON-RPC message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Peek<'a> {
    /// The `method` (only when written without escapes).
    pub method: Option<&'a str>,
    /// Whether an `id` other than `null` is present.
    pub has_id: bool,
    /// The raw `params` value.
    pub params: Option<&'a [u8]>,
}

impl Peek<'_> {
    /// Whether the message is a request (a method and an id).
    pub fn is_request(&self) -> bool {
        self.method.is_some() && self.has_id
    }
}

/// Finds a message's `method`, `id` and `params` by scanning the top-level object only:
/// values are skipped (strings with `memchr`), never parsed, so a large body costs one
/// pass. For logs and metrics: it does not validate the message.
pub fn peek(body: &[u8]) -> Peek<'_> {
    let mut p = Peek::default();
    crate::scan::for_each_member(body, |key, value| {
        match key {
            b"method" => p.method = plain_string(value),
            b"id" => p.has_id = value != b"null",
            b"params" => p.params = Some(value),
            _ => {}
        }
        true
    });
    p
}

/// The `name` member of a `params` object (a `tools/call`'s tool), if it is a string
/// written without escapes.
pub fn tool_name(params: &[u8]) -> Option<&str> {
    let mut name = None;
    crate::scan::for_each_member(params, |key, value| {
        if key == b"name" {
            name = plain_string(value);
            return false;
        }
        true
    });
    name
}

/// A JSON string value's contents when it has no escapes.
fn plain_string(value: &[u8]) -> Option<&str> {
    let inner = value.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if inner.contains(&b'\\') {
        return None;
    }
    std::str::from_utf8(inner).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_hex() {
        assert_eq!(RequestId(0x1a2b_0000_002f).to_string(), "1a2b0000002f");
        assert_eq!(RequestId(0).to_string(), "0");
        // The same digits as the stream part of an SSE event id.
        let ev = crate::event_id(0x00de_adbe_ef01, 3);
        assert_eq!(ev, format!("{}.3", RequestId(0x00de_adbe_ef01)));
    }

    #[test]
    fn peeks_without_parsing() {
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{"q":"a \"name\": x","name":"inner"},"name":"search"}}"#;
        let p = peek(body);
        assert_eq!(p.method, Some("tools/call"));
        assert!(p.is_request());
        assert_eq!(tool_name(p.params.unwrap()), Some("search"));

        let note = br#" { "method" : "notifications/initialized" , "jsonrpc":"2.0" } "#;
        let p = peek(note);
        assert_eq!(p.method, Some("notifications/initialized"));
        assert!(!p.is_request());

        let null_id = br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#;
        assert!(!peek(null_id).is_request());
        let escaped = br#"{"jsonrpc":"2.0","id":1,"method":"tools\/call"}"#;
        assert_eq!(peek(escaped).method, None);
        for junk in [
            &b""[..],
            b"[1]",
            b"{",
            b"{\"method\"",
            b"{\"id\":1,",
            b"nul",
        ] {
            assert!(!peek(junk).is_request());
        }
        assert_eq!(tool_name(br#"{"name":"a\nb"}"#), None);
        assert_eq!(tool_name(br#"{"name":7}"#), None);
    }

    #[test]
    fn kinds_and_labels() {
        for (i, k) in CallKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            if i < CallKind::Other.index() {
                assert_eq!(CallKind::of_method(k.as_str()), *k);
            }
        }
        assert_eq!(CallKind::of_method("vendor/thing"), CallKind::Other);
    }
}
