//! `mcp-fixture`: a stdio MCP server used as the child process behind the bridge in the
//! end-to-end tests.
//!
//! It speaks newline-delimited JSON-RPC 2.0 on stdin/stdout (one compact JSON object per
//! line) and logs only to stderr. It implements:
//!
//! * every fixture the server scenarios of `@modelcontextprotocol/conformance` 0.1.16 call
//!   (`test_*` tools, `test://…` resources and template, `test_*` prompts, completion,
//!   logging, subscriptions, sampling and elicitation round trips);
//! * a few extra tools for the project's own tests (`echo`, `slow`, `elicit_echo`,
//!   `test_roots`, `trigger_list_changed`, `touch_resource`, `big`, `garbage_then_echo`),
//!   and for the fault-injection tests: `exit` (the process exits at once, without an
//!   answer), `spawn_grandchild` (forks a long-lived process, `mcp-fixture --grandchild`, in
//!   the fixture's process group and answers its pid) and `flood` (many large progress
//!   notifications before the answer).
//!
//! * the tools and the prompt the server scenarios of `@modelcontextprotocol/conformance`
//!   0.2.0-alpha.12 call for the 2026-07-28 requirements, served the 2025 way: where those
//!   scenarios expect an `InputRequiredResult`, the fixture sends real server→client requests
//!   (`elicitation/create`, `sampling/createMessage`, `roots/list`) whose JSON-RPC ids are the
//!   input keys the scenarios expect (`user_name`, `capital_question`, `client_roots`, …) and
//!   waits for the answers; a bridge that serves the stateless era turns those requests into
//!   input requests under the same keys. The fixture itself never answers `resultType` or an
//!   `InputRequiredResult`. See [`ToolCall::run`] for the list.
//!
//! Every `tools/call` runs on its own thread, so a slow call or one waiting for the client's
//! answer to a server→client request never blocks other traffic (so does the one prompt that
//! asks the client, `test_input_required_result_prompt`). Server→client requests get ids
//! `fx-1`, `fx-2`, … (or the fixed keys above); the stdin reader routes the client's responses
//! to the waiting thread. When a fixed id is reused while an earlier request with that id is
//! still unanswered (a flow the client abandoned), the answer goes to the newest one.
//!
//! If the environment variable `FIXTURE_COUNTS` names a file, one line per event is appended
//! to it: `initialize`, `call <tool>`, `prompt <name>` (only for the prompt that runs on a
//! thread), `cancelled <tag>`, `roots <json>` and
//! `grandchild <pid>`; with `FIXTURE_RECORD_ECHO=1` also `echoed <text>` for every `echo`
//! (so a test can tell which calls ran, and that none ran twice). With
//! `FIXTURE_IGNORE_SIGTERM=1` the process (and its grandchildren) ignore `SIGTERM`, like a
//! server that does not shut down when asked. With `FIXTURE_RUN_NOTIFICATIONS=1` a
//! notification whose method is a request's (`tools/call` without an `id`) is recorded as
//! `notification <method>` and run like the request, as servers that dispatch on `method`
//! alone do.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufWriter, Stdout, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// Whether notifications with a request's method are run as requests
/// (`FIXTURE_RUN_NOTIFICATIONS=1`), as some hand-written servers do.
fn runs_notifications() -> bool {
    std::env::var_os("FIXTURE_RUN_NOTIFICATIONS").is_some_and(|v| v == "1")
}

/// Name reported in `serverInfo` and by `--version`.
const SERVER_NAME: &str = "mcp-fixture";
/// Version reported in `serverInfo` and by `--version`.
const SERVER_VERSION: &str = "1.0.0";
/// Protocol versions echoed back when a client asks for them.
const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] =
    ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// Protocol version answered when the client asks for an unknown one.
const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";

/// A 1x1 red PNG pixel, base64-encoded.
const TEST_IMAGE_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A minimal (empty) 8 kHz mono 16-bit WAV file, base64-encoded.
const TEST_AUDIO_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

/// Resource URI prefix and suffix of the `test://template/{id}/data` template.
const TEMPLATE_PREFIX: &str = "test://template/";
const TEMPLATE_SUFFIX: &str = "/data";

/// Largest payload the `big` tool agrees to produce.
const BIG_MAX_BYTES: u64 = 512 * 1024 * 1024;
/// How often a thread waiting for a client response re-checks for cancellation.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// JSON-RPC error codes used by the fixture.
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;
/// MCP's "resource not found" error code (2025-11-25 and earlier; the stateless era answers
/// an unknown resource with [`INVALID_PARAMS`]).
const RESOURCE_NOT_FOUND: i64 = -32002;

/// `_meta` key of the protocol version a stateless-era (2026-07-28) request carries.
const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the capabilities a stateless-era client declares on each request.
const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// The prompt that asks the client for input (and so runs on a thread of its own).
const INPUT_PROMPT: &str = "test_input_required_result_prompt";

/// MCP log levels, from least to most severe.
const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Writes a diagnostic line to stderr.
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("[{}] {}", SERVER_NAME, format_args!($($arg)*))
    };
}

/// Locks a mutex, ignoring poisoning (a panicking tool thread must not wedge the server).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The key under which a JSON-RPC id is stored in maps (its compact JSON text, so that the
/// string `"1"` and the number `1` stay distinct).
fn id_key(id: &Value) -> String {
    id.to_string()
}

/// How a client answered a server→client request: its `result`, or its `error` object.
type ClientAnswer = Result<Value, Value>;

/// Cancellation flag of one in-flight `tools/call`, set by `notifications/cancelled`.
#[derive(Default)]
struct CancelToken {
    cancelled: Mutex<bool>,
    wake: Condvar,
}

impl CancelToken {
    /// Marks the request as cancelled and wakes any thread sleeping on it.
    fn cancel(&self) {
        *lock(&self.cancelled) = true;
        self.wake.notify_all();
    }

    /// Whether the request has been cancelled.
    fn is_cancelled(&self) -> bool {
        *lock(&self.cancelled)
    }

    /// Sleeps for `duration` or until cancelled; returns `true` if cancelled.
    fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut cancelled = lock(&self.cancelled);
        while !*cancelled {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            cancelled = self
                .wake
                .wait_timeout(cancelled, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        *cancelled
    }
}

/// What a request handler wants sent back.
enum Reply {
    /// A successful response with this `result`.
    Result(Value),
    /// A JSON-RPC error response.
    Error(i64, String),
    /// A JSON-RPC error response with `data`.
    ErrorWithData(i64, String, Value),
    /// No response at all (the request was cancelled).
    Silent,
}

impl Reply {
    /// A successful tool result with one text item.
    fn text(text: impl Into<String>) -> Self {
        Reply::Result(json!({ "content": [{ "type": "text", "text": text.into() }] }))
    }

    /// A tool execution error (`isError: true`) with one text item.
    fn tool_error(text: impl Into<String>) -> Self {
        Reply::Result(json!({
            "content": [{ "type": "text", "text": text.into() }],
            "isError": true,
        }))
    }
}

/// A thread waiting for the client's answer to one server→client request.
struct Waiter {
    /// Unique among all waiters (ids can repeat, see [`Server::pending`]).
    serial: u64,
    /// Where the answer goes.
    tx: Sender<ClientAnswer>,
}

/// Shared state of the server.
struct Server {
    /// Stdout; each message is written and flushed while holding the lock.
    out: Mutex<BufWriter<Stdout>>,
    /// The `FIXTURE_COUNTS` file, if configured.
    counts: Option<Mutex<File>>,
    /// Counter for ids of server→client requests.
    next_request_id: AtomicU64,
    /// Threads waiting for the client's answer, by request id (`fx-N` or a fixed input key),
    /// oldest first; an answer goes to the newest waiter of its id.
    pending: Mutex<HashMap<String, Vec<Waiter>>>,
    /// Counter for [`Waiter::serial`].
    next_waiter: AtomicU64,
    /// Bumped by `test_trigger_tool_change`; shown in `tools/list` once non-zero.
    tool_list_version: AtomicU64,
    /// Bumped by `test_trigger_prompt_change`; shown in `prompts/list` once non-zero.
    prompt_list_version: AtomicU64,
    /// Cancellation tokens of in-flight `tools/call` requests (and `prompts/get` of
    /// [`INPUT_PROMPT`]), by [`id_key`].
    in_flight: Mutex<HashMap<String, Arc<CancelToken>>>,
    /// Capabilities the client declared in its latest `initialize`.
    client_capabilities: Mutex<Value>,
    /// URIs subscribed with `resources/subscribe`.
    subscriptions: Mutex<HashSet<String>>,
    /// Index into [`LOG_LEVELS`] of the minimum level sent as `notifications/message`.
    log_level: Mutex<usize>,
    /// Whether `echo` records `echoed <text>` (`FIXTURE_RECORD_ECHO=1`).
    record_echo: bool,
}

impl Server {
    /// Creates the server, writing event counts to `counts` if given.
    fn new(counts: Option<File>, record_echo: bool) -> Self {
        Server {
            out: Mutex::new(BufWriter::new(io::stdout())),
            counts: counts.map(Mutex::new),
            next_request_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            next_waiter: AtomicU64::new(1),
            tool_list_version: AtomicU64::new(0),
            prompt_list_version: AtomicU64::new(0),
            in_flight: Mutex::new(HashMap::new()),
            client_capabilities: Mutex::new(Value::Null),
            subscriptions: Mutex::new(HashSet::new()),
            log_level: Mutex::new(0),
            record_echo,
        }
    }

