//! MCP sessions (the handshake revisions): who owns them, which child serves them, their open
//! streams and subscriptions, and least-recently-used eviction.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;

use crate::child::ChildId;

/// What a session's client said it can do in `initialize`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCaps {
    /// Declared `sampling`.
    pub sampling: bool,
    /// Declared `elicitation`.
    pub elicitation: bool,
    /// Declared `roots`.
    pub roots: bool,
}

impl ClientCaps {
    /// Reads the capabilities object of an `initialize` request.
    pub fn from_initialize(params: &serde_json::Value) -> Self {
        Self::from_capabilities(&params["capabilities"])
    }

    /// Reads a client capabilities object.
    pub fn from_capabilities(caps: &serde_json::Value) -> Self {
        let has = |k: &str| caps.get(k).is_some_and(|v| !v.is_null());
        Self {
            sampling: has("sampling"),
            elicitation: has("elicitation"),
            roots: has("roots"),
        }
    }

    /// Whether the client can answer a server→client request with this method.
    pub fn can_answer(&self, method: &str) -> bool {
        match method {
            "sampling/createMessage" => self.sampling,
            "elicitation/create" => self.elicitation,
            "roots/list" => self.roots,
            _ => false,
        }
    }
}

/// One MCP session.
#[derive(Debug)]
pub struct Session {
    /// The id given to the client (`Mcp-Session-Id`, or the HTTP+SSE `sessionId`).
    pub id: String,
    /// The principal that created it; nobody else may use it.
    pub principal: String,
    /// What its client called itself (`clientInfo`), for the owner's dashboard.
    pub client: Option<String>,
    /// The child serving it.
    pub child: ChildId,
    /// Negotiated protocol version.
    pub protocol_version: String,
    /// Client capabilities.
    pub caps: ClientCaps,
    /// Whether this is an HTTP+SSE session (else a Streamable HTTP one).
    pub http_sse: bool,
    /// The HTTP+SSE session's stream, or the Streamable session's GET stream. An HTTP+SSE
    /// stream keeps this number across relay reconnects, as its name (the exchange carrying
    /// it then is the core's business).
    pub stream: Option<u64>,
    /// Resource URIs this session subscribed to.
    pub subscriptions: HashSet<String>,
    /// Client request ids in flight (raw JSON) → child-side ids.
    pub in_flight: HashMap<Bytes, u64>,
    /// Whether the client asked for log messages (`logging/setLevel`).
    pub wants_logs: bool,
    /// Whether this session has its own child (`--isolate`).
    pub owns_child: bool,
    /// Replay buffers of its resumable streams.
    pub logs: super::resume::StreamLogs,
    lru_key: u64,
}

/// All sessions of a bridge, with LRU order.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
    lru: BTreeMap<u64, String>,
    tick: u64,
    per_principal: HashMap<String, usize>,
}

/// Mints a new session id: 128 random bits as hex (visible ASCII).
pub fn new_session_id() -> String {
    hex::encode(crate::random::bytes::<16>())
}

impl Sessions {
    /// Creates and stores a session; returns its id.
    pub fn create(
        &mut self,
        principal: &str,
        child: ChildId,
        protocol_version: String,
        caps: ClientCaps,
        http_sse: bool,
        owns_child: bool,
    ) -> String {
        let id = new_session_id();
        *self.per_principal.entry(principal.to_owned()).or_insert(0) += 1;
        self.tick += 1;
        self.lru.insert(self.tick, id.clone());
        self.by_id.insert(
            id.clone(),
            Session {
                id: id.clone(),
                principal: principal.to_owned(),
                client: None,
                child,
                protocol_version,
                caps,
                http_sse,
                stream: None,
                subscriptions: HashSet::new(),
                in_flight: HashMap::new(),
                wants_logs: false,
                owns_child,
                logs: Default::default(),
                lru_key: self.tick,
            },
        );
        id
    }

    /// The session with this id if `principal` owns it; marks it recently used.
    pub fn touch(&mut self, id: &str, principal: &str) -> Option<&mut Session> {
        let s = self.by_id.get_mut(id)?;
        if s.principal != principal {
            return None;
        }
        self.tick += 1;
        self.lru.remove(&s.lru_key);
        s.lru_key = self.tick;
        self.lru.insert(self.tick, s.id.clone());
        Some(s)
    }

    /// The session with this id, without ownership check or LRU update.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Session> {
        self.by_id.get_mut(id)
    }

    /// The session with this id.
    pub fn get(&self, id: &str) -> Option<&Session> {
        self.by_id.get(id)
    }

    /// Removes a session.
    pub fn remove(&mut self, id: &str) -> Option<Session> {
        let s = self.by_id.remove(id)?;
        self.lru.remove(&s.lru_key);
        if let Some(n) = self.per_principal.get_mut(&s.principal) {
            *n -= 1;
            if *n == 0 {
                self.per_principal.remove(&s.principal);
            }
        }
        Some(s)
    }

    /// The least recently used session's id.
    pub fn oldest(&self) -> Option<String> {
        self.lru.values().next().cloned()
    }

    /// Number of sessions of one principal.
    pub fn count_of(&self, principal: &str) -> usize {
        self.per_principal.get(principal).copied().unwrap_or(0)
    }

    /// The least recently used session of one principal.
    pub fn oldest_of(&self, principal: &str) -> Option<String> {
        self.lru
            .values()
            .find(|id| {
                self.by_id
                    .get(*id)
                    .is_some_and(|s| s.principal == principal)
            })
            .cloned()
    }

    /// The least recently used session that owns a child.
    pub fn oldest_owning_child(&self) -> Option<String> {
        self.lru
            .values()
            .find(|id| self.by_id.get(*id).is_some_and(|s| s.owns_child))
            .cloned()
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Iterates over all sessions.
    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.by_id.values()
    }

    /// Iterates mutably over all sessions.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Session> {
        self.by_id.values_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_and_lru() {
        let mut s = Sessions::default();
        let a = s.create(
            "alice",
            1,
            "2025-11-25".into(),
            ClientCaps::default(),
            false,
            false,
        );
        let b = s.create(
            "bob",
            1,
            "2025-11-25".into(),
            ClientCaps::default(),
            false,
            false,
        );
        assert!(s.touch(&a, "bob").is_none());
        assert!(s.touch(&a, "alice").is_some());
        assert_eq!(s.oldest().as_deref(), Some(b.as_str()));
        s.remove(&b);
        assert_eq!(s.oldest().as_deref(), Some(a.as_str()));
        assert_eq!(s.len(), 1);
        assert!(a.bytes().all(|c| (0x21..=0x7e).contains(&c)));
        assert_ne!(a, b);
    }
}
