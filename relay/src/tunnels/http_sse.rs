//! HTTP+SSE streams across a bridge reconnect.
//!
//! An HTTP+SSE client holds one `GET /<name>/sse` stream for its whole session and never
//! reopens it: if that stream ended whenever the bridge's connection dropped, every later
//! `POST /<name>/messages?sessionId=…` of the client would fail, although the bridge keeps
//! sessions across reconnects and is usually back within seconds.
//!
//! So when the connection carrying an HTTP+SSE stream drops, the relay keeps the client's
//! stream open (with its keep-alive comments) for the grace period, and once the tunnel's
//! next connection is up sends it a `HttpSseOpen` naming the stream's session, for the
//! principal that opened it ([`Carry::reattach`]). The bridge checks that this principal
//! owns the session; it answers like a stream's first frame, then sends what the session
//! produced meanwhile and its messages from then on, which the relay adds to the same
//! client stream. The stream ends as before when the bridge does not come back within the
//! grace period, when it does not know the session (or not for this principal), or when
//! [`may_carry`] says no.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::{Request, RequestKind, Response};
use tokio::time::Instant;

use crate::tunnels::registry::{Lookup, Registry};
use crate::tunnels::tunnel::{Exchange, Tunnel};

/// Longest wait for the bridge's first frame on a stream it is asked to carry on.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a stream whose connection just closed looks again for its successor (the
/// registry marks the name away right after closing the connection).
const CLOSING_POLL: Duration = Duration::from_millis(20);

/// Whether an HTTP+SSE stream opened on connection `old` may go on over connection `new` of
/// the same tunnel: both bridges keep HTTP+SSE sessions across reconnects
/// ([`protocol::FEATURE_SSE_REATTACH`]), `new` is another connection of the same bridge
/// token (a name that changed owner is another bridge's), and its clients authenticate
/// as the stream's client did when it opened it.
pub fn may_carry(old: &Tunnel, new: &Tunnel) -> bool {
    old.conn_id != new.conn_id
        && old.sse_reattach
        && new.sse_reattach
        && old.token_id == new.token_id
        && old.auth == new.auth
}

/// What an HTTP+SSE stream needs to go on over the tunnel's next connection.
pub struct Carry {
    registry: Arc<Registry>,
    grace: Duration,
    name: String,
    principal: String,
}

