//! A second connection of a tunnel on another node. On one node, a bridge claiming a
//! tunnel whose connection is live is refused, and one whose connection stays silent
//! (a machine that slept) takes it over ([`super::socket`]). With nodes sharing a store,
//! the newcomer may reach a node other than the holder's (the load balancer's hash
//! changed): its node asks the holder, through the store's announcements, to probe the
//! connection, and the same rule applies. The holder says at once that it is probing; a
//! holder that says nothing (its node died) lets the newcomer take over without a wait
//! for the probe.

use std::sync::Arc;
use std::time::Duration;

use protocol::{Frame, Refusal, RefuseReason};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::store::Store;
use crate::store::events::{Event, ProbeAnswer};
use crate::tunnels::registry::Registry;
use crate::tunnels::tunnel::Tunnel;

use super::state::LinkState;

/// How long the newcomer's node waits for the holder to say it is probing.
const FIRST_ANSWER: Duration = Duration::from_secs(1);

/// Whether `tunnel` (connected here, not yet installed) may take its name from the node
/// holding it, if another node does: `Err(holder)` when the holder's connection answered.
pub async fn from_other_node(
    state: &LinkState,
    tunnel: &Tunnel,
    probe_timeout: Duration,
) -> Result<(), String> {
    let store = &state.store;
    let me = &state.config.node_id;
    if !store.announces() {
        return Ok(());
    }
    let Ok(Some(presence)) = store.presence(&tunnel.name).await else {
        return Ok(());
    };
    if &presence.node == me || presence.gone_since(protocol::time::now_ms()).is_some() {
        return Ok(());
    }
    let Some(mut events) = store.subscribe() else {
        return Ok(());
    };
    let probe = Event::Probe {
        tunnel: tunnel.name.clone(),
        from: me.clone(),
        holder: presence.node.clone(),
        token: tunnel.token_id,
    };
    if let Err(e) = store.announce(&probe).await {
        // The holder cannot be asked: as if its connection stayed silent.
        tracing::warn!(tunnel = %tunnel.name, "asking the tunnel's node to probe its bridge: {e}");
        return Ok(());
    }
    let mut deadline = Instant::now() + FIRST_ANSWER;
    loop {
        let heard = match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return Ok(()),
            Ok(Err(RecvError::Closed)) => return Ok(()),
            Ok(Err(RecvError::Lagged(_))) => continue,
            Ok(Ok(e)) => e,
        };
        let Event::Probed {
            tunnel: name,
            node,
            answer,
        } = heard
        else {
            continue;
        };
        if name != tunnel.name || &node != me {
            continue;
        }
        match answer {
            ProbeAnswer::Probing => {
                deadline = Instant::now() + probe_timeout + FIRST_ANSWER;
            }
            ProbeAnswer::Live => return Err(presence.node),
            ProbeAnswer::Gone => return Ok(()),
        }
    }
}

/// The holder's side of [`from_other_node`]: node `from` has a newcomer for `tunnel`
/// with bridge token `token`. A connection of another token is closed (the name changed
/// hands); one of the same token is probed, and closed if it stays silent; the answer
/// goes back through the store.
pub fn answer(
    registry: &Arc<Registry>,
    store: &Arc<Store>,
    tunnel: String,
    from: String,
    token: i64,
    probe_timeout: Duration,
) {
    let held = registry.get(&tunnel).filter(|t| !t.closed.is_cancelled());
    let store = store.clone();
    tokio::spawn(async move {
        let say = |answer| Event::Probed {
            tunnel: tunnel.clone(),
            node: from.clone(),
            answer,
        };
        let answer = match held {
            None => ProbeAnswer::Gone,
            Some(old) if old.token_id != token => {
                tracing::info!(
                    tunnel = %tunnel,
                    node = %from,
                    "the tunnel's name now belongs to another bridge token, connected through another node; closing this connection"
                );
                old.displace(refused(format!(
                    "tunnel {tunnel:?} now belongs to another bridge token (the relay's \
                     operator released the name); this connection was closed"
                )));
                ProbeAnswer::Gone
            }
            Some(old) => {
                let _ = store.announce(&say(ProbeAnswer::Probing)).await;
                probe(&old, &from, probe_timeout).await
            }
        };
        if let Err(e) = store.announce(&say(answer)).await {
            tracing::warn!(tunnel = %tunnel, "answering another node's probe: {e}");
        }
    });
}

/// Probes `old` for a newcomer on node `from`: warns it if it answers, closes it (saying
/// why) if it stays silent.
async fn probe(old: &Tunnel, from: &str, probe_timeout: Duration) -> ProbeAnswer {
    let now = protocol::time::readable_ms(protocol::time::now_ms());
    let name = &old.name;
    if old.answers_probe(probe_timeout).await {
        tracing::warn!(
            tunnel = %name,
            node = %from,
            holder = %old.peer,
            "a second bridge with this tunnel's token, connected through another node, was refused: the connected bridge answered"
        );
        let _ = old.try_send(refused(format!(
            "WARNING: at {now} a bridge connecting through relay node {from} tried to take \
             over tunnel {name:?} with this bridge's token; it was refused because this \
             bridge answered. If that was not you, the bridge token has leaked: revoke it on \
             the relay (`relay token revoke LABEL`) and create a new one"
        )));
        ProbeAnswer::Live
    } else {
        tracing::warn!(
            tunnel = %name,
            node = %from,
            replaced = %old.peer,
            "the tunnel's bridge did not answer a probe; a new connection through another node replaced it"
        );
        old.displace(refused(format!(
            "WARNING: at {now} tunnel {name:?} was taken over by a bridge connecting through \
             relay node {from} with this bridge's token, because this connection did not \
             answer for {probe_timeout:?} (the machine slept or its network changed?). If \
             that was not you, the bridge token has leaked: revoke it on the relay (`relay \
             token revoke LABEL`) and create a new one"
        )));
        ProbeAnswer::Gone
    }
}

fn refused(message: String) -> Frame {
    Frame::Refused(Refusal {
        reason: RefuseReason::NameTaken,
        message,
    })
}
