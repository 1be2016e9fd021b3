//! Authorizations waiting for the tunnel's owner, kept in the store (so that, with a
//! database several nodes share, any node shows, decides and finishes them): each one's
//! request, its short code and the decision once made. Those older than [`CONSENT_TTL`]
//! count as gone.

use std::sync::Arc;

use super::limits::CONSENT_TTL;
pub use crate::store::Consent;
use crate::store::Store;
use crate::store::records::normalize_code;

/// Pending consents.
pub struct Consents {
    store: Arc<Store>,
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

/// The oldest creation time (ms since the epoch) of a live consent.
fn live_after() -> i64 {
    protocol::time::now_ms() - CONSENT_TTL.as_millis() as i64
}

impl Consents {
    /// The consents of this store.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Stores a consent; `false` if the relay holds too many (or cannot store it).
    pub async fn insert(&self, c: &Consent, max: usize) -> bool {
        match self.store.put_consent(c, max, live_after()).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!("storing a consent: {e}");
                false
            }
        }
    }

    /// A live consent by id.
    pub async fn get(&self, id: &str) -> Option<Consent> {
        self.store
            .consent(id, live_after())
            .await
            .unwrap_or_else(|e| {
                tracing::error!("reading a consent: {e}");
                None
            })
    }

    /// Removes a consent (it is used once).
    pub async fn take(&self, id: &str) -> Option<Consent> {
        self.store
            .take_consent(id, live_after())
            .await
            .unwrap_or_else(|e| {
                tracing::error!("taking a consent: {e}");
                None
            })
    }

    /// Records a decision for the consent with this id, if it is for `tunnel`; an
    /// approval names the owner (bridge token id) on whose authority it was made.
    pub async fn decide(&self, id: &str, tunnel: &str, approve: Option<i64>) -> bool {
        self.store
            .decide_consent(id, tunnel, approve, live_after())
            .await
            .unwrap_or_else(|e| {
                tracing::error!("deciding a consent: {e}");
                false
            })
    }

    /// The live undecided consents of `tunnel`, oldest first.
    pub async fn pending(&self, tunnel: &str) -> Vec<Consent> {
        self.store
            .pending_consents(tunnel, live_after())
            .await
            .unwrap_or_else(|e| {
                tracing::error!("reading a tunnel's waiting consents: {e}");
                Vec::new()
            })
    }

    /// The consent showing this code.
    pub async fn by_code(&self, code: &str) -> Option<Consent> {
        self.store
            .consent_by_code(&normalize_code(code), live_after())
            .await
            .unwrap_or_else(|e| {
                tracing::error!("finding a consent by its code: {e}");
                None
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let c = user_code();
        assert_eq!(c.len(), 9);
        assert_eq!(normalize_code("ab-cd ef12"), "ABCDEF12");
    }

    fn consent(id: &str, tunnel: &str, code: &str) -> Consent {
        Consent {
            id: id.into(),
            code: code.into(),
            csrf: "c".into(),
            tunnel: tunnel.into(),
            client_id: "mcpcl_x".into(),
            client_display: "x".into(),
            redirect_uri: "https://x/cb".into(),
            state: Some("s".into()),
            challenge: "ch".into(),
            resource: "https://r/t/mcp".into(),
            scope: "mcp".into(),
            created_ms: protocol::time::now_ms(),
            decision: None,
            approved_owner: None,
        }
    }

    #[tokio::test]
    async fn waiting_deciding_taking() {
        let c = Consents::new(Arc::new(Store::in_memory().unwrap()));
        assert!(c.insert(&consent("a", "desk", "ABCD-EFGH"), 2).await);
        assert!(c.insert(&consent("b", "desk", "JKMN-PQRS"), 2).await);
        assert!(
            !c.insert(&consent("c", "desk", "TUVW-XYZ2"), 2).await,
            "full"
        );
        assert_eq!(c.by_code("abcd efgh").await.map(|x| x.id), Some("a".into()));
        assert!(!c.decide("a", "other", Some(1)).await, "another tunnel's");
        assert!(c.decide("a", "desk", Some(1)).await);
        assert!(!c.decide("a", "desk", None).await, "decided once");
        let got = c.get("a").await.unwrap();
        assert_eq!((got.decision, got.approved_owner), (Some(true), Some(1)));
        assert!(c.take("a").await.is_some());
        assert!(c.take("a").await.is_none(), "used once");
        // An expired consent is gone, and makes room.
        let mut old = consent("old", "desk", "ABCD-2345");
        old.created_ms -= CONSENT_TTL.as_millis() as i64 + 1;
        assert!(c.insert(&old, 10).await);
        assert!(c.get("old").await.is_none());
        assert!(c.by_code("ABCD2345").await.is_none());
        assert!(c.decide("b", "desk", None).await);
        assert_eq!(c.get("b").await.unwrap().decision, Some(false));
    }
}
