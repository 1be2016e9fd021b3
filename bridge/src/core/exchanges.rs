//! The exchanges open on the relay link, by the relay's number for them, and what each is
//! for: that decides what the client going away means ([`super::Core::on_cancel`]).

use std::collections::HashMap;

/// What an open exchange is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Role {
    /// A POST answered once (or refused): its client leaving changes nothing.
    Post,
    /// A session's standalone `GET` stream.
    Stream(String),
    /// An HTTP+SSE session's stream: closing it ends the session.
    HttpSseStream(String),
    /// A `GET` without a session (the connector probe of hosted clients).
    Probe,
    /// A 2026-07-28 request, by child-side id: closing it cancels the request.
    Stateless(u64),
    /// A `subscriptions/listen` stream.
    Listen,
    /// A Streamable POST in this session (its stream may become resumable).
    SessionPost(String),
    /// A `GET` with `Last-Event-ID` continuing this resumable stream.
    Resume(u64),
}

/// The open exchanges, with a count of the probes among them.
#[derive(Default)]
pub(super) struct Exchanges {
    roles: HashMap<u64, Role>,
    probes: usize,
}

impl Exchanges {
    /// Records an open exchange (or changes what it is for).
    pub(super) fn open(&mut self, exchange: u64, role: Role) {
        if role == Role::Probe {
            self.probes += 1;
        }
        if self.roles.insert(exchange, role) == Some(Role::Probe) {
            self.probes -= 1;
        }
    }

    /// Forgets a finished exchange; what it was for.
    pub(super) fn close(&mut self, exchange: u64) -> Option<Role> {
        let role = self.roles.remove(&exchange);
        if role == Some(Role::Probe) {
            self.probes -= 1;
        }
        role
    }

    /// Changes what an exchange is for, if it is still for `from`.
    pub(super) fn change(&mut self, exchange: u64, from: &Role, to: Role) {
        if self.roles.get(&exchange) == Some(from) {
            self.open(exchange, to);
        }
    }

    /// Forgets every exchange (the link went down).
    pub(super) fn clear(&mut self) {
        self.roles.clear();
        self.probes = 0;
    }

    /// What an open exchange is for.
    pub(super) fn role(&self, exchange: u64) -> Option<&Role> {
        self.roles.get(&exchange)
    }

    /// Whether an exchange is open.
    pub(super) fn contains(&self, exchange: u64) -> bool {
        self.roles.contains_key(&exchange)
    }

    /// Open exchanges.
    pub(super) fn len(&self) -> usize {
        self.roles.len()
    }

    /// Open sessionless `GET` probes.
    pub(super) fn probes(&self) -> usize {
        self.probes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_counted_whatever_replaces_them() {
        let mut x = Exchanges::default();
        x.open(1, Role::Probe);
        x.open(2, Role::Probe);
        x.open(3, Role::Post);
        assert_eq!((x.len(), x.probes()), (3, 2));
        x.open(2, Role::Post);
        assert_eq!(x.probes(), 1, "a probe replaced by another role");
        assert_eq!(x.close(1), Some(Role::Probe));
        assert_eq!((x.len(), x.probes()), (2, 0));
        x.open(4, Role::Probe);
        x.clear();
        assert_eq!((x.len(), x.probes()), (0, 0));
    }

    #[test]
    fn a_role_changes_only_from_the_expected_one() {
        let mut x = Exchanges::default();
        x.open(1, Role::Stateless(7));
        x.change(1, &Role::Stateless(8), Role::Post);
        assert_eq!(x.role(1), Some(&Role::Stateless(7)));
        x.change(1, &Role::Stateless(7), Role::Post);
        assert_eq!(x.role(1), Some(&Role::Post));
        x.change(2, &Role::Post, Role::Listen);
        assert!(!x.contains(2), "change opens nothing");
    }
}
