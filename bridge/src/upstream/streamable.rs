//! One upstream session over Streamable HTTP.
//!
//! - The core's `initialize` is `POST`ed without a session id; the `Mcp-Session-Id` the
//!   server answers with (if any) and the protocol version it agreed to are sent with
//!   every later request (`MCP-Protocol-Version`).
//! - Each request is a `POST` of its own, concurrently: the answer is a JSON body or an
//!   SSE stream whose messages (progress, logs, the server's requests, then the answer)
//!   reach the core in order. A stream that ends before the answer is resumed with `GET`
//!   and `Last-Event-ID` when its events had ids; otherwise the request is answered with an
//!   error. Notifications and answers to the server's requests are `POST`ed in order.
//! - After `notifications/initialized`, a `GET` stream carries what the server sends on
//!   its own (list changes, resource updates); it is reopened when it ends, unless the
//!   server has none (405).
//! - A `404` to a request with a session id means the server forgot the session (it
//!   restarted): the session is renewed with the same `initialize`, the log level and the
//!   resource subscriptions are set again, and the request is sent once more, so the
//!   client's session continues.
//! - A server that cannot be reached answers each request with an error at once; the
//!   server's [`super::Health`] says it is down until it answers again.
//! - Closing the session (the core stopped it) sends `DELETE`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use protocol::jsonrpc::{INTERNAL_ERROR, Kind, UNAVAILABLE};
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use tokio::task::{AbortHandle, JoinSet};
use tracing::{debug, info};

use super::link::{Link, error_chain, refusal};
use super::sse::Decoder;

/// Attempts to resume a request's stream that ended before its answer.
const RESUME_ATTEMPTS: u32 = 5;
/// Longest wait between attempts to reopen the `GET` stream.
const MAX_LISTEN_DELAY: Duration = Duration::from_secs(30);

/// How opening a session went.
pub(super) enum Opened {
    /// The session is open.
    Session(Streamable),
    /// The server refused the `POST` with a client error while the transport was to be
    /// detected: it may speak HTTP+SSE (the reason, for the log).
    NotStreamable(String),
    /// It failed, and the core was told (an error answer to its `initialize`, or the
    /// server is unreachable).
    Failed,
}

/// What a session has set on the server, set again when it is renewed.
#[derive(Default)]
struct Replay {
    log_level: Option<Value>,
    subscriptions: BTreeSet<String>,
}

/// The session's state shared with its requests in flight.
struct State {
    session: Mutex<Option<String>>,
    version: Mutex<Option<String>>,
    /// The core's `initialize`, for renewals.
    init: Bytes,
    /// Held while the session is renewed (one renewal at a time).
    renewing: tokio::sync::Mutex<()>,
    replay: Mutex<Replay>,
}

impl State {
    fn session(&self) -> Option<String> {
        self.session.lock().ok().and_then(|s| s.clone())
    }
}

/// An open Streamable HTTP session.
pub(super) struct Streamable {
    link: Arc<Link>,
    st: Arc<State>,
    /// Requests in flight (and the `GET` stream), aborted when the session closes.
    tasks: JoinSet<()>,
    /// Requests in flight by their id (raw JSON), to stop reading a cancelled one.
    in_flight: HashMap<Vec<u8>, AbortHandle>,
    listener: Option<AbortHandle>,
}

