//! A tunnel's asset exchanges: `GET`/`HEAD` of files under the local asset origin its
//! bridge publishes (`/<name>/assets/…`). Each is one `Frame::AssetRequest` answered by one
//! `Frame::AssetResponse`; they share the connection's exchange numbers. This file keeps
//! the fetches waiting for their answer; `tunnel.rs` opens them (`AssetFetch`), and a
//! dropped one (the client went away, the relay gave up) tells the bridge with a `Cancel`.

use std::collections::HashMap;
use std::sync::Mutex;

use protocol::AssetResponse;
use protocol::sync::LockExt;
use tokio::sync::oneshot;

/// Most asset fetches in flight on one tunnel (a page loads a few dozen files at most).
pub const MAX_ASSET_FETCHES: usize = 32;

/// The asset fetches open on one tunnel, by exchange number.
#[derive(Default)]
pub struct AssetExchanges {
    open: Mutex<HashMap<u64, oneshot::Sender<AssetResponse>>>,
}

impl AssetExchanges {
    /// Registers exchange `id`; `None` when [`MAX_ASSET_FETCHES`] are open already.
    pub(super) fn insert(&self, id: u64) -> Option<oneshot::Receiver<AssetResponse>> {
        let mut open = self.open.locked();
        if open.len() >= MAX_ASSET_FETCHES {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        open.insert(id, tx);
        Some(rx)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(exchange: u64) -> AssetResponse {
        AssetResponse {
            exchange,
            status: 200,
            headers: Vec::new(),
            body: bytes::Bytes::new(),
        }
    }

    #[test]
    fn an_answer_reaches_only_its_fetch_and_fetches_are_bounded() {
        let a = AssetExchanges::default();
        let mut rx = a.insert(7).expect("room");
        assert!(!a.deliver(answer(8)), "not its number");
        assert!(a.deliver(answer(7)));
        assert_eq!(rx.try_recv().expect("answered").exchange, 7);
        let held: Vec<_> = (0..MAX_ASSET_FETCHES as u64).map(|n| a.insert(n)).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(a.insert(99).is_none(), "bounded");
        assert!(a.remove(0));
        assert!(!a.remove(0));
        a.clear();
        assert_eq!(a.len(), 0);
    }
}
