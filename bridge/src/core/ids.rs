//! The id table: every request in flight on a child, by the child-side id the bridge gave
//! it (a client's id is replaced by one unique on the child, and restored on the answer),
//! and every server→client request in flight, by the id the bridge gave it on the way to
//! the client. Both kinds of id come from one counter.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, hash_map};
use std::time::Instant;

use bytes::Bytes;

use super::note::Note;
use super::stateless::call::StatelessCall;
use crate::audit::Outcome;
use crate::child::ChildId;

/// Whose request it is, and so where its answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A client's request: its answer goes back to the client.
    Client,
    /// The bridge's own `initialize` of the child.
    ChildInit,
    /// A bridge-internal request whose answer is ignored.
    Internal,
    /// The bridge's own `tools/list`, kept as the offline snapshot.
    ToolsSnapshot,
}

/// A request in flight on a child, by child-side id.
pub(super) struct Pending {
    pub(super) child: ChildId,
    pub(super) purpose: Purpose,
    /// Where the answer goes (a POST exchange, or an HTTP+SSE session's stream).
    pub(super) exchange: Option<u64>,
    /// Whether the answer ends the exchange (Streamable POST) or is one message on a
    /// stream (HTTP+SSE).
    pub(super) reply_final: bool,
    /// The session it was sent in.
    pub(super) session: Option<String>,
    /// The client's id (raw JSON), restored on the answer.
    pub(super) original_id: Bytes,
    /// The client's `progressToken` (raw JSON), restored on progress.
    pub(super) original_token: Option<Bytes>,
    /// A server→client request routed through this request awaits its answer.
    pub(super) awaiting_client: bool,
    /// When a client request times out.
    pub(super) deadline: Option<Instant>,
    /// A 2026-07-28 request: its client's capabilities, log level and input requests.
    pub(super) stateless: Option<Box<StatelessCall>>,
    /// What the policy attached: a `tools/list` to rewrite, or an audited `tools/call`.
    pub(super) note: Option<Box<Note>>,
}

impl Pending {
    /// One of the bridge's own requests.
    pub(super) fn internal(child: ChildId, purpose: Purpose) -> Self {
        Self {
            child,
            purpose,
            exchange: None,
            reply_final: false,
            session: None,
            original_id: Bytes::new(),
            original_token: None,
            awaiting_client: false,
            deadline: None,
            stateless: None,
            note: None,
        }
    }

    /// Says how an audited call ended (for the audit log).
    pub(super) fn set_outcome(&self, outcome: Outcome) {
        if let Some(n) = &self.note {
            n.set_outcome(outcome);
        }
    }

    /// Whether this is a 2026-07-28 call suspended under this `requestState`.
    pub(super) fn is_suspended_as(&self, token: &str) -> bool {
        self.stateless
            .as_ref()
            .is_some_and(|m| m.is_suspended_as(token))
    }
}

/// A server→client request on its way to a client, by the id the bridge gave it.
pub(super) struct ServerRequest {
    /// The child that asked.
    pub(super) child: ChildId,
    /// The child's id of it (raw JSON), restored on the client's answer.
    pub(super) child_id: Bytes,
    /// The session of the request it was routed through.
    pub(super) session: Option<String>,
    /// The request (child-side id) it was routed through.
    pub(super) pending: u64,
}

/// Why a client's answer to a server→client request was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unmatched {
    /// No such request is in flight.
    Unknown,
    /// It was sent to another session.
    OtherSession,
}

/// Requests in flight on children, and server→client requests in flight on clients.
#[derive(Default)]
pub(super) struct IdTable {
    next: u64,
    pending: BTreeMap<u64, Pending>,
    server_requests: HashMap<u64, ServerRequest>,
}

