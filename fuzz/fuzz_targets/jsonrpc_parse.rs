//! `protocol::jsonrpc::parse` on arbitrary bytes.
//!
//! Properties checked on every input:
//!
//! - `parse` never panics;
//! - an accepted body is valid JSON: `serde_json` reads it, and it is UTF-8;
//! - every span it returns lies inside the body, and the id and progress-token spans hold
//!   exactly the JSON text of `id` and `params._meta.progressToken`;
//! - splicing a number over the id span (and another over the progress token, when there
//!   is one) yields valid single-line JSON whose `id` (and `progressToken`) is that
//!   number — the rewrite the bridge performs on every forwarded request.
//!
//! The oracle reads the JSON with `IgnoredAny` for everything but the fields it checks, so
//! numbers outside `f64`'s range elsewhere in the message (valid JSON that
//! `serde_json::Value` refuses) do not cause false alarms.

#![no_main]

use std::ops::Range;

use libfuzzer_sys::fuzz_target;
use protocol::jsonrpc::{Kind, parse, splice};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// The top-level fields the oracle reads (everything else is skipped unparsed).
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

/// `params`, when it is an object.
#[derive(Deserialize)]
struct Params<'a> {
    /// Any JSON: a `_meta` that is not an object carries no progress token.
    #[serde(borrow, rename = "_meta")]
    meta: Option<&'a RawValue>,
}

/// `params._meta`.
#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
}

impl<'a> Message<'a> {
    /// Reads `text`, panicking with `what` if it is not a JSON object with these fields.
    fn read(text: &'a [u8], what: &str) -> Self {
        serde_json::from_slice(text).unwrap_or_else(|e| {
            panic!(
                "{what} is not a JSON object ({e}): {}",
                String::from_utf8_lossy(text)
            )
        })
    }

    /// The JSON text of `id`.
    fn id(&self) -> Option<&'a str> {
        self.id.map(RawValue::get)
    }

    /// The JSON text of `params._meta.progressToken`, when `params` is an object.
    fn progress_token(&self) -> Option<&'a str> {
        let params = self.params?.get();
        if !params.starts_with('{') {
            return None;
        }
        let p: Params<'a> = serde_json::from_str(params).expect("params object re-reads");
        let meta = p.meta?.get();
        if !meta.starts_with('{') {
            return None;
        }
        let m: Meta<'a> = serde_json::from_str(meta).expect("_meta object re-reads");
        m.progress_token.map(RawValue::get)
    }
}

/// Checks that `span` is a well-formed range of `body`.
fn check_span(body: &[u8], span: &Range<usize>, what: &str) {
    assert!(
        span.start <= span.end && span.end <= body.len(),
        "{what} span {span:?} is outside the {}-byte body",
        body.len()
    );
    assert!(!span.is_empty(), "{what} span is empty");
}

/// The text of a span, as a string.
fn text_at<'a>(body: &'a [u8], span: &Range<usize>) -> &'a str {
    std::str::from_utf8(&body[span.clone()]).expect("a span of valid JSON is UTF-8")
}

/// The id spliced in: the largest integer a JavaScript client reads exactly.
const NEW_ID: u64 = 9_007_199_254_740_991;
/// The progress token spliced in.
const NEW_TOKEN: i64 = -42;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = parse(data) else {
        return;
    };
    serde_json::from_slice::<IgnoredAny>(data).expect("parse accepted a body that is not JSON");
    // RFC 8259 §8.1: a JSON text is UTF-8. serde_json does not check the strings it skips
    // (`IgnoredAny`), so this is checked separately: a body with invalid UTF-8 in a member
    // the envelope ignores would reach a server that cannot read it.
    if let Err(e) = std::str::from_utf8(data) {
        panic!("parse accepted a body that is not UTF-8 ({e})");
    }
    for (span, what) in [
        (&env.id, "id"),
        (&env.params, "params"),
        (&env.progress_token, "progressToken"),
    ] {
        if let Some(span) = span {
            check_span(data, span, what);
        }
    }
    match env.kind {
        Kind::Request => assert!(env.method.is_some() && env.id.is_some()),
        Kind::Notification => assert!(env.method.is_some() && env.id.is_none()),
        Kind::Response => assert!(env.method.is_none()),
    }

    let Some(id_span) = env.id.clone() else {
        return;
    };
    let original = Message::read(data, "the accepted body");
    assert_eq!(
        Some(text_at(data, &id_span)),
        original.id(),
        "the id span does not hold the message's id"
    );
    let token_span = env.progress_token.clone();
    assert_eq!(
        token_span.as_ref().map(|s| text_at(data, s)),
        original.progress_token().filter(|t| *t != "null"),
        "the progressToken span does not hold the message's progressToken"
    );

    // The bridge's rewrite: a fresh numeric id and progress token.
    let id_text = NEW_ID.to_string();
    let token_text = NEW_TOKEN.to_string();
    let mut edits: Vec<(Range<usize>, &[u8])> = vec![(id_span, id_text.as_bytes())];
    if let Some(span) = token_span {
        edits.push((span, token_text.as_bytes()));
    }
    let out = splice(data, &mut edits);
    assert!(
        !out.contains(&b'\n') && !out.contains(&b'\r'),
        "the spliced message has a raw line break"
    );
    serde_json::from_slice::<IgnoredAny>(&out).unwrap_or_else(|e| {
        panic!(
            "splicing the id gave invalid JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    });
    let spliced = Message::read(&out, "the spliced message");
    assert_eq!(spliced.id(), Some(id_text.as_str()), "the spliced id");
    let id: serde_json::Value = serde_json::from_str(spliced.id().unwrap_or("")).expect("JSON");
    assert_eq!(id, serde_json::json!(NEW_ID), "the spliced id's value");
    if edits.len() == 2 {
        assert_eq!(
            spliced.progress_token(),
            Some(token_text.as_str()),
            "the spliced progressToken"
        );
    }
    let again = parse(&out).expect("the spliced message no longer parses");
    assert_eq!(again.kind, env.kind, "splicing changed the message's kind");
    assert_eq!(again.method, env.method, "splicing changed the method");
    let new_span = again.id.expect("the spliced message has an id");
    assert_eq!(text_at(&out, &new_span), id_text, "the new id span");
});
