//! Open `subscriptions/listen` streams (2026-07-28): what each agreed to receive from its
//! child, and the notifications it gets, tagged with its subscription id.

use std::collections::HashMap;

use bytes::Bytes;
use protocol::jsonrpc::result_response;
use protocol::stateless::META_SUBSCRIPTION_ID as META_SUBSCRIPTION;
use serde_json::{Value, json};

use crate::child::ChildId;

/// Most resource URIs one listen stream may follow.
const MAX_URIS: usize = 256;

/// An open `subscriptions/listen` stream.
pub(in crate::core) struct Listen {
    /// The listen request's JSON-RPC id (raw JSON): the subscription id.
    sub_id: Bytes,
    child: ChildId,
    tools: bool,
    prompts: bool,
    resources: bool,
    uris: Vec<String>,
}

impl Listen {
    /// What a listen request (`id`, `params`) gets from `child`, whose capabilities are
    /// `caps`: the stream, and its acknowledgement (the first message).
    pub(in crate::core) fn agree(
        id: Bytes,
        child: ChildId,
        params: &Value,
        caps: &Value,
    ) -> (Listen, Value) {
        let filter = &params["notifications"];
        let wants = |k: &str| filter[k].as_bool() == Some(true);
        let has = |cap: &str, flag: &str| caps[cap][flag].as_bool() == Some(true);
        let tools = wants("toolsListChanged") && has("tools", "listChanged");
        let prompts = wants("promptsListChanged") && has("prompts", "listChanged");
        let resources = wants("resourcesListChanged") && has("resources", "listChanged");
        let uris: Vec<String> = if has("resources", "subscribe") {
            filter["resourceSubscriptions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .take(MAX_URIS)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let sub_id: Value = serde_json::from_slice(&id).unwrap_or(Value::Null);
        let mut agreed = serde_json::Map::new();
        for (k, on) in [
            ("toolsListChanged", tools),
            ("promptsListChanged", prompts),
            ("resourcesListChanged", resources),
        ] {
            if on {
                agreed.insert(k.into(), Value::Bool(true));
            }
        }
        if !uris.is_empty() {
            agreed.insert("resourceSubscriptions".into(), json!(uris));
        }
        let ack = json!({
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": { "_meta": { META_SUBSCRIPTION: sub_id }, "notifications": agreed }
        });
        let listen = Listen {
            sub_id: id,
            child,
            tools,
            prompts,
            resources,
            uris,
        };
        (listen, ack)
    }

    /// The child it listens to.
    pub(in crate::core) fn child(&self) -> ChildId {
        self.child
    }

    /// The resources it follows (each a subscription on the child).
    pub(in crate::core) fn uris(&self) -> &[String] {
        &self.uris
    }

    /// Whether it asked for this notification of its child (`uri`: a resource update's).
    fn wants(&self, method: &str, uri: Option<&str>) -> bool {
        match method {
            "notifications/tools/list_changed" => self.tools,
            "notifications/prompts/list_changed" => self.prompts,
            "notifications/resources/list_changed" => self.resources,
            "notifications/resources/updated" => {
                uri.is_some_and(|u| self.uris.iter().any(|x| x == u))
            }
            _ => false,
        }
    }

    /// The graceful end of the stream: the listen request's result.
    fn completion(&self) -> Vec<u8> {
        let sub: Value = serde_json::from_slice(&self.sub_id).unwrap_or(Value::Null);
        let result = json!({ "resultType": "complete", "_meta": { META_SUBSCRIPTION: sub } });
        result_response(&self.sub_id, result.to_string().as_bytes())
    }
}

/// The open listen streams, by exchange.
#[derive(Default)]
pub(in crate::core) struct Listens {
    by_exchange: HashMap<u64, Listen>,
}

impl Listens {
    /// A listen stream opened on `exchange`.
    pub(in crate::core) fn open(&mut self, exchange: u64, listen: Listen) {
        self.by_exchange.insert(exchange, listen);
    }

    /// Takes the stream of `exchange` (it ended).
    pub(in crate::core) fn close(&mut self, exchange: u64) -> Option<Listen> {
        self.by_exchange.remove(&exchange)
    }

    /// Open streams.
    pub(in crate::core) fn len(&self) -> usize {
        self.by_exchange.len()
    }

    /// The exchanges of the open streams.
    pub(in crate::core) fn exchanges(&self) -> Vec<u64> {
        self.by_exchange.keys().copied().collect()
    }

    /// The graceful end of the stream on `exchange` (its request's result).
    pub(in crate::core) fn completion(&self, exchange: u64) -> Option<Vec<u8>> {
        self.by_exchange.get(&exchange).map(Listen::completion)
    }

    /// A notification of `child` (`line`) for each stream that asked for it, tagged with
    /// that stream's subscription id.
    pub(in crate::core) fn tagged(
        &self,
        child: ChildId,
        method: &str,
        line: &[u8],
    ) -> Vec<(u64, Vec<u8>)> {
        if self.by_exchange.is_empty() {
            return Vec::new();
        }
        let parsed = || serde_json::from_slice::<Value>(line).unwrap_or(Value::Null);
        let updated_uri = (method == "notifications/resources/updated")
            .then(|| parsed()["params"]["uri"].as_str().map(str::to_owned))
            .flatten();
        let targets: Vec<(u64, &Bytes)> = self
            .by_exchange
            .iter()
            .filter(|(_, l)| l.child == child && l.wants(method, updated_uri.as_deref()))
            .map(|(ex, l)| (*ex, &l.sub_id))
            .collect();
        if targets.is_empty() {
            return Vec::new();
        }
        let v = parsed();
        targets
            .into_iter()
            .map(|(ex, sub_id)| {
                let mut msg = v.clone();
                if !msg["params"].is_object() {
                    msg["params"] = json!({});
                }
                if !msg["params"]["_meta"].is_object() {
                    msg["params"]["_meta"] = json!({});
                }
                msg["params"]["_meta"][META_SUBSCRIPTION] =
                    serde_json::from_slice(sub_id).unwrap_or(Value::Null);
                (ex, msg.to_string().into_bytes())
            })
            .collect()
    }
}
