//! Sessions of the status page, the cookies that name them and their CSRF tokens.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use crate::config::RelayConfig;
use crate::config::sha256;
use crate::store::{Store, new_secret};
use crate::util::cookie::cookie_of;

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, used or not.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
/// How long the sign-in form's cookie lives.
pub(super) const LOGIN_TTL: Duration = Duration::from_secs(30 * 60);

/// Who a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// The relay operator: every tunnel.
    Operator,
    /// The holder of a bridge token: the tunnels it owns.
    Owner {
        /// The token's store id.
        token_id: i64,
    },
}

/// The signed-in browsers of the status page, kept in the store (by the digest of each
/// session's id), so that with a database several nodes share every node knows them.
pub struct StatusPage {
    store: Arc<Store>,
}

impl StatusPage {
    /// The sessions of this store.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Opens a session; its id (the cookie) and CSRF token. A store that cannot keep it
    /// gives `None`.
    pub(super) async fn open(&self, who: Who) -> Option<(String, String)> {
        let id = new_secret("");
        let csrf = new_secret("");
        let token_id = match who {
            Who::Operator => None,
            Who::Owner { token_id } => Some(token_id),
        };
        let now = protocol::time::now_ms();
        match self
            .store
            .put_session(
                sha256(id.as_bytes()),
                token_id,
                &csrf,
                now,
                now - IDLE.as_millis() as i64,
            )
            .await
        {
            Ok(()) => Some((id, csrf)),
            Err(e) => {
                tracing::error!("opening a status-page session: {e}");
                None
            }
        }
    }

    async fn get(&self, id: &str) -> Option<(Who, String)> {
        let now = protocol::time::now_ms();
        let found = self
            .store
            .touch_session(
                sha256(id.as_bytes()),
                now,
                now - ABSOLUTE.as_millis() as i64,
                now - IDLE.as_millis() as i64,
            )
            .await
            .unwrap_or_else(|e| {
                tracing::error!("reading a status-page session: {e}");
                None
            })?;
        let who = match found.0 {
            None => Who::Operator,
            Some(token_id) => Who::Owner { token_id },
        };
        Some((who, found.1))
    }

    pub(super) async fn close(&self, id: &str) {
        if let Err(e) = self.store.close_session(sha256(id.as_bytes())).await {
            tracing::error!("closing a status-page session: {e}");
        }
    }

    pub(super) async fn signed_in(
        &self,
        names: &Cookies,
        store: &Store,
        headers: &HeaderMap,
    ) -> Option<(String, Who, String)> {
        let id = cookie_of(headers, names.session)?;
        let (who, csrf) = self.get(&id).await?;
        if let Who::Owner { token_id } = who {
            match store.token_live(token_id).await {
                Ok(true) => {}
                // Revoked: the session ends.
                Ok(false) => {
                    self.close(&id).await;
                    return None;
                }
                // Not known now: not signed in for this request, still signed in after.
                Err(e) => {
                    tracing::error!("checking a status-page session's bridge token: {e}");
                    return None;
                }
            }
        }
        Some((id, who, csrf))
    }
}

/// Cookie names and whether cookies are `Secure` (an https public URL).
pub(super) struct Cookies {
    /// The session's cookie.
    pub(super) session: &'static str,
    /// The sign-in form's cookie.
    pub(super) login: &'static str,
    secure: bool,
}

impl Cookies {
    /// The cookies of a relay with these settings.
    pub(super) fn of(config: &RelayConfig) -> Self {
        if config.public_url.scheme() == "https" {
            Cookies {
                session: "__Host-relay_status",
                login: "__Host-relay_login",
                secure: true,
            }
        } else {
            Cookies {
                session: "relay_status",
                login: "relay_login",
                secure: false,
            }
        }
    }

    /// A `Set-Cookie` value.
    pub(super) fn set(&self, name: &str, value: &str, max_age: Duration) -> String {
        format!(
            "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            max_age.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_expire_and_close() {
        let store = Arc::new(Store::in_memory().unwrap());
        let p = StatusPage::new(store.clone());
        let (id, csrf) = p.open(Who::Owner { token_id: 3 }).await.unwrap();
        assert_eq!(p.get(&id).await, Some((Who::Owner { token_id: 3 }, csrf)));
        assert_eq!(p.get("nope").await, None);
        // Seen too long ago: gone.
        let now = protocol::time::now_ms();
        let old = now - IDLE.as_millis() as i64 - 1;
        store
            .put_session(sha256(b"idle"), None, "c", old, old)
            .await
            .unwrap();
        assert_eq!(p.get("idle").await, None, "idle too long");
        // Created too long ago, though seen lately: gone.
        let created = now - ABSOLUTE.as_millis() as i64 - 1;
        store
            .put_session(sha256(b"old"), None, "c", created, created)
            .await
            .unwrap();
        assert!(
            store
                .touch_session(sha256(b"old"), now, created, created)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(p.get("old").await, None, "past the absolute limit");
        let (id, _) = p.open(Who::Operator).await.unwrap();
        assert_eq!(p.get(&id).await.map(|x| x.0), Some(Who::Operator));
        p.close(&id).await;
        assert_eq!(p.get(&id).await, None);
    }

    #[test]
    fn cookies() {
        let c = Cookies {
            session: "__Host-relay_status",
            login: "__Host-relay_login",
            secure: true,
        };
        let set = c.set(c.session, "v", ABSOLUTE);
        assert!(set.starts_with("__Host-relay_status=v; Path=/; HttpOnly; SameSite=Strict"));
        assert!(set.ends_with("; Secure"));
    }
}
