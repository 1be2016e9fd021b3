//! Steps 4 and 6: the `GET` probe hosted clients send when a connector is created, and
//! whether the event stream it opens reaches the client while it is open.
//!
//! The relay writes a `:` keep-alive comment on every SSE stream each `--keepalive-secs`
//! (15 s by default). An event stream never ends, so a proxy that buffers responses
//! (nginx with `proxy_buffering on` that ignores `X-Accel-Buffering: no`, a proxy holding
//! whole bodies) delivers nothing of it: no keep-alive within a bounded wait means
//! buffering.

use std::time::Duration;

use tokio::time::Instant;

use super::{Check, Ctx, clean};

const BUFFERING_FIX: &str = "turn response buffering off for /<tunnel>/mcp: nginx `proxy_buffering off;` (and no `proxy_ignore_headers X-Accel-Buffering`), Caddy `flush_interval -1`; do not compress text/event-stream. If the relay's --keepalive-secs is longer than the wait, raise --stream-wait-secs";

/// Opens the `GET` stream and watches it up to the stream wait: the probe's check
/// (step 4) and the delivery's (step 6).
pub async fn watch(ctx: &Ctx) -> (Check, Check) {
    let wait = ctx.stream_wait;
    let secs = wait.as_secs_f64();
    let start = Instant::now();
    let deadline = start + wait;
    let mut rb = ctx
        .http
        .client()
        .get(ctx.url.as_str())
        .header("accept", "text/event-stream");
    if let Some(t) = &ctx.token {
        rb = rb.bearer_auth(t);
    }
    let mut resp = match tokio::time::timeout_at(deadline, rb.send()).await {
        Err(_) => {
            return (
                Check::fail(
                    4,
                    "get-probe",
                    format!("no answer to GET within {secs:.0} s"),
                    "something in front of the relay holds the answer back until it ends, and an event stream never ends: see sse-delivery",
                ),
                Check::fail(
                    6,
                    "sse-delivery",
                    format!(
                        "nothing of the GET event stream arrived within {secs:.0} s, not even its headers: a proxy buffers the SSE stream (whole responses)"
                    ),
                    BUFFERING_FIX,
                ),
            );
        }
        Ok(Err(e)) => {
            return (
                Check::fail(
                    4,
                    "get-probe",
                    format!("GET failed: {}", super::http::error_chain(&e)),
                    "check the host name, that the relay (or its proxy) listens there, and its TLS certificate",
                ),
                Check::skip(6, "sse-delivery", "not checked: the GET failed"),
            );
        }
        Ok(Ok(r)) => r,
    };
    let status = resp.status().as_u16();
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let media = header("content-type")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding = header("content-encoding");
    let headers_after = start.elapsed().as_secs_f64();

    if status == 401 {
        let skip = Check::skip(6, "sse-delivery", "not checked: GET needs credentials");
        return match &ctx.token {
            None => (
                Check::skip(
                    4,
                    "get-probe",
                    "GET answered 401 (the route reaches the relay, which wants credentials): pass --token to check the stream",
                ),
                skip,
            ),
            Some(_) => (
                Check::fail(
                    4,
                    "get-probe",
                    "GET with the token answered 401: the token was refused",
                    "pass a valid token for this tunnel with --token",
                ),
                skip,
            ),
        };
    }
    if status != 200 {
        let headers = resp.headers().clone();
        let body = tokio::time::timeout(Duration::from_secs(2), resp.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let a = super::http::Answer {
            status,
            headers,
            body: body.to_vec(),
        };
        let mut c = super::mcp::refused(4, "get-probe", "GET", &a);
        if status == 404 || status == 405 {
            c = c.with_fix(format!(
                "hosted clients probe the MCP URL with GET when a connector is created, and a {status} makes creation fail: forward GET on /<tunnel>/mcp to the relay (it answers 200 text/event-stream)"
            ));
        }
        return (
            c,
            Check::skip(6, "sse-delivery", "not checked: GET was refused"),
        );
    }
    if media != "text/event-stream" {
        return (
            Check::fail(
                4,
                "get-probe",
                format!(
                    "GET answered 200 with Content-Type {:?}, not text/event-stream",
                    clean(&media)
                ),
                "the URL must reach the relay's /<tunnel>/mcp: something else answers GET",
            ),
            Check::skip(6, "sse-delivery", "not checked: no event stream"),
        );
    }
    let probe = Check::pass(
        4,
        "get-probe",
        format!("GET answered 200 text/event-stream after {headers_after:.1} s"),
    );

    // Wait for one complete SSE block (a keep-alive comment or an event).
    let mut buf: Vec<u8> = Vec::new();
    let delivery = loop {
        let got = tokio::time::timeout_at(deadline, resp.chunk()).await;
        let after = start.elapsed().as_secs_f64();
        match got {
            Err(_) => {
                let mut seen = format!(
                    "no bytes of the open GET event stream arrived within {secs:.0} s (the relay sends a `:` keep-alive every --keepalive-secs, 15 s by default): a proxy buffers the SSE stream"
                );
                if !buf.is_empty() {
                    seen = format!(
                        "only {} bytes of the open GET event stream arrived within {secs:.0} s, no complete keep-alive: a proxy buffers the SSE stream",
                        buf.len()
                    );
                }
                if let Some(e) = &encoding {
                    seen.push_str(&format!(" (Content-Encoding {})", clean(e)));
                }
                break Check::fail(6, "sse-delivery", seen, BUFFERING_FIX);
            }
            Ok(Err(e)) => {
                break Check::fail(
                    6,
                    "sse-delivery",
                    format!(
                        "the GET event stream broke after {after:.1} s: {}",
                        super::http::error_chain(&e)
                    ),
                    "something in front of the relay cuts event streams: allow long-lived responses (nginx `proxy_read_timeout 3600s;`)",
                );
            }
            Ok(Ok(None)) => {
                break Check::warn(
                    6,
                    "sse-delivery",
                    format!(
                        "the GET event stream ended after {after:.1} s with {} bytes and no keep-alive",
                        buf.len()
                    ),
                    "something in front of the relay closes idle event streams: raise its read timeout (nginx `proxy_read_timeout 3600s;`) and keep buffering off",
                );
            }
            Ok(Ok(Some(chunk))) => {
                buf.extend_from_slice(&chunk);
                if complete_block(&buf) {
                    let first = String::from_utf8_lossy(&buf);
                    let what = if first.trim_start().starts_with(':') {
                        "a keep-alive comment"
                    } else {
                        "an event"
                    };
                    break Check::pass(
                        6,
                        "sse-delivery",
                        format!(
                            "{what} arrived after {after:.1} s while the stream was open: nothing buffers it"
                        ),
                    );
                }
                if buf.len() > 64 * 1024 {
                    buf.drain(..buf.len() - 4);
                }
            }
        }
    };
    (probe, delivery)
}

/// Whether `buf` holds a complete SSE block (a blank line ends it).
fn complete_block(buf: &[u8]) -> bool {
    buf.windows(2).any(|w| w == b"\n\n") || buf.windows(4).any(|w| w == b"\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks() {
        assert!(complete_block(b": keepalive\n\n"));
        assert!(complete_block(b": k\r\n\r\n"));
        assert!(!complete_block(b": keepal"));
    }
}
