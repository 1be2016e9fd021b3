//! Sessions of the status page, the cookies that name them and their CSRF tokens.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderMap, header};
use protocol::sync::LockExt;

use crate::config::RelayConfig;
use crate::config::sha256;
use crate::store::{Store, new_secret};

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
    pub(super) fn signed_in(
        &self,
        names: &Cookies,
        store: &Store,
        headers: &HeaderMap,
    ) -> Option<(String, Who, String)> {
        let id = cookie_of(headers, names.session)?;
        let (who, csrf) = self.get(&id)?;
        if let Who::Owner { token_id } = who
            && !matches!(store.token_live(token_id), Ok(true))
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

/// The value of cookie `name`, if it looks like one of ours.
pub(super) fn cookie_of(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| {
            (20..=100).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub(super) fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; relay_status=abcdefghijklmnopqrstuvwxyz0123; x=y"),
        );
        assert_eq!(
            cookie_of(&h, "relay_status").as_deref(),
            Some("abcdefghijklmnopqrstuvwxyz0123")
        );
        assert_eq!(cookie_of(&h, "a"), None, "too short to be ours");
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
