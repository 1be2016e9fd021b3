//! Connected tunnels and their exchanges.
//!
//! A [`Tunnel`] is one live bridge connection. Each public HTTP exchange gets a number and
//! a bounded channel; the connection's reader puts the bridge's [`Response`] frames for
//! that number into the channel, and the HTTP handler turns them into an HTTP answer.
//! Dropping an [`Exchange`] before its final frame (the client went away) tells the
//! bridge with a `Cancel` frame.

use protocol::sync::LockExt;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use protocol::{AssetRequest, AssetResponse, ClientAuth, Frame, Request, Response};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::assets::AssetExchanges;

/// Frames buffered per exchange before the exchange is considered stalled.
const EXCHANGE_QUEUE: usize = 256;
/// The value of a liveness probe's `Ping` (the relay's periodic pings count from 1).
const PROBE_PING: u64 = u64::MAX;

/// One connected bridge serving one tunnel name.
pub struct Tunnel {
    /// The tunnel name.
    pub name: String,
    /// Distinguishes successive connections under the same name.
    pub conn_id: u64,
    /// How this tunnel's clients authenticate.
    pub auth: ClientAuth,
    /// The bridge token (store id) that connected it.
    pub token_id: i64,
    /// Frames to the bridge (the connection's writer drains it).
    outbound: mpsc::Sender<Frame>,
    /// Open exchanges: number → where their response frames go, and who opened them.
    exchanges: Mutex<OpenExchanges>,
    next_exchange: AtomicU64,
    max_exchanges: usize,
    /// Cancelled when the connection ends or is replaced.
    pub closed: CancellationToken,
    /// The bridge's address (behind a local reverse proxy, the one it forwarded).
    pub peer: IpAddr,
    /// When the connection was admitted.
    pub since: SystemTime,
    /// Messages received from the bridge (any kind): a probe watches it move.
    heard: AtomicU64,
    /// Probes waiting for the bridge to say something.
    probing: AtomicUsize,
    probe: Notify,
    /// The last frame to send before closing (why the connection is being replaced).
    farewell: Mutex<Option<Frame>>,
    /// The bridge announced [`protocol::FEATURE_SSE_REATTACH`]: it keeps HTTP+SSE
    /// sessions across a reconnect (see [`crate::tunnels::http_sse`]).
    pub sse_reattach: bool,
    /// Since when (seconds since the Unix epoch) the bridge's local server is not
    /// reachable, as the bridge reported ([`Frame::ServerHealth`]); 0 while it answers.
    server_down: AtomicU64,
    /// The bridge announced [`protocol::FEATURE_ASSETS`]: it publishes a local asset origin.
    pub serves_assets: bool,
    /// Asset fetches in flight.
    pub(super) assets: AssetExchanges,
}

/// The exchanges open on one tunnel, counted per principal so that no one client can hold
/// them all: a principal may hold at most half of the tunnel's exchanges (so one authorized
/// client with thousands of idle streams still leaves room for every other client).
#[derive(Default)]
struct OpenExchanges {
    open: HashMap<u64, (mpsc::Sender<Response>, Arc<str>)>,
    by_principal: HashMap<Arc<str>, usize>,
}

impl OpenExchanges {
    /// Most exchanges one principal may hold on a tunnel allowing `max` in all.
    fn per_principal(max: usize) -> usize {
        (max / 2).max(1)
    }

    fn insert(
        &mut self,
        id: u64,
        tx: mpsc::Sender<Response>,
        principal: &str,
        max: usize,
    ) -> Result<(), OpenError> {
        if self.open.len() >= max {
            return Err(OpenError::Busy);
        }
        let held = self.by_principal.get(principal).copied().unwrap_or(0);
        if held >= Self::per_principal(max) {
            return Err(OpenError::PrincipalBusy);
        }
        let principal: Arc<str> = match self.by_principal.get_key_value(principal) {
            Some((k, _)) => k.clone(),
            None => Arc::from(principal),
        };
        *self.by_principal.entry(principal.clone()).or_insert(0) += 1;
        self.open.insert(id, (tx, principal));
        Ok(())
    }

