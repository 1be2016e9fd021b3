//! Every tunnel name a relay knows: who owns it, its live connection if any, and what the
//! relay may answer while its bridge is away (the last snapshot, since when it is gone).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use protocol::sync::LockExt;
use protocol::{BridgeStatus, ClientAuth, Snapshot};
use tokio::sync::Notify;

use crate::tunnels::tunnel::Tunnel;

/// One tunnel name.
struct Slot {
    /// The bridge token (store id) that last connected under the name.
    owner: i64,
    /// The live connection.
    current: Option<Arc<Tunnel>>,
    /// How clients authenticate (kept while offline, so offline answers stay protected).
    auth: ClientAuth,
    /// The bridge's last snapshot.
    snapshot: Option<Arc<Snapshot>>,
    /// The bridge's last reported gauges.
    status: BridgeStatus,
    /// When the last connection ended (monotonic, for the grace period).
    away_at: Option<Instant>,
    /// When the last connection ended (wall clock, for messages).
    away_since: Option<SystemTime>,
    /// When the current connection started.
    connected_since: Option<SystemTime>,
    /// Woken when a connection is installed.
    reconnected: Arc<Notify>,
}

/// What a request finds under a tunnel name.
pub enum Lookup {
    /// A bridge is connected.
    Live(Arc<Tunnel>),
    /// The bridge left moments ago; wait for it until `deadline`.
    Away {
        /// End of the grace period.
        deadline: Instant,
        /// Woken on reconnection.
        reconnected: Arc<Notify>,
    },
    /// The bridge is gone past the grace period.
    Offline(Offline),
    /// No bridge ever served this name here.
    Unknown,
}

/// A tunnel whose desktop is offline, or whose desktop's server is not reachable.
#[derive(Clone)]
pub struct Offline {
    /// How its clients authenticate.
    pub auth: ClientAuth,
    /// Since when it is offline.
    pub since: SystemTime,
    /// The last snapshot, if any.
    pub snapshot: Option<Arc<Snapshot>>,
    /// What is away.
    pub away: Away,
}

/// What is away when a tunnel is answered offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Away {
    /// The desktop: no bridge is connected.
    Desktop,
    /// The local MCP server: the bridge is connected and reports it unreachable.
    Server,
}

/// Why a tunnel could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// The relay holds its maximum number of tunnel names.
    Full,
}

/// The name's connection changed since it was looked at (or the name was never claimed):
/// look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("another connection changed the tunnel first")]
pub struct Raced;

/// Status of one tunnel, for the status route.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TunnelStatus {
    /// Whether a bridge is connected.
    pub connected: bool,
    /// Seconds since the Unix epoch when the current connection started.
    pub connected_since: Option<u64>,
    /// Seconds since the Unix epoch when the bridge went away.
    pub offline_since: Option<u64>,
    /// Seconds since the Unix epoch since when the connected bridge reports its local MCP
    /// server not reachable (an HTTP server that is down); `None` while it answers.
    pub server_unreachable_since: Option<u64>,
    /// Exchanges in flight at the relay.
    pub exchanges: usize,
    /// The bridge's gauges (as last reported).
    pub bridge: BridgeGauges,
}

