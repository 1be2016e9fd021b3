//! Who may use the dashboard: only the owner's browser on this machine.
//!
//! - It listens on loopback only, and answers only requests whose `Host` is that loopback
//!   address and port (`127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT`): a page of another
//!   site whose name resolves to 127.0.0.1 (DNS rebinding) is refused.
//! - The address the bridge prints carries a secret (`/?token=…`), exchanged once for a
//!   cookie (`HttpOnly`, `SameSite=Strict`); every page needs the cookie.
//! - Every form carries the cookie's own CSRF token, and a `POST` must come with an
//!   `Origin` of the dashboard itself.

use std::collections::VecDeque;

use http::HeaderMap;
use protocol::sync::LockExt;
use std::sync::Mutex;

/// The cookie that carries a browser's session.
pub const COOKIE: &str = "bridge_desk";
/// Most browser sessions kept (the oldest is forgotten first).
const MAX_SESSIONS: usize = 16;

/// A random secret, hex (256 bits from the bridge's one random source, which refuses to
/// make a secret without the system's randomness).
pub fn secret() -> String {
    hex::encode(crate::random::bytes::<32>())
}

/// The dashboard's secrets: the one in the printed address, and the browser sessions it
/// was exchanged for (each with its CSRF token).
pub struct Keys {
    token: String,
    port: u16,
    sessions: Mutex<VecDeque<(String, String)>>,
}

impl Keys {
    /// Keys for a dashboard on `port` opened with `token`.
    pub fn new(token: String, port: u16) -> Self {
        Self {
            token,
            port,
            sessions: Mutex::new(VecDeque::new()),
        }
    }

    /// The secret of the printed address.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether `given` is the secret.
    pub fn is_token(&self, given: &str) -> bool {
        relay::util::cookie::same_secret(given, &self.token)
    }

    /// A new browser session: its cookie value.
    pub fn open_session(&self) -> String {
        let (id, csrf) = (secret(), secret());
        let mut sessions = self.sessions.locked();
        if sessions.len() >= MAX_SESSIONS {
            sessions.pop_front();
        }
        sessions.push_back((id.clone(), csrf));
        id
    }

    /// The CSRF token of the session whose cookie `headers` carry, if any.
    pub fn session(&self, headers: &HeaderMap) -> Option<String> {
        let id = relay::util::cookie::cookie_of(headers, COOKIE)?;
        self.sessions
            .locked()
            .iter()
            .find(|(s, _)| relay::util::cookie::same_secret(s, &id))
            .map(|(_, csrf)| csrf.clone())
    }

    /// Whether the request's `Host` is the dashboard's own address.
    pub fn host_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| self.is_own(h))
    }

    /// Whether a `POST`'s `Origin` is the dashboard itself.
    pub fn origin_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get(http::header::ORIGIN)
            .and_then(|h| h.to_str().ok())
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|h| self.is_own(h))
    }

    fn is_own(&self, authority: &str) -> bool {
        let port = self.port;
        [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ]
        .iter()
        .any(|own| own.eq_ignore_ascii_case(authority))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_the_dashboards_own_host_and_origin_pass() {
        let k = Keys::new(secret(), 7173);
        for ok in [
            "127.0.0.1:7173",
            "localhost:7173",
            "LOCALHOST:7173",
            "[::1]:7173",
        ] {
            assert!(k.host_ok(&headers(&[("host", ok)])), "{ok}");
        }
        for bad in [
            "127.0.0.1:7174",
            "evil.example:7173",
            "127.0.0.1",
            "localhost.evil.example:7173",
        ] {
            assert!(!k.host_ok(&headers(&[("host", bad)])), "{bad}");
        }
        assert!(!k.host_ok(&HeaderMap::new()));
        assert!(k.origin_ok(&headers(&[("origin", "http://127.0.0.1:7173")])));
        for bad in ["https://127.0.0.1:7173", "http://evil.example:7173", "null"] {
            assert!(!k.origin_ok(&headers(&[("origin", bad)])), "{bad}");
        }
        assert!(
            !k.origin_ok(&HeaderMap::new()),
            "a POST must name its origin"
        );
    }

    #[test]
    fn the_secret_opens_sessions_and_only_their_cookies_count() {
        let k = Keys::new("s3cret".into(), 1);
        assert!(k.is_token("s3cret") && !k.is_token("s3cre") && !k.is_token(""));
        let id = k.open_session();
        let csrf = k
            .session(&headers(&[("cookie", &format!("{COOKIE}={id}"))]))
            .expect("a session");
        assert_eq!(csrf.len(), 64);
        assert!(
            k.session(&headers(&[("cookie", &format!("{COOKIE}=nope"))]))
                .is_none()
        );
        assert!(k.session(&HeaderMap::new()).is_none());
        for _ in 0..MAX_SESSIONS {
            k.open_session();
        }
        assert!(
            k.session(&headers(&[("cookie", &format!("{COOKIE}={id}"))]))
                .is_none(),
            "the oldest session is forgotten"
        );
    }
}
