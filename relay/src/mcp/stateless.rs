//! Header checks of stateless (2026-07-28) Streamable HTTP requests.
//! Which revisions are served and how: `docs/design/protocol-support.md`.
//!
//! A stateless request names its protocol version in
//! `params._meta["io.modelcontextprotocol/protocolVersion"]` and mirrors parts of its body
//! into HTTP headers (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, and
//! `Mcp-Param-{Name}` for tool parameters annotated with `x-mcp-header`). Only the relay
//! sees the headers, so it checks that they agree with the body before forwarding, and
//! answers a disagreement with HTTP 400 and JSON-RPC error -32020 (`HeaderMismatch`)
//! naming the request's id.
//!
//! Bodies are looked at only when they could be stateless (a cheap byte search), and then
//! only the few fields the checks need are parsed, borrowing from the body.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use axum::body::Body;
use axum::response::Response;
use base64::Engine;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use protocol::jsonrpc::HEADER_MISMATCH;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// Longest header value examined (raw, before Base64 decoding); longer is invalid.
pub const MAX_HEADER_VALUE: usize = 8 * 1024;

/// Most `x-mcp-header` annotations considered in one tool's input schema.
const MAX_ANNOTATIONS: usize = 64;

/// Deepest `properties` chain followed in a tool's input schema.
const MAX_SCHEMA_DEPTH: usize = 32;

/// Longest body field path quoted in an error message.
const MAX_FIELD_TEXT: usize = 200;

/// Prefix of a Base64-encoded header value.
const B64_PREFIX: &str = "=?base64?";
/// Suffix of a Base64-encoded header value.
const B64_SUFFIX: &str = "?=";

/// Which era a POSTed body belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// Anything that is not a stateless request (requests of the handshake revisions,
    /// notifications, responses): the relay treats it as before.
    Handshake,
    /// A stateless (2026-07-28) request whose headers agree with its body.
    Stateless,
}

/// Why a stateless request's headers do not agree with its body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// A header the body calls for is absent.
    #[error("Header mismatch: the {0} header is required")]
    Missing(String),
    /// A header's value differs from the body's.
    #[error("Header mismatch: the {header} header does not match {field} in the body")]
    Differs {
        /// The header's name.
        header: String,
        /// Where the body holds the value.
        field: String,
    },
    /// A header is present for a value the body does not have.
    #[error("Header mismatch: the {header} header is present but {field} is absent from the body")]
    Unexpected {
        /// The header's name.
        header: String,
        /// Where the body would hold the value.
        field: String,
    },
    /// A header's value is malformed: characters outside visible ASCII, space and tab,
    /// too long, repeated, or an invalid Base64 encoding.
    #[error("Header mismatch: the {0} header has an invalid value")]
    Invalid(String),
    /// The body's params cannot be compared with the headers (a field repeated).
    #[error("Header mismatch: the request's params cannot be checked against its headers")]
    Ambiguous,
}

/// A refused stateless request: its raw JSON id and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The request's `id` as written in the body.
    pub id: Vec<u8>,
    /// What disagrees.
    pub reason: Mismatch,
}

impl Rejection {
    /// The HTTP answer: 400 with a JSON-RPC error -32020 for the request's id.
    pub fn into_response(self) -> Response {
        let body =
            protocol::jsonrpc::error_response(&self.id, HEADER_MISMATCH, &self.reason.to_string());
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

/// Checks a POSTed JSON-RPC body (already validated as one JSON-RPC message) against the
/// request's headers. `tools` is the bridge's cached `tools/list` result, if any, used
/// for the `Mcp-Param-{Name}` checks of `tools/call`. The error is the finished HTTP
/// answer.
pub fn check(headers: &HeaderMap, body: &[u8], tools: Option<&[u8]>) -> Result<Era, Response> {
    validate(headers, body, tools).map_err(Rejection::into_response)
}

/// Like [`check`], with the refusal as a value.
pub fn validate(headers: &HeaderMap, body: &[u8], tools: Option<&[u8]>) -> Result<Era, Rejection> {
    if !might_be_stateless(body) {
        return Ok(Era::Handshake);
    }
    let Ok(msg) = serde_json::from_slice::<Message<'_>>(body) else {
        return Ok(Era::Handshake);
    };
    let (Some(id), Some(method), Some(params)) = (msg.id, msg.method, msg.params) else {
        return Ok(Era::Handshake);
    };
    if id.get() == "null" || !params.get().starts_with('{') {
        return Ok(Era::Handshake);
    }
    let reject = |reason| Rejection {
        id: id.get().as_bytes().to_vec(),
        reason,
    };
    let params = match serde_json::from_str::<Params<'_>>(params.get()) {
        Ok(p) => p,
        Err(_) => {
            // A field repeated among params: stateless or not decides whether that matters.
            return match serde_json::from_str::<MetaOnly<'_>>(params.get()) {
                Ok(MetaOnly {
                    meta:
                        Some(Meta {
                            protocol_version: Some(_),
                        }),
                }) => Err(reject(Mismatch::Ambiguous)),
                _ => Ok(Era::Handshake),
            };
        }
    };
    let Some(version) = params
        .meta
        .as_ref()
        .and_then(|m| m.protocol_version.as_deref())
    else {
        return Ok(Era::Handshake);
    };
    check_stateless(headers, &method, version, &params, tools).map_err(reject)?;
    Ok(Era::Stateless)
}

