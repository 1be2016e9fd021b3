//! A 2026-07-28 call in flight on a child: what its client declared (capabilities, log
//! level), and the server→client requests it gathers for its next `InputRequiredResult`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::jsonrpc::result_response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::sessions::ClientCaps;

/// Server→client requests written within this window go out in one InputRequiredResult.
pub(super) const INPUT_GATHER: Duration = Duration::from_millis(20);

/// The severities of `notifications/message`, least severe first.
const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

pub(super) fn log_rank(level: &str) -> Option<usize> {
    LOG_LEVELS.iter().position(|l| *l == level)
}

/// A stateless request in flight on a child.
#[derive(Debug)]
pub(in crate::core) struct StatelessCall {
    pub(super) principal: String,
    pub(super) method: String,
    /// `params.name` (tools/call, prompts/get) or `params.uri` (resources/read).
    pub(super) name: Option<String>,
    caps: ClientCaps,
    /// Lowest severity of log messages the client asked for; `None`: no log messages.
    log_level: Option<usize>,
    /// Server→client requests awaiting the client's answers.
    inputs: Vec<InputRequest>,
    /// Answers the client sent before being asked (`inputResponses` without state).
    presupplied: HashMap<String, Value>,
    /// When the gathered inputs go to the client.
    pub(super) flush_at: Option<Instant>,
    /// The `requestState` of the InputRequiredResult the client holds (call suspended).
    pub(super) token: Option<String>,
}

/// A server→client request of a stateless call, awaiting the client's answer.
#[derive(Debug)]
struct InputRequest {
    key: String,
    child_id: Bytes,
    request: Value,
}

/// What became of a server→client request given to a stateless call.
pub(super) enum Input {
    /// The client answered it up front: the answer for the child.
    Answered(Vec<u8>),
    /// It joins the call's next InputRequiredResult, which goes out by this time (if
    /// the call has a client attached and nothing is gathered yet).
    Gathered(Option<Instant>),
}

impl StatelessCall {
    /// A call of `method` (on `name`, if any) by `principal`, whose client declared
    /// `caps` and asked for log messages from `log_level` up.
    pub(super) fn new(
        principal: String,
        method: String,
        name: Option<String>,
        caps: ClientCaps,
        log_level: Option<usize>,
    ) -> Self {
        Self {
            principal,
            method,
            name,
            caps,
            log_level,
            inputs: Vec::new(),
            presupplied: HashMap::new(),
            flush_at: None,
            token: None,
        }
    }

    /// Keeps answers the client sent up front, for the requests they name.
    pub(super) fn presupply(&mut self, responses: serde_json::Map<String, Value>) {
        self.presupplied = responses.into_iter().collect();
    }

    /// Whether the call is suspended under this `requestState`.
    pub(in crate::core) fn is_suspended_as(&self, token: &str) -> bool {
        self.token.as_deref() == Some(token)
    }

    /// Whether a server→client request may be routed to this call.
    pub(in crate::core) fn can_take(&self, method: &str) -> bool {
        takes_input(&self.method) && self.caps.can_answer(method)
    }

    /// Whether the call may be answered with an InputRequiredResult.
    pub(in crate::core) fn takes_input(&self) -> bool {
        takes_input(&self.method)
    }

    /// Whether a logging notification (`line`) may go to this call.
    pub(in crate::core) fn wants_log(&self, line: &[u8]) -> bool {
        let Some(min) = self.log_level else {
            return false;
        };
        #[derive(Deserialize)]
        struct Msg<'a> {
            #[serde(borrow)]
            params: Option<Level<'a>>,
        }
        #[derive(Deserialize)]
        struct Level<'a> {
            #[serde(borrow)]
            level: Option<std::borrow::Cow<'a, str>>,
        }
        let level = serde_json::from_slice::<Msg<'_>>(line)
            .ok()
            .and_then(|m| m.params)
            .and_then(|p| p.level)
            .and_then(|l| log_rank(&l))
            .unwrap_or(0);
        level >= min
    }

    /// A server→client request (`child_id`, `line`) for this call at `now`; `attached`:
    /// whether a client waits on the call's stream.
    pub(super) fn take_input(
        &mut self,
        child_id: Bytes,
        line: &[u8],
        attached: bool,
        now: Instant,
    ) -> Input {
        let key = input_key(&child_id);
        if let Some(answer) = self.presupplied.remove(&key) {
            return Input::Answered(result_response(&child_id, answer.to_string().as_bytes()));
        }
        let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
        let mut request = json!({ "method": v["method"] });
        if let Some(params) = v.get("params").filter(|p| !p.is_null()) {
            request["params"] = params.clone();
        }
        self.inputs.retain(|i| i.key != key);
        self.inputs.push(InputRequest {
            key,
            child_id,
            request,
        });
        if attached && self.flush_at.is_none() {
            let at = now + INPUT_GATHER;
            self.flush_at = Some(at);
            return Input::Gathered(Some(at));
        }
        Input::Gathered(None)
    }

    /// The InputRequiredResult of the gathered requests under a new `requestState`, which
    /// suspends the call; `None` if nothing is gathered.
    pub(super) fn input_required(&mut self) -> Option<(String, Value)> {
        self.flush_at = None;
        if self.inputs.is_empty() {
            return None;
        }
        let token = new_token();
        let requests: serde_json::Map<String, Value> = self
            .inputs
            .iter()
            .map(|i| (i.key.clone(), i.request.clone()))
            .collect();
        let result = json!({
            "resultType": "input_required",
            "inputRequests": requests,
            "requestState": token,
        });
        self.token = Some(token.clone());
        Some((token, result))
    }

    /// The client retried with `responses` (and its current capabilities and log level,
    /// in `retry`): the answers to write to the child, and whether some requests are still
    /// unanswered (they go out again at once).
    pub(super) fn continue_with(
        &mut self,
        responses: &serde_json::Map<String, Value>,
        retry: StatelessCall,
        now: Instant,
    ) -> (Vec<Vec<u8>>, bool) {
        let mut lines = Vec::new();
        self.inputs.retain(|inp| match responses.get(&inp.key) {
            Some(r) => {
                lines.push(result_response(&inp.child_id, r.to_string().as_bytes()));
                false
            }
            None => true,
        });
        self.token = None;
        self.caps = retry.caps;
        self.log_level = retry.log_level;
        let missing = !self.inputs.is_empty();
        if missing {
            self.flush_at = Some(now);
        }
        (lines, missing)
    }
}

/// Whether a method may be answered with an InputRequiredResult.
pub(super) fn takes_input(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// The key of an input request: the child's request id, a string as is.
fn input_key(raw_id: &[u8]) -> String {
    match serde_json::from_slice::<Value>(raw_id) {
        Ok(Value::String(s)) => s,
        _ => String::from_utf8_lossy(raw_id).into_owned(),
    }
}

fn new_token() -> String {
    format!("rs1.{}", hex::encode(crate::random::bytes::<24>()))
}