    /// Appends one event line to the counts file, if configured.
    fn count(&self, event: &str) {
        let Some(file) = &self.counts else { return };
        let line = format!("{event}\n");
        let mut file = lock(file);
        if let Err(err) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
            log!("cannot write counts file: {err}");
        }
    }

    /// Writes one message as a single line on stdout and flushes.
    fn send(&self, message: &Value) {
        let mut out = lock(&self.out);
        let written = serde_json::to_writer(&mut *out, message)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if let Err(err) = written {
            log!("cannot write to stdout: {err}");
        }
    }

    /// Writes a raw line (not necessarily JSON) on stdout and flushes.
    fn send_raw_line(&self, line: &str) {
        let mut out = lock(&self.out);
        let written = out
            .write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if let Err(err) = written {
            log!("cannot write to stdout: {err}");
        }
    }

    /// Sends a notification.
    fn notify(&self, method: &str, params: Value) {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Sends a `notifications/message` if `level` passes the level set by the client.
    fn log_message(&self, level: &str, data: &str) {
        let severity = LOG_LEVELS.iter().position(|l| *l == level).unwrap_or(0);
        if severity < *lock(&self.log_level) {
            return;
        }
        self.notify(
            "notifications/message",
            json!({ "level": level, "logger": SERVER_NAME, "data": data }),
        );
    }

    /// Sends the response (or nothing) for request `id`.
    fn reply(&self, id: Value, reply: Reply) {
        let message = match reply {
            Reply::Result(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Reply::Error(code, message) => json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": { "code": code, "message": message },
            }),
            Reply::ErrorWithData(code, message, data) => json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": { "code": code, "message": message, "data": data },
            }),
            Reply::Silent => return,
        };
        self.send(&message);
    }

    /// Sends a server→client request (id `fx-N`) and waits for the answer.
    ///
    /// Returns `None` if `cancel` fires first (the late answer, if any, is then dropped).
    fn request_client(
        &self,
        method: &str,
        params: Value,
        cancel: &CancelToken,
    ) -> Option<ClientAnswer> {
        let id = format!(
            "fx-{}",
            self.next_request_id.fetch_add(1, Ordering::Relaxed)
        );
        self.request_client_all(vec![(id, method, params)], cancel)
            .and_then(|answers| answers.into_iter().next())
    }

    /// Sends server→client requests `(id, method, params)` back to back (one burst on
    /// stdout, before waiting for anything) and waits for every answer, in the given order.
    ///
    /// Returns `None` if `cancel` fires first (late answers, if any, are then dropped).
    fn request_client_all(
        &self,
        requests: Vec<(String, &str, Value)>,
        cancel: &CancelToken,
    ) -> Option<Vec<ClientAnswer>> {
        let mut waiting = Vec::with_capacity(requests.len());
        let mut lines = Vec::with_capacity(requests.len());
        for (id, method, params) in requests {
            if let Some(capability) = method.split('/').next() {
                let declared = lock(&self.client_capabilities).get(capability).is_some();
                if !declared {
                    log!(
                        "client did not declare capability `{capability}`; sending {method} anyway"
                    );
                }
            }
            let serial = self.next_waiter.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = mpsc::channel();
            {
                let mut pending = lock(&self.pending);
                let waiters = pending.entry(id.clone()).or_default();
                if !waiters.is_empty() {
                    log!(
                        "request id {id} is still pending from an earlier call; its next answer goes to the newest request"
                    );
                }
                waiters.push(Waiter { serial, tx });
            }
            lines.push(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
            waiting.push((id, serial, rx));
        }
        self.send_all(&lines);
        let mut answers = Vec::with_capacity(waiting.len());
        for (index, (_, _, rx)) in waiting.iter().enumerate() {
            loop {
                match rx.recv_timeout(CANCEL_POLL) {
                    Ok(answer) => {
                        answers.push(answer);
                        break;
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        if cancel.is_cancelled() {
                            for (id, serial, _) in &waiting[index..] {
                                self.forget_waiter(id, *serial);
                            }
                            return None;
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        answers.push(Err(
                            json!({ "code": INTERNAL_ERROR, "message": "request abandoned" }),
                        ));
                        break;
                    }
                }
            }
        }
        Some(answers)
    }

    /// Removes the waiter `serial` of request `id`, if it is still waiting.
    fn forget_waiter(&self, id: &str, serial: u64) {
        let mut pending = lock(&self.pending);
        if let Some(waiters) = pending.get_mut(id) {
            waiters.retain(|w| w.serial != serial);
            if waiters.is_empty() {
                pending.remove(id);
            }
        }
    }

    /// Writes several messages, one line each, in one go (nothing else in between).
    fn send_all(&self, messages: &[Value]) {
        let mut out = lock(&self.out);
        let mut written = Ok(());
        for message in messages {
            written = written.and_then(|()| {
                serde_json::to_writer(&mut *out, message)
                    .map_err(io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
            });
        }
        if let Err(err) = written.and_then(|()| out.flush()) {
            log!("cannot write to stdout: {err}");
        }
    }

    /// Hands a client's response to the (newest) thread waiting for it.
    fn route_response(&self, message: &Value) {
        let id = message
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let waiter = {
            let mut pending = lock(&self.pending);
            let waiter = pending.get_mut(id).and_then(Vec::pop);
            if pending.get(id).is_some_and(Vec::is_empty) {
                pending.remove(id);
            }
            waiter
        };
        let Some(waiter) = waiter else {
            log!(
                "ignoring response with unknown id {}",
                message.get("id").unwrap_or(&Value::Null)
            );
            return;
        };
        let answer = match message.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
        };
        // The waiter may have given up (cancelled); that is fine.
        let _ = waiter.tx.send(answer);
    }

    /// Processes one parsed message from stdin.
    fn dispatch(self: &Arc<Self>, message: Value) {
        let Value::Object(message) = message else {
            log!("ignoring non-object message: {message}");
            return;
        };
        let id = message.get("id").filter(|id| !id.is_null()).cloned();
        match (message.get("method"), id) {
            (Some(Value::String(method)), Some(id)) => {
                let params = message.get("params").cloned().unwrap_or(Value::Null);
                self.handle_request(method, id, params);
            }
            (Some(Value::String(method)), None) => {
                let params = message.get("params").cloned().unwrap_or(Value::Null);
                if !method.starts_with("notifications/") && runs_notifications() {
                    // Like a hand-written server that dispatches on `method` alone.
                    self.count(&format!("notification {method}"));
                    return self.handle_request(method, json!("from-notification"), params);
                }
                self.handle_notification(method, &params);
            }
            (Some(_), Some(id)) => {
                self.reply(id, Reply::Error(-32600, "method must be a string".into()))
            }
            (None, Some(_)) if message.contains_key("result") || message.contains_key("error") => {
                self.route_response(&Value::Object(message));
            }
            _ => log!(
                "ignoring message that is neither request, notification nor response: {}",
                Value::Object(message)
            ),
        }
    }

    /// Handles a client notification.
    fn handle_notification(&self, method: &str, params: &Value) {
        match method {
            "notifications/cancelled" => {
                let Some(request_id) = params.get("requestId") else {
                    log!("notifications/cancelled without requestId");
                    return;
                };
                let token = lock(&self.in_flight).get(&id_key(request_id)).cloned();
                match token {
                    Some(token) => token.cancel(),
                    None => log!("cancellation for request {request_id} that is not in flight"),
                }
            }
            "notifications/initialized"
            | "notifications/roots/list_changed"
            | "notifications/progress" => {}
            other => log!("ignoring notification {other}"),
        }
    }

    /// Handles a client request; everything but `tools/call` is answered inline.
    fn handle_request(self: &Arc<Self>, method: &str, id: Value, params: Value) {
        let reply = match method {
            "initialize" => self.initialize(&params),
            "ping" => Reply::Result(json!({})),
            "logging/setLevel" => self.set_log_level(&params),
            "completion/complete" => complete(&params),
            "resources/list" => Reply::Result(json!({ "resources": resource_list() })),
            "resources/templates/list" => {
                Reply::Result(json!({ "resourceTemplates": resource_templates() }))
            }
            "resources/read" => read_resource(&params),
            "resources/subscribe" | "resources/unsubscribe" => {
                let Some(uri) = params.get("uri").and_then(Value::as_str) else {
                    return self.reply(
                        id,
                        Reply::Error(INVALID_PARAMS, "missing string param `uri`".into()),
                    );
                };
                let mut subscriptions = lock(&self.subscriptions);
                if method == "resources/subscribe" {
                    subscriptions.insert(uri.to_owned());
                } else {
                    subscriptions.remove(uri);
                }
                Reply::Result(json!({}))
            }
            "prompts/list" => Reply::Result(json!({
                "prompts": prompt_list(self.prompt_list_version.load(Ordering::Relaxed)),
            })),
            "prompts/get" if params.get("name").and_then(Value::as_str) == Some(INPUT_PROMPT) => {
                return self.spawn_input_prompt(id, params);
            }
            "prompts/get" => get_prompt(&params),
            "tools/list" => Reply::Result(json!({
                "tools": tool_list(self.tool_list_version.load(Ordering::Relaxed)),
            })),
            "tools/call" => return self.spawn_tool_call(id, params),
            other => Reply::Error(METHOD_NOT_FOUND, format!("Method not found: {other}")),
        };
        self.reply(id, reply);
    }

    /// Answers `initialize`, remembering the client's capabilities.
    fn initialize(&self, params: &Value) -> Reply {
        self.count("initialize");
        *lock(&self.client_capabilities) = params
            .get("capabilities")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let requested = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let version = if SUPPORTED_PROTOCOL_VERSIONS.contains(&requested) {
            requested
        } else {
            LATEST_PROTOCOL_VERSION
        };
        Reply::Result(json!({
            "protocolVersion": version,
            "capabilities": {
                "tools": { "listChanged": true },
                "resources": { "subscribe": true, "listChanged": true },
                "prompts": { "listChanged": true },
                "logging": {},
                "completions": {},
            },
            "serverInfo": { "name": SERVER_NAME, "version": SERVER_VERSION },
        }))
    }

    /// Answers `logging/setLevel`.
    fn set_log_level(&self, params: &Value) -> Reply {
        let level = params
            .get("level")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match LOG_LEVELS.iter().position(|l| *l == level) {
            Some(index) => {
                *lock(&self.log_level) = index;
                Reply::Result(json!({}))
            }
            None => Reply::Error(INVALID_PARAMS, format!("unknown log level `{level}`")),
        }
    }

    /// Starts a `tools/call` on its own thread.
    fn spawn_tool_call(self: &Arc<Self>, id: Value, params: Value) {
        let Some(name) = params
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            self.count("call ?");
            return self.reply(
                id,
                Reply::Error(INVALID_PARAMS, "missing string param `name`".into()),
            );
        };
        self.count(&format!("call {name}"));
        let args = match params.get("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(args)) => args.clone(),
            Some(_) => {
                return self.reply(
                    id,
                    Reply::Error(INVALID_PARAMS, "`arguments` must be an object".into()),
                );
            }
        };
        let meta = params.get("_meta").cloned().unwrap_or(Value::Null);
        let label = format!("tools/call {name}");
        self.spawn_job(id, format!("tool-{name}"), label, move |server, cancel| {
            ToolCall::new(server, args, meta, cancel).run(&name)
        });
    }

    /// Starts `prompts/get` of [`INPUT_PROMPT`] (which waits for the client) on its own thread.
    fn spawn_input_prompt(self: &Arc<Self>, id: Value, params: Value) {
        self.count(&format!("prompt {INPUT_PROMPT}"));
        let args = match params.get("arguments") {
            Some(Value::Object(args)) => args.clone(),
            _ => Map::new(),
        };
        let meta = params.get("_meta").cloned().unwrap_or(Value::Null);
        let label = format!("prompts/get {INPUT_PROMPT}");
        self.spawn_job(id, "prompt".to_owned(), label, move |server, cancel| {
            ToolCall::new(server, args, meta, cancel)
                .input_prompt()
                .unwrap_or_else(|reply| reply)
        });
    }

    /// Runs `job` for request `id` on a thread named `thread_name`, cancellable with
    /// `notifications/cancelled`, and sends its reply (none once cancelled). `label` names
    /// the request in the log.
    fn spawn_job<F>(self: &Arc<Self>, id: Value, thread_name: String, label: String, job: F)
    where
        F: FnOnce(&Server, &CancelToken) -> Reply + Send + 'static,
    {
        let key = id_key(&id);
        let cancel = Arc::new(CancelToken::default());
        lock(&self.in_flight).insert(key.clone(), Arc::clone(&cancel));

        let server = Arc::clone(self);
        let thread_id = id.clone();
        let spawned = thread::Builder::new().name(thread_name).spawn(move || {
            let reply = job(&server, &cancel);
            {
                let mut in_flight = lock(&server.in_flight);
                if in_flight.get(&key).is_some_and(|t| Arc::ptr_eq(t, &cancel)) {
                    in_flight.remove(&key);
                }
            }
            if cancel.is_cancelled() {
                log!("{label} (id {thread_id}) was cancelled; not responding");
            } else {
                server.reply(thread_id, reply);
            }
        });
        if let Err(err) = spawned {
            lock(&self.in_flight).remove(&id_key(&id));
            self.reply(
                id,
                Reply::Error(INTERNAL_ERROR, format!("cannot start a thread: {err}")),
            );
        }
    }
}