impl IdTable {
    /// A new id, never given before (ids start at 1).
    pub(super) fn fresh(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// The id [`IdTable::fresh`] gives next.
    pub(super) fn peek_next(&self) -> u64 {
        self.next + 1
    }

    /// Records a request sent to a child under `cid`.
    pub(super) fn insert(&mut self, cid: u64, p: Pending) {
        self.pending.insert(cid, p);
    }

    /// The request in flight under `cid`.
    pub(super) fn get(&self, cid: u64) -> Option<&Pending> {
        self.pending.get(&cid)
    }

    /// The request in flight under `cid`, to update.
    pub(super) fn get_mut(&mut self, cid: u64) -> Option<&mut Pending> {
        self.pending.get_mut(&cid)
    }

    /// Whether a request is in flight under `cid`.
    pub(super) fn contains(&self, cid: u64) -> bool {
        self.pending.contains_key(&cid)
    }

    /// Takes the request in flight under `cid`.
    pub(super) fn remove(&mut self, cid: u64) -> Option<Pending> {
        self.pending.remove(&cid)
    }

    /// Takes the request under `cid` if `check` holds for it.
    pub(super) fn take_if(
        &mut self,
        cid: u64,
        check: impl FnOnce(&Pending) -> bool,
    ) -> Option<Pending> {
        match self.pending.entry(cid) {
            Entry::Occupied(e) if check(e.get()) => Some(e.remove()),
            _ => None,
        }
    }

    /// Takes every request `check` holds for, by increasing id.
    pub(super) fn take_all(
        &mut self,
        mut check: impl FnMut(&Pending) -> bool,
    ) -> Vec<(u64, Pending)> {
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| check(p))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.pending.remove(&id).map(|p| (id, p)))
            .collect()
    }

    /// Takes the one request `check` holds for; none if several or none do.
    pub(super) fn take_sole(
        &mut self,
        mut check: impl FnMut(&Pending) -> bool,
    ) -> Option<(u64, Pending)> {
        let mut found = self.pending.iter().filter(|(_, p)| check(p));
        let (Some((&cid, _)), None) = (found.next(), found.next()) else {
            return None;
        };
        self.pending.remove(&cid).map(|p| (cid, p))
    }

    /// The requests in flight, by increasing id.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &Pending)> {
        self.pending.iter().map(|(id, p)| (*id, p))
    }

    /// The requests in flight, to update.
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Pending> {
        self.pending.values_mut()
    }

    /// The requests sent under `first` or a later id.
    pub(super) fn since(&self, first: u64) -> impl Iterator<Item = (u64, &Pending)> {
        self.pending.range(first..).map(|(id, p)| (*id, p))
    }

    /// Client requests in flight.
    pub(super) fn client_count(&self) -> usize {
        self.pending
            .values()
            .filter(|p| p.purpose == Purpose::Client)
            .count()
    }

    /// Routes a child's request (`child_id`) through the request `through`: it awaits the
    /// client's answer from now on. The bridge's id for the server request, and where the
    /// request `through` is answered; `None` if that request is not in flight.
    pub(super) fn route_server_request(
        &mut self,
        through: u64,
        child: ChildId,
        child_id: Bytes,
    ) -> Option<(u64, Option<u64>)> {
        let sid = self.next + 1;
        let p = self.pending.get_mut(&through)?;
        self.next = sid;
        p.awaiting_client = true;
        self.server_requests.insert(
            sid,
            ServerRequest {
                child,
                child_id,
                session: p.session.clone(),
                pending: through,
            },
        );
        Some((sid, p.exchange))
    }

    /// Takes the server request a client answers under `sid`, from `session`.
    pub(super) fn take_server_request(
        &mut self,
        sid: u64,
        session: Option<&str>,
    ) -> Result<ServerRequest, Unmatched> {
        let r = match self.server_requests.entry(sid) {
            hash_map::Entry::Vacant(_) => return Err(Unmatched::Unknown),
            hash_map::Entry::Occupied(e)
                if e.get().session.is_some() && e.get().session.as_deref() != session =>
            {
                return Err(Unmatched::OtherSession);
            }
            hash_map::Entry::Occupied(e) => e.remove(),
        };
        if let Some(p) = self.pending.get_mut(&r.pending) {
            p.awaiting_client = false;
        }
        Ok(r)
    }

    /// Takes the server request a child withdraws (its id `child_id`): the bridge's id
    /// for it and the request it was routed through.
    pub(super) fn withdraw_server_request(
        &mut self,
        child: ChildId,
        child_id: &[u8],
    ) -> Option<(u64, u64)> {
        let sid = self
            .server_requests
            .iter()
            .find(|(_, r)| r.child == child && r.child_id[..] == *child_id)
            .map(|(sid, _)| *sid)?;
        let r = self.server_requests.remove(&sid)?;
        Some((sid, r.pending))
    }

    /// Forgets the server requests of a child (it exited).
    pub(super) fn forget_server_requests_of(&mut self, child: ChildId) {
        self.server_requests.retain(|_, r| r.child != child);
    }

    /// Forgets the server requests routed through the request `cid` (it ended).
    pub(super) fn forget_server_requests_through(&mut self, cid: u64) {
        self.server_requests.retain(|_, r| r.pending != cid);
    }
}