/// Whether `body` may carry the stateless revision's `_meta` key: it contains `protocolVersion`, or a
/// `\u` escape that could spell it. False means certainly not stateless.
pub fn might_be_stateless(body: &[u8]) -> bool {
    contains(body, b"protocolVersion") || contains(body, b"\\u")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut at = 0;
    while let Some(i) = hay[at..].iter().position(|&b| b == first) {
        let start = at + i;
        if hay[start + 1..].starts_with(rest) {
            return true;
        }
        at = start + 1;
    }
    false
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow, rename = "_meta")]
    meta: Option<Meta<'a>>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    uri: Option<&'a RawValue>,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MetaOnly<'a> {
    #[serde(borrow, rename = "_meta")]
    meta: Option<Meta<'a>>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: Option<Cow<'a, str>>,
}

/// The checks of a stateless request, in order.
fn check_stateless(
    headers: &HeaderMap,
    method: &str,
    version: &str,
    fields: &Params<'_>,
    tools: Option<&[u8]>,
) -> Result<(), Mismatch> {
    compare(
        headers,
        "MCP-Protocol-Version",
        false,
        Some(version),
        "params._meta[\"io.modelcontextprotocol/protocolVersion\"]",
    )?;
    compare(headers, "Mcp-Method", false, Some(method), "method")?;
    let name_field = match method {
        "tools/call" | "prompts/get" => Some(("params.name", fields.name)),
        "resources/read" => Some(("params.uri", fields.uri)),
        _ => None,
    };
    if let Some((field, raw)) = name_field {
        let value = raw.and_then(|v| serde_json::from_str::<Cow<'_, str>>(v.get()).ok());
        if raw.is_some() && value.is_none() {
            // Not a string: no header value can stand for it.
            return match header_value(headers, "Mcp-Name", true)? {
                None => Ok(()),
                Some(_) => Err(Mismatch::Differs {
                    header: "Mcp-Name".into(),
                    field: field.into(),
                }),
            };
        }
        compare(headers, "Mcp-Name", true, value.as_deref(), field)?;
    }
    if method == "tools/call"
        && let (Some(tools), Some(name)) = (tools, fields.name)
        && let Ok(name) = serde_json::from_str::<Cow<'_, str>>(name.get())
        && let Some(params) = tool_params(tools, &name)
    {
        check_params(headers, &params, fields.arguments)?;
    }
    Ok(())
}

/// Compares a header with a body value (`None`: absent). Both absent is fine.
fn compare(
    headers: &HeaderMap,
    name: &str,
    base64: bool,
    body: Option<&str>,
    field: &str,
) -> Result<(), Mismatch> {
    match (header_value(headers, name, base64)?, body) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(Mismatch::Missing(name.into())),
        (Some(_), None) => Err(Mismatch::Unexpected {
            header: name.into(),
            field: field.into(),
        }),
        (Some(h), Some(b)) if h == b => Ok(()),
        (Some(_), Some(_)) => Err(Mismatch::Differs {
            header: name.into(),
            field: field.into(),
        }),
    }
}

/// Reads a header's value: visible ASCII, space and tab only, at most
/// [`MAX_HEADER_VALUE`] bytes, sent once; optional whitespace around it is dropped. With
/// `base64`, a value in the `=?base64?…?=` form is decoded (and must be valid Base64 of
/// UTF-8 text).
fn header_value(headers: &HeaderMap, name: &str, base64: bool) -> Result<Option<String>, Mismatch> {
    let invalid = || Mismatch::Invalid(name.into());
    let mut all = headers.get_all(name).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(invalid());
    }
    decode_value(v.as_bytes(), base64)
        .map(Some)
        .ok_or_else(invalid)
}