/// One `tools/call` being executed (or the `prompts/get` of [`INPUT_PROMPT`]).
struct ToolCall<'a> {
    server: &'a Server,
    args: Map<String, Value>,
    progress_token: Option<Value>,
    /// The request's `params._meta` (`Null` when absent).
    meta: Value,
    cancel: &'a CancelToken,
}

impl<'a> ToolCall<'a> {
    /// A call with `args` and `params._meta` = `meta`.
    fn new(
        server: &'a Server,
        args: Map<String, Value>,
        meta: Value,
        cancel: &'a CancelToken,
    ) -> Self {
        let progress_token = meta
            .get("progressToken")
            .filter(|token| !token.is_null())
            .cloned();
        ToolCall {
            server,
            args,
            progress_token,
            meta,
            cancel,
        }
    }

    /// A required string argument, or a tool error naming it.
    fn str_arg(&self, name: &str) -> Result<&str, Reply> {
        self.args.get(name).and_then(Value::as_str).ok_or_else(|| {
            Reply::tool_error(format!("Invalid arguments: `{name}` must be a string"))
        })
    }

    /// An optional string argument.
    fn opt_str_arg(&self, name: &str) -> Option<&str> {
        self.args.get(name).and_then(Value::as_str)
    }

    /// Sends `notifications/progress` if the request carried a progress token.
    fn progress(&self, progress: u64, total: u64, message: &str) {
        if let Some(token) = &self.progress_token {
            self.server.notify(
                "notifications/progress",
                json!({ "progressToken": token, "progress": progress, "total": total, "message": message }),
            );
        }
    }

    /// Sends a server→client request; `Err(Reply::Silent)` if the call got cancelled.
    fn ask_client(&self, method: &str, params: Value) -> Result<ClientAnswer, Reply> {
        self.server
            .request_client(method, params, self.cancel)
            .ok_or(Reply::Silent)
    }

    /// Sends a server→client request with JSON-RPC id `id` (an input key); `Err(Reply::Silent)`
    /// if the call got cancelled.
    fn ask_client_as(&self, id: &str, method: &str, params: Value) -> Result<ClientAnswer, Reply> {
        let mut answers = self.ask_client_all(vec![(id, method, params)])?;
        Ok(answers.remove(0))
    }

    /// Sends all `(id, method, params)` requests in one burst, then waits for every answer
    /// (in the same order); `Err(Reply::Silent)` if the call got cancelled.
    fn ask_client_all(
        &self,
        requests: Vec<(&str, &str, Value)>,
    ) -> Result<Vec<ClientAnswer>, Reply> {
        let requests = requests
            .into_iter()
            .map(|(id, method, params)| (id.to_owned(), method, params))
            .collect();
        self.server
            .request_client_all(requests, self.cancel)
            .ok_or(Reply::Silent)
    }

