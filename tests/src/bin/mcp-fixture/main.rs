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
//!   `InputRequiredResult`. See [`tools::ToolCall::run`] for the list.
//!
//! Every `tools/call` runs on its own thread, so a slow call or one waiting for the client's
//! answer to a server→client request never blocks other traffic (so does the one prompt that
//! asks the client, `test_input_required_result_prompt`). Server→client requests get ids
//! `fx-1`, `fx-2`, … (or the fixed keys above); the stdin reader routes the client's responses
//! to the waiting thread. When a fixed id is reused while an earlier request with that id is
//! still unanswered (a flow the client abandoned), the answer goes to the newest one.
//!
//! The modules: `server` (the state, the dispatch of what the client sends, the threads of
//! the calls), `output` (what goes to stdout), `client_requests` (server→client requests and
//! reading their answers), `tools` and `input_tools` (`tools/call`), `catalog` (`tools/list`),
//! `resources`, and `prompts` (with argument completion).
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

/// Writes a diagnostic line to stderr.
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("[{}] {}", $crate::SERVER_NAME, format_args!($($arg)*))
    };
}

mod catalog;
mod client_requests;
mod input_tools;
mod output;
mod prompts;
mod resources;
mod server;
mod tools;

use std::fs::OpenOptions;
use std::io::{self, BufRead, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::server::Server;

/// Name reported in `serverInfo` and by `--version`.
pub(crate) const SERVER_NAME: &str = "mcp-fixture";
/// Version reported in `serverInfo` and by `--version`.
pub(crate) const SERVER_VERSION: &str = "1.0.0";

/// A 1x1 red PNG pixel, base64-encoded.
pub(crate) const TEST_IMAGE_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A minimal (empty) 8 kHz mono 16-bit WAV file, base64-encoded.
pub(crate) const TEST_AUDIO_BASE64: &str =
    "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

/// JSON-RPC error codes used by the fixture.
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
pub(crate) const INVALID_PARAMS: i64 = -32602;
pub(crate) const INTERNAL_ERROR: i64 = -32603;

/// Locks a mutex, ignoring poisoning (a panicking tool thread must not wedge the server).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