/// Checks and decodes one header value (see [`header_value`]); `None` if invalid.
fn decode_value(raw: &[u8], base64: bool) -> Option<String> {
    if raw.len() > MAX_HEADER_VALUE
        || !raw
            .iter()
            .all(|&b| b == b'\t' || (0x20..=0x7e).contains(&b))
    {
        return None;
    }
    let text = std::str::from_utf8(raw).ok()?.trim_matches([' ', '\t']);
    if base64
        && text.len() >= B64_PREFIX.len() + B64_SUFFIX.len()
        && let Some(inner) = text
            .strip_prefix(B64_PREFIX)
            .and_then(|t| t.strip_suffix(B64_SUFFIX))
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(inner)
            .ok()?;
        return String::from_utf8(bytes).ok();
    }
    Some(text.to_owned())
}

/// One `x-mcp-header` annotation: where its value sits in the arguments (a chain of
/// property names) and the `{Name}` of its `Mcp-Param-{Name}` header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Annotation {
    path: Vec<String>,
    header: String,
}

/// The annotations of tool `name` in a `tools/list` result, if the tool is listed and its
/// annotations are usable (none is an empty list).
fn tool_params(tools: &[u8], name: &str) -> Option<Vec<Annotation>> {
    // A cheap test first: most tool lists have no annotations at all.
    if !contains(tools, b"x-mcp-header") && !contains(tools, b"\\u") {
        return None;
    }
    #[derive(Deserialize)]
    struct List<'a> {
        #[serde(borrow, default)]
        tools: Vec<Entry<'a>>,
    }
    #[derive(Deserialize)]
    struct Entry<'a> {
        #[serde(borrow)]
        name: Option<&'a RawValue>,
        #[serde(borrow, rename = "inputSchema")]
        input_schema: Option<&'a RawValue>,
    }
    let list: List<'_> = serde_json::from_slice(tools).ok()?;
    let entry = list.tools.into_iter().find(|t| {
        t.name
            .and_then(|n| serde_json::from_str::<Cow<'_, str>>(n.get()).ok())
            .is_some_and(|n| n == name)
    })?;
    let schema: Value = serde_json::from_str(entry.input_schema?.get()).ok()?;
    let found = annotations(&schema)?;
    (!found.is_empty()).then_some(found)
}

/// The `x-mcp-header` annotations statically reachable from the schema root (through
/// `properties` only). `None` when an annotation is unusable (not a header-name token,
/// repeated ignoring case) or the schema is beyond the bounds: such a tool is invalid for
/// clients, which do not call it.
fn annotations(schema: &Value) -> Option<Vec<Annotation>> {
    fn walk(
        schema: &Value,
        path: &mut Vec<String>,
        out: &mut Vec<Annotation>,
        depth: usize,
    ) -> Option<()> {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return Some(());
        };
        if depth >= MAX_SCHEMA_DEPTH {
            return None;
        }
        for (key, sub) in props {
            path.push(key.clone());
            if let Some(h) = sub.get("x-mcp-header") {
                let h = h.as_str().filter(|h| is_token(h))?;
                if out.len() >= MAX_ANNOTATIONS
                    || out.iter().any(|a| a.header.eq_ignore_ascii_case(h))
                {
                    return None;
                }
                out.push(Annotation {
                    path: path.clone(),
                    header: h.to_owned(),
                });
            }
            walk(sub, path, out, depth + 1)?;
            path.pop();
        }
        Some(())
    }
    let mut out = Vec::new();
    walk(schema, &mut Vec::new(), &mut out, 0)?;
    Some(out)
}

/// An HTTP field-name token (RFC 9110 `1*tchar`).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The annotations as a tree of property names, so each object of the arguments is
/// parsed once.
#[derive(Default)]
struct Node<'s> {
    header: Option<&'s str>,
    children: BTreeMap<&'s str, Node<'s>>,
}

/// Checks the `Mcp-Param-{Name}` headers against the tool call's arguments.
fn check_params(
    headers: &HeaderMap,
    annotations: &[Annotation],
    arguments: Option<&RawValue>,
) -> Result<(), Mismatch> {
    let mut root = Node::default();
    for a in annotations {
        let mut node = &mut root;
        for key in &a.path {
            node = node.children.entry(key).or_default();
        }
        node.header = Some(&a.header);
    }
    let mut path = Vec::new();
    walk_args(headers, &root, arguments, &mut path)
}