impl Streamable {
    /// Opens a session with the core's `initialize` line; with `detect`, a client error
    /// means "try HTTP+SSE" rather than a failure.
    pub(super) async fn open(link: Arc<Link>, init: Bytes, detect: bool) -> Opened {
        let id = match protocol::scan::parse_fast(&init) {
            Ok(env) => env.id.map(|s| init[s].to_vec()).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let st = Arc::new(State {
            session: Mutex::new(None),
            version: Mutex::new(None),
            init: init.clone(),
            renewing: tokio::sync::Mutex::new(()),
            replay: Mutex::new(Replay::default()),
        });
        let resp = match post(&link, &st, init).await {
            Ok(r) => r,
            Err(e) => {
                link.unreachable(e).await;
                return Opened::Failed;
            }
        };
        link.shared.health.up();
        let status = resp.status();
        if detect
            && matches!(
                status,
                StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            )
        {
            return Opened::NotStreamable(format!(
                "POST {} answered {status}",
                link.shared.cfg.server.url
            ));
        }
        if !status.is_success() {
            let why = refusal(resp).await;
            link.note(format!("the server refused initialize: {why}"));
            link.emit_error(
                &id,
                INTERNAL_ERROR,
                &format!("the server refused initialize: {why}"),
            )
            .await;
            return Opened::Failed;
        }
        let sid = header(&resp, "mcp-session-id");
        match read_answer(&link, resp, &id, Forward::Emit).await {
            Read::Answered(answer) => {
                let version = serde_json::from_slice::<Value>(&answer)
                    .ok()
                    .and_then(|v| v["result"]["protocolVersion"].as_str().map(str::to_owned));
                set(&st.session, sid);
                set(&st.version, version);
                Opened::Session(Streamable {
                    link,
                    st,
                    tasks: JoinSet::new(),
                    in_flight: HashMap::new(),
                    listener: None,
                })
            }
            other => {
                let why = other.describe();
                link.note(format!("no answer to initialize: {why}"));
                link.emit_error(
                    &id,
                    INTERNAL_ERROR,
                    &format!("no answer to initialize: {why}"),
                )
                .await;
                Opened::Failed
            }
        }
    }

    /// Sends one line of the core to the server.
    pub(super) async fn send(&mut self, line: Bytes) {
        // Reap what finished, so the task set stays small.
        while self.tasks.try_join_next().is_some() {}
        let Ok(env) = protocol::scan::parse_fast(&line) else {
            debug!("dropping a line that is not JSON-RPC");
            return;
        };
        let method = env.method.as_deref().unwrap_or("").to_owned();
        match env.kind {
            Kind::Request => {
                let id = env.id.clone().map(|s| line[s].to_vec()).unwrap_or_default();
                self.remember(&method, &line);
                let (link, st) = (self.link.clone(), self.st.clone());
                let key = id.clone();
                let handle = self
                    .tasks
                    .spawn(async move { request(link, st, line, id).await });
                self.in_flight.retain(|_, h| !h.is_finished());
                self.in_flight.insert(key, handle);
            }
            Kind::Notification | Kind::Response => {
                let cancelled = (method == "notifications/cancelled")
                    .then(|| cancelled_id(&line))
                    .flatten();
                self.post_in_order(line).await;
                if method == "notifications/initialized" {
                    self.listen();
                }
                if let Some(h) = cancelled.and_then(|id| self.in_flight.remove(&id)) {
                    h.abort();
                }
            }
        }
    }

    /// Records what must be set again on a renewed session.
    fn remember(&self, method: &str, line: &[u8]) {
        if !matches!(
            method,
            "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe"
        ) {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return;
        };
        let Ok(mut r) = self.st.replay.lock() else {
            return;
        };
        let uri = v["params"]["uri"].as_str().map(str::to_owned);
        match (method, uri) {
            ("logging/setLevel", _) => r.log_level = Some(v["params"].clone()),
            ("resources/subscribe", Some(u)) => {
                r.subscriptions.insert(u);
            }
            ("resources/unsubscribe", Some(u)) => {
                r.subscriptions.remove(&u);
            }
            _ => {}
        }
    }

    /// A notification or an answer: sent before the next line is read, so the server sees
    /// them in order.
    async fn post_in_order(&self, line: Bytes) {
        for attempt in 0..2 {
            let stale = self.st.session();
            match post(&self.link, &self.st, line.clone()).await {
                Err(e) => {
                    self.link.shared.health.down(&e);
                    return;
                }
                Ok(r) => {
                    self.link.shared.health.up();
                    match forgot_session(r, stale.is_some() && attempt == 0).await {
                        Ok(None) => {
                            if renew(&self.link, &self.st, stale).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(r)) if r.status().is_success() => return,
                        Ok(Some(r)) => {
                            let why = refusal(r).await;
                            self.link
                                .note(format!("the server refused a notification: {why}"));
                            return;
                        }
                        Err(why) => {
                            self.link
                                .note(format!("the server refused a notification: {why}"));
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Opens (or reopens) the `GET` stream of server-sent messages.
    fn listen(&mut self) {
        if let Some(h) = self.listener.take() {
            h.abort();
        }
        let (link, st) = (self.link.clone(), self.st.clone());
        self.listener = Some(self.tasks.spawn(listen(link, st)));
    }

    /// Ends the session: requests in flight stop, and the server is told (`DELETE`).
    pub(super) fn close(mut self) {
        self.tasks.abort_all();
        if let Some(sid) = self.st.session() {
            let rb = self
                .link
                .request(Method::DELETE, &self.link.shared.cfg.server.url)
                .header("mcp-session-id", sid);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), rb.send()).await;
            });
        }
    }
}

impl Drop for Streamable {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

fn set(slot: &Mutex<Option<String>>, v: Option<String>) {
    if let Ok(mut s) = slot.lock() {
        *s = v;
    }
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `params.requestId` of a `notifications/cancelled`, as raw JSON.
fn cancelled_id(line: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(line).ok()?;
    serde_json::to_vec(v["params"].get("requestId")?).ok()
}

/// `rb` with the session's headers: its id and protocol version, once known.
fn with_session(mut rb: reqwest::RequestBuilder, st: &State) -> reqwest::RequestBuilder {
    if let Some(sid) = st.session() {
        rb = rb.header("mcp-session-id", sid);
    }
    if let Some(v) = st.version.lock().ok().and_then(|v| v.clone()) {
        rb = rb.header("mcp-protocol-version", v);
    }
    rb
}

/// `POST`s one message with the session's headers; the error says why it could not be
/// sent (the server is unreachable).
async fn post(link: &Link, st: &State, body: Bytes) -> Result<Response, String> {
    let rb = link
        .request(Method::POST, &link.shared.cfg.server.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    with_session(rb, st)
        .body(body)
        .send()
        .await
        .map_err(|e| error_chain(&e))
}

/// Whether the server answered that it does not know the session (when `had_session`):
/// `404` as the specification says, or `400` naming the session as several SDK servers
/// do. `Ok(None)` means it forgot the session; `Ok(Some)` gives the answer back; `Err` is
/// a `400` for another reason, described.
async fn forgot_session(resp: Response, had_session: bool) -> Result<Option<Response>, String> {
    if !had_session {
        return Ok(Some(resp));
    }
    match resp.status() {
        StatusCode::NOT_FOUND => Ok(None),
        StatusCode::BAD_REQUEST => {
            let why = refusal(resp).await;
            if why.to_ascii_lowercase().contains("session") {
                Ok(None)
            } else {
                Err(why)
            }
        }
        _ => Ok(Some(resp)),
    }
}

/// One request, from its `POST` to its answer.
async fn request(link: Arc<Link>, st: Arc<State>, line: Bytes, id: Vec<u8>) {
    for attempt in 0..2 {
        let stale = st.session();
        let resp = match post(&link, &st, line.clone()).await {
            Ok(r) => r,
            Err(e) => {
                link.shared.health.down(&e);
                link.emit_error(
                    &id,
                    UNAVAILABLE,
                    "the local MCP server is not reachable; the bridge keeps trying, retry in a moment",
                )
                .await;
                return;
            }
        };
        link.shared.health.up();
        let resp = match forgot_session(resp, stale.is_some() && attempt == 0).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                if let Err(e) = renew(&link, &st, stale).await {
                    let msg = format!(
                        "the local MCP server lost the session and a new one could not be opened: {e}"
                    );
                    link.emit_error(&id, UNAVAILABLE, &msg).await;
                    return;
                }
                continue;
            }
            Err(why) => {
                let msg = format!("the local MCP server refused the request: {why}");
                link.emit_error(&id, INTERNAL_ERROR, &msg).await;
                return;
            }
        };
        if !resp.status().is_success() {
            let why = refusal(resp).await;
            let msg = format!("the local MCP server refused the request: {why}");
            link.emit_error(&id, INTERNAL_ERROR, &msg).await;
            return;
        }
        let mut read = read_answer(&link, resp, &id, Forward::Emit).await;
        let mut attempts = 0;
        while let Read::Ended {
            last_event_id: Some(last),
            retry,
        } = &read
        {
            if attempts == RESUME_ATTEMPTS {
                break;
            }
            attempts += 1;
            tokio::time::sleep(retry.unwrap_or(Duration::from_millis(200))).await;
            let mut rb = link
                .request(Method::GET, &link.shared.cfg.server.url)
                .header("accept", "text/event-stream")
                .header("last-event-id", last.as_str());
            rb = with_session(rb, &st);
            read = match rb.send().await {
                Ok(r) if r.status().is_success() => read_answer(&link, r, &id, Forward::Emit).await,
                Ok(r) => Read::Broken(format!("resuming its stream: {}", refusal(r).await)),
                Err(e) => Read::Broken(format!("resuming its stream: {}", error_chain(&e))),
            };
        }
        if !matches!(read, Read::Answered(_)) {
            let why = read.describe();
            link.note(format!("a request got no answer: {why}"));
            link.emit_error(
                &id,
                INTERNAL_ERROR,
                &format!("the local MCP server did not answer: {why}"),
            )
            .await;
        }
        return;
    }
}

/// Opens a new session in place of one the server forgot (`stale`), unless another
/// request already did.
async fn renew(link: &Link, st: &State, stale: Option<String>) -> Result<(), String> {
    let _one = st.renewing.lock().await;
    if st.session() != stale {
        return Ok(());
    }
    set(&st.session, None);
    let mut init: Value = serde_json::from_slice(&st.init).map_err(|e| e.to_string())?;
    init["id"] = Value::from("bridge-renew");
    let resp = post(link, st, Bytes::from(init.to_string())).await?;
    if !resp.status().is_success() {
        return Err(refusal(resp).await);
    }
    let sid = header(&resp, "mcp-session-id");
    match read_answer(link, resp, br#""bridge-renew""#, Forward::Drop).await {
        Read::Answered(_) => {}
        other => return Err(other.describe()),
    }
    set(&st.session, sid);
    let initialized =
        Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let _ = post(link, st, initialized).await;
    let (level, subs) = match st.replay.lock() {
        Ok(r) => (r.log_level.clone(), r.subscriptions.clone()),
        Err(_) => (None, BTreeSet::new()),
    };
    let mut again: Vec<(String, Value)> = Vec::new();
    if let Some(l) = level {
        again.push(("logging/setLevel".into(), l));
    }
    for uri in subs {
        again.push((
            "resources/subscribe".into(),
            serde_json::json!({ "uri": uri }),
        ));
    }
    for (n, (method, params)) in again.into_iter().enumerate() {
        let id = format!("\"bridge-renew-{n}\"");
        let msg = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#);
        if let Ok(r) = post(link, st, Bytes::from(msg)).await {
            let _ = read_answer(link, r, id.as_bytes(), Forward::Drop).await;
        }
    }
    info!(
        child = link.id,
        "the local MCP server forgot the session (did it restart?): opened a new one"
    );
    Ok(())
}

/// The `GET` stream of server-sent messages, reopened when it ends.
async fn listen(link: Arc<Link>, st: Arc<State>) {
    let mut delay = Duration::from_millis(500);
    let mut last: Option<String> = None;
    loop {
        let mut rb = link
            .request(Method::GET, &link.shared.cfg.server.url)
            .header("accept", "text/event-stream");
        rb = with_session(rb, &st);
        if let Some(l) = &last {
            rb = rb.header("last-event-id", l.as_str());
        }
        match rb.send().await {
            Ok(r) if r.status() == StatusCode::METHOD_NOT_ALLOWED => return,
            Ok(r) if r.status().is_success() => {
                delay = Duration::from_millis(500);
                if let Read::Ended {
                    last_event_id,
                    retry,
                } = read_answer(&link, r, b"", Forward::Emit).await
                {
                    if last_event_id.is_some() {
                        last = last_event_id;
                    }
                    if let Some(r) = retry {
                        delay = r;
                    }
                }
            }
            // The session is gone or the server refuses: a renewal reopens the stream.
            Ok(r) if r.status().is_client_error() => return,
            Ok(_) | Err(_) => delay = (delay * 2).min(MAX_LISTEN_DELAY),
        }
        tokio::time::sleep(delay).await;
    }
}

/// What to do with the messages of an answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Forward {
    /// Send them to the core.
    Emit,
    /// Drop them (the bridge's own requests of a renewal).
    Drop,
}

/// How reading an answer ended.
enum Read {
    /// The answer to the request arrived (its line).
    Answered(Bytes),
    /// The body ended without it; a stream's last event id and retry delay, if set.
    Ended {
        last_event_id: Option<String>,
        retry: Option<Duration>,
    },
    /// The body broke off or was invalid.
    Broken(String),
}

impl Read {
    fn describe(&self) -> String {
        match self {
            Read::Answered(_) => "answered".into(),
            Read::Ended { .. } => "the server ended its answer without the result".into(),
            Read::Broken(why) => why.clone(),
        }
    }
}

/// Reads a `POST`'s (or a `GET`'s) body: a JSON message or batch, or an SSE stream;
/// forwards its messages and watches for the answer to `id` (raw JSON; empty for none).
async fn read_answer(link: &Link, mut resp: Response, id: &[u8], fwd: Forward) -> Read {
    let max = link.shared.cfg.max_message;
    let sse = header(&resp, "content-type").is_some_and(|c| {
        c.trim_start()
            .to_ascii_lowercase()
            .starts_with("text/event-stream")
    });
    let mut answer = None;
    if !sse {
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if body.len() + c.len() > max {
                        return Read::Broken(format!("an answer longer than {max} bytes"));
                    }
                    body.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => return Read::Broken(error_chain(&e)),
            }
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Read::Ended {
                last_event_id: None,
                retry: None,
            };
        }
        let messages: Vec<Bytes> = match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => {
                match serde_json::from_slice::<Vec<Box<serde_json::value::RawValue>>>(&body) {
                    Ok(items) => items
                        .iter()
                        .map(|m| Bytes::copy_from_slice(m.get().as_bytes()))
                        .collect(),
                    Err(e) => return Read::Broken(format!("an invalid JSON answer ({e})")),
                }
            }
            _ => vec![Bytes::from(body)],
        };
        for m in messages {
            if is_answer(&m, id) {
                answer = Some(m.clone());
            }
            if fwd == Forward::Emit {
                link.emit(m).await;
            }
        }
        return match answer {
            Some(a) => Read::Answered(a),
            None => Read::Ended {
                last_event_id: None,
                retry: None,
            },
        };
    }
    let mut dec = Decoder::new(max);
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                return match dec.last_event_id() {
                    // A stream with event ids can be resumed.
                    Some(l) => Read::Ended {
                        last_event_id: Some(l.to_owned()),
                        retry: dec.retry(),
                    },
                    None => Read::Broken(error_chain(&e)),
                };
            }
        };
        let events = match dec.feed(&chunk) {
            Ok(e) => e,
            Err(e) => return Read::Broken(e.to_string()),
        };
        for ev in events {
            if ev.event != "message" || ev.data.trim().is_empty() {
                continue;
            }
            let m = Bytes::from(ev.data);
            let done = is_answer(&m, id);
            if fwd == Forward::Emit {
                link.emit(m.clone()).await;
            }
            if done {
                return Read::Answered(m);
            }
        }
    }
    if let Some(a) = answer {
        return Read::Answered(a);
    }
    Read::Ended {
        last_event_id: dec.last_event_id().map(str::to_owned),
        retry: dec.retry(),
    }
}

