//! Failed sign-ins counted across the nodes sharing a store. Each node's own limiter
//! ([`crate::util::gate`]) reserves attempts and bounds password checks; behind a load
//! balancer that spreads one guesser over N nodes it would allow N times the tries. So a
//! node also records each failure in the shared store (written on failure only, off the
//! answer's path) and refuses an address whose failures on all nodes together reached
//! the limit. A store of one node's own keeps none: the local limiter is the whole truth.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;

use super::limits::{APPROVE_ATTEMPTS, APPROVE_WINDOW, PASSWORD_ATTEMPTS, PASSWORD_WINDOW};

/// The secret that was guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// The operator password, or a bridge token, on the status page or a consent page.
    Password,
    /// A bridge token on `/oauth/approve`.
    Approval,
}

impl Secret {
    fn kind(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Approval => "approve",
        }
    }

    fn limit(self) -> (usize, Duration) {
        match self {
            Self::Password => (PASSWORD_ATTEMPTS, PASSWORD_WINDOW),
            Self::Approval => (APPROVE_ATTEMPTS, APPROVE_WINDOW),
        }
    }
}

/// Failed sign-ins in the shared store.
pub struct SharedFailures {
    store: Arc<Store>,
}

impl SharedFailures {
    /// Failures kept in `store` (if several nodes share it).
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Whether `ip` used up its failed attempts at `secret` on all nodes together. A store
    /// that cannot answer refuses nobody (each node's own limit still holds).
    pub async fn too_many(&self, secret: Secret, ip: IpAddr) -> bool {
        if !self.store.announces() {
            return false;
        }
        let (max, window) = secret.limit();
        let since = protocol::time::now_ms() - window.as_millis() as i64;
        let addr = crate::util::addr::address_key(ip).to_string();
        matches!(
            self.store.auth_failures(secret.kind(), &addr, since).await,
            Ok(n) if n >= max
        )
    }

    /// Records a failed attempt of `ip` at `secret`, for every node to count.
    pub fn failed(&self, secret: Secret, ip: IpAddr) {
        if !self.store.announces() {
            return;
        }
        let store = self.store.clone();
        let addr = crate::util::addr::address_key(ip).to_string();
        tokio::spawn(async move {
            let at = protocol::time::now_ms();
            if let Err(e) = store.add_auth_failure(secret.kind(), &addr, at).await {
                tracing::warn!("recording a failed sign-in: {e}");
            }
        });
    }
}
