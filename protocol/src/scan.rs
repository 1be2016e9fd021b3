//! A fast path for classifying messages from a local server: a structural scan of the
//! top-level object that skips over values (strings with `memchr`) instead of parsing
//! them, so a multi-megabyte tool result costs one pass at memory speed. It does not
//! validate what it skips; anything unusual (escaped keys or methods, malformed structure)
//! falls back to the full [`crate::jsonrpc::parse`].

use std::borrow::Cow;
use std::ops::Range;

use crate::jsonrpc::{Envelope, EnvelopeError, parse, parse_params};

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// End (exclusive) of the string starting at `i` (which is `"`).
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let k = j + memchr::memchr2(b'"', b'\\', &b[j..])?;
        if b[k] == b'\\' {
            j = k + 2;
            if j > b.len() {
                return None;
            }
        } else {
            return Some(k + 1);
        }
    }
}

/// End (exclusive) of the value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// Spans of the top-level members the envelope needs; `None` if the scan cannot be
/// trusted (the caller then parses fully).
#[derive(Default)]
struct Members {
    jsonrpc: Option<Range<usize>>,
    id: Option<Range<usize>>,
    method: Option<Range<usize>>,
    params: Option<Range<usize>>,
    result: bool,
    error: bool,
}

fn members(b: &[u8]) -> Option<Members> {
    let mut m = Members::default();
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (ws(b, i + 1) == b.len()).then_some(m);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let kend = skip_string(b, i)?;
        let key = &b[i + 1..kend - 1];
        if key.contains(&b'\\') {
            return None;
        }
        i = ws(b, kend);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(b, i + 1);
        let vend = skip_value(b, i)?;
        let span = Some(i..vend);
        let slot = match key {
            b"jsonrpc" => &mut m.jsonrpc,
            b"id" => &mut m.id,
            b"method" => &mut m.method,
            b"params" => &mut m.params,
            b"result" => {
                if m.result {
                    return None;
                }
                m.result = true;
                &mut None
            }
            b"error" => {
                if m.error {
                    return None;
                }
                m.error = true;
                &mut None
            }
            _ => &mut None,
        };
        if slot.is_some() {
            return None; // duplicate member: let the full parser refuse it
        }
        *slot = span;
        i = ws(b, vend);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => return (ws(b, i + 1) == b.len()).then_some(m),
            _ => return None,
        }
    }
}

/// Calls `f(key, raw value)` for each member of the JSON object `b`, in order, until `f`
/// returns `false` or the scan meets something it does not understand (then it stops
/// quietly). Keys are given as written between their quotes (escapes not decoded). For
/// peeking at a few fields of a body already validated as JSON, without parsing it.
pub fn for_each_member<'a>(b: &'a [u8], mut f: impl FnMut(&'a [u8], &'a [u8]) -> bool) {
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return;
    }
    i = ws(b, i + 1);
    while b.get(i) == Some(&b'"') {
        let Some(kend) = skip_string(b, i) else {
            return;
        };
        let key = &b[i + 1..kend - 1];
        i = ws(b, kend);
        if b.get(i) != Some(&b':') {
            return;
        }
        i = ws(b, i + 1);
        let Some(vend) = skip_value(b, i) else { return };
        if !f(key, &b[i..vend]) {
            return;
        }
        i = ws(b, vend);
        if b.get(i) != Some(&b',') {
            return;
        }
        i = ws(b, i + 1);
    }
}

/// Classifies a message like [`parse`], quickly, for trusted-but-careless input (a local
/// server's stdout). Falls back to [`parse`] whenever the fast scan is unsure.
pub fn parse_fast(body: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    let Some(m) = members(body) else {
        return parse(body);
    };
    if m.jsonrpc.as_ref().map(|r| &body[r.clone()]) != Some(&b"\"2.0\""[..]) {
        return parse(body);
    }
    let method = match &m.method {
        Some(r) => {
            let raw = &body[r.clone()];
            if raw.len() < 2 || raw[0] != b'"' || raw.contains(&b'\\') {
                return parse(body);
            }
            match std::str::from_utf8(&raw[1..raw.len() - 1]) {
                Ok(s) => Some(Cow::Borrowed(s)),
                Err(_) => return parse(body),
            }
        }
        None => None,
    };
    let id = m.id.filter(|r| &body[r.clone()] != b"null");
    if let Some(r) = &id {
        let t = body[r.start];
        if !(t == b'"' || t == b'-' || t.is_ascii_digit()) {
            return parse(body);
        }
    }
    let kind = match (&method, &id, m.result || m.error) {
        (Some(_), Some(_), false) => crate::jsonrpc::Kind::Request,
        (Some(_), None, false) => crate::jsonrpc::Kind::Notification,
        (None, _, true) => crate::jsonrpc::Kind::Response,
        _ => return parse(body),
    };
    // Only requests and notifications have small params worth parsing.
    let (progress_token, meta_protocol_version) = match (&m.params, &method) {
        (Some(p), Some(_)) => parse_params(body, p.clone(), false)?,
        _ => (None, None),
    };
    Ok(Envelope {
        kind,
        method,
        id,
        params: m.params,
        progress_token,
        meta_protocol_version,
        is_error: m.error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn agrees_with_the_full_parser() {
        for body in [
            &br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"a \"q\" \\ ]}"}]}}"#[..],
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":3,"progress":1}}"#,
            br#"{ "id" : "x" , "jsonrpc" : "2.0" , "method" : "m" , "params" : {"_meta":{"progressToken":"t"}} }"#,
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools\/list"}"#,
        ] {
            assert_eq!(parse_fast(body), parse(body), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn lone_surrogates_in_client_params_are_refused() {
        let body =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_m;ta\ud800":{"x":1}}}"#;
        assert!(parse(body).is_err());
    }

    #[test]
    fn large_results_are_skipped() {
        let big = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"{}\"}}]}}}}",
            "x".repeat(1 << 20)
        );
        let e = parse_fast(big.as_bytes()).unwrap();
        assert_eq!(&big.as_bytes()[e.id.unwrap()], b"5");
    }

    proptest! {
        #[test]
        fn never_panics_and_agrees_when_ok(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(e) = parse_fast(&bytes) {
                // Whatever the fast path accepts, it classifies like the full parser when
                // the full parser accepts it too.
                if let Ok(full) = parse(&bytes) {
                    prop_assert_eq!(e, full);
                }
            }
        }

        #[test]
        fn agrees_on_generated_messages(id in prop_oneof![any::<i32>().prop_map(|i| i.to_string()), "[a-z]{0,5}".prop_map(|s| format!("\"{s}\""))],
                                        text in "[ -~]{0,40}") {
            let body = serde_json::json!({"jsonrpc":"2.0","id":serde_json::from_str::<serde_json::Value>(&id).unwrap(),"result":{"text":text}}).to_string();
            prop_assert_eq!(parse_fast(body.as_bytes()), parse(body.as_bytes()));
        }
    }
}
