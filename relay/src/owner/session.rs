//! Sessions of the status page, the cookies that name them and their CSRF tokens.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use protocol::sync::LockExt;

use crate::config::RelayConfig;
use crate::config::sha256;
use crate::store::{Store, new_secret};
use crate::util::cookie::cookie_of;

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, used or not.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
/// Most sessions at once (the least recently used is dropped for a new one).
const MAX_SESSIONS: usize = 1_000;
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

struct Session {
    who: Who,
    csrf: String,
    created: Instant,
    seen: Instant,
}

impl Session {
    fn live(&self) -> bool {
        self.created.elapsed() < ABSOLUTE && self.seen.elapsed() < IDLE
    }
}

/// Sessions of the status page.
#[derive(Default)]
pub struct StatusPage {
    /// By the SHA-256 of the cookie's value.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.locked()
}

impl StatusPage {
    /// Opens a session; returns the cookie value and the CSRF token.
    pub(super) fn open(&self, who: Who) -> (String, String) {
        let id = new_secret("");
        let csrf = new_secret("");
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.live());
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        let now = Instant::now();
        sessions.insert(
            sha256(id.as_bytes()),
            Session {
                who,
                csrf: csrf.clone(),
                created: now,
                seen: now,
            },
        );
        (id, csrf)
    }

    /// The live session named by a cookie value (marked as used): who, and its CSRF token.
    fn get(&self, id: &str) -> Option<(Who, String)> {
        let key = sha256(id.as_bytes());
        let mut sessions = lock(&self.sessions);
        match sessions.get_mut(&key) {
            Some(s) if s.live() => {
                s.seen = Instant::now();
                Some((s.who, s.csrf.clone()))
            }
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session named by a cookie value.
    pub(super) fn close(&self, id: &str) {
        lock(&self.sessions).remove(&sha256(id.as_bytes()));
    }

    /// The signed-in session of a request, if any: its cookie value, who, and its CSRF
    /// token. A bridge token's session ends with the token.
    pub(super) async fn signed_in(
        &self,
        names: &Cookies,
        store: &Store,
        headers: &HeaderMap,
    ) -> Option<(String, Who, String)> {
        let id = cookie_of(headers, names.session)?;
        let (who, csrf) = self.get(&id)?;
        if let Who::Owner { token_id } = who
            && !matches!(store.token_live(token_id).await, Ok(true))
        {
            self.close(&id);
            return None;
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

    #[test]
    fn sessions_expire_and_close() {
        let p = StatusPage::default();
        let (id, csrf) = p.open(Who::Owner { token_id: 3 });
        assert_eq!(p.get(&id), Some((Who::Owner { token_id: 3 }, csrf)));
        assert_eq!(p.get("nope"), None);
        // (The monotonic clock may not reach that far back right after boot.)
        if let Some(idle) = Instant::now().checked_sub(IDLE + Duration::from_secs(1)) {
            lock(&p.sessions).values_mut().for_each(|s| s.seen = idle);
            assert_eq!(p.get(&id), None, "idle too long");
        }
        let (id, _) = p.open(Who::Operator);
        p.close(&id);
        assert_eq!(p.get(&id), None);
        for _ in 0..(MAX_SESSIONS + 5) {
            p.open(Who::Operator);
        }
        assert_eq!(lock(&p.sessions).len(), MAX_SESSIONS);
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