/// Serialisable copy of [`BridgeStatus`].
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct BridgeGauges {
    /// Sessions.
    pub sessions: u32,
    /// Requests in flight on server processes.
    pub pending: u32,
    /// Open exchanges at the bridge.
    pub exchanges: u32,
    /// Server processes.
    pub children: u32,
    /// Restarts of server processes.
    pub restarts: u32,
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// All tunnel names of a relay.
pub struct Registry {
    slots: Mutex<HashMap<String, Slot>>,
    next_conn: AtomicU64,
    /// Requests waiting for a bridge under a name this node has no slot for (its bridge
    /// is on another node, asked to move here): woken when one is installed.
    arrivals: Mutex<HashMap<String, Arc<Notify>>>,
    /// The relay is stopping: `/readyz` says so, so that load balancers stop sending work.
    draining: std::sync::atomic::AtomicBool,
}

impl Default for Registry {
    /// Connections are numbered from a random start: their exchange numbers name
    /// resumable streams (SSE event ids) that a bridge keeps across relay restarts, so a
    /// restarted relay must not reuse the numbers of its previous run.
    fn default() -> Self {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        Self {
            slots: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(u64::from(u32::from_le_bytes(b) >> 2)),
            arrivals: Mutex::new(HashMap::new()),
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Registry {
    /// A fresh connection number.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Makes room for `name`, held by the token with this id. Ownership itself is decided
    /// by the store (which survives restarts); a change of owner here only drops the
    /// previous owner's snapshot.
    pub fn claim(&self, name: &str, token_id: i64, max: usize) -> Result<(), ClaimError> {
        let mut slots = self.slots.locked();
        let full = slots.len() >= max;
        match slots.get_mut(name) {
            Some(slot) => {
                if slot.owner != token_id {
                    // The operator released the name and another token claimed it.
                    slot.owner = token_id;
                    slot.snapshot = None;
                }
                Ok(())
            }
            None if full => Err(ClaimError::Full),
            None => {
                slots.insert(
                    name.to_owned(),
                    Slot {
                        owner: token_id,
                        current: None,
                        auth: ClientAuth::None,
                        snapshot: None,
                        status: BridgeStatus::default(),
                        away_at: None,
                        away_since: None,
                        connected_since: None,
                        reconnected: Arc::new(Notify::new()),
                    },
                );
                Ok(())
            }
        }
    }

    /// Installs a connection for a claimed name if the name's current connection is still
    /// `expected` (its number; `None`: no connection). The previous connection, if any, is
    /// returned (not closed: the caller says why it is replaced).
    pub fn install_if(
        &self,
        tunnel: Arc<Tunnel>,
        expected: Option<u64>,
    ) -> Result<Option<Arc<Tunnel>>, Raced> {
        let name = tunnel.name.clone();
        let (old, notify) = {
            let mut slots = self.slots.locked();
            let Some(slot) = slots.get_mut(&name) else {
                return Err(Raced);
            };
            let current = slot
                .current
                .as_ref()
                .filter(|t| !t.closed.is_cancelled())
                .map(|t| t.conn_id);
            if current != expected {
                return Err(Raced);
            }
            slot.auth = tunnel.auth.clone();
            slot.away_at = None;
            slot.away_since = None;
            slot.connected_since = Some(SystemTime::now());
            (slot.current.replace(tunnel), slot.reconnected.clone())
        };
        notify.notify_waiters();
        if let Some(waiting) = self.arrivals.locked().remove(&name) {
            waiting.notify_waiters();
        }
        Ok(old)
    }

    /// Marks the relay as stopping (see [`Self::draining`]).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the relay is stopping: it still serves, but takes no new work gladly.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Waits until a bridge is installed under `name` (a name this node has no bridge
    /// for) or `until`; the caller looks again.
    pub async fn wait_for_arrival(&self, name: &str, until: Instant) {
        let signal = {
            let mut arrivals = self.arrivals.locked();
            if arrivals.len() >= 10_000 {
                arrivals.retain(|_, n| Arc::strong_count(n) > 1);
            }
            arrivals
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(Notify::new()))
                .clone()
        };
        let notified = signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.get(name).is_some() {
            return;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(until.into()) => {}
        }
    }

    /// Marks a connection gone, if it is still the current one.
    pub fn remove(&self, name: &str, conn_id: u64) {
        let mut slots = self.slots.locked();
        if let Some(slot) = slots.get_mut(name)
            && slot.current.as_ref().map(|t| t.conn_id) == Some(conn_id)
        {
            slot.current = None;
            slot.away_at = Some(Instant::now());
            slot.away_since = Some(SystemTime::now());
            slot.connected_since = None;
        }
    }

    /// The bridge's last snapshot for `name`, whether its bridge is connected or not.
    pub fn snapshot(&self, name: &str) -> Option<Arc<Snapshot>> {
        self.slots
            .locked()
            .get(name)
            .and_then(|s| s.snapshot.clone())
    }

    /// Stores a bridge's snapshot.
    pub fn set_snapshot(&self, name: &str, snapshot: Snapshot) {
        if let Some(slot) = self.slots.locked().get_mut(name) {
            slot.snapshot = Some(Arc::new(snapshot));
        }
    }

    /// Stores a bridge's gauges.
    pub fn set_status(&self, name: &str, status: BridgeStatus) {
        if let Some(slot) = self.slots.locked().get_mut(name) {
            slot.status = status;
        }
    }

    /// What a request for `name` finds, with a grace period after a disconnect.
    pub fn lookup(&self, name: &str, grace: Duration) -> Lookup {
        let slots = self.slots.locked();
        let Some(slot) = slots.get(name) else {
            return Lookup::Unknown;
        };
        if let Some(t) = &slot.current {
            return Lookup::Live(t.clone());
        }
        match (slot.away_at, slot.away_since) {
            (Some(at), _) if at.elapsed() < grace => Lookup::Away {
                deadline: at + grace,
                reconnected: slot.reconnected.clone(),
            },
            (_, Some(since)) => Lookup::Offline(Offline {
                auth: slot.auth.clone(),
                since,
                snapshot: slot.snapshot.clone(),
                away: Away::Desktop,
            }),
            _ => Lookup::Unknown,
        }
    }

    /// What a request for `name` finds once any grace period is over: [`Lookup::Live`]
    /// (also a bridge that came back within it), [`Lookup::Offline`] or
    /// [`Lookup::Unknown`], never [`Lookup::Away`].
    pub async fn settled(&self, name: &str, grace: Duration) -> Lookup {
        loop {
            match self.lookup(name, grace) {
                Lookup::Away {
                    deadline,
                    reconnected,
                } => self.wait_for_bridge(name, reconnected, deadline).await,
                found => return found,
            }
        }
    }

    /// Waits, for a tunnel whose bridge is away ([`Lookup::Away`]), until a bridge
    /// connects (`reconnected` is its slot's signal) or `until`; the caller looks again.
    /// A connection made between the lookup and this call is not missed.
    pub async fn wait_for_bridge(&self, name: &str, reconnected: Arc<Notify>, until: Instant) {
        let notified = reconnected.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.get(name).is_some() {
            return;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(until.into()) => {}
        }
    }

    /// What to answer from while `tunnel`'s bridge reports its local server unreachable;
    /// `None` while the server answers.
    pub fn server_away(&self, tunnel: &Tunnel) -> Option<Offline> {
        let since = tunnel.server_down_since()?;
        let snapshot = self
            .slots
            .locked()
            .get(&tunnel.name)
            .and_then(|s| s.snapshot.clone());
        Some(Offline {
            auth: tunnel.auth.clone(),
            since,
            snapshot,
            away: Away::Server,
        })
    }

    /// The live tunnel with this name.
    pub fn get(&self, name: &str) -> Option<Arc<Tunnel>> {
        self.slots
            .locked()
            .get(name)
            .and_then(|s| s.current.clone())
    }

    /// Status of a tunnel name.
    pub fn status(&self, name: &str) -> Option<(ClientAuth, TunnelStatus)> {
        let slots = self.slots.locked();
        let slot = slots.get(name)?;
        let s = slot.status;
        Some((
            slot.auth.clone(),
            TunnelStatus {
                connected: slot.current.is_some(),
                connected_since: slot.connected_since.map(epoch),
                offline_since: slot.away_since.map(epoch),
                server_unreachable_since: slot
                    .current
                    .as_ref()
                    .and_then(|t| t.server_down_since())
                    .map(epoch),
                exchanges: slot
                    .current
                    .as_ref()
                    .map(|t| t.exchanges_in_flight())
                    .unwrap_or(0),
                bridge: BridgeGauges {
                    sessions: s.sessions,
                    pending: s.pending,
                    exchanges: s.exchanges,
                    children: s.children,
                    restarts: s.restarts,
                },
            },
        ))
    }

    /// The live tunnels.
    pub fn live(&self) -> Vec<Arc<Tunnel>> {
        self.slots
            .locked()
            .values()
            .filter_map(|s| s.current.clone())
            .collect()
    }

    /// Number of connected tunnels.
    pub fn connected(&self) -> usize {
        self.slots
            .locked()
            .values()
            .filter(|s| s.current.is_some())
            .count()
    }

    /// Exchanges in flight over all tunnels.
    pub fn exchanges_in_flight(&self) -> usize {
        self.slots
            .locked()
            .values()
            .filter_map(|s| s.current.as_ref())
            .map(|t| t.exchanges_in_flight())
            .sum()
    }
}
