//! A light JSON-RPC 2.0 envelope: classify a message and locate the few fields a bridge
//! rewrites (`id`, `params._meta.progressToken`) as byte spans of the original text, so
//! they can be replaced by splicing instead of re-serialising the whole message.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

/// JSON-RPC error code: invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC error code: not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC error code: unknown method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC error code: invalid parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC error code: internal error.
pub const INTERNAL_ERROR: i64 = -32603;
/// Implementation-defined server error used for "session not found" (as the SDKs do).
pub const SESSION_NOT_FOUND: i64 = -32001;
/// Implementation-defined server error: the tunnel or its server is unavailable.
pub const UNAVAILABLE: i64 = -32002;
/// Request cancelled.
pub const REQUEST_CANCELLED: i64 = -32800;
/// Implementation-defined server error: the request timed out.
pub const REQUEST_TIMEOUT: i64 = -32003;
/// MCP 2026-07-28: the HTTP headers do not match the request body.
pub const HEADER_MISMATCH: i64 = -32020;
/// MCP 2026-07-28: serving the request needs a capability the client did not declare.
pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
/// MCP 2026-07-28: the requested protocol version is not supported.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// What a JSON-RPC message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and `id`.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `result` or `error` and an `id`, no `method`.
    Response,
}

/// Why a body is not a usable JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not valid JSON (or duplicate keys among the envelope's fields).
    #[error("parse error: {0}")]
    Parse(String),
    /// A JSON array: a batch.
    #[error("batch requests are not supported")]
    Batch,
    /// Valid JSON that is not a JSON-RPC 2.0 message.
    #[error("invalid request: {0}")]
    Invalid(&'static str),
}

impl EnvelopeError {
    /// The JSON-RPC error code for this error.
    pub fn code(&self) -> i64 {
        match self {
            Self::Parse(_) => PARSE_ERROR,
            Self::Batch | Self::Invalid(_) => INVALID_REQUEST,
        }
    }
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawParams<'a> {
    /// Any JSON: a `_meta` that is not an object is the server's to refuse (with the
    /// request's id), not a malformed envelope.
    #[serde(borrow, rename = "_meta")]
    meta: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawMeta<'a> {
    #[serde(borrow, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
    #[serde(borrow, rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: Option<&'a RawValue>,
}