    /// Runs tool `name`.
    ///
    /// Besides the 0.1.16 fixtures and the project's own tools, it serves the tools of the
    /// 2026-07-28 scenarios. Each asks the client with server→client requests whose JSON-RPC
    /// ids are the input keys the scenarios expect, and validates the answers (a malformed
    /// answer is a JSON-RPC error -32602, a client error a tool error):
    ///
    /// | tool | requests (id: method) | answer |
    /// |---|---|---|
    /// | `test_input_required_result_elicitation` | `user_name`: elicitation `name` | `Hello, <name>!` |
    /// | `test_input_required_result_sampling` | `capital_question`: sampling | `LLM response: <text>` |
    /// | `test_input_required_result_list_roots` | `client_roots`: roots/list | `Client roots: <uri>, …` |
    /// | `test_input_required_result_request_state` | `confirm`: elicitation `ok` | `state-ok: confirmed=<ok>` |
    /// | `test_input_required_result_multiple_inputs` | `user_name`, `greeting`, `client_roots` (one burst) | all three |
    /// | `test_input_required_result_multi_round` | `step1` (`name`), then `step2` (`color`) | both |
    /// | `test_input_required_result_tampered_state` | `approval`: elicitation `ok` | `approved=<ok>` |
    /// | `test_input_required_result_capabilities` | `capability_elicitation` / `_sampling` / `_roots`, only those declared in `_meta` | what was used |
    /// | `test_missing_capability` | `missing_capability`: sampling, whatever was declared | `LLM response: <text>` |
    /// | `test_streaming_elicitation` | `streaming_elicitation`: elicitation `ok` | the action |
    ///
    /// `test_logging_tool` sends three `notifications/message` (debug, info, warning) whatever
    /// `logging/setLevel` said; `test_trigger_tool_change` / `test_trigger_prompt_change` bump
    /// the version shown in `tools/list` / `prompts/list` and send the list-changed
    /// notification.
    fn run(&self, name: &str) -> Reply {
        let outcome = match name {
            "test_simple_text" => Ok(Reply::text("This is a simple text response for testing.")),
            "test_image_content" => Ok(Reply::Result(json!({
                "content": [{ "type": "image", "data": TEST_IMAGE_BASE64, "mimeType": "image/png" }]
            }))),
            "test_audio_content" => Ok(Reply::Result(json!({
                "content": [{ "type": "audio", "data": TEST_AUDIO_BASE64, "mimeType": "audio/wav" }]
            }))),
            "test_embedded_resource" => Ok(Reply::Result(json!({
                "content": [{
                    "type": "resource",
                    "resource": {
                        "uri": "test://embedded-resource",
                        "mimeType": "text/plain",
                        "text": "This is an embedded resource content.",
                    },
                }]
            }))),
            "test_multiple_content_types" => Ok(Reply::Result(json!({
                "content": [
                    { "type": "text", "text": "Multiple content types test:" },
                    { "type": "image", "data": TEST_IMAGE_BASE64, "mimeType": "image/png" },
                    {
                        "type": "resource",
                        "resource": {
                            "uri": "test://mixed-content-resource",
                            "mimeType": "application/json",
                            "text": r#"{"test":"data","value":123}"#,
                        },
                    },
                ]
            }))),
            "test_tool_with_logging" => Ok(self.with_logging()),
            "test_tool_with_progress" => Ok(self.with_progress()),
            "test_error_handling" => Ok(Reply::tool_error(
                "This tool intentionally returns an error for testing",
            )),
            "test_reconnection" => Ok(self.reconnection()),
            "test_sampling" => self.sampling(),
            "test_elicitation" => self.elicitation(),
            "test_elicitation_sep1034_defaults" => self.elicitation_form(
                "Please review and update the form fields with defaults",
                sep1034_schema(),
            ),
            "test_elicitation_sep1330_enums" => self.elicitation_form(
                "Please select options from the enum fields",
                sep1330_schema(),
            ),
            "test_input_required_result_elicitation" => self.ask_name(),
            "test_input_required_result_sampling" => self.ask_capital(),
            "test_input_required_result_list_roots" => self.ask_roots(),
            "test_input_required_result_request_state" => self.ask_confirmation(),
            "test_input_required_result_multiple_inputs" => self.ask_three_inputs(),
            "test_input_required_result_multi_round" => self.ask_two_rounds(),
            "test_input_required_result_tampered_state" => self.ask_approval(),
            "test_input_required_result_capabilities" => self.ask_declared_capabilities(),
            "test_missing_capability" => self.ask_sampling_regardless(),
            "test_streaming_elicitation" => self.streaming_elicitation(),
            "test_logging_tool" => Ok(self.logging_tool()),
            "test_trigger_tool_change" => {
                let version = self
                    .server
                    .tool_list_version
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                self.server
                    .notify("notifications/tools/list_changed", json!({}));
                Ok(Reply::text(format!(
                    "tool list changed (version {version})"
                )))
            }
            "test_trigger_prompt_change" => {
                let version = self
                    .server
                    .prompt_list_version
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                self.server
                    .notify("notifications/prompts/list_changed", json!({}));
                Ok(Reply::text(format!(
                    "prompt list changed (version {version})"
                )))
            }
            "json_schema_2020_12_tool" => Ok(Reply::text(format!(
                "JSON Schema 2020-12 tool called with: {}",
                Value::Object(self.args.clone())
            ))),
            "echo" => self.echo(),
            "slow" => Ok(self.slow()),
            "test_custom_header" => self.custom_header(),
            "elicit_echo" => self.elicit_echo(),
            "test_roots" => self.roots(),
            "trigger_list_changed" => {
                self.server
                    .notify("notifications/tools/list_changed", json!({}));
                Ok(Reply::text("ok"))
            }
            "touch_resource" => self.touch_resource(),
            "big" => Ok(self.big()),
            "garbage_then_echo" => {
                self.server.send_raw_line("this is not json");
                self.echo()
            }
            "exit" => Ok(self.exit()),
            "spawn_grandchild" => Ok(self.spawn_grandchild()),
            "flood" => Ok(self.flood()),
            other => Ok(Reply::Error(
                INVALID_PARAMS,
                format!("Unknown tool: {other}"),
            )),
        };
        outcome.unwrap_or_else(|reply| reply)
    }

    /// `test_input_required_result_elicitation`: asks `user_name` for a name.
    fn ask_name(&self) -> Result<Reply, Reply> {
        let answer = self.ask_client_as(
            "user_name",
            "elicitation/create",
            elicitation_params("What is your name?", "name", "string"),
        )?;
        Ok(match accepted_content(answer, "user_name")? {
            Some(content) => Reply::text(format!(
                "Hello, {}!",
                str_field(&content, "name", "user_name")?
            )),
            None => Reply::text("No name was given."),
        })
    }

    /// `test_input_required_result_sampling`: asks `capital_question` to the client's LLM.
    fn ask_capital(&self) -> Result<Reply, Reply> {
        let answer = self.ask_client_as(
            "capital_question",
            "sampling/createMessage",
            sampling_params("What is the capital of France?", 100),
        )?;
        let text = sampled(answer, "capital_question")?;
        Ok(Reply::text(format!("LLM response: {text}")))
    }

    /// `test_input_required_result_list_roots`: asks `client_roots` and names them.
    fn ask_roots(&self) -> Result<Reply, Reply> {
        let answer = self.ask_client_as("client_roots", "roots/list", json!({}))?;
        let uris = root_uris(answer, "client_roots")?;
        Ok(Reply::text(format!(
            "Client roots: {}",
            list_or_none(&uris)
        )))
    }

    /// `test_input_required_result_request_state`: asks `confirm`; the answer says `state-ok`.
    fn ask_confirmation(&self) -> Result<Reply, Reply> {
        let answer = self.ask_client_as(
            "confirm",
            "elicitation/create",
            elicitation_params("Please confirm", "ok", "boolean"),
        )?;
        Ok(match accepted_content(answer, "confirm")? {
            Some(content) => Reply::text(format!(
                "state-ok: confirmed={}",
                bool_field(&content, "ok", "confirm")?
            )),
            None => Reply::text("state-ok: not confirmed"),
        })
    }

    /// `test_input_required_result_multiple_inputs`: asks `user_name`, `greeting` and
    /// `client_roots` at once.
    fn ask_three_inputs(&self) -> Result<Reply, Reply> {
        let mut answers = self
            .ask_client_all(vec![
                (
                    "user_name",
                    "elicitation/create",
                    elicitation_params("What is your name?", "name", "string"),
                ),
                (
                    "greeting",
                    "sampling/createMessage",
                    sampling_params("Generate a greeting", 50),
                ),
                ("client_roots", "roots/list", json!({})),
            ])?
            .into_iter();
        let mut next = || answers.next().unwrap_or(Ok(Value::Null));
        let name = match accepted_content(next(), "user_name")? {
            Some(content) => str_field(&content, "name", "user_name")?.to_owned(),
            None => "stranger".to_owned(),
        };
        let greeting = sampled(next(), "greeting")?;
        let uris = root_uris(next(), "client_roots")?;
        Ok(Reply::text(format!(
            "Hello, {name}! Greeting: {greeting} Roots: {}",
            list_or_none(&uris)
        )))
    }

    /// `test_input_required_result_multi_round`: asks `step1`, and only once it is answered,
    /// `step2`.
    fn ask_two_rounds(&self) -> Result<Reply, Reply> {
        let first = self.ask_client_as(
            "step1",
            "elicitation/create",
            elicitation_params("Step 1: What is your name?", "name", "string"),
        )?;
        let name = match accepted_content(first, "step1")? {
            Some(content) => str_field(&content, "name", "step1")?.to_owned(),
            None => return Ok(Reply::text("Stopped at step 1.")),
        };
        let second = self.ask_client_as(
            "step2",
            "elicitation/create",
            elicitation_params("Step 2: What is your favorite color?", "color", "string"),
        )?;
        Ok(match accepted_content(second, "step2")? {
            Some(content) => Reply::text(format!(
                "Thanks, {name}: your favorite color is {}.",
                str_field(&content, "color", "step2")?
            )),
            None => Reply::text(format!("Thanks, {name}; stopped at step 2.")),
        })
    }

    /// `test_input_required_result_tampered_state`: asks `approval`.
    fn ask_approval(&self) -> Result<Reply, Reply> {
        let answer = self.ask_client_as(
            "approval",
            "elicitation/create",
            elicitation_params("Do you approve this operation?", "ok", "boolean"),
        )?;
        Ok(match accepted_content(answer, "approval")? {
            Some(content) => Reply::text(format!(
                "approved={}",
                bool_field(&content, "ok", "approval")?
            )),
            None => Reply::text("approved=false"),
        })
    }

    /// The client capabilities of this request: `_meta`'s (stateless era), else the ones
    /// declared at `initialize`.
    fn declared_capabilities(&self) -> Value {
        match self.meta.get(META_CLIENT_CAPABILITIES) {
            Some(capabilities) => capabilities.clone(),
            None => lock(&self.server.client_capabilities).clone(),
        }
    }

