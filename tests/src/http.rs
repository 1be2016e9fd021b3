//! HTTP through reqwest: one client configuration for the tests, complete answers read in
//! full (JSON, or the JSON-RPC messages of an SSE body), and a blocking wrapper for tests
//! that run without an async runtime.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::process::install_crypto_provider;

/// How long a request of [`client`] may take by default.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A reqwest client for loopback tests: no proxy, HTTP/1.1, no Nagle delay, no redirects
/// followed, and a [`TIMEOUT`] per request.
pub fn client() -> reqwest::Client {
    client_with(TIMEOUT)
}

/// [`client`] with another timeout per request.
pub fn client_with(timeout: Duration) -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .expect("HTTP client")
}

/// A complete HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value, `""` when absent (or not text).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as JSON; panics with the status and body otherwise.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): HTTP {} {}", self.status, self.text()))
    }

    /// Whether the body is an event stream.
    pub fn is_sse(&self) -> bool {
        self.header("content-type").starts_with("text/event-stream")
    }

    /// The JSON-RPC messages of the body: none for an empty body, the one JSON value, or
    /// the data of each SSE event (priming events skipped); an error for anything else.
    pub fn try_messages(&self) -> Result<Vec<Value>, String> {
        if self.is_sse() {
            return crate::sse::messages(&self.body);
        }
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        serde_json::from_slice(&self.body)
            .map(|v| vec![v])
            .map_err(|e| format!("non-JSON body ({}): {e}: {}", self.status, self.text()))
    }

    /// [`Answer::try_messages`], panicking on a body that is neither.
    pub fn messages(&self) -> Vec<Value> {
        self.try_messages().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The JSON-RPC response (result or error) among the messages, if any.
    pub fn response(&self) -> Option<Value> {
        self.messages()
            .into_iter()
            .find(|m| m.get("result").is_some() || m.get("error").is_some())
    }

    /// The JSON-RPC response answering `id`; panics when there is none.
    pub fn response_to(&self, id: &Value) -> Value {
        self.messages()
            .into_iter()
            .find(|m| m.get("method").is_none() && m["id"] == *id)
            .unwrap_or_else(|| panic!("no answer with id {id}: {}", self.text()))
    }

    /// A complete HTTP/1.1 answer with a `Content-Length` body, once `buf` (read from a
    /// connection) holds all of it; `None` while it does not.
    pub fn from_raw(buf: &[u8]) -> Option<Self> {
        use reqwest::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&buf[..end]).expect("an ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("a status line");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = HeaderMap::new();
        for line in lines {
            let (k, v) = line.split_once(':').expect("a header line");
            headers.append(
                HeaderName::from_bytes(k.trim().as_bytes()).expect("header name"),
                HeaderValue::from_str(v.trim()).expect("header value"),
            );
        }
        let len: usize = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("the answer has a Content-Length");
        let body = buf.get(end + 4..end + 4 + len)?;
        Some(Self {
            status,
            headers,
            body: Bytes::copy_from_slice(body),
        })
    }

    /// Asserts the status and a JSON-RPC error body that answers no request (`id: null`),
    /// with this code and a message.
    pub fn assert_error(&self, status: u16, code: i64, what: &str) {
        self.assert_jsonrpc_error(&Value::Null, status, code, what);
    }

    /// Asserts the status and a JSON-RPC error body answering request `id` (`Null` for an
    /// error that answers no request), with this code and a message.
    pub fn assert_jsonrpc_error(&self, id: &Value, status: u16, code: i64, what: &str) {
        assert_eq!(
            self.status,
            status,
            "{what}: unexpected status; body: {}",
            self.text()
        );
        assert!(
            self.header("content-type").starts_with("application/json"),
            "{what}: the error is not application/json: {:?}; body: {}",
            self.headers,
            self.text()
        );
        let v: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{what}: the body is not JSON ({e}): {}", self.text()));
        assert_eq!(v["jsonrpc"], "2.0", "{what}: not a JSON-RPC message: {v}");
        assert_eq!(&v["id"], id, "{what}: the error answers another id: {v}");
        assert!(
            v.get("result").is_none(),
            "{what}: an error with a result: {v}"
        );
        assert_eq!(v["error"]["code"], code, "{what}: wrong error code: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: the error has no message: {v}"
        );
    }
}

/// Sends a request and reads the whole answer; a transport error (or timeout) is an
/// error naming it.
pub async fn try_send(rb: reqwest::RequestBuilder) -> Result<Answer, String> {
    let resp = rb.send().await.map_err(|e| format!("transport: {e:?}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("transport (body): {e:?}"))?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// [`try_send`], panicking (naming `what`) on a transport error.
pub async fn send(rb: reqwest::RequestBuilder, what: &str) -> Answer {
    try_send(rb)
        .await
        .unwrap_or_else(|e| panic!("{what}: request failed: {e}"))
}

/// `application/x-www-form-urlencoded` of `pairs`, the way a URL's query is serialised.
pub fn form(pairs: &[(&str, &str)]) -> String {
    reqwest::Url::parse_with_params("http://form.invalid/", pairs)
        .expect("form")
        .query()
        .unwrap_or("")
        .to_owned()
}

/// The text between `start` and the next `end`.
pub fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// A blocking HTTP client (no redirects followed, no cookie jar, no pooled connections),
/// for tests without an async runtime of their own.
pub struct BlockingHttp {
    rt: tokio::runtime::Runtime,
    /// The client its requests are built with.
    pub client: reqwest::Client,
}

impl Default for BlockingHttp {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockingHttp {
    /// A client with its own single-threaded runtime.
    pub fn new() -> Self {
        install_crypto_provider();
        Self {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(0)
                .timeout(TIMEOUT)
                .build()
                .expect("HTTP client"),
        }
    }

    /// Runs a future on this client's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Sends a request; its whole answer, or the transport error.
    pub fn try_send(&self, req: reqwest::RequestBuilder) -> Result<Answer, String> {
        self.rt.block_on(try_send(req))
    }

    /// Sends a request; its whole answer (a transport error panics).
    pub fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        self.rt.block_on(send(req, "HTTP request"))
    }

    /// A GET with these headers.
    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(with_headers(self.client.get(url), headers))
    }

    /// A POST of `body` with this content type and these headers.
    pub fn post(
        &self,
        url: &str,
        content_type: &str,
        body: String,
        headers: &[(&str, &str)],
    ) -> Answer {
        let req = self
            .client
            .post(url)
            .header("content-type", content_type)
            .body(body);
        self.send(with_headers(req, headers))
    }

    /// A form POST (`application/x-www-form-urlencoded`) with these headers.
    pub fn post_form(&self, url: &str, pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> Answer {
        self.post(
            url,
            "application/x-www-form-urlencoded",
            form(pairs),
            headers,
        )
    }

    /// A JSON-RPC message POSTed to an MCP endpoint, as a Streamable HTTP client sends it
    /// (accepting JSON and event streams), without a session.
    pub fn post_mcp(&self, url: &str, body: &Value) -> Answer {
        self.post(
            url,
            "application/json",
            body.to_string(),
            &[("accept", "application/json, text/event-stream")],
        )
    }

    /// A JSON POST.
    pub fn post_json(&self, url: &str, body: &Value) -> Answer {
        self.post(url, "application/json", body.to_string(), &[])
    }
}

/// Adds `headers` to a request.
pub fn with_headers(
    mut req: reqwest::RequestBuilder,
    headers: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req
}