impl std::fmt::Debug for Carry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carry")
            .field("name", &self.name)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl Carry {
    /// For a stream of tunnel `name`, opened by `principal`, on a relay whose grace period
    /// is `grace`.
    pub fn new(registry: Arc<Registry>, grace: Duration, name: String, principal: String) -> Self {
        Self {
            registry,
            grace,
            name,
            principal,
        }
    }

    /// The connection `old` carrying the stream of `session` is gone: waits (up to the
    /// grace period) for the tunnel's next connection, and asks its bridge to carry the
    /// stream on. Returns the new exchange and its first frame, or `None`: the stream ends.
    pub async fn reattach(&self, old: Arc<Tunnel>, session: &str) -> Option<(Exchange, Response)> {
        let mut old = old;
        // However the registry's grace period goes, never longer than this.
        let give_up = Instant::now() + self.grace + FIRST_FRAME_TIMEOUT;
        loop {
            if !old.sse_reattach {
                return None;
            }
            let new = self.next_connection(&old, give_up).await?;
            if !may_carry(&old, &new) {
                return None;
            }
            let request = Request {
                exchange: 0,
                kind: RequestKind::HttpSseOpen,
                session: Some(session.to_owned()),
                protocol_version: None,
                last_event_id: None,
                principal: self.principal.clone(),
                body: Bytes::new(),
            };
            let Ok(mut ex) = new.open(request).await else {
                // It closed at once: wait for the one after it.
                old = new;
                continue;
            };
            match tokio::time::timeout(FIRST_FRAME_TIMEOUT, ex.next()).await {
                Ok(Some(first)) if first.status == 200 && !first.is_final() => {
                    tracing::debug!(tunnel = %self.name, "a HTTP+SSE stream goes on over the bridge's new connection");
                    return Some((ex, first));
                }
                // The connection dropped before answering: wait for the next one.
                Ok(None) if new.closed.is_cancelled() => old = new,
                // Unknown session (ended, or not this principal's), or no answer.
                _ => return None,
            }
        }
    }

    /// The tunnel's connection after `old`, if one comes within the grace period.
    async fn next_connection(&self, old: &Tunnel, give_up: Instant) -> Option<Arc<Tunnel>> {
        loop {
            if Instant::now() >= give_up {
                return None;
            }
            match self.registry.lookup(&self.name, self.grace) {
                Lookup::Live(t) if t.conn_id != old.conn_id && !t.closed.is_cancelled() => {
                    return Some(t);
                }
                // The old connection (or a successor already dropping) is still registered
                // for a moment.
                Lookup::Live(_) => tokio::time::sleep(CLOSING_POLL).await,
                Lookup::Away {
                    deadline,
                    reconnected,
                } => {
                    let until = deadline.min(give_up.into_std());
                    self.registry
                        .wait_for_bridge(&self.name, reconnected, until)
                        .await;
                }
                Lookup::Offline(_) | Lookup::Unknown => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::ClientAuth;
    use tokio::sync::mpsc;

    fn conn(
        conn_id: u64,
        token_id: i64,
        auth: ClientAuth,
        reattach: bool,
    ) -> (Tunnel, mpsc::Receiver<protocol::Frame>) {
        let (tx, rx) = mpsc::channel(8);
        let t = Tunnel::new("files".into(), conn_id, auth, token_id, tx, 16).carrying_sse(reattach);
        (t, rx)
    }

    #[test]
    fn only_the_same_bridge_carries_a_stream_on() {
        let bearer = ClientAuth::Bearer { sha256: [7; 32] };
        let (old, _a) = conn(1, 5, bearer.clone(), true);
        let (new, _b) = conn(2, 5, bearer.clone(), true);
        assert!(may_carry(&old, &new));
        // Not the same connection again.
        assert!(!may_carry(&old, &old));
        // A bridge of an earlier release, on either side, would take it for a new session.
        let (early, _c) = conn(2, 5, bearer.clone(), false);
        assert!(!may_carry(&old, &early));
        assert!(!may_carry(&early, &new));
        // The name now belongs to another bridge token.
        let (other, _d) = conn(2, 6, bearer.clone(), true);
        assert!(!may_carry(&old, &other));
        // The client authenticated under other rules than the new connection's.
        let (open, _e) = conn(2, 5, ClientAuth::None, true);
        assert!(!may_carry(&old, &open));
        let (other_token, _f) = conn(2, 5, ClientAuth::Bearer { sha256: [8; 32] }, true);
        assert!(!may_carry(&old, &other_token));
    }

    /// Installs `t` as the tunnel's connection.
    fn install(registry: &Registry, t: &Arc<Tunnel>, expected: Option<u64>) {
        registry.claim(&t.name, t.token_id, 16).expect("claim");
        registry.install_if(t.clone(), expected).expect("installed");
    }

    /// A registry whose tunnel's connection (number 1, of a bridge that carries HTTP+SSE
    /// streams) just dropped.
    fn after_a_cut() -> (Arc<Registry>, Arc<Tunnel>, impl Sized) {
        let registry = Arc::new(Registry::default());
        let (old, _old_rx) = conn(1, 5, ClientAuth::None, true);
        let old = Arc::new(old);
        install(&registry, &old, None);
        old.close();
        registry.remove("files", 1);
        (registry, old, _old_rx)
    }

    fn carry(registry: &Arc<Registry>, grace: Duration) -> Carry {
        Carry::new(registry.clone(), grace, "files".into(), "alice".into())
    }

    #[tokio::test]
    async fn the_stream_goes_on_over_the_next_connection() {
        let (registry, old, _old_rx) = after_a_cut();
        let (new, mut rx) = conn(2, 5, ClientAuth::None, true);
        let new = Arc::new(new);
        let task = {
            let registry = registry.clone();
            let old = old.clone();
            tokio::spawn(async move {
                carry(&registry, Duration::from_secs(10))
                    .reattach(old, "s-1")
                    .await
                    .map(|(ex, first)| (ex.id(), first))
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        install(&registry, &new, None);
        // The new bridge is asked to carry the session on, for the stream's principal.
        let Some(protocol::Frame::Request(r)) = rx.recv().await else {
            panic!("no request");
        };
        assert_eq!(r.kind, RequestKind::HttpSseOpen);
        assert_eq!(r.session.as_deref(), Some("s-1"));
        assert_eq!(r.principal, "alice");
        new.deliver(Response {
            exchange: r.exchange,
            status: 200,
            session: None,
            flags: protocol::frame::FLAG_STREAM,
            event_id: None,
            body: Bytes::new(),
        });
        let (id, first) = task.await.unwrap().expect("carried on");
        assert_eq!(id, r.exchange);
        assert!(first.wants_stream());
    }

    #[tokio::test]
    async fn a_refusal_or_no_bridge_ends_the_stream() {
        let (registry, old, _old_rx) = after_a_cut();
        // No bridge within the grace period.
        let started = Instant::now();
        let c = carry(&registry, Duration::from_millis(200));
        assert!(c.reattach(old.clone(), "s-1").await.is_none());
        assert!(started.elapsed() < Duration::from_secs(5));

        // A bridge that does not know the session (or not for this principal).
        let (new, mut rx) = conn(2, 5, ClientAuth::None, true);
        let new = Arc::new(new);
        install(&registry, &new, None);
        let bridge = {
            let new = new.clone();
            tokio::spawn(async move {
                let Some(protocol::Frame::Request(r)) = rx.recv().await else {
                    panic!("no request");
                };
                new.deliver(Response {
                    exchange: r.exchange,
                    status: 404,
                    session: None,
                    flags: protocol::frame::FLAG_FINAL,
                    event_id: None,
                    body: Bytes::from_static(b"{}"),
                });
                rx
            })
        };
        let c = carry(&registry, Duration::from_secs(10));
        assert!(c.reattach(old.clone(), "s-1").await.is_none());
        let _rx = bridge.await.unwrap();

        // A bridge of an earlier release is never asked.
        let (early, mut early_rx) = conn(3, 5, ClientAuth::None, false);
        let early = Arc::new(early);
        new.close();
        registry.remove("files", 2);
        install(&registry, &early, None);
        assert!(c.reattach(new.clone(), "s-1").await.is_none());
        assert!(early_rx.try_recv().is_err(), "nothing sent to it");
    }
}
