//! Tunnels moving between the nodes of a relay behind a load balancer. The balancer sends
//! a tunnel's requests and its bridge's connection to the node its name hashes to; when
//! that changes (a node joined or came back), the requests arrive at a node without the
//! bridge. That node asks for the tunnel ([`Event::Want`], through the shared store) and
//! waits for it like for a bridge that just left; the node holding the bridge lets the
//! tunnel's exchanges finish, then closes the bridge's connection, and the bridge
//! reconnects through the balancer, to where the requests now go.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::store::Store;
use crate::store::events::Event;
use crate::tunnels::tunnel::Tunnel;

/// A bridge connected for less than this is not handed over (it just moved).
pub const MIN_CONNECTED: Duration = Duration::from_secs(5);
/// At most one hand-over of a tunnel per this long (a flap guard).
pub const MIN_BETWEEN: Duration = Duration::from_secs(10);
/// Longest wait for a tunnel's exchanges to finish before its bridge is closed anyway.
pub const DRAIN: Duration = Duration::from_secs(10);
/// How often a node asks for a tunnel while its requests wait.
const WANT_EVERY: Duration = Duration::from_secs(1);

/// Asks the node holding `tunnel` to hand it over to `node` (at most once a second per
/// tunnel; `asked` keeps when).
pub async fn want(
    store: &Arc<Store>,
    asked: &std::sync::Mutex<HashMap<String, Instant>>,
    tunnel: &str,
    node: &str,
) {
    {
        let mut asked = protocol::sync::LockExt::locked(asked);
        if asked
            .get(tunnel)
            .is_some_and(|at| at.elapsed() < WANT_EVERY)
        {
            return;
        }
        if asked.len() >= 10_000 {
            asked.retain(|_, at| at.elapsed() < WANT_EVERY);
        }
        asked.insert(tunnel.to_owned(), Instant::now());
    }
    let event = Event::Want {
        tunnel: tunnel.to_owned(),
        node: node.to_owned(),
    };
    if let Err(e) = store.announce(&event).await {
        tracing::warn!(tunnel, "asking for the tunnel's bridge: {e}");
    }
}

/// Hands `tunnel` over to node `to`, unless it connected moments ago or was handed over
/// lately (`handed` keeps when): once its exchanges finish (at most [`DRAIN`]), its
/// bridge's connection is closed.
pub fn hand_over(tunnel: Arc<Tunnel>, to: &str, handed: &mut HashMap<String, Instant>) {
    let connected_for = SystemTime::now()
        .duration_since(tunnel.since)
        .unwrap_or_default();
    if connected_for < MIN_CONNECTED
        || handed
            .get(&tunnel.name)
            .is_some_and(|at| at.elapsed() < MIN_BETWEEN)
    {
        return;
    }
    handed.retain(|_, at| at.elapsed() < MIN_BETWEEN);
    handed.insert(tunnel.name.clone(), Instant::now());
    tracing::info!(
        tunnel = %tunnel.name,
        to,
        "handing the tunnel over: its requests go to another node now"
    );
    tokio::spawn(async move {
        let deadline = Instant::now() + DRAIN;
        while tunnel.exchanges_in_flight() > 0 && Instant::now() < deadline {
            if tokio::time::timeout(Duration::from_millis(25), tunnel.closed.cancelled())
                .await
                .is_ok()
            {
                return;
            }
        }
        tunnel.close();
    });
}