fn walk_args<'s>(
    headers: &HeaderMap,
    node: &Node<'s>,
    value: Option<&RawValue>,
    path: &mut Vec<&'s str>,
) -> Result<(), Mismatch> {
    let value = value.filter(|v| v.get() != "null");
    if let Some(h) = node.header {
        check_param(headers, h, value, path)?;
    }
    if node.children.is_empty() {
        return Ok(());
    }
    let object: Option<HashMap<Cow<'_, str>, &RawValue>> = value
        .filter(|v| v.get().starts_with('{'))
        .and_then(|v| serde_json::from_str(v.get()).ok());
    for (key, child) in &node.children {
        path.push(key);
        let v = object.as_ref().and_then(|o| o.get(*key).copied());
        walk_args(headers, child, v, path)?;
        path.pop();
    }
    Ok(())
}

fn check_param(
    headers: &HeaderMap,
    name: &str,
    value: Option<&RawValue>,
    path: &[&str],
) -> Result<(), Mismatch> {
    let header = format!("Mcp-Param-{name}");
    let field = || {
        let mut f = format!("params.arguments.{}", path.join("."));
        if f.len() > MAX_FIELD_TEXT {
            let mut cut = MAX_FIELD_TEXT;
            while !f.is_char_boundary(cut) {
                cut -= 1;
            }
            f.truncate(cut);
            f.push('…');
        }
        f
    };
    match (header_value(headers, &header, true)?, value) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(Mismatch::Missing(header)),
        (Some(_), None) => Err(Mismatch::Unexpected {
            header,
            field: field(),
        }),
        (Some(h), Some(v)) if value_matches(&h, v) => Ok(()),
        (Some(_), Some(_)) => Err(Mismatch::Differs {
            header,
            field: field(),
        }),
    }
}

/// Whether a decoded header value stands for a JSON value: a string as is, a boolean as
/// `true`/`false`, a number compared numerically. Objects and arrays match nothing.
fn value_matches(header: &str, value: &RawValue) -> bool {
    let raw = value.get();
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<Cow<'_, str>>(raw).is_ok_and(|s| s == header),
        Some(b't' | b'f') => header == raw,
        Some(b'-' | b'0'..=b'9') => numbers_equal(header, raw),
        _ => false,
    }
}

