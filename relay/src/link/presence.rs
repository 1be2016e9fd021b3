//! A tunnel's presence in a store several nodes share: which node holds its bridge and how
//! its clients authenticate, so that every node knows the tunnel (its OAuth metadata and
//! authorization endpoint answer on any node). Written off the connection's path; a failed
//! write only costs the other nodes that knowledge. A store of one node's own (SQLite)
//! keeps none: the node's registry is the whole truth.

use std::sync::Arc;

use protocol::ClientAuth;
use tokio::sync::Semaphore;

/// Writes of presence and snapshots (and bridges' consent decisions) running at once, on
/// this node: a bridge that sends frames in a loop cannot take the database's connections
/// from everyone else. A write over the limit is dropped (the next one carries the news).
static WRITES: Semaphore = Semaphore::const_new(16);

/// A permit to write, if one is free.
pub fn write_permit() -> Option<tokio::sync::SemaphorePermit<'static>> {
    WRITES.try_acquire().ok()
}

use crate::store::Store;
use crate::tunnels::tunnel::Tunnel;

/// The name of an authentication mode as the store keeps it.
pub fn auth_mode(auth: &ClientAuth) -> &'static str {
    match auth {
        ClientAuth::None => "none",
        ClientAuth::Bearer { .. } => "bearer",
        ClientAuth::OAuth => "oauth",
    }
}

/// Records that this node (`node`) now holds `tunnel`'s bridge.
pub fn connected(store: &Arc<Store>, node: &str, tunnel: &Tunnel, bridge_version: &str) {
    if !store.announces() {
        return;
    }
    let (store, node, name) = (store.clone(), node.to_owned(), tunnel.name.clone());
    let (conn, auth, version) = (
        tunnel.conn_id as i64,
        auth_mode(&tunnel.auth),
        bridge_version.to_owned(),
    );
    tokio::spawn(async move {
        if let Err(e) = store.set_presence(&name, &node, conn, auth, &version).await {
            tracing::warn!(tunnel = %name, "recording the tunnel's presence: {e}");
        }
    });
}

/// Shows `tunnel`'s bridge, just connected to this node, the consents waiting for it: made
/// while it was away or connected to another node, their announcements missed.
pub fn prompt_waiting(
    store: &Arc<Store>,
    oauth: &Arc<crate::oauth::state::OAuth>,
    tunnel: &Arc<Tunnel>,
) {
    if !store.announces() {
        return;
    }
    let (oauth, tunnel) = (oauth.clone(), tunnel.clone());
    tokio::spawn(async move {
        for c in oauth.consents.pending(&tunnel.name).await {
            crate::oauth::authorize::prompt_bridge(&tunnel, &c);
        }
    });
}

/// Keeps `tunnel`'s last snapshot where every node finds it (offline answers after its
/// node went away too).
pub fn snapshot(store: &Arc<Store>, tunnel: &Tunnel, snapshot: &protocol::Snapshot) {
    if !store.announces() {
        return;
    }
    let Some(permit) = write_permit() else {
        tracing::debug!(tunnel = %tunnel.name, "too many store writes at once; snapshot not kept");
        return;
    };
    let (store, name, token_id) = (store.clone(), tunnel.name.clone(), tunnel.token_id);
    let (initialize, tools) = (snapshot.initialize.clone(), snapshot.tools.clone());
    tokio::spawn(async move {
        let _permit = permit;
        if let Err(e) = store
            .put_snapshot(&name, token_id, &initialize, &tools)
            .await
        {
            tracing::warn!(tunnel = %name, "keeping the tunnel's snapshot: {e}");
        }
    });
}

/// Records that `tunnel`'s connection to this node ended.
pub fn disconnected(store: &Arc<Store>, node: &str, tunnel: &Tunnel) {
    if !store.announces() {
        return;
    }
    let (store, node, name) = (store.clone(), node.to_owned(), tunnel.name.clone());
    let conn = tunnel.conn_id as i64;
    tokio::spawn(async move {
        if let Err(e) = store.clear_presence(&name, &node, conn).await {
            tracing::warn!(tunnel = %name, "recording the end of the tunnel's presence: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(auth_mode(&ClientAuth::OAuth), "oauth");
        assert_eq!(auth_mode(&ClientAuth::None), "none");
        assert_eq!(auth_mode(&ClientAuth::Bearer { sha256: [0; 32] }), "bearer");
    }
}
