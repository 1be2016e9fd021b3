//! Authorizations waiting for the tunnel's owner: each one's request, its short code and
//! the decision once made.

use protocol::sync::LockExt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::limits::CONSENT_TTL;

/// One authorization waiting for the owner.
#[derive(Debug, Clone)]
pub struct Consent {
    /// Random id in the page's URL.
    pub id: String,
    /// The short code shown to the owner.
    pub code: String,
    /// Binds the consent to the browser (cookie) and its forms.
    pub csrf: String,
    /// Tunnel name.
    pub tunnel: String,
    /// Requesting client.
    pub client_id: String,
    /// What the page says about the client (never its self-chosen name as truth).
    pub client_display: String,
    /// Exact redirect URI.
    pub redirect_uri: String,
    /// The client's `state`.
    pub state: Option<String>,
    /// PKCE S256 challenge.
    pub challenge: String,
    /// The resource (the tunnel's MCP URL).
    pub resource: String,
    /// Granted scope.
    pub scope: String,
    /// When it was created.
    pub created: Instant,
    /// `Some(true)` approved, `Some(false)` denied.
    pub decision: Option<bool>,
    /// The bridge token that owned the tunnel when it was approved: the code is only
    /// issued while that token still owns it.
    pub approved_owner: Option<i64>,
}

/// Pending consents.
#[derive(Default)]
pub struct Consents {
    map: Mutex<HashMap<String, Consent>>,
}

/// A short, unambiguous code: `XXXX-XXXX`.
pub fn user_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let b = crate::util::random::bytes::<8>();
    let s: String = b
        .iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &s[..4], &s[4..])
}

fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl Consents {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Consent>> {
        self.map.locked()
    }

    /// Stores a consent; `false` if the relay holds too many.
    pub fn insert(&self, c: Consent, max: usize) -> bool {
        let mut m = self.lock();
        m.retain(|_, c| c.created.elapsed() < CONSENT_TTL);
        if m.len() >= max {
            return false;
        }
        m.insert(c.id.clone(), c);
        true
    }

    /// A live consent by id.
    pub fn get(&self, id: &str) -> Option<Consent> {
        self.lock()
            .get(id)
            .filter(|c| c.created.elapsed() < CONSENT_TTL)
            .cloned()
    }

    /// Removes a consent (it is used once).
    pub fn take(&self, id: &str) -> Option<Consent> {
        self.lock()
            .remove(id)
            .filter(|c| c.created.elapsed() < CONSENT_TTL)
    }

    /// Records a decision for the consent with this id, if it is for `tunnel`; an
    /// approval names the owner (bridge token id) on whose authority it was made.
    pub fn decide(&self, id: &str, tunnel: &str, approve: Option<i64>) -> bool {
        match self.lock().get_mut(id) {
            Some(c) if c.tunnel == tunnel && c.decision.is_none() => {
                c.decision = Some(approve.is_some());
                c.approved_owner = approve;
                true
            }
            _ => false,
        }
    }

    /// The consent showing this code.
    pub fn by_code(&self, code: &str) -> Option<Consent> {
        let want = normalize(code);
        self.lock()
            .values()
            .find(|c| normalize(&c.code) == want && c.created.elapsed() < CONSENT_TTL)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let c = user_code();
        assert_eq!(c.len(), 9);
        assert_eq!(normalize("ab-cd ef12"), "ABCDEF12");
    }
}