/// Compares a header's decimal number with a JSON number: exactly as integers when both
/// are, otherwise as finite floating-point values (`42.0` equals `42`).
fn numbers_equal(header: &str, json: &str) -> bool {
    let numeric = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes().any(|b| b.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
    };
    if !numeric(header) {
        return false;
    }
    if let (Ok(a), Ok(b)) = (header.parse::<i128>(), json.parse::<i128>()) {
        return a == b;
    }
    match (header.parse::<f64>(), json.parse::<f64>()) {
        (Ok(a), Ok(b)) => a.is_finite() && b.is_finite() && a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::headers;
    use protocol::stateless::META_PROTOCOL_VERSION;
    use serde_json::json;

    const V: &str = "2026-07-28";

    fn request(id: Value, method: &str, mut params: Value) -> Vec<u8> {
        params["_meta"] = json!({ META_PROTOCOL_VERSION: V });
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .unwrap()
    }

    fn tools_list() -> Vec<u8> {
        serde_json::to_vec(&json!({"tools": [
            {"name": "plain", "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}},
            {"name": "annotated", "inputSchema": {"type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "count": {"type": "integer", "x-mcp-header": "Count"},
                "dry": {"type": "boolean", "x-mcp-header": "Dry"},
                "nested": {"type": "object", "properties": {
                    "tenant": {"type": "string", "x-mcp-header": "Tenant"}
                }},
                "list": {"type": "array", "items": {"type": "object", "properties": {
                    "hidden": {"type": "string", "x-mcp-header": "Hidden"}
                }}}
            }}}
        ]}))
        .unwrap()
    }

    fn reason(h: &HeaderMap, body: &[u8], tools: Option<&[u8]>) -> Mismatch {
        validate(h, body, tools).unwrap_err().reason
    }

    fn base(method: &str) -> Vec<(&'static str, String)> {
        vec![
            ("mcp-protocol-version", V.to_owned()),
            ("mcp-method", method.to_owned()),
        ]
    }

    fn with(extra: &[(&str, &str)], method: &str) -> HeaderMap {
        let mut pairs: Vec<(String, String)> = base(method)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        pairs.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        headers(&refs)
    }

    #[test]
    fn handshake_bodies_are_not_checked() {
        let h = HeaderMap::new();
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#,
            br#"{"jsonrpc":"2.0","method":"n","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
            br#"{"jsonrpc":"2.0","id":null,"method":"n","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"x"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"m","params":["protocolVersion"]}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":null}}}"#,
        ] {
            assert_eq!(validate(&h, body, None), Ok(Era::Handshake), "{body:?}");
        }
        assert!(!might_be_stateless(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#
        ));
    }

    #[test]
    fn well_formed_requests_pass() {
        let body = request(json!(1), "tools/list", json!({}));
        let h = with(&[], "tools/list");
        assert_eq!(validate(&h, &body, None), Ok(Era::Stateless));
        let body = request(
            json!("a"),
            "tools/call",
            json!({"name": "x", "arguments": {}}),
        );
        let h = with(&[("mcp-name", "x")], "tools/call");
        assert_eq!(validate(&h, &body, Some(&tools_list())), Ok(Era::Stateless));
        let body = request(json!(2), "resources/read", json!({"uri": "file:///a b"}));
        let h = with(&[("mcp-name", "file:///a b")], "resources/read");
        assert_eq!(validate(&h, &body, None), Ok(Era::Stateless));
        // An unknown version is forwarded as long as the header agrees.
        let body = br#"{"jsonrpc":"2.0","id":3,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol\/protocolVersion":"v999"}}}"#;
        let h = headers(&[
            ("MCP-Protocol-Version", "v999"),
            ("Mcp-Method", "server/discover"),
        ]);
        assert_eq!(validate(&h, body, None), Ok(Era::Stateless));
    }

    #[test]
    fn escaped_key_is_still_stateless() {
        let body = br#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocol\u0056ersion":"2026-07-28"}}}"#;
        assert!(might_be_stateless(body));
        let r = validate(&HeaderMap::new(), body, None).unwrap_err();
        assert_eq!(r.id, b"3");
        assert_eq!(r.reason, Mismatch::Missing("MCP-Protocol-Version".into()));
    }

    #[test]
    fn protocol_version_rule() {
        let body = request(json!(7), "tools/list", json!({}));
        let h = headers(&[("mcp-method", "tools/list")]);
        assert_eq!(
            reason(&h, &body, None),
            Mismatch::Missing("MCP-Protocol-Version".into())
        );
        let h = headers(&[
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-method", "tools/list"),
        ]);
        assert!(
            matches!(reason(&h, &body, None), Mismatch::Differs { header, .. } if header == "MCP-Protocol-Version")
        );
        // Checked first: a wrong method too still names the version header.
        let h = headers(&[("mcp-protocol-version", "x")]);
        assert!(
            matches!(reason(&h, &body, None), Mismatch::Differs { header, .. } if header == "MCP-Protocol-Version")
        );
    }

    #[test]
    fn method_rule() {
        let body = request(json!(7), "tools/list", json!({}));
        let h = headers(&[("mcp-protocol-version", V)]);
        assert_eq!(
            reason(&h, &body, None),
            Mismatch::Missing("Mcp-Method".into())
        );
        let h = headers(&[("mcp-protocol-version", V), ("mcp-method", "TOOLS/LIST")]);
        assert!(
            matches!(reason(&h, &body, None), Mismatch::Differs { header, .. } if header == "Mcp-Method")
        );
        // Header names are case-insensitive; optional whitespace is dropped.
        let h = headers(&[
            ("MCP-PROTOCOL-VERSION", V),
            ("MCP-METHOD", "  tools/list\t"),
        ]);
        assert_eq!(validate(&h, &body, None), Ok(Era::Stateless));
        // Sent twice.
        let h = headers(&[
            ("mcp-protocol-version", V),
            ("mcp-method", "tools/list"),
            ("mcp-method", "tools/list"),
        ]);
        assert_eq!(
            reason(&h, &body, None),
            Mismatch::Invalid("Mcp-Method".into())
        );
    }

    #[test]
    fn name_rule() {
        for (method, params) in [
            ("tools/call", json!({"name": "echo", "arguments": {}})),
            ("prompts/get", json!({"name": "echo"})),
            ("resources/read", json!({"uri": "echo"})),
        ] {
            let body = request(json!(5), method, params);
            let h = with(&[], method);
            assert_eq!(
                reason(&h, &body, None),
                Mismatch::Missing("Mcp-Name".into()),
                "{method}"
            );
            let h = with(&[("mcp-name", "other")], method);
            assert!(
                matches!(reason(&h, &body, None), Mismatch::Differs { header, .. } if header == "Mcp-Name")
            );
            let h = with(&[("Mcp-Name", "  echo  ")], method);
            assert_eq!(validate(&h, &body, None), Ok(Era::Stateless), "{method}");
        }
        // Not required for other methods.
        let body = request(json!(5), "tools/list", json!({}));
        assert_eq!(
            validate(&with(&[], "tools/list"), &body, None),
            Ok(Era::Stateless)
        );
        // A non-string name matches no header.
        let body = request(json!(5), "tools/call", json!({"name": 5}));
        let h = with(&[("mcp-name", "5")], "tools/call");
        assert!(matches!(reason(&h, &body, None), Mismatch::Differs { .. }));
    }

    #[test]
    fn name_in_base64() {
        let body = request(json!(1), "tools/call", json!({"name": "Hello, 世界"}));
        let h = with(
            &[("mcp-name", "=?base64?SGVsbG8sIOS4lueVjA==?=")],
            "tools/call",
        );
        assert_eq!(validate(&h, &body, None), Ok(Era::Stateless));
        // Missing padding, bad characters, not UTF-8: invalid.
        for bad in [
            "=?base64?SGVsbG8?=",
            "=?base64?SGVs!!!bG8=?=",
            "=?base64?/w==?=",
        ] {
            let h = with(&[("mcp-name", bad)], "tools/call");
            assert_eq!(
                reason(&h, &body, None),
                Mismatch::Invalid("Mcp-Name".into()),
                "{bad}"
            );
        }
        // Without both markers the value is literal.
        let body = request(json!(1), "tools/call", json!({"name": "=?base64?SGVsbG8="}));
        let h = with(&[("mcp-name", "=?base64?SGVsbG8=")], "tools/call");
        assert_eq!(validate(&h, &body, None), Ok(Era::Stateless));
        // The sentinel itself, encoded.
        let body = request(
            json!(1),
            "tools/call",
            json!({"name": "=?base64?literal?="}),
        );
        let h = with(
            &[("mcp-name", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=")],
            "tools/call",
        );
        assert_eq!(validate(&h, &body, None), Ok(Era::Stateless));
    }

    #[test]
    fn header_values_are_bounded_and_visible_ascii() {
        assert_eq!(decode_value(b"abc", false).as_deref(), Some("abc"));
        assert_eq!(decode_value(b" a b\t", false).as_deref(), Some("a b"));
        assert_eq!(decode_value(b"caf\xc3\xa9", false), None);
        assert_eq!(decode_value(b"a\x01b", false), None);
        assert_eq!(decode_value(&vec![b'a'; MAX_HEADER_VALUE + 1], false), None);
        assert_eq!(
            decode_value(b"=?base64?YQ==?=", false).as_deref(),
            Some("=?base64?YQ==?=")
        );
        assert_eq!(decode_value(b"=?base64?YQ==?=", true).as_deref(), Some("a"));
        assert_eq!(decode_value(b"=?base64??=", true).as_deref(), Some(""));
        assert_eq!(
            decode_value(b"=?base64?=", true).as_deref(),
            Some("=?base64?=")
        );
        let body = request(json!(1), "tools/call", json!({"name": "café"}));
        let mut h = with(&[], "tools/call");
        h.insert("mcp-name", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert_eq!(
            reason(&h, &body, None),
            Mismatch::Invalid("Mcp-Name".into())
        );
    }

    #[test]
    fn rejection_carries_the_id() {
        let body = request(json!("req-9"), "tools/list", json!({}));
        let r = validate(&HeaderMap::new(), &body, None).unwrap_err();
        assert_eq!(r.id, br#""req-9""#);
        let resp = r.into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn repeated_params_field_is_refused() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        assert_eq!(reason(&HeaderMap::new(), body, None), Mismatch::Ambiguous);
        let handshake = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b","protocolVersion":1}}"#;
        assert_eq!(
            validate(&HeaderMap::new(), handshake, None),
            Ok(Era::Handshake)
        );
    }

    fn call(args: Value) -> Vec<u8> {
        request(
            json!(11),
            "tools/call",
            json!({"name": "annotated", "arguments": args}),
        )
    }

    fn call_headers(extra: &[(&str, &str)]) -> HeaderMap {
        let mut all = vec![("mcp-name", "annotated")];
        all.extend_from_slice(extra);
        with(&all, "tools/call")
    }

    #[test]
    fn param_headers() {
        let tools = tools_list();
        let t = Some(&tools[..]);
        let args =
            json!({"region": "us-west1", "count": 42, "dry": true, "nested": {"tenant": "acme"}});
        let full = [
            ("mcp-param-region", "us-west1"),
            ("Mcp-Param-Count", "42"),
            ("MCP-PARAM-DRY", "true"),
            ("mcp-param-tenant", "acme"),
        ];
        assert_eq!(
            validate(&call_headers(&full), &call(args.clone()), t),
            Ok(Era::Stateless)
        );
        // Each one missing.
        for skip in 0..full.len() {
            let h: Vec<_> = full
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, p)| *p)
                .collect();
            assert!(
                matches!(
                    reason(&call_headers(&h), &call(args.clone()), t),
                    Mismatch::Missing(_)
                ),
                "{skip}"
            );
        }
        // A wrong value.
        let mut h = full;
        h[0] = ("mcp-param-region", "eu-west1");
        assert!(matches!(
            reason(&call_headers(&h), &call(args.clone()), t),
            Mismatch::Differs { header, field } if header == "Mcp-Param-Region" && field == "params.arguments.region"
        ));
        // Without a snapshot, or for a tool without annotations, nothing is checked.
        assert_eq!(
            validate(&call_headers(&[]), &call(args.clone()), None),
            Ok(Era::Stateless)
        );
        let plain = request(
            json!(1),
            "tools/call",
            json!({"name": "plain", "arguments": {"q": "x"}}),
        );
        let h = with(
            &[("mcp-name", "plain"), ("mcp-param-q", "zzz")],
            "tools/call",
        );
        assert_eq!(validate(&h, &plain, t), Ok(Era::Stateless));
        // Unknown tool.
        let other = request(
            json!(1),
            "tools/call",
            json!({"name": "nope", "arguments": {"region": "x"}}),
        );
        let h = with(&[("mcp-name", "nope")], "tools/call");
        assert_eq!(validate(&h, &other, t), Ok(Era::Stateless));
    }

    #[test]
    fn absent_and_null_values_need_no_header() {
        let tools = tools_list();
        let t = Some(&tools[..]);
        let body = call(json!({"region": null, "nested": {}}));
        assert_eq!(validate(&call_headers(&[]), &body, t), Ok(Era::Stateless));
        assert_eq!(
            validate(&call_headers(&[]), &call(json!({})), t),
            Ok(Era::Stateless)
        );
        let body = request(json!(1), "tools/call", json!({"name": "annotated"}));
        assert_eq!(validate(&call_headers(&[]), &body, t), Ok(Era::Stateless));
        // A header for an absent or null value is a mismatch.
        let h = call_headers(&[("mcp-param-region", "x")]);
        assert!(matches!(
            reason(&h, &call(json!({"region": null})), t),
            Mismatch::Unexpected { .. }
        ));
        let h = call_headers(&[("mcp-param-tenant", "x")]);
        assert!(matches!(
            reason(&h, &call(json!({"nested": 3})), t),
            Mismatch::Unexpected { .. }
        ));
    }

    #[test]
    fn param_values_in_base64() {
        let tools = tools_list();
        let t = Some(&tools[..]);
        let body = call(json!({"region": "Hello"}));
        let h = call_headers(&[("mcp-param-region", "=?base64?SGVsbG8=?=")]);
        assert_eq!(validate(&h, &body, t), Ok(Era::Stateless));
        let h = call_headers(&[("mcp-param-region", "=?base64?SGVsbG8?=")]);
        assert_eq!(
            reason(&h, &body, t),
            Mismatch::Invalid("Mcp-Param-Region".into())
        );
        let body = call(json!({"region": "SGVsbG8="}));
        let h = call_headers(&[("mcp-param-region", "SGVsbG8=")]);
        assert_eq!(validate(&h, &body, t), Ok(Era::Stateless));
        let body = call(json!({"region": " padded "}));
        let h = call_headers(&[("mcp-param-region", "=?base64?IHBhZGRlZCA=?=")]);
        assert_eq!(validate(&h, &body, t), Ok(Era::Stateless));
    }

    #[test]
    fn integers_and_booleans() {
        let n = |h: &str, j: &str| value_matches(h, &RawValue::from_string(j.into()).unwrap());
        assert!(n("42", "42"));
        assert!(n("42.0", "42"));
        assert!(n("42", "42.0"));
        assert!(n("-7", "-7"));
        assert!(n("100", "1e2"));
        assert!(n("9007199254740991", "9007199254740991"));
        assert!(!n("9007199254740993", "9007199254740992"));
        assert!(!n("43", "42"));
        assert!(!n("0x2A", "42"));
        assert!(!n("inf", "1e999"));
        assert!(!n("NaN", "1"));
        assert!(!n("", "1"));
        assert!(n("true", "true"));
        assert!(n("false", "false"));
        assert!(!n("True", "true"));
        assert!(!n("1", "true"));
        assert!(n("a\"b", r#""a\"b""#));
        assert!(!n("{}", "{}"));
        assert!(!n("[]", "[]"));

        let tools = tools_list();
        let t = Some(&tools[..]);
        let body = call(json!({"count": 42, "dry": false}));
        let h = call_headers(&[("mcp-param-count", "42.0"), ("mcp-param-dry", "false")]);
        assert_eq!(validate(&h, &body, t), Ok(Era::Stateless));
        let h = call_headers(&[("mcp-param-count", "41"), ("mcp-param-dry", "false")]);
        assert!(matches!(reason(&h, &body, t), Mismatch::Differs { .. }));
        let h = call_headers(&[("mcp-param-count", "42"), ("mcp-param-dry", "0")]);
        assert!(matches!(reason(&h, &body, t), Mismatch::Differs { .. }));
    }

    #[test]
    fn only_properties_chains_are_reachable() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "string", "x-mcp-header": "A"},
            "o": {"type": "object", "properties": {
                "b": {"type": "integer", "x-mcp-header": "B"},
                "p": {"properties": {"c": {"x-mcp-header": "C"}}}
            }},
            "arr": {"type": "array", "items": {"properties": {"d": {"x-mcp-header": "D"}}}},
            "u": {"oneOf": [{"properties": {"e": {"x-mcp-header": "E"}}}]},
            "r": {"$ref": "#/$defs/x"}
        }, "$defs": {"x": {"properties": {"f": {"x-mcp-header": "F"}}}},
           "allOf": [{"properties": {"g": {"x-mcp-header": "G"}}}]});
        let mut found = annotations(&schema).unwrap();
        found.sort_by(|a, b| a.header.cmp(&b.header));
        let got: Vec<(String, Vec<String>)> =
            found.into_iter().map(|a| (a.header, a.path)).collect();
        let p = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                ("A".into(), p(&["a"])),
                ("B".into(), p(&["o", "b"])),
                ("C".into(), p(&["o", "p", "c"])),
            ]
        );
        // Unusable annotations make the tool's annotations unusable.
        for bad in [
            json!({"properties": {"a": {"x-mcp-header": ""}}}),
            json!({"properties": {"a": {"x-mcp-header": "has space"}}}),
            json!({"properties": {"a": {"x-mcp-header": 5}}}),
            json!({"properties": {"a": {"x-mcp-header": "X"}, "b": {"x-mcp-header": "x"}}}),
        ] {
            assert_eq!(annotations(&bad), None, "{bad}");
        }
        // Too deep.
        let mut deep = json!({"x-mcp-header": "Deep"});
        for _ in 0..=MAX_SCHEMA_DEPTH {
            deep = json!({"properties": {"k": deep}});
        }
        assert_eq!(annotations(&deep), None);
        assert_eq!(annotations(&json!({"type": "object"})), Some(vec![]));
    }

    #[test]
    fn unreachable_annotation_expects_no_header() {
        let tools = tools_list();
        let t = Some(&tools[..]);
        let body = call(json!({"list": [{"hidden": "x"}]}));
        assert_eq!(validate(&call_headers(&[]), &body, t), Ok(Era::Stateless));
    }

    #[test]
    fn byte_search() {
        assert!(contains(b"abc", b"bc"));
        assert!(contains(b"aab", b"ab"));
        assert!(!contains(b"abc", b"cd"));
        assert!(!contains(b"", b"a"));
        assert!(contains(b"x", b""));
    }
}