/// Whether `m` is the answer to the request `id`.
fn is_answer(m: &[u8], id: &[u8]) -> bool {
    if id.is_empty() {
        return false;
    }
    match protocol::scan::parse_fast(m) {
        Ok(env) => env.kind == Kind::Response && env.id.is_some_and(|s| &m[s] == id),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_a_response_with_the_requests_id() {
        assert!(is_answer(br#"{"jsonrpc":"2.0","id":7,"result":{}}"#, b"7"));
        assert!(is_answer(
            br#"{"jsonrpc":"2.0","id":"bridge-renew","error":{"code":1,"message":"x"}}"#,
            br#""bridge-renew""#
        ));
        assert!(!is_answer(br#"{"jsonrpc":"2.0","id":8,"result":{}}"#, b"7"));
        // The server's own request with the same id is not the answer.
        assert!(!is_answer(
            br#"{"jsonrpc":"2.0","id":7,"method":"sampling/createMessage"}"#,
            b"7"
        ));
        assert!(!is_answer(
            br#"{"jsonrpc":"2.0","method":"notifications/progress"}"#,
            b"7"
        ));
        assert!(!is_answer(br#"{"jsonrpc":"2.0","id":7,"result":{}}"#, b""));
        assert!(!is_answer(b"not json", b"7"));
    }

    #[test]
    fn a_cancellation_names_the_request_as_raw_json() {
        let n = br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":12,"reason":"x"}}"#;
        assert_eq!(cancelled_id(n).as_deref(), Some(&b"12"[..]));
        let s =
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"a"}}"#;
        assert_eq!(cancelled_id(s).as_deref(), Some(&br#""a""#[..]));
        assert_eq!(cancelled_id(br#"{"params":{}}"#), None);
    }

    fn answer(status: u16, body: &'static str) -> Response {
        Response::from(
            http::Response::builder()
                .status(status)
                .body(body)
                .expect("a response"),
        )
    }

    #[tokio::test]
    async fn a_forgotten_session_is_a_404_or_a_400_naming_the_session() {
        let forgot = |status, body| async move {
            match forgot_session(answer(status, body), true).await {
                Ok(None) => "forgot".to_owned(),
                Ok(Some(r)) => format!("answer {}", r.status().as_u16()),
                Err(e) => format!("refused: {e}"),
            }
        };
        assert_eq!(forgot(404, "").await, "forgot");
        assert_eq!(
            forgot(
                400,
                r#"{"error":{"message":"Bad Request: No valid session ID provided"}}"#
            )
            .await,
            "forgot"
        );
        assert!(
            forgot(400, "bad json")
                .await
                .starts_with("refused: HTTP 400")
        );
        assert_eq!(forgot(200, "{}").await, "answer 200");
        // Without a session there is nothing to forget.
        let r = forgot_session(answer(404, ""), false).await;
        assert!(matches!(r, Ok(Some(r)) if r.status() == StatusCode::NOT_FOUND));
    }
}