/// A classified JSON-RPC message with the spans of its interesting fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Request, notification or response.
    pub kind: Kind,
    /// `method`, for requests and notifications.
    pub method: Option<Cow<'a, str>>,
    /// Span of the `id` value (as written, e.g. `1`, `"a"`), if present and not `null`.
    pub id: Option<Range<usize>>,
    /// Span of the `params` value, if present.
    pub params: Option<Range<usize>>,
    /// Span of `params._meta.progressToken`, if present.
    pub progress_token: Option<Range<usize>>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`: set on stateless
    /// (2026-07-28 and later) requests.
    pub meta_protocol_version: Option<Cow<'a, str>>,
    /// Whether the response carries `error` (rather than `result`).
    pub is_error: bool,
}

fn span_of(body: &[u8], part: &str) -> Range<usize> {
    // `part` borrows from `body`: its address gives its offset.
    let start = part.as_ptr() as usize - body.as_ptr() as usize;
    start..start + part.len()
}

/// Deepest nesting of arrays and objects accepted in a message.
pub const MAX_DEPTH: usize = 128;

/// Classifies a serde error: bad JSON syntax is a parse error, well-formed JSON of the
/// wrong shape an invalid request.
fn classify(e: serde_json::Error) -> EnvelopeError {
    match e.classify() {
        serde_json::error::Category::Data => EnvelopeError::Invalid("a field has the wrong type"),
        _ => EnvelopeError::Parse(e.to_string()),
    }
}

/// Whether arrays and objects nest deeper than `max` (strings are skipped). Jumps
/// between structural bytes with `memchr`, so long strings cost little.
fn too_deep(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(k) = memchr::memchr3(b'"', b'[', b'{', &body[i..]) {
        // Closing brackets between here and the next opener lower the depth.
        depth = depth.saturating_sub(count_closers(&body[i..i + k]));
        let at = i + k;
        if body[at] == b'"' {
            // Skip the string (escapes included).
            let mut j = at + 1;
            loop {
                match memchr::memchr2(b'"', b'\\', &body[j..]) {
                    Some(n) if body[j + n] == b'\\' => j += n + 2,
                    Some(n) => {
                        j += n + 1;
                        break;
                    }
                    None => return false,
                }
                if j >= body.len() {
                    return false;
                }
            }
            i = j;
        } else {
            depth += 1;
            if depth > max {
                return true;
            }
            i = at + 1;
        }
    }
    false
}

fn count_closers(b: &[u8]) -> usize {
    memchr::memchr2_iter(b']', b'}', b).count()
}

/// A message's `params._meta.progressToken` span and `_meta` protocol version.
pub(crate) type ParamsInfo<'a> = (Option<Range<usize>>, Option<Cow<'a, str>>);

/// Reads the `_meta` fields of the `params` value at `span` of `body`. With `strict`,
/// the params object is always parsed (and so validated, escapes included); without it,
/// params that do not contain the bytes `_meta` are not parsed at all.
pub(crate) fn parse_params(
    body: &[u8],
    span: Range<usize>,
    strict: bool,
) -> Result<ParamsInfo<'_>, EnvelopeError> {
    let raw = &body[span];
    match raw.first() {
        Some(b'{') if !strict && memchr::memmem::find(raw, b"_meta").is_none() => Ok((None, None)),
        Some(b'{') => {
            let text = std::str::from_utf8(raw)
                .map_err(|_| EnvelopeError::Parse("params are not valid UTF-8".into()))?;
            let p: RawParams<'_> = serde_json::from_str(text).map_err(classify)?;
            let Some(meta) = p.meta.filter(|m| m.get().starts_with('{')) else {
                // A `_meta` of another type names no version: a stateless request whose
                // version is missing (the server refuses it, naming the request).
                return Ok((None, p.meta.map(|_| Cow::Borrowed(""))));
            };
            let meta: RawMeta<'_> = serde_json::from_str(meta.get()).map_err(classify)?;
            // A version that is not a string is present but invalid: kept as "".
            let version = meta.protocol_version.map(|v| {
                serde_json::from_str::<Cow<'_, str>>(v.get()).unwrap_or(Cow::Borrowed(""))
            });
            Ok((
                meta.progress_token
                    .filter(|v| v.get() != "null")
                    .map(|v| span_of(body, v.get())),
                version,
            ))
        }
        Some(b'[') => Ok((None, None)),
        _ => Err(EnvelopeError::Invalid(
            "params must be an object or an array",
        )),
    }
}

/// Parses `body` as one JSON-RPC message. The whole body is validated as JSON.
pub fn parse(body: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    // serde_json does not check the UTF-8 of strings it skips; JSON text must be UTF-8.
    if std::str::from_utf8(body).is_err() {
        return Err(EnvelopeError::Parse("the body is not valid UTF-8".into()));
    }
    if too_deep(body, MAX_DEPTH) {
        return Err(EnvelopeError::Invalid("the message nests too deeply"));
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'{') => {}
        Some(b'[') => {
            // Distinguish a batch from garbage that merely starts with '['.
            return match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => Err(EnvelopeError::Batch),
                Err(e) => Err(EnvelopeError::Parse(e.to_string())),
            };
        }
        None => return Err(EnvelopeError::Parse("empty body".into())),
        _ => {
            return match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => Err(EnvelopeError::Invalid("not a JSON object")),
                Err(e) => Err(EnvelopeError::Parse(e.to_string())),
            };
        }
    }
    let raw: RawEnvelope<'_> = serde_json::from_slice(body).map_err(classify)?;
    if raw.jsonrpc.as_deref() != Some("2.0") {
        return Err(EnvelopeError::Invalid("jsonrpc must be \"2.0\""));
    }
    let id = raw.id.filter(|v| v.get() != "null");
    if let Some(id) = id {
        let t = id.get().as_bytes()[0];
        if !(t == b'"' || t == b'-' || t.is_ascii_digit()) {
            return Err(EnvelopeError::Invalid("id must be a string or a number"));
        }
    }
    let kind = match (&raw.method, id, raw.result.is_some() || raw.error.is_some()) {
        (Some(_), Some(_), false) => Kind::Request,
        (Some(_), None, false) => Kind::Notification,
        (None, Some(_), true) => Kind::Response,
        (None, None, true) => {
            // A response with a null id (an error about an unparseable request).
            Kind::Response
        }
        _ => {
            return Err(EnvelopeError::Invalid(
                "not a request, notification or response",
            ));
        }
    };
    let (progress_token, meta_protocol_version) = match raw.params {
        Some(params) => parse_params(body, span_of(body, params.get()), true)?,
        None => (None, None),
    };
    Ok(Envelope {
        kind,
        method: raw.method,
        id: id.map(|v| span_of(body, v.get())),
        params: raw.params.map(|v| span_of(body, v.get())),
        progress_token,
        meta_protocol_version,
        is_error: raw.error.is_some(),
    })
}

/// Copies `body`, replacing each span with its replacement. Spans must not overlap;
/// they may come in any order. Line breaks outside the replaced spans are turned into
/// spaces, so the result is always a single line (valid JSON cannot contain a raw line
/// break inside a string, so this never changes the message's meaning).
pub fn splice(body: &[u8], edits: &mut [(Range<usize>, &[u8])]) -> Vec<u8> {
    edits.sort_by_key(|(r, _)| (r.start, r.end));
    let extra: usize = edits.iter().map(|(_, b)| b.len()).sum();
    let mut out = Vec::with_capacity(body.len() + extra + 1);
    let mut pos = 0;
    for (range, replacement) in edits.iter() {
        push_single_line(&mut out, &body[pos..range.start]);
        out.extend_from_slice(replacement);
        pos = range.end;
    }
    push_single_line(&mut out, &body[pos..]);
    out
}

fn push_single_line(out: &mut Vec<u8>, part: &[u8]) {
    if memchr_newline(part) {
        out.extend(
            part.iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
    } else {
        out.extend_from_slice(part);
    }
}

fn memchr_newline(b: &[u8]) -> bool {
    memchr::memchr2(b'\n', b'\r', b).is_some()
}

/// Builds a JSON-RPC error response. `id` is the raw JSON of the id (`null` if unknown).
pub fn error_response(id: &[u8], code: i64, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + message.len() + id.len());
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(if id.is_empty() { b"null" } else { id });
    out.extend_from_slice(b",\"error\":{\"code\":");
    out.extend_from_slice(code.to_string().as_bytes());
    out.extend_from_slice(b",\"message\":");
    // Writing a string into a Vec cannot fail; an empty message is the fallback anyway.
    if serde_json::to_writer(&mut out, message).is_err() {
        out.extend_from_slice(b"\"\"");
    }
    out.extend_from_slice(b"}}");
    out
}

/// Builds a JSON-RPC success response around an already-serialised `result`.
pub fn result_response(id: &[u8], result: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + id.len() + result.len());
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id);
    out.extend_from_slice(b",\"result\":");
    out.extend_from_slice(result);
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classifies() {
        let r = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"p1"}}}"#;
        let e = parse(r).unwrap();
        assert_eq!(e.kind, Kind::Request);
        assert_eq!(e.method.as_deref(), Some("tools/call"));
        assert_eq!(&r[e.id.clone().unwrap()], b"7");
        assert_eq!(&r[e.progress_token.clone().unwrap()], b"\"p1\"");

        let n = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert_eq!(parse(n).unwrap().kind, Kind::Notification);
        let resp = br#"{"jsonrpc":"2.0","id":"a","result":{}}"#;
        assert_eq!(parse(resp).unwrap().kind, Kind::Response);
        let err = br#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}"#;
        let e = parse(err).unwrap();
        assert_eq!(e.kind, Kind::Response);
        assert!(e.is_error);
    }

    #[test]
    fn rejects() {
        assert!(matches!(parse(b"{"), Err(EnvelopeError::Parse(_))));
        assert!(matches!(parse(b""), Err(EnvelopeError::Parse(_))));
        assert!(matches!(parse(b"[1,2]"), Err(EnvelopeError::Batch)));
        assert!(matches!(parse(b"[1,"), Err(EnvelopeError::Parse(_))));
        assert!(matches!(parse(b"42"), Err(EnvelopeError::Invalid(_))));
        assert!(matches!(
            parse(br#"{"id":1,"method":"x"}"#),
            Err(EnvelopeError::Invalid(_))
        ));
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#),
            Err(EnvelopeError::Invalid(_))
        ));
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}"#),
            Err(EnvelopeError::Invalid(_))
        ));
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","id":1}"#),
            Err(EnvelopeError::Invalid(_))
        ));
    }

    #[test]
    fn wrong_types_are_invalid_requests() {
        for body in [
            &br#"{"jsonrpc":2.0,"id":1,"method":"x"}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":5}"#,
        ] {
            assert!(
                matches!(parse(body), Err(EnvelopeError::Invalid(_))),
                "{body:?}"
            );
        }
        // A `_meta` or protocol version of the wrong type is the server's to refuse, with
        // the request's id: the envelope reports an empty (invalid) version.
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":5}}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":7}}}"#,
        ] {
            let e = parse(body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
            assert_eq!(e.meta_protocol_version.as_deref(), Some(""), "{body:?}");
            assert!(e.id.is_some());
        }
        let deep = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{{\"a\":{}1{}}}}}",
            "[".repeat(300),
            "]".repeat(300)
        );
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(EnvelopeError::Invalid(_))
        ));
        let string_brackets = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{{\"a\":\"{}\\\"\"}}}}",
            "[".repeat(300)
        );
        assert!(parse(string_brackets.as_bytes()).is_ok());
    }

    #[test]
    fn invalid_utf8_anywhere_is_a_parse_error() {
        let body = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"x\":\"\xff\"}";
        assert!(matches!(parse(body), Err(EnvelopeError::Parse(_))));
    }

    #[test]
    fn splice_accepts_empty_edits_at_the_same_place() {
        let out = splice(b" x", &mut [(0..1, b""), (0..0, b"a")]);
        assert_eq!(out, b"ax");
    }

    #[test]
    fn escaped_method_and_meta_version() {
        let r = br#"{"jsonrpc":"2.0","id":1,"method":"tools\/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let e = parse(r).unwrap();
        assert_eq!(e.method.as_deref(), Some("tools/list"));
        assert_eq!(e.meta_protocol_version.as_deref(), Some("2026-07-28"));
    }

    #[test]
    fn splice_rewrites_id_and_token() {
        let r = b"{\"jsonrpc\":\"2.0\",\n \"id\": \"abc\", \"method\":\"m\",\"params\":{\"_meta\":{\"progressToken\":5}}}";
        let e = parse(r).unwrap();
        let out = splice(
            r,
            &mut [
                (e.progress_token.clone().unwrap(), b"99"),
                (e.id.clone().unwrap(), b"12"),
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], 12);
        assert_eq!(v["params"]["_meta"]["progressToken"], 99);
        assert!(!out.contains(&b'\n'));
    }

    #[test]
    fn built_responses_are_valid() {
        let e = error_response(b"\"x\"", METHOD_NOT_FOUND, "no \"such\" method");
        let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(v["error"]["code"], -32601);
        assert_eq!(v["id"], "x");
        let e = error_response(b"", PARSE_ERROR, "bad");
        let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
        assert!(v["id"].is_null());
        let r = result_response(b"3", b"{}");
        assert_eq!(parse(&r).unwrap().kind, Kind::Response);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn id_round_trips(id in prop_oneof![any::<i64>().prop_map(|i| i.to_string()), "[a-z0-9 ]{0,12}".prop_map(|s| format!("\"{s}\""))],
                          ws in "[ \n\t]{0,3}") {
            let body = format!("{{{ws}\"jsonrpc\":\"2.0\",{ws}\"method\":\"x\",\"id\":{ws}{id}{ws},\"params\":{{}}}}");
            let e = parse(body.as_bytes()).unwrap();
            let span = e.id.unwrap();
            prop_assert_eq!(&body.as_bytes()[span.clone()], id.as_bytes());
            let out = splice(body.as_bytes(), &mut [(span, b"77")]);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(&v["id"], 77);
        }
    }
}
