//! Requests the fixture sends to the client (`sampling/createMessage`,
//! `elicitation/create`, `roots/list`): waiting for the answers, and reading them.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::output::Reply;
use crate::server::{CancelToken, Server};
use crate::{INTERNAL_ERROR, INVALID_PARAMS, lock};

/// How often a thread waiting for a client response re-checks for cancellation.
pub(crate) const CANCEL_POLL: Duration = Duration::from_millis(50);

/// How a client answered a server→client request: its `result`, or its `error` object.
pub(crate) type ClientAnswer = Result<Value, Value>;

/// A thread waiting for the client's answer to one server→client request.
pub(crate) struct Waiter {
    /// Unique among all waiters (ids can repeat, see [`Server::pending`]).
    serial: u64,
    /// Where the answer goes.
    tx: Sender<ClientAnswer>,
}

impl Server {
    /// Sends a server→client request (id `fx-N`) and waits for the answer.
    ///
    /// Returns `None` if `cancel` fires first (the late answer, if any, is then dropped).
    pub(crate) fn request_client(
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
    pub(crate) fn request_client_all(
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
    pub(crate) fn forget_waiter(&self, id: &str, serial: u64) {
        let mut pending = lock(&self.pending);
        if let Some(waiters) = pending.get_mut(id) {
            waiters.retain(|w| w.serial != serial);
            if waiters.is_empty() {
                pending.remove(id);
            }
        }
    }

    /// Hands a client's response to the (newest) thread waiting for it.
    pub(crate) fn route_response(&self, message: &Value) {
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
}

/// `elicitation/create` params asking `message` for one required `field` of JSON type `kind`.
pub(crate) fn elicitation_params(message: &str, field: &str, kind: &str) -> Value {
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
pub(crate) fn sampling_params(text: &str, max_tokens: u64) -> Value {
    json!({
        "messages": [{ "role": "user", "content": { "type": "text", "text": text } }],
        "maxTokens": max_tokens,
    })
}

/// A malformed answer to the server→client request `key`: JSON-RPC error -32602.
pub(crate) fn invalid_answer(key: &str, problem: &str) -> Reply {
    Reply::Error(
        INVALID_PARAMS,
        format!("invalid answer to `{key}`: {problem}"),
    )
}

/// The `content` of an accepted elicitation answer to `key` (`None` when declined or
/// cancelled); a client error is a tool error, a malformed answer a JSON-RPC error.
pub(crate) fn accepted_content(
    answer: ClientAnswer,
    key: &str,
) -> Result<Option<Map<String, Value>>, Reply> {
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

/// The field `field` (JSON type `kind`: `string` or `boolean`) of an elicitation answer to
/// `key`, as text: `None` when declined or cancelled; errors as for [`accepted_content`].
pub(crate) fn elicited_field(
    answer: ClientAnswer,
    key: &str,
    field: &str,
    kind: &str,
) -> Result<Option<String>, Reply> {
    let Some(content) = accepted_content(answer, key)? else {
        return Ok(None);
    };
    Ok(Some(match kind {
        "boolean" => bool_field(&content, field, key)?.to_string(),
        _ => str_field(&content, field, key)?.to_owned(),
    }))
}

/// `accept` or `decline` (for a decline or a cancel) of an elicitation answer to `key`;
/// errors as for [`accepted_content`].
pub(crate) fn elicited_action(answer: ClientAnswer, key: &str) -> Result<&'static str, Reply> {
    Ok(match accepted_content(answer, key)? {
        Some(_) => "accept",
        None => "decline",
    })
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
pub(crate) fn sampled(answer: ClientAnswer, key: &str) -> Result<String, Reply> {
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
pub(crate) fn root_uris(answer: ClientAnswer, key: &str) -> Result<Vec<String>, Reply> {
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
pub(crate) fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// The text of a `sampling/createMessage` result (content object or array of blocks).
pub(crate) fn sampled_text(result: &Value) -> Option<&str> {
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
pub(crate) fn describe_elicitation(result: &Value) -> String {
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
pub(crate) fn error_message(error: &Value) -> String {
    match error.get("message").and_then(Value::as_str) {
        Some(message) => message.to_owned(),
        None => error.to_string(),
    }
}
