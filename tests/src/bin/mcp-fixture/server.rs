//! The fixture's state and how it dispatches what the client sends: requests answered
//! inline, `tools/call` (and the prompt that asks the client) on threads of their own that
//! a `notifications/cancelled` can stop.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Stdout, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::catalog::tool_list;
use crate::client_requests::Waiter;
use crate::output::Reply;
use crate::prompts::{INPUT_PROMPT, complete, get_prompt, prompt_list};
use crate::resources::{read_resource, resource_list, resource_templates};
use crate::tools::ToolCall;
use crate::{INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND, SERVER_NAME, SERVER_VERSION, lock};

/// Whether notifications with a request's method are run as requests
/// (`FIXTURE_RUN_NOTIFICATIONS=1`), as some hand-written servers do.
pub(crate) fn runs_notifications() -> bool {
    std::env::var_os("FIXTURE_RUN_NOTIFICATIONS").is_some_and(|v| v == "1")
}

/// Protocol versions echoed back when a client asks for them.
pub(crate) const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] =
    ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// Protocol version answered when the client asks for an unknown one.
pub(crate) const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";

/// MCP log levels, from least to most severe.
const LOG_LEVELS: &str = "debug info notice warning error critical alert emergency";

/// The severity of a log level (0 = `debug`), `None` for an unknown level.
pub(crate) fn severity(level: &str) -> Option<usize> {
    LOG_LEVELS.split(' ').position(|l| l == level)
}

/// The key under which a JSON-RPC id is stored in maps (its compact JSON text, so that the
/// string `"1"` and the number `1` stay distinct).
pub(crate) fn id_key(id: &Value) -> String {
    id.to_string()
}

/// Cancellation flag of one in-flight `tools/call`, set by `notifications/cancelled`.
#[derive(Default)]
pub(crate) struct CancelToken {
    cancelled: Mutex<bool>,
    wake: Condvar,
}

impl CancelToken {
    /// Marks the request as cancelled and wakes any thread sleeping on it.
    pub(crate) fn cancel(&self) {
        *lock(&self.cancelled) = true;
        self.wake.notify_all();
    }

    /// Whether the request has been cancelled.
    pub(crate) fn is_cancelled(&self) -> bool {
        *lock(&self.cancelled)
    }

    /// Sleeps for `duration` or until cancelled; returns `true` if cancelled.
    pub(crate) fn sleep(&self, duration: Duration) -> bool {
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

/// Shared state of the server.
pub(crate) struct Server {
    /// Stdout; each message is written and flushed while holding the lock.
    pub(crate) out: Mutex<BufWriter<Stdout>>,
    /// The `FIXTURE_COUNTS` file, if configured.
    pub(crate) counts: Option<Mutex<File>>,
    /// Counter for ids of server→client requests.
    pub(crate) next_request_id: AtomicU64,
    /// Threads waiting for the client's answer, by request id (`fx-N` or a fixed input key),
    /// oldest first; an answer goes to the newest waiter of its id.
    pub(crate) pending: Mutex<HashMap<String, Vec<Waiter>>>,
    /// Counter for [`Waiter::serial`].
    pub(crate) next_waiter: AtomicU64,
    /// Bumped by `test_trigger_tool_change`; shown in `tools/list` once non-zero.
    pub(crate) tool_list_version: AtomicU64,
    /// Bumped by `test_trigger_prompt_change`; shown in `prompts/list` once non-zero.
    pub(crate) prompt_list_version: AtomicU64,
    /// Cancellation tokens of in-flight `tools/call` requests (and `prompts/get` of
    /// [`INPUT_PROMPT`]), by [`id_key`].
    pub(crate) in_flight: Mutex<HashMap<String, Arc<CancelToken>>>,
    /// Capabilities the client declared in its latest `initialize`.
    pub(crate) client_capabilities: Mutex<Value>,
    /// URIs subscribed with `resources/subscribe`.
    pub(crate) subscriptions: Mutex<HashSet<String>>,
    /// [`severity`] of the minimum level sent as `notifications/message`.
    pub(crate) log_level: Mutex<usize>,
    /// Whether `echo` records `echoed <text>` (`FIXTURE_RECORD_ECHO=1`).
    pub(crate) record_echo: bool,
}

impl Server {
    /// Creates the server, writing event counts to `counts` if given.
    pub(crate) fn new(counts: Option<File>, record_echo: bool) -> Self {
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
    pub(crate) fn count(&self, event: &str) {
        let Some(file) = &self.counts else { return };
        let line = format!("{event}\n");
        let mut file = lock(file);
        if let Err(err) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
            log!("cannot write counts file: {err}");
        }
    }

    /// Processes one parsed message from stdin.
    pub(crate) fn dispatch(self: &Arc<Self>, message: Value) {
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
    pub(crate) fn handle_notification(&self, method: &str, params: &Value) {
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
    pub(crate) fn handle_request(self: &Arc<Self>, method: &str, id: Value, params: Value) {
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
    pub(crate) fn initialize(&self, params: &Value) -> Reply {
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
    pub(crate) fn set_log_level(&self, params: &Value) -> Reply {
        let level = params
            .get("level")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match severity(level) {
            Some(index) => {
                *lock(&self.log_level) = index;
                Reply::Result(json!({}))
            }
            None => Reply::Error(INVALID_PARAMS, format!("unknown log level `{level}`")),
        }
    }

    /// Starts a `tools/call` on its own thread.
    pub(crate) fn spawn_tool_call(self: &Arc<Self>, id: Value, params: Value) {
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
    pub(crate) fn spawn_input_prompt(self: &Arc<Self>, id: Value, params: Value) {
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
    pub(crate) fn spawn_job<F>(
        self: &Arc<Self>,
        id: Value,
        thread_name: String,
        label: String,
        job: F,
    ) where
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