    /// `test_input_required_result_capabilities`: asks, in one burst, only for what the client
    /// declared: `capability_elicitation`, `capability_sampling`, `capability_roots`.
    fn ask_declared_capabilities(&self) -> Result<Reply, Reply> {
        let declared = self.declared_capabilities();
        let has = |capability: &str| declared.get(capability).is_some_and(|c| !c.is_null());
        let mut requests = Vec::new();
        if has("elicitation") {
            requests.push((
                "capability_elicitation",
                "elicitation/create",
                elicitation_params("Continue?", "ok", "boolean"),
            ));
        }
        if has("sampling") {
            requests.push((
                "capability_sampling",
                "sampling/createMessage",
                sampling_params("Say hello", 20),
            ));
        }
        if has("roots") {
            requests.push(("capability_roots", "roots/list", json!({})));
        }
        if requests.is_empty() {
            return Ok(Reply::text(
                "The client declared none of elicitation, sampling, roots; nothing was asked.",
            ));
        }
        let keys: Vec<&str> = requests.iter().map(|(id, _, _)| *id).collect();
        let answers = self.ask_client_all(requests)?;
        let mut used = Vec::new();
        for (key, answer) in keys.into_iter().zip(answers) {
            match key {
                "capability_elicitation" => {
                    let action = if accepted_content(answer, key)?.is_some() {
                        "accept"
                    } else {
                        "decline"
                    };
                    used.push(format!("elicitation ({action})"));
                }
                "capability_sampling" => used.push(format!("sampling ({})", sampled(answer, key)?)),
                _ => used.push(format!(
                    "roots ({})",
                    list_or_none(&root_uris(answer, key)?)
                )),
            }
        }
        Ok(Reply::text(format!("Used: {}", used.join(", "))))
    }

    /// `test_missing_capability`: asks `missing_capability` to the client's LLM whatever the
    /// client declared (a stateless-era server must refuse such a call with -32021 instead).
    fn ask_sampling_regardless(&self) -> Result<Reply, Reply> {
        let answer = self.ask_client_as(
            "missing_capability",
            "sampling/createMessage",
            sampling_params("This tool needs sampling.", 20),
        )?;
        let text = sampled(answer, "missing_capability")?;
        Ok(Reply::text(format!("LLM response: {text}")))
    }

    /// `test_streaming_elicitation`: one progress notification (when a token was given), then
    /// asks `streaming_elicitation`.
    fn streaming_elicitation(&self) -> Result<Reply, Reply> {
        self.progress(0, 1, "waiting for the user");
        let answer = self.ask_client_as(
            "streaming_elicitation",
            "elicitation/create",
            elicitation_params("Continue the stream?", "ok", "boolean"),
        )?;
        let action = if accepted_content(answer, "streaming_elicitation")?.is_some() {
            "accept"
        } else {
            "decline"
        };
        self.progress(1, 1, "answered");
        Ok(Reply::text(format!(
            "Streaming elicitation answered: {action}"
        )))
    }

    /// `test_logging_tool`: a debug, an info and a warning `notifications/message`, ~20 ms
    /// apart, whatever level `logging/setLevel` set.
    fn logging_tool(&self) -> Reply {
        let messages = [
            ("debug", "Logging tool: debug message"),
            ("info", "Logging tool: info message"),
            ("warning", "Logging tool: warning message"),
        ];
        for (index, (level, data)) in messages.into_iter().enumerate() {
            if index > 0 && self.cancel.sleep(Duration::from_millis(20)) {
                return Reply::Silent;
            }
            self.server.notify(
                "notifications/message",
                json!({ "level": level, "logger": SERVER_NAME, "data": data }),
            );
        }
        Reply::text("Logging tool sent 3 log messages")
    }

    /// `prompts/get` of [`INPUT_PROMPT`]: asks `user_context`, then answers a prompt using it.
    fn input_prompt(&self) -> Result<Reply, Reply> {
        let answer = self.ask_client_as(
            "user_context",
            "elicitation/create",
            elicitation_params("What context should the prompt use?", "context", "string"),
        )?;
        let context = match accepted_content(answer, "user_context")? {
            Some(content) => str_field(&content, "context", "user_context")?.to_owned(),
            None => "no context".to_owned(),
        };
        Ok(Reply::Result(json!({
            "description": "A prompt built from the context the user gave",
            "messages": [{
                "role": "user",
                "content": { "type": "text", "text": format!("Use this context: {context}") },
            }],
        })))
    }

    /// `test_tool_with_logging`: three info log messages, ~50 ms apart.
    fn with_logging(&self) -> Reply {
        let steps = [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ];
        for (index, step) in steps.iter().enumerate() {
            if index > 0 && self.cancel.sleep(Duration::from_millis(50)) {
                return Reply::Silent;
            }
            self.server.log_message("info", step);
        }
        Reply::text("Tool with logging executed successfully")
    }

    /// `test_tool_with_progress`: progress 0, 50, 100 of 100, ~50 ms apart.
    fn with_progress(&self) -> Reply {
        for (index, step) in [0, 50, 100].into_iter().enumerate() {
            if index > 0 && self.cancel.sleep(Duration::from_millis(50)) {
                return Reply::Silent;
            }
            self.progress(step, 100, &format!("Completed step {step} of 100"));
        }
        let text = match &self.progress_token {
            Some(Value::String(token)) => token.clone(),
            Some(token) => token.to_string(),
            None => "no progress token".to_owned(),
        };
        Reply::text(text)
    }

    /// `test_reconnection`: over stdio there is no stream to close; it answers after 2.5 s,
    /// long enough for a relay that closes streams early (`--sse-poll-secs`) to close
    /// this one, so the client resumes it.
    fn reconnection(&self) -> Reply {
        if self.cancel.sleep(Duration::from_millis(2500)) {
            return Reply::Silent;
        }
        Reply::text(
            "Reconnection test completed successfully. If you received this, the client properly \
             reconnected after stream closure.",
        )
    }

    /// `test_sampling`: asks the client's LLM via `sampling/createMessage`.
    fn sampling(&self) -> Result<Reply, Reply> {
        let prompt = self.str_arg("prompt")?;
        let params = json!({
            "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
            "maxTokens": 100,
        });
        Ok(match self.ask_client("sampling/createMessage", params)? {
            Ok(result) => {
                let text = sampled_text(&result).unwrap_or("No response");
                Reply::text(format!("LLM response: {text}"))
            }
            Err(error) => Reply::tool_error(format!(
                "Sampling not supported or error: {}",
                error_message(&error)
            )),
        })
    }

    /// `test_elicitation`: asks the user for a username and an email address.
    fn elicitation(&self) -> Result<Reply, Reply> {
        let message = self.str_arg("message")?;
        let schema = json!({
            "type": "object",
            "properties": {
                "username": { "type": "string", "description": "User's response" },
                "email": { "type": "string", "description": "User's email address" },
            },
            "required": ["username", "email"],
        });
        let params = json!({ "message": message, "requestedSchema": schema });
        Ok(match self.ask_client("elicitation/create", params)? {
            Ok(result) => Reply::text(format!("User response: {}", describe_elicitation(&result))),
            Err(error) => Reply::tool_error(format!(
                "Elicitation not supported or error: {}",
                error_message(&error)
            )),
        })
    }

    /// The SEP-1034 / SEP-1330 elicitation tools: a form with `schema`, result echoed back.
    fn elicitation_form(&self, message: &str, schema: Value) -> Result<Reply, Reply> {
        let params = json!({ "message": message, "requestedSchema": schema });
        Ok(match self.ask_client("elicitation/create", params)? {
            Ok(result) => Reply::text(format!(
                "Elicitation completed: {}",
                describe_elicitation(&result)
            )),
            Err(error) => Reply::tool_error(format!(
                "Elicitation not supported or error: {}",
                error_message(&error)
            )),
        })
    }

    /// `echo`: returns `text`, after one progress notification if a token was given.
    fn echo(&self) -> Result<Reply, Reply> {
        let text = self.str_arg("text")?;
        if self.server.record_echo {
            self.server.count(&format!("echoed {text}"));
        }
        self.progress(1, 1, text);
        Ok(Reply::text(text))
    }

    /// `exit`: ends the process at once with `code` (default 1), answering nothing.
    fn exit(&self) -> Reply {
        let code = self
            .args
            .get("code")
            .and_then(Value::as_i64)
            .and_then(|c| i32::try_from(c).ok())
            .unwrap_or(1);
        log!("exiting with code {code} as asked");
        if let Err(err) = lock(&self.server.out).flush() {
            log!("cannot flush stdout: {err}");
        }
        std::process::exit(code);
    }