    fn get(&self, id: u64) -> Option<mpsc::Sender<Response>> {
        self.open.get(&id).map(|(tx, _)| tx.clone())
    }

    fn remove(&mut self, id: u64) -> Option<mpsc::Sender<Response>> {
        let (tx, principal) = self.open.remove(&id)?;
        if let Some(n) = self.by_principal.get_mut(&principal) {
            *n -= 1;
            if *n == 0 {
                self.by_principal.remove(&principal);
            }
        }
        Some(tx)
    }

    fn len(&self) -> usize {
        self.open.len()
    }

    fn clear(&mut self) {
        self.open.clear();
        self.by_principal.clear();
    }
}

/// Why an exchange could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// The bridge connection is gone.
    Gone,
    /// Too many exchanges in flight.
    Busy,
    /// Too many exchanges in flight for this client (principal).
    PrincipalBusy,
}

impl Tunnel {
    /// Creates a tunnel around a connection's outbound queue.
    pub fn new(
        name: String,
        conn_id: u64,
        auth: ClientAuth,
        token_id: i64,
        outbound: mpsc::Sender<Frame>,
        max_exchanges: usize,
    ) -> Self {
        // Number exchanges from a value no earlier connection used, so a late answer
        // meant for a previous connection can never match a new exchange.
        let first = conn_id << 32;
        Self {
            name,
            conn_id,
            auth,
            token_id,
            outbound,
            exchanges: Mutex::new(OpenExchanges::default()),
            next_exchange: AtomicU64::new(first.max(1)),
            max_exchanges,
            closed: CancellationToken::new(),
            peer: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            since: SystemTime::now(),
            heard: AtomicU64::new(0),
            probing: AtomicUsize::new(0),
            probe: Notify::new(),
            farewell: Mutex::new(None),
            sse_reattach: false,
            server_down: AtomicU64::new(0),
            serves_assets: false,
            assets: AssetExchanges::default(),
        }
    }

    /// The same tunnel, noting the bridge's address.
    pub fn with_peer(mut self, peer: IpAddr) -> Self {
        self.peer = peer;
        self
    }

    /// The same tunnel, noting whether its bridge carries HTTP+SSE streams across a
    /// reconnect.
    pub fn carrying_sse(mut self, yes: bool) -> Self {
        self.sse_reattach = yes;
        self
    }

    /// The same tunnel, noting whether its bridge publishes a local asset origin.
    pub fn serving_assets(mut self, yes: bool) -> Self {
        self.serves_assets = yes;
        self
    }

    /// Records what the bridge reported of its local server.
    pub fn set_server_down(&self, since: Option<u64>) {
        self.server_down
            .store(since.unwrap_or(0), Ordering::Relaxed);
    }

