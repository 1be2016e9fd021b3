//! What the fixture writes on stdout: responses, notifications and log messages, one JSON
//! object a line, each flushed at once.

use std::io::{self, Write};

use serde_json::{Value, json};

use crate::server::{Server, severity};
use crate::{SERVER_NAME, lock};

/// What a request handler wants sent back.
pub(crate) enum Reply {
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
    pub(crate) fn text(text: impl Into<String>) -> Self {
        Reply::Result(json!({ "content": [{ "type": "text", "text": text.into() }] }))
    }

    /// A tool execution error (`isError: true`) with one text item.
    pub(crate) fn tool_error(text: impl Into<String>) -> Self {
        Reply::Result(json!({
            "content": [{ "type": "text", "text": text.into() }],
            "isError": true,
        }))
    }
}

impl Server {
    /// Writes one message as a single line on stdout and flushes.
    pub(crate) fn send(&self, message: &Value) {
        self.send_all(std::slice::from_ref(message));
    }

    /// Writes several messages, one line each, in one go (nothing else in between).
    pub(crate) fn send_all(&self, messages: &[Value]) {
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

    /// Writes a raw line (not necessarily JSON) on stdout and flushes.
    pub(crate) fn send_raw_line(&self, line: &str) {
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
    pub(crate) fn notify(&self, method: &str, params: Value) {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Sends a `notifications/message` if `level` passes the level set by the client.
    pub(crate) fn log_message(&self, level: &str, data: &str) {
        if severity(level).unwrap_or(0) < *lock(&self.log_level) {
            return;
        }
        self.notify(
            "notifications/message",
            json!({ "level": level, "logger": SERVER_NAME, "data": data }),
        );
    }

    /// Sends the response (or nothing) for request `id`.
    pub(crate) fn reply(&self, id: Value, reply: Reply) {
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
}