    /// `spawn_grandchild`: starts `mcp-fixture --grandchild` (which sleeps until killed) in
    /// this process's group, records `grandchild <pid>` and answers the pid. The child is
    /// not waited for.
    fn spawn_grandchild(&self) -> Reply {
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(err) => return Reply::tool_error(format!("cannot find own executable: {err}")),
        };
        let spawned = std::process::Command::new(exe)
            .arg("--grandchild")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => {
                let pid = child.id();
                self.server.count(&format!("grandchild {pid}"));
                Reply::text(pid.to_string())
            }
            Err(err) => Reply::tool_error(format!("cannot spawn a grandchild: {err}")),
        }
    }

    /// `flood`: `count` progress notifications whose message is `bytes` `p` characters,
    /// then `flooded <count>`; stops without answering if cancelled.
    fn flood(&self) -> Reply {
        let count = self
            .args
            .get("count")
            .and_then(Value::as_u64)
            .unwrap_or(100);
        let bytes = self
            .args
            .get("bytes")
            .and_then(Value::as_u64)
            .unwrap_or(1024)
            .min(BIG_MAX_BYTES);
        // Bounded by BIG_MAX_BYTES, so this fits in usize on every supported target.
        let message = "p".repeat(bytes as usize);
        for n in 1..=count {
            if self.cancel.is_cancelled() {
                return Reply::Silent;
            }
            self.progress(n, count, &message);
        }
        Reply::text(format!("flooded {count}"))
    }

    /// `slow`: waits `ms` (default 60 s) unless cancelled first.
    fn slow(&self) -> Reply {
        let ms = self
            .args
            .get("ms")
            .and_then(Value::as_f64)
            .unwrap_or(60_000.0);
        let tag = self.opt_str_arg("tag").unwrap_or_default();
        let duration = Duration::from_secs_f64(ms.clamp(0.0, 1e9) / 1000.0);
        if self.cancel.sleep(duration) {
            self.server.count(&format!("cancelled {tag}"));
            return Reply::Silent;
        }
        Reply::text(format!("done {tag}"))
    }

    /// `test_custom_header`: echoes its `region` (a parameter mirrored into the
    /// `Mcp-Param-Region` header by 2026-07-28 clients).
    fn custom_header(&self) -> Result<Reply, Reply> {
        let region = self.str_arg("region")?;
        Ok(Reply::text(format!("region={region}")))
    }

    /// `elicit_echo`: elicits an `answer`, returns `<payload>|<action>|<answer>`.
    fn elicit_echo(&self) -> Result<Reply, Reply> {
        let payload = self.str_arg("payload")?;
        let params = json!({
            "message": format!("payload:{payload}"),
            "requestedSchema": {
                "type": "object",
                "properties": { "answer": { "type": "string" } },
                "required": ["answer"],
            },
        });
        Ok(match self.ask_client("elicitation/create", params)? {
            Ok(result) => {
                let action = result
                    .get("action")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let answer = match result.get("content").and_then(|c| c.get("answer")) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(answer)) => answer.clone(),
                    Some(other) => other.to_string(),
                };
                Reply::text(format!("{payload}|{action}|{answer}"))
            }
            Err(error) => Reply::tool_error(error_message(&error)),
        })
    }

    /// `test_roots`: asks the client for its roots and reports the raw answer.
    fn roots(&self) -> Result<Reply, Reply> {
        let answer = match self.ask_client("roots/list", json!({}))? {
            Ok(result) => result,
            Err(error) => error,
        };
        let text = answer.to_string();
        self.server.count(&format!("roots {text}"));
        Ok(Reply::text(text))
    }

    /// `touch_resource`: announces that `uri` changed.
    fn touch_resource(&self) -> Result<Reply, Reply> {
        let uri = self.str_arg("uri")?;
        self.server
            .notify("notifications/resources/updated", json!({ "uri": uri }));
        Ok(Reply::text("ok"))
    }

    /// `big`: one text item of exactly `bytes` `x` characters.
    fn big(&self) -> Reply {
        match self.args.get("bytes").and_then(Value::as_u64) {
            Some(bytes) if bytes <= BIG_MAX_BYTES => {
                // Bounded by BIG_MAX_BYTES, so this fits in usize on every supported target.
                Reply::text("x".repeat(bytes as usize))
            }
            Some(bytes) => Reply::tool_error(format!(
                "bytes must be at most {BIG_MAX_BYTES}, got {bytes}"
            )),
            None => Reply::tool_error("Invalid arguments: `bytes` must be a non-negative integer"),
        }
    }
}

/// `elicitation/create` params asking `message` for one required `field` of JSON type `kind`.
fn elicitation_params(message: &str, field: &str, kind: &str) -> Value {
    json!({
        "message": message,
        "requestedSchema": {
            "type": "object",
            "properties": { field: { "type": kind } },
            "required": [field],
        },
    })
}

/// `sampling/createMessage` params with one user text message.
fn sampling_params(text: &str, max_tokens: u64) -> Value {
    json!({
        "messages": [{ "role": "user", "content": { "type": "text", "text": text } }],
        "maxTokens": max_tokens,
    })
}

/// A malformed answer to the server→client request `key`: JSON-RPC error -32602.
fn invalid_answer(key: &str, problem: &str) -> Reply {
    Reply::Error(
        INVALID_PARAMS,
        format!("invalid answer to `{key}`: {problem}"),
    )
}

/// The `content` of an accepted elicitation answer to `key` (`None` when declined or
/// cancelled); a client error is a tool error, a malformed answer a JSON-RPC error.
fn accepted_content(answer: ClientAnswer, key: &str) -> Result<Option<Map<String, Value>>, Reply> {
    let result = answer.map_err(|error| {
        Reply::tool_error(format!(
            "Elicitation `{key}` failed: {}",
            error_message(&error)
        ))
    })?;
    let Value::Object(result) = result else {
        return Err(invalid_answer(
            key,
            "an elicitation result must be an object",
        ));
    };
    match result.get("action").and_then(Value::as_str) {
        Some("accept") => match result.get("content") {
            None | Some(Value::Null) => Ok(Some(Map::new())),
            Some(Value::Object(content)) => Ok(Some(content.clone())),
            Some(_) => Err(invalid_answer(key, "`content` must be an object")),
        },
        Some("decline" | "cancel") => Ok(None),
        _ => Err(invalid_answer(
            key,
            "`action` must be accept, decline or cancel",
        )),
    }
}

/// The string field `name` of elicited `content` (else a JSON-RPC error naming `key`).
fn str_field<'c>(content: &'c Map<String, Value>, name: &str, key: &str) -> Result<&'c str, Reply> {
    content
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_answer(key, &format!("`{name}` must be a string")))
}

/// The boolean field `name` of elicited `content` (else a JSON-RPC error naming `key`).
fn bool_field(content: &Map<String, Value>, name: &str, key: &str) -> Result<bool, Reply> {
    content
        .get(name)
        .and_then(Value::as_bool)
        .ok_or_else(|| invalid_answer(key, &format!("`{name}` must be a boolean")))
}

/// The text of a sampling answer to `key`; a client error is a tool error, a malformed answer
/// a JSON-RPC error.
fn sampled(answer: ClientAnswer, key: &str) -> Result<String, Reply> {
    let result = answer.map_err(|error| {
        Reply::tool_error(format!(
            "Sampling `{key}` failed: {}",
            error_message(&error)
        ))
    })?;
    sampled_text(&result)
        .map(str::to_owned)
        .ok_or_else(|| invalid_answer(key, "a sampling result needs text content"))
}

/// The root URIs of a `roots/list` answer to `key`; a client error is a tool error, a
/// malformed answer a JSON-RPC error.
fn root_uris(answer: ClientAnswer, key: &str) -> Result<Vec<String>, Reply> {
    let result = answer.map_err(|error| {
        Reply::tool_error(format!(
            "roots/list `{key}` failed: {}",
            error_message(&error)
        ))
    })?;
    let roots = result
        .get("roots")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid_answer(key, "`roots` must be an array"))?;
    roots
        .iter()
        .map(|root| {
            root.get("uri")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| invalid_answer(key, "every root needs a string `uri`"))
        })
        .collect()
}

/// `a, b, c`, or `none`.
fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// The text of a `sampling/createMessage` result (content object or array of blocks).
fn sampled_text(result: &Value) -> Option<&str> {
    let content = result.get("content")?;
    let block = match content {
        Value::Array(blocks) => blocks
            .iter()
            .find(|b| b.get("type").and_then(Value::as_str) == Some("text"))?,
        block => block,
    };
    block.get("text").and_then(Value::as_str)
}

/// `action=<action>, content=<json>` for an elicitation result.
fn describe_elicitation(result: &Value) -> String {
    let action = result
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let content = result
        .get("content")
        .filter(|c| !c.is_null())
        .cloned()
        .unwrap_or_else(|| json!({}));
    format!("action={action}, content={content}")
}

/// The `message` of a JSON-RPC error object (or the whole object if it has none).
fn error_message(error: &Value) -> String {
    match error.get("message").and_then(Value::as_str) {
        Some(message) => message.to_owned(),
        None => error.to_string(),
    }
}

/// Requested schema of `test_elicitation_sep1034_defaults`: defaults for every primitive type.
fn sep1034_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "description": "User name", "default": "John Doe" },
            "age": { "type": "integer", "description": "User age", "default": 30 },
            "score": { "type": "number", "description": "User score", "default": 95.5 },
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": { "type": "boolean", "description": "Verification status", "default": true },
        },
        "required": [],
    })
}