    /// Since when the bridge's local server is not reachable, if it is not.
    pub fn server_down_since(&self) -> Option<SystemTime> {
        match self.server_down.load(Ordering::Relaxed) {
            0 => None,
            s => Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s)),
        }
    }

    /// Notes a message from the bridge (the connection's reader calls it for each one).
    pub fn heard(&self) {
        self.heard.fetch_add(1, Ordering::SeqCst);
        if self.probing.load(Ordering::Relaxed) > 0 {
            self.probe.notify_waiters();
        }
    }

    /// Sends the bridge a ping and waits up to `within` for any message from it: whether
    /// the connection is alive (a half-open connection of a machine that slept or changed
    /// networks stays silent).
    pub async fn answers_probe(&self, within: Duration) -> bool {
        if self.closed.is_cancelled() {
            return false;
        }
        self.probing.fetch_add(1, Ordering::SeqCst);
        let before = self.heard.load(Ordering::SeqCst);
        let deadline = tokio::time::sleep(within);
        tokio::pin!(deadline);
        let mut pinged = false;
        let alive = loop {
            let notified = self.probe.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.heard.load(Ordering::SeqCst) != before {
                break true;
            }
            if !pinged {
                pinged = true;
                // A full queue means the bridge is not reading: no answer will come, and
                // the deadline decides.
                let _ = self.try_send(Frame::Ping(PROBE_PING));
            }
            tokio::select! {
                _ = notified => {}
                _ = &mut deadline => break false,
                _ = self.closed.cancelled() => break false,
            }
        };
        self.probing.fetch_sub(1, Ordering::SeqCst);
        alive
    }

    /// Closes the connection after sending `farewell` (why it is being replaced).
    pub fn displace(&self, farewell: Frame) {
        *self.farewell.locked() = Some(farewell);
        self.close();
    }

    /// The frame to send before closing, if the connection is being replaced.
    pub fn take_farewell(&self) -> Option<Frame> {
        self.farewell.locked().take()
    }

    /// Sends a request to the bridge and returns the handle its answer arrives on.
    pub async fn open(self: &Arc<Self>, mut request: Request) -> Result<Exchange, OpenError> {
        if self.closed.is_cancelled() {
            return Err(OpenError::Gone);
        }
        let id = self.next_exchange_id();
        let (tx, rx) = mpsc::channel(EXCHANGE_QUEUE);
        {
            let mut map = self.exchanges.locked();
            map.insert(id, tx, &request.principal, self.max_exchanges)?;
        }
        let exchange = Exchange {
            tunnel: self.clone(),
            id,
            rx,
            done: false,
        };
        request.exchange = id;
        self.outbound
            .send(Frame::Request(request))
            .await
            .map_err(|_| OpenError::Gone)?;
        Ok(exchange)
    }

    /// A new exchange number (MCP exchanges and asset fetches share them).
    pub(super) fn next_exchange_id(&self) -> u64 {
        self.next_exchange.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a frame to the bridge, waiting for room; `Err` when the connection is gone.
    pub(super) async fn send(&self, frame: Frame) -> Result<(), ()> {
        self.outbound.send(frame).await.map_err(|_| ())
    }

    /// Hands an asset answer from the bridge to its fetch (none waits for a late one).
    pub fn deliver_asset(&self, answer: protocol::AssetResponse) {
        self.assets.deliver(answer);
    }

    /// Delivers a response frame from the bridge to its exchange. Returns `false` when
    /// the exchange's client is not keeping up (its queue is full); the exchange is then
    /// abandoned and the bridge told so.
    pub fn deliver(&self, response: Response) -> bool {
        let id = response.exchange;
        let is_final = response.is_final();
        let tx = {
            let mut map = self.exchanges.locked();
            if is_final {
                map.remove(id)
            } else {
                map.get(id)
            }
        };
        let Some(tx) = tx else {
            // The client already went away; the bridge learns it from our Cancel.
            return true;
        };
        match tx.try_send(response) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.exchanges.locked().remove(id);
                let _ = self.outbound.try_send(Frame::Cancel { exchange: id });
                false
            }
        }
    }

    /// Ends an exchange from the bridge's side (a `Cancel` frame from it).
    pub fn abandon(&self, id: u64) {
        if self.exchanges.locked().remove(id).is_none() {
            self.assets.remove(id);
        }
    }

    /// Number of exchanges in flight (asset fetches included).
    pub fn exchanges_in_flight(&self) -> usize {
        self.exchanges.locked().len() + self.assets.len()
    }

    /// Queues a frame to the bridge without waiting; `false` if the queue is full or gone.
    pub fn try_send(&self, frame: Frame) -> bool {
        self.outbound.try_send(frame).is_ok()
    }

    /// Drops every exchange: their handlers see the bridge as gone.
    pub fn close(&self) {
        self.closed.cancel();
        self.exchanges.locked().clear();
        self.assets.clear();
    }
}

/// The receiving end of one exchange. Dropping it before the final frame cancels the
/// exchange at the bridge.
pub struct Exchange {
    tunnel: Arc<Tunnel>,
    id: u64,
    rx: mpsc::Receiver<Response>,
    done: bool,
}

impl Exchange {
    /// The exchange number (it names a resumable stream in SSE event ids).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Next frame of the answer; `None` when the bridge connection is gone or the
    /// exchange was abandoned.
    pub async fn next(&mut self) -> Option<Response> {
        if self.done {
            return None;
        }
        let r = self.rx.recv().await;
        match &r {
            Some(resp) if resp.is_final() => self.done = true,
            None => self.done = true,
            _ => {}
        }
        r
    }

