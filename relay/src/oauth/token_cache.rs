//! Recently validated access tokens and tunnel owners, so the database stays off the hot
//! path of MCP requests.

use protocol::sync::LockExt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::{AccessGrant, Store, StoreError};

/// How long a validated token (and a name's owner) is trusted without the database.
const CACHE_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 100_000;

/// Recently validated access tokens and tunnel owners.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<[u8; 32], (AccessGrant, String, Instant)>>,
    owners: Mutex<HashMap<String, (Option<i64>, Instant)>>,
}

impl TokenCache {
    /// A validated token's grant and principal.
    pub(super) fn token(&self, hash: &[u8; 32]) -> Option<(AccessGrant, String)> {
        let map = self.tokens.locked();
        map.get(hash)
            .filter(|(_, _, at)| at.elapsed() < CACHE_TTL)
            .map(|(g, p, _)| (g.clone(), p.clone()))
    }

    pub(super) fn put_token(&self, hash: [u8; 32], g: AccessGrant, principal: String) {
        let mut map = self.tokens.locked();
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(hash, (g, principal, Instant::now()));
    }

    /// Forgets every cached validation (after a revocation: a revoked family's access
    /// tokens stop working at once).
    pub fn clear(&self) {
        self.tokens.locked().clear();
    }

    /// Forgets a tunnel's cached owner (its name was released).
    pub fn forget_owner(&self, name: &str) {
        self.owners.locked().remove(name);
    }

    /// The live owner of tunnel `name` (cached like tokens); a store error is passed on,
    /// not cached.
    pub(super) async fn owner(&self, store: &Store, name: &str) -> Result<Option<i64>, StoreError> {
        if let Some((o, at)) = self.owners.locked().get(name)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(*o);
        }
        let o = store.live_owner(name).await?;
        let mut map = self.owners.locked();
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(name.to_owned(), (o, Instant::now()));
        Ok(o)
    }
}