/// Requested schema of `test_elicitation_sep1330_enums`: the five enum variants.
fn sep1330_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Select one option",
                "enum": ["option1", "option2", "option3"],
            },
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": [
                    { "const": "value1", "title": "First Option" },
                    { "const": "value2", "title": "Second Option" },
                    { "const": "value3", "title": "Third Option" },
                ],
            },
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": { "type": "string", "enum": ["option1", "option2", "option3"] },
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {
                    "anyOf": [
                        { "const": "value1", "title": "First Choice" },
                        { "const": "value2", "title": "Second Choice" },
                        { "const": "value3", "title": "Third Choice" },
                    ],
                },
            },
        },
        "required": [],
    })
}

/// An input schema with no arguments.
fn no_args() -> Value {
    json!({ "type": "object", "properties": {} })
}

/// An input schema with the given required string arguments (name, description).
fn string_args(args: &[(&str, &str)]) -> Value {
    let properties: Map<String, Value> = args
        .iter()
        .map(|(name, description)| {
            (
                (*name).to_owned(),
                json!({ "type": "string", "description": description }),
            )
        })
        .collect();
    let required: Vec<&str> = args.iter().map(|(name, _)| *name).collect();
    json!({ "type": "object", "properties": properties, "required": required })
}

/// One `tools/list` entry.
fn tool(name: &str, description: &str, input_schema: Value) -> Value {
    json!({ "name": name, "description": description, "inputSchema": input_schema })
}

/// The `tools/list` result; `version` (bumped by `test_trigger_tool_change`) shows in that
/// tool's description once non-zero.
fn tool_list(version: u64) -> Vec<Value> {
    let trigger_tool_description = match version {
        0 => "Changes the tool list (this description) and sends notifications/tools/list_changed"
            .to_owned(),
        v => format!(
            "Changes the tool list (this description) and sends notifications/tools/list_changed (tool list version {v})"
        ),
    };
    vec![
        tool(
            "test_simple_text",
            "Tests simple text content response",
            no_args(),
        ),
        tool(
            "test_image_content",
            "Tests image content response",
            no_args(),
        ),
        tool(
            "test_audio_content",
            "Tests audio content response",
            no_args(),
        ),
        tool(
            "test_embedded_resource",
            "Tests embedded resource content response",
            no_args(),
        ),
        tool(
            "test_multiple_content_types",
            "Tests response with multiple content types (text, image, resource)",
            no_args(),
        ),
        tool(
            "test_tool_with_logging",
            "Tests tool that emits log messages during execution",
            no_args(),
        ),
        tool(
            "test_tool_with_progress",
            "Tests tool that reports progress notifications",
            no_args(),
        ),
        tool(
            "test_error_handling",
            "Tests error response handling",
            no_args(),
        ),
        tool(
            "test_reconnection",
            "Tests SSE stream disconnection and client reconnection (SEP-1699); over stdio it just answers after 100 ms",
            no_args(),
        ),
        tool(
            "test_sampling",
            "Tests server-initiated sampling (LLM completion request)",
            string_args(&[("prompt", "The prompt to send to the LLM")]),
        ),
        tool(
            "test_elicitation",
            "Tests server-initiated elicitation (user input request)",
            string_args(&[("message", "The message to show the user")]),
        ),
        tool(
            "test_elicitation_sep1034_defaults",
            "Tests elicitation with default values per SEP-1034",
            no_args(),
        ),
        tool(
            "test_elicitation_sep1330_enums",
            "Tests elicitation with enum schema improvements per SEP-1330",
            no_args(),
        ),
        tool(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613, SEP-2106)",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "$anchor": "addressDef",
                        "type": "object",
                        "properties": { "street": { "type": "string" }, "city": { "type": "string" } },
                    },
                },
                "properties": {
                    "name": { "type": "string" },
                    "address": { "$ref": "#/$defs/address" },
                    "contactMethod": { "type": "string", "enum": ["phone", "email"] },
                    "phone": { "type": "string" },
                    "email": { "type": "string" },
                },
                "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
                "if": {
                    "properties": { "contactMethod": { "const": "phone" } },
                    "required": ["contactMethod"],
                },
                "then": { "required": ["phone"] },
                "else": { "required": ["email"] },
                "additionalProperties": false,
            }),
        ),
        tool(
            "test_input_required_result_elicitation",
            "Asks the user's name (elicitation/create with id `user_name`), answers `Hello, <name>!`",
            no_args(),
        ),
        tool(
            "test_input_required_result_sampling",
            "Asks the client's LLM the capital of France (sampling/createMessage with id `capital_question`)",
            no_args(),
        ),
        tool(
            "test_input_required_result_list_roots",
            "Asks the client's roots (roots/list with id `client_roots`) and names them",
            no_args(),
        ),
        tool(
            "test_input_required_result_request_state",
            "Asks a confirmation (elicitation/create with id `confirm`); the answer contains `state-ok`",
            no_args(),
        ),
        tool(
            "test_input_required_result_multiple_inputs",
            "Asks at once a name (`user_name`), a greeting (`greeting`, sampling) and the roots (`client_roots`)",
            no_args(),
        ),
        tool(
            "test_input_required_result_multi_round",
            "Asks a name (`step1`), then a favorite color (`step2`)",
            no_args(),
        ),
        tool(
            "test_input_required_result_tampered_state",
            "Asks an approval (elicitation/create with id `approval`)",
            no_args(),
        ),
        tool(
            "test_input_required_result_capabilities",
            "Asks only for what the client declared in `_meta` (`capability_elicitation`, `capability_sampling`, `capability_roots`)",
            no_args(),
        ),
        tool(
            "test_missing_capability",
            "Needs sampling: sends sampling/createMessage (id `missing_capability`) whatever the client declared",
            no_args(),
        ),
        tool(
            "test_streaming_elicitation",
            "Sends progress (with a token), then asks a confirmation (elicitation/create with id `streaming_elicitation`)",
            no_args(),
        ),
        tool(
            "test_logging_tool",
            "Sends a debug, an info and a warning notifications/message, then answers",
            no_args(),
        ),
        tool(
            "test_trigger_tool_change",
            &trigger_tool_description,
            no_args(),
        ),
        tool(
            "test_trigger_prompt_change",
            "Changes the prompt list (the description of `test_simple_prompt`) and sends notifications/prompts/list_changed",
            no_args(),
        ),
        tool(
            "echo",
            "Returns `text`; sends one progress notification first if a progress token is given",
            string_args(&[("text", "Text to return")]),
        ),
        tool(
            "test_custom_header",
            "Echoes `region`, which clients mirror into the Mcp-Param-Region header",
            json!({
                "type": "object",
                "properties": {
                    "region": { "type": "string", "description": "A region", "x-mcp-header": "Region" },
                    "query": { "type": "string", "description": "Ignored" },
                },
                "required": ["region"],
            }),
        ),
        tool(
            "slow",
            "Waits `ms` milliseconds then answers `done <tag>`; stops without answering if cancelled",
            json!({
                "type": "object",
                "properties": {
                    "ms": { "type": "number", "minimum": 0, "default": 60000, "description": "How long to wait" },
                    "tag": { "type": "string", "description": "Label echoed in the answer and the counts file" },
                },
            }),
        ),
        tool(
            "elicit_echo",
            "Elicits an `answer` from the user and returns `<payload>|<action>|<answer>`",
            string_args(&[("payload", "Text put into the elicitation message")]),
        ),
        tool(
            "test_roots",
            "Asks the client for its roots and returns the raw answer",
            no_args(),
        ),
        tool(
            "trigger_list_changed",
            "Sends notifications/tools/list_changed, then answers `ok`",
            no_args(),
        ),
        tool(
            "touch_resource",
            "Sends notifications/resources/updated for `uri`, then answers `ok`",
            string_args(&[("uri", "URI of the updated resource")]),
        ),
        tool(
            "big",
            "Returns one text item of exactly `bytes` `x` characters",
            json!({
                "type": "object",
                "properties": {
                    "bytes": { "type": "integer", "minimum": 0, "description": "Length of the text" },
                },
                "required": ["bytes"],
            }),
        ),
        tool(
            "garbage_then_echo",
            "Writes a non-JSON line to stdout, then behaves like `echo`",
            string_args(&[("text", "Text to return")]),
        ),
        tool(
            "exit",
            "Makes the server process exit at once with `code` (default 1), without answering",
            json!({
                "type": "object",
                "properties": {
                    "code": { "type": "integer", "description": "Exit code" },
                },
            }),
        ),
        tool(
            "spawn_grandchild",
            "Starts a long-lived child process in the server's process group; answers its pid",
            no_args(),
        ),
        tool(
            "flood",
            "Sends `count` progress notifications of `bytes` characters each, then answers `flooded <count>`",
            json!({
                "type": "object",
                "properties": {
                    "count": { "type": "integer", "minimum": 0, "default": 100 },
                    "bytes": { "type": "integer", "minimum": 0, "default": 1024 },
                },
            }),
        ),
    ]
}

/// The `resources/list` result.
fn resource_list() -> Vec<Value> {
    vec![
        json!({
            "uri": "test://static-text",
            "name": "static-text",
            "title": "Static Text Resource",
            "description": "A static text resource for testing",
            "mimeType": "text/plain",
        }),
        json!({
            "uri": "test://static-binary",
            "name": "static-binary",
            "title": "Static Binary Resource",
            "description": "A static binary resource (image) for testing",
            "mimeType": "image/png",
        }),
        json!({
            "uri": "test://watched-resource",
            "name": "watched-resource",
            "title": "Watched Resource",
            "description": "A resource clients can subscribe to",
            "mimeType": "text/plain",
        }),
    ]
}

