//! The doctor's HTTP plumbing: a client that follows no redirects, whole answers read
//! with a size bound, JSON-RPC messages out of JSON or SSE bodies, and the
//! `WWW-Authenticate` parameters.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// Largest body read from any answer.
const MAX_BODY: usize = 4 << 20;

/// The doctor's HTTP client.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    timeout: Duration,
}

/// A complete HTTP answer.
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body (at most [`MAX_BODY`] bytes).
    pub body: Vec<u8>,
}

impl Http {
    /// A client trusting `tls`'s roots; `timeout` bounds each whole request.
    pub fn new(tls: &Arc<rustls::ClientConfig>, timeout: Duration) -> Result<Self> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((**tls).clone())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .user_agent(concat!("bridge-doctor/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, timeout })
    }

    /// The underlying client (for streams, which are read by hand).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends a request and reads its whole answer; the error says what went wrong.
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Result<Answer, String> {
        let read = async {
            let mut resp = rb.send().await.map_err(|e| error_chain(&e))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e))? {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(format!("the answer is larger than {MAX_BODY} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Answer {
                status,
                headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no complete answer within {:.0} s",
                self.timeout.as_secs_f64()
            )),
        }
    }

    /// `GET url` accepting JSON.
    pub async fn get_json(&self, url: &str) -> Result<Answer, String> {
        self.send(self.client.get(url).header("accept", "application/json"))
            .await
    }

    /// POSTs a JSON-RPC body to the MCP URL with the usual headers plus `extra`.
    pub async fn post_rpc(
        &self,
        url: &str,
        token: Option<&str>,
        body: &Value,
        extra: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let mut rb = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in extra {
            rb = rb.header(*k, *v);
        }
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        self.send(rb.body(body.to_string())).await
    }
}

impl Answer {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The media type, lower case, without parameters.
    pub fn media_type(&self) -> String {
        self.header("content-type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The JSON-RPC answer to `id` (a result or an error), from a JSON body or an SSE
    /// stream.
    pub fn rpc_answer(&self, id: &Value) -> Option<Value> {
        let answers = |m: &Value| {
            m.get("id") == Some(id) && (m.get("result").is_some() || m.get("error").is_some())
        };
        if self.media_type() == "text/event-stream" {
            return sse_messages(&String::from_utf8_lossy(&self.body))
                .into_iter()
                .find(answers);
        }
        self.json().filter(answers)
    }

    /// The start of the body as one line of text, for reports.
    pub fn snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut s: String = one_line.chars().take(160).collect();
        if one_line.chars().count() > 160 {
            s.push('…');
        }
        super::clean(&s)
    }

    /// The message of a JSON-RPC error body, or the body's start.
    pub fn error_text(&self) -> String {
        match self.json() {
            Some(v) => match v["error"]["message"].as_str() {
                Some(m) => super::clean(m),
                None => self.snippet(),
            },
            None => self.snippet(),
        }
    }
}

/// The JSON messages in an SSE text (`data:` lines of each event, joined).
pub fn sse_messages(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut data = String::new();
    let mut flush = |data: &mut String| {
        if !data.is_empty() {
            if let Ok(v) = serde_json::from_str(data) {
                out.push(v);
            }
            data.clear();
        }
    };
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            flush(&mut data);
        } else if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    flush(&mut data);
    out
}

/// The auth-params of the `Bearer` challenges in `WWW-Authenticate` values, lower-cased
/// names; `None` when no challenge uses the Bearer scheme.
pub fn bearer_params(values: &[&str]) -> Option<Vec<(String, String)>> {
    let mut found = None;
    for v in values {
        for (scheme, params) in challenges(v) {
            if scheme.eq_ignore_ascii_case("bearer") {
                found.get_or_insert_with(Vec::new).extend(params);
            }
        }
    }
    found
}

/// Splits a `WWW-Authenticate` value into challenges (scheme, params).
fn challenges(v: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let b = v.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    let token_end = |mut i: usize| {
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b',' | b'=') {
            i += 1;
        }
        i
    };
    while i < b.len() {
        skip_ws(&mut i);
        let start = i;
        i = token_end(i);
        if start == i {
            i += 1;
            continue;
        }
        let word = &v[start..i];
        // `name=` is a parameter of the current challenge; anything else starts one.
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && !out.is_empty() {
            j += 1;
            while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
                j += 1;
            }
            let mut value = String::new();
            if j < b.len() && b[j] == b'"' {
                j += 1;
                while j < b.len() && b[j] != b'"' {
                    if b[j] == b'\\' && j + 1 < b.len() {
                        j += 1;
                    }
                    let ch = v[j..].chars().next().unwrap_or(' ');
                    value.push(ch);
                    j += ch.len_utf8();
                }
                j += 1;
            } else {
                let end = token_end(j);
                value.push_str(&v[j..end]);
                j = end;
            }
            if let Some(last) = out.last_mut() {
                last.1.push((word.to_ascii_lowercase(), value));
            }
            i = j.min(b.len());
        } else if j < b.len() && b[j] == b'=' {
            // A parameter before any scheme: ignored.
            i = token_end(j + 1);
        } else {
            out.push((word.to_owned(), Vec::new()));
        }
    }
    out
}

/// An error with its causes, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    super::clean(&crate::error_text::error_chain(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bearer_challenges() {
        let p = bearer_params(&[
            r#"Bearer resource_metadata="https://r.example/.well-known/oauth-protected-resource/a/mcp", scope="mcp""#,
        ])
        .unwrap();
        assert_eq!(
            p[0],
            (
                "resource_metadata".into(),
                "https://r.example/.well-known/oauth-protected-resource/a/mcp".into()
            )
        );
        assert_eq!(p[1], ("scope".into(), "mcp".into()));
        let p = bearer_params(&[r#"Basic realm="x", Bearer error=invalid_token, realm="a\"b""#])
            .unwrap();
        assert_eq!(p[0], ("error".into(), "invalid_token".into()));
        assert_eq!(p[1], ("realm".into(), "a\"b".into()));
        assert!(bearer_params(&[r#"Basic realm="x""#]).is_none());
        assert!(bearer_params(&[]).is_none());
        assert_eq!(bearer_params(&["Bearer"]).unwrap(), vec![]);
    }

    #[test]
    fn sse_bodies() {
        let text = ": keepalive\n\nid: 1\ndata: {\"id\":1,\ndata: \"result\":{}}\n\ndata: x\n\n";
        assert_eq!(sse_messages(text), vec![json!({"id": 1, "result": {}})]);
        assert_eq!(
            sse_messages("data:{\"a\":1}\r\n\r\n"),
            vec![json!({"a": 1})]
        );
    }
}
