//! A tunnel's asset exchanges: `GET`/`HEAD` of files under the local asset origin its
//! bridge publishes (`/<name>/assets/…`). Each is one [`Frame::AssetRequest`] answered by
//! one [`Frame::AssetResponse`]; they share the connection's exchange numbers, and a
//! dropped [`AssetFetch`] (the client went away, the relay gave up) tells the bridge with a
//! `Cancel`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use protocol::sync::LockExt;
use protocol::{AssetRequest, AssetResponse, Frame};
use tokio::sync::oneshot;

use super::tunnel::{OpenError, Tunnel};

/// Most asset fetches in flight on one tunnel (a page loads a few dozen files at most).
pub const MAX_ASSET_FETCHES: usize = 32;

/// The asset fetches open on one tunnel, by exchange number.
#[derive(Default)]
pub struct AssetExchanges {
    open: Mutex<HashMap<u64, oneshot::Sender<AssetResponse>>>,
}

impl AssetExchanges {
    /// Registers exchange `id`; at most [`MAX_ASSET_FETCHES`] at once.
    fn insert(&self, id: u64) -> Result<oneshot::Receiver<AssetResponse>, OpenError> {
        let mut open = self.open.locked();
        if open.len() >= MAX_ASSET_FETCHES {
            return Err(OpenError::Busy);
        }
        let (tx, rx) = oneshot::channel();
        open.insert(id, tx);
        Ok(rx)
    }

    /// Hands the bridge's answer to its fetch; `false` if no fetch waits for it.
    pub fn deliver(&self, answer: AssetResponse) -> bool {
        let tx = self.open.locked().remove(&answer.exchange);
        tx.is_some_and(|tx| tx.send(answer).is_ok())
    }

    /// Forgets exchange `id`; `true` if it was open.
    pub fn remove(&self, id: u64) -> bool {
        self.open.locked().remove(&id).is_some()
    }

    /// Fetches in flight.
    pub(super) fn len(&self) -> usize {
        self.open.locked().len()
    }

    /// Drops every fetch: they see the bridge as gone.
    pub fn clear(&self) {
        self.open.locked().clear();
    }
}

/// One asset fetch waiting for the bridge's answer.
pub struct AssetFetch {
    tunnel: Arc<Tunnel>,
    id: u64,
    rx: Option<oneshot::Receiver<AssetResponse>>,
}

impl AssetFetch {
    /// Sends `request` (its exchange number is assigned here) to the tunnel's bridge.
    pub async fn open(tunnel: &Arc<Tunnel>, mut request: AssetRequest) -> Result<Self, OpenError> {
        if tunnel.closed.is_cancelled() {
            return Err(OpenError::Gone);
        }
        let id = tunnel.next_exchange_id();
        let rx = tunnel.assets.insert(id)?;
        let fetch = AssetFetch {
            tunnel: tunnel.clone(),
            id,
            rx: Some(rx),
        };
        request.exchange = id;
        tunnel
            .send(Frame::AssetRequest(request))
            .await
            .map_err(|()| OpenError::Gone)?;
        Ok(fetch)
    }

    /// The bridge's answer; `None` when the connection ended first.
    pub async fn answer(&mut self) -> Option<AssetResponse> {
        let rx = self.rx.as_mut()?;
        let answer = rx.await.ok();
        self.rx = None;
        answer
    }
}

impl Drop for AssetFetch {
    fn drop(&mut self) {
        if self.rx.is_some() && self.tunnel.assets.remove(self.id) {
            let _ = self.tunnel.try_send(Frame::Cancel { exchange: self.id });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::ClientAuth;
    use tokio::sync::mpsc;

    fn request() -> AssetRequest {
        AssetRequest {
            exchange: 0,
            head: false,
            path: "/app.js".into(),
            headers: Vec::new(),
        }
    }

    fn answer(exchange: u64) -> AssetResponse {
        AssetResponse {
            exchange,
            status: 200,
            headers: vec![("content-type".into(), "text/javascript".into())],
            body: bytes::Bytes::from_static(b"1"),
        }
    }

    #[tokio::test]
    async fn an_answer_reaches_its_fetch_and_a_dropped_fetch_cancels() {
        let (tx, mut rx) = mpsc::channel(64);
        let t = Arc::new(Tunnel::new("abc".into(), 1, ClientAuth::None, 1, tx, 8));
        let mut fetch = AssetFetch::open(&t, request()).await.expect("open");
        let Some(Frame::AssetRequest(sent)) = rx.recv().await else {
            panic!("the bridge gets the request");
        };
        assert!(
            !t.assets.deliver(answer(sent.exchange + 1)),
            "not its number"
        );
        assert!(t.assets.deliver(answer(sent.exchange)));
        assert_eq!(fetch.answer().await.expect("answered").status, 200);
        drop(fetch);
        assert!(rx.try_recv().is_err(), "an answered fetch cancels nothing");

        let fetch = AssetFetch::open(&t, request()).await.expect("open");
        let Some(Frame::AssetRequest(sent)) = rx.recv().await else {
            panic!("the bridge gets the request");
        };
        drop(fetch);
        assert_eq!(
            rx.recv().await,
            Some(Frame::Cancel {
                exchange: sent.exchange
            })
        );
        assert_eq!(t.assets.len(), 0);
    }

    #[tokio::test]
    async fn fetches_are_bounded_and_end_with_the_connection() {
        let (tx, _rx) = mpsc::channel(256);
        let t = Arc::new(Tunnel::new("abc".into(), 1, ClientAuth::None, 1, tx, 8));
        let mut held = Vec::new();
        for _ in 0..MAX_ASSET_FETCHES {
            held.push(AssetFetch::open(&t, request()).await.expect("room"));
        }
        assert_eq!(
            AssetFetch::open(&t, request()).await.err(),
            Some(OpenError::Busy)
        );
        t.close();
        assert!(held[0].answer().await.is_none(), "the bridge is gone");
        assert_eq!(
            AssetFetch::open(&t, request()).await.err(),
            Some(OpenError::Gone)
        );
    }
}