/// The `resources/templates/list` result.
fn resource_templates() -> Vec<Value> {
    vec![json!({
        "uriTemplate": "test://template/{id}/data",
        "name": "template",
        "title": "Resource Template",
        "description": "A resource template with parameter substitution",
        "mimeType": "application/json",
    })]
}

/// Answers `resources/read`.
fn read_resource(params: &Value) -> Reply {
    let Some(uri) = params.get("uri").and_then(Value::as_str) else {
        return Reply::Error(INVALID_PARAMS, "missing string param `uri`".into());
    };
    let content = match uri {
        "test://static-text" => json!({
            "uri": uri,
            "mimeType": "text/plain",
            "text": "This is the content of the static text resource.",
        }),
        "test://static-binary" => {
            json!({ "uri": uri, "mimeType": "image/png", "blob": TEST_IMAGE_BASE64 })
        }
        "test://watched-resource" => {
            json!({ "uri": uri, "mimeType": "text/plain", "text": "Watched resource content" })
        }
        _ => match template_id(uri) {
            Some(id) => {
                // Built by hand to keep the key order of the reference server's output.
                let id_json = Value::from(id);
                let data_json = Value::from(format!("Data for ID: {id}"));
                let text = format!(r#"{{"id":{id_json},"templateTest":true,"data":{data_json}}}"#);
                json!({ "uri": uri, "mimeType": "application/json", "text": text })
            }
            None => {
                // The stateless era (a protocol version in `_meta`) answers -32602, earlier
                // revisions -32002; both name the URI in `data`.
                let stateless = params
                    .get("_meta")
                    .and_then(|meta| meta.get(META_PROTOCOL_VERSION))
                    .is_some();
                let code = if stateless {
                    INVALID_PARAMS
                } else {
                    RESOURCE_NOT_FOUND
                };
                return Reply::ErrorWithData(
                    code,
                    format!("Resource not found: {uri}"),
                    json!({ "uri": uri }),
                );
            }
        },
    };
    Reply::Result(json!({ "contents": [content] }))
}

/// The `{id}` of a `test://template/{id}/data` URI.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix(TEMPLATE_PREFIX)?
        .strip_suffix(TEMPLATE_SUFFIX)?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// The `prompts/list` result; `version` (bumped by `test_trigger_prompt_change`) shows in the
/// description of `test_simple_prompt` once non-zero.
fn prompt_list(version: u64) -> Vec<Value> {
    let argument = |name: &str, description: &str| json!({ "name": name, "description": description, "required": true });
    let simple_description = match version {
        0 => "A simple prompt without arguments".to_owned(),
        v => format!("A simple prompt without arguments (prompt list version {v})"),
    };
    vec![
        json!({
            "name": "test_simple_prompt",
            "title": "Simple Test Prompt",
            "description": simple_description,
        }),
        json!({
            "name": "test_prompt_with_arguments",
            "title": "Prompt With Arguments",
            "description": "A prompt with required arguments",
            "arguments": [argument("arg1", "First test argument"), argument("arg2", "Second test argument")],
        }),
        json!({
            "name": "test_prompt_with_embedded_resource",
            "title": "Prompt With Embedded Resource",
            "description": "A prompt that includes an embedded resource",
            "arguments": [argument("resourceUri", "URI of the resource to embed")],
        }),
        json!({
            "name": "test_prompt_with_image",
            "title": "Prompt With Image",
            "description": "A prompt that includes image content",
        }),
        json!({
            "name": INPUT_PROMPT,
            "title": "Prompt Asking For Input",
            "description": "Asks the user for context (elicitation/create with id `user_context`), then uses it",
        }),
    ]
}

/// Answers `prompts/get`.
fn get_prompt(params: &Value) -> Reply {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Reply::Error(INVALID_PARAMS, "missing string param `name`".into());
    };
    let args = params.get("arguments");
    let arg = |key: &str| args.and_then(|a| a.get(key)).and_then(Value::as_str);
    let missing =
        |key: &str| Reply::Error(INVALID_PARAMS, format!("missing required argument `{key}`"));
    let user = |content: Value| json!({ "role": "user", "content": content });
    let messages = match name {
        "test_simple_prompt" => vec![user(
            json!({ "type": "text", "text": "This is a simple prompt for testing." }),
        )],
        "test_prompt_with_arguments" => {
            let (Some(arg1), Some(arg2)) = (arg("arg1"), arg("arg2")) else {
                return missing(if arg("arg1").is_none() {
                    "arg1"
                } else {
                    "arg2"
                });
            };
            vec![user(json!({
                "type": "text",
                "text": format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
            }))]
        }
        "test_prompt_with_embedded_resource" => {
            let Some(uri) = arg("resourceUri") else {
                return missing("resourceUri");
            };
            vec![
                user(json!({
                    "type": "resource",
                    "resource": { "uri": uri, "mimeType": "text/plain", "text": "Embedded resource content for testing." },
                })),
                user(
                    json!({ "type": "text", "text": "Please process the embedded resource above." }),
                ),
            ]
        }
        "test_prompt_with_image" => vec![
            user(json!({ "type": "image", "data": TEST_IMAGE_BASE64, "mimeType": "image/png" })),
            user(json!({ "type": "text", "text": "Please analyze the image above." })),
        ],
        other => return Reply::Error(INVALID_PARAMS, format!("Unknown prompt: {other}")),
    };
    Reply::Result(json!({ "messages": messages }))
}

/// Answers `completion/complete` with prefix-filtered suggestions.
fn complete(params: &Value) -> Reply {
    let reference = params.get("ref");
    let ref_type = reference
        .and_then(|r| r.get("type"))
        .and_then(Value::as_str);
    let ref_name = reference
        .and_then(|r| r.get("name").or_else(|| r.get("uri")))
        .and_then(Value::as_str);
    let argument = params.get("argument");
    let arg_name = argument.and_then(|a| a.get("name")).and_then(Value::as_str);
    let prefix = argument
        .and_then(|a| a.get("value"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let candidates: &[&str] = match (ref_type, ref_name, arg_name) {
        (Some("ref/prompt"), Some("test_prompt_with_arguments"), Some("arg1")) => {
            &["paris", "park", "party"]
        }
        (Some("ref/prompt"), Some("test_prompt_with_arguments"), Some("arg2")) => {
            &["world", "work", "worth"]
        }
        (Some("ref/resource"), Some("test://template/{id}/data"), Some("id")) => {
            &["1", "2", "3", "123"]
        }
        _ => &[],
    };
    let values: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|c| c.starts_with(prefix))
        .collect();
    Reply::Result(json!({
        "completion": { "values": values, "total": values.len(), "hasMore": false },
    }))
}

/// Parses one input line and dispatches it; malformed lines are logged and skipped.
fn handle_line(server: &Arc<Server>, line: &[u8]) {
    let line = line.trim_ascii();
    if line.is_empty() {
        return;
    }
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Array(batch)) => batch
            .into_iter()
            .for_each(|message| server.dispatch(message)),
        Ok(message) => server.dispatch(message),
        Err(err) => log!(
            "ignoring malformed input line ({err}): {}",
            String::from_utf8_lossy(line)
        ),
    }
}

/// Ignores `SIGTERM` when `FIXTURE_IGNORE_SIGTERM=1` (inherited by grandchildren, since an
/// ignored signal stays ignored across `exec`).
fn maybe_ignore_sigterm() {
    if std::env::var_os("FIXTURE_IGNORE_SIGTERM").is_some_and(|v| v == "1") {
        // SAFETY: setting a signal's disposition to "ignore" has no handler to be unsafe in.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        }
    }
}

fn main() {
    maybe_ignore_sigterm();
    if std::env::args()
        .skip(1)
        .any(|arg| arg == "--version" || arg == "-V")
    {
        println!("{SERVER_NAME} {SERVER_VERSION}");
        return;
    }
    if std::env::args().skip(1).any(|arg| arg == "--grandchild") {
        // A long-lived descendant for the orphan tests: sleeps until killed.
        loop {
            thread::sleep(Duration::from_secs(3600));
        }
    }
    let counts = match std::env::var_os("FIXTURE_COUNTS") {
        Some(path) if !path.is_empty() => {
            match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(file) => Some(file),
                Err(err) => {
                    log!(
                        "cannot open FIXTURE_COUNTS file {}: {err}",
                        path.to_string_lossy()
                    );
                    std::process::exit(2);
                }
            }
        }
        _ => None,
    };
    let record_echo = std::env::var_os("FIXTURE_RECORD_ECHO").is_some_and(|v| v == "1");
    let server = Arc::new(Server::new(counts, record_echo));
    let mut stdin = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => handle_line(&server, &line),
            Err(err) => {
                log!("cannot read stdin: {err}");
                break;
            }
        }
    }
    if let Err(err) = lock(&server.out).flush() {
        log!("cannot flush stdout: {err}");
    }
    log!("stdin closed; exiting");
}