    /// Whether the final frame was received.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The tunnel this exchange runs on.
    pub fn tunnel(&self) -> &Arc<Tunnel> {
        &self.tunnel
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.done {
            let removed = self.tunnel.exchanges.locked().remove(self.id).is_some();
            if removed {
                let _ = self.tunnel.try_send(Frame::Cancel { exchange: self.id });
            }
        }
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
        let rx = tunnel.assets.insert(id).ok_or(OpenError::Busy)?;
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

    fn request(principal: &str) -> Request {
        Request {
            exchange: 0,
            kind: protocol::RequestKind::Get,
            session: None,
            protocol_version: None,
            last_event_id: None,
            principal: principal.into(),
            body: bytes::Bytes::new(),
        }
    }

    #[tokio::test]
    async fn one_client_cannot_hold_every_exchange() {
        let (tx, _rx) = mpsc::channel(64);
        let t = Arc::new(Tunnel::new("abc".into(), 1, ClientAuth::None, 1, tx, 8));
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(t.open(request("greedy")).await.expect("within its share"));
        }
        assert_eq!(
            t.open(request("greedy")).await.err(),
            Some(OpenError::PrincipalBusy)
        );
        // Everyone else is still served, up to the tunnel's own limit.
        let mut others = Vec::new();
        for n in 0..4 {
            others.push(t.open(request(&format!("other-{n}"))).await.expect("room"));
        }
        assert_eq!(t.open(request("late")).await.err(), Some(OpenError::Busy));
        // Finished exchanges give the greedy client its share back.
        held.pop();
        others.pop();
        let again = t.open(request("greedy")).await;
        assert!(again.is_ok());
        assert_eq!(t.exchanges_in_flight(), 7);
    }

    fn tunnel() -> (Arc<Tunnel>, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(8);
        let t = Tunnel::new("probe-me".into(), 1, ClientAuth::None, 1, tx, 16);
        (Arc::new(t), rx)
    }

    #[tokio::test]
    async fn a_probe_sees_an_answer() {
        let (t, mut rx) = tunnel();
        let bridge = {
            let t = t.clone();
            tokio::spawn(async move {
                // The bridge answers the probe's ping.
                let f = rx.recv().await;
                assert_eq!(f, Some(Frame::Ping(PROBE_PING)));
                t.heard();
                rx
            })
        };
        assert!(t.answers_probe(Duration::from_secs(30)).await);
        let _rx = bridge.await.unwrap();
    }

    #[tokio::test]
    async fn a_silent_or_closed_connection_fails_the_probe() {
        let (t, _rx) = tunnel();
        assert!(!t.answers_probe(Duration::from_millis(200)).await);
        let (t, _rx) = tunnel();
        t.close();
        assert!(!t.answers_probe(Duration::from_secs(30)).await);
    }

    fn asset_request() -> AssetRequest {
        AssetRequest {
            exchange: 0,
            head: false,
            path: "/app.js".into(),
            headers: Vec::new(),
        }
    }

    fn asset_answer(exchange: u64) -> protocol::AssetResponse {
        protocol::AssetResponse {
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
        let mut fetch = AssetFetch::open(&t, asset_request()).await.expect("open");
        let Some(Frame::AssetRequest(sent)) = rx.recv().await else {
            panic!("the bridge gets the request");
        };
        assert!(
            !t.assets.deliver(asset_answer(sent.exchange + 1)),
            "not its number"
        );
        assert!(t.assets.deliver(asset_answer(sent.exchange)));
        assert_eq!(fetch.answer().await.expect("answered").status, 200);
        drop(fetch);
        assert!(rx.try_recv().is_err(), "an answered fetch cancels nothing");

        let fetch = AssetFetch::open(&t, asset_request()).await.expect("open");
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
        for _ in 0..super::super::assets::MAX_ASSET_FETCHES {
            held.push(AssetFetch::open(&t, asset_request()).await.expect("room"));
        }
        assert_eq!(
            AssetFetch::open(&t, asset_request()).await.err(),
            Some(OpenError::Busy)
        );
        t.close();
        assert!(held[0].answer().await.is_none(), "the bridge is gone");
        assert_eq!(
            AssetFetch::open(&t, asset_request()).await.err(),
            Some(OpenError::Gone)
        );
    }
}
