//! The bridge's WebSocket at `/<name>/connect`: handshake, then frame pumps.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientAuth, Frame, Hello, Limits, Refusal, RefuseReason, Welcome};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

use crate::link::state::LinkState;
use crate::link::upgrade::{AddrPermit, BridgeSocket, ReadBudget};
use crate::oauth::state::OAuth;
use crate::store::Store;
use crate::tunnels::registry::ClaimError;
use crate::tunnels::tunnel::Tunnel;

/// How a connection's bridge token is known.
pub enum Credential {
    /// Checked from the upgrade's token header: the store id of the token.
    Checked(i64),
    /// To be read from the `Hello` (a bridge of an earlier release); the handshake slots it
    /// holds until then.
    InHello {
        /// The relay-wide and per-address slots, released once the `Hello` is judged.
        _slot: (OwnedSemaphorePermit, AddrPermit),
    },
}

/// What the upgrade established about a bridge connection.
pub struct Admission {
    /// Its token, or where to find it.
    pub credential: Credential,
    /// The client's address (behind a local reverse proxy, the one it forwarded).
    pub peer: std::net::IpAddr,
    /// The bridge's features header.
    pub features: String,
}

/// Time a bridge has to send its `Hello` after the upgrade.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval of relay → bridge pings.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A connection silent for this long is considered dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Frames queued towards one bridge before senders wait.
const OUTBOUND_QUEUE: usize = 1024;
/// How long a connection serving a name has to answer a probe when another bridge
/// claims the name (a live one answers within a round trip; a half-open one never does).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for a closing connection's last writes.
const WRITER_GRACE: Duration = Duration::from_secs(3);

/// Runs one bridge connection (from address `ip`) to completion.
pub async fn handle_socket(
    state: Arc<LinkState>,
    path_name: String,
    socket: BridgeSocket,
    budget: ReadBudget,
    admission: Admission,
) {
    let (mut sink, mut stream) = socket.split();
    let limits = state.config.frame_limits();

    let hello = match tokio::time::timeout(HELLO_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(Message::Binary(b)))) => match Frame::decode(b, &limits) {
            Ok(Frame::Hello(h)) => h,
            Ok(_) | Err(_) => {
                refuse(
                    &mut sink,
                    RefuseReason::Malformed,
                    "the first frame must be a Hello",
                )
                .await;
                return;
            }
        },
        _ => {
            debug!("bridge connection closed before its Hello (or sent more than one)");
            return;
        }
    };

    // Refused bridge tokens are limited per address.
    let Ok(attempt) = state.oauth.hellos.begin(admission.peer) else {
        drop(admission.credential);
        warn!(tunnel = %path_name, from = %admission.peer, "refused bridge: too many refused bridge tokens from its address");
        refuse(
            &mut sink,
            RefuseReason::Busy,
            "too many refused bridge tokens from this address; retry later",
        )
        .await;
        return;
    };
    let admitted = admit(&state, &path_name, &hello, &admission.credential).await;
    match &admitted {
        Err((RefuseReason::BadToken, _)) => drop(attempt),
        _ => attempt.succeeded(),
    }
    // Judged: the handshake slots are free again.
    drop(admission.credential);
    let token_id = match admitted {
        Ok(id) => {
            budget.lift();
            id
        }
        Err((reason, message)) => {
            warn!(tunnel = %path_name, ?reason, from = %admission.peer, "refused bridge: {message}");
            refuse(&mut sink, reason, &message).await;
            return;
        }
    };
    let (tx, mut rx) = mpsc::channel::<Frame>(OUTBOUND_QUEUE);
    let tunnel = Arc::new(
        Tunnel::new(
            hello.tunnel.clone(),
            state.registry.next_conn_id(),
            hello.client_auth.clone(),
            token_id,
            tx,
            state.config.max_exchanges_per_tunnel,
        )
        .with_peer(admission.peer)
        .carrying_sse(protocol::has_feature(
            &admission.features,
            protocol::FEATURE_SSE_REATTACH,
        ))
        .serving_assets(protocol::has_feature(
            &admission.features,
            protocol::FEATURE_ASSETS,
        )),
    );
    let in_use_ok = protocol::has_feature(&admission.features, protocol::FEATURE_IN_USE);
    if let Err((reason, message)) = take_name(&state, &tunnel, in_use_ok).await {
        warn!(tunnel = %path_name, ?reason, from = %admission.peer, "refused bridge: {message}");
        refuse(&mut sink, reason, &message).await;
        return;
    }
    let base = state.config.base();
    let welcome = Frame::Welcome(Welcome {
        protocol: protocol::PROTOCOL_VERSION,
        relay_version: env!("CARGO_PKG_VERSION").to_owned(),
        mcp_url: format!("{base}/{}/mcp", hello.tunnel),
        sse_url: format!("{base}/{}/sse", hello.tunnel),
    });
    if sink.send(Message::Binary(welcome.encode())).await.is_err() {
        tunnel.close();
        state.registry.remove(&tunnel.name, tunnel.conn_id);
        return;
    }
    state
        .history
        .bridge_connected(&tunnel.name, &hello.bridge_version);
    crate::link::presence::connected(
        &state.store,
        &state.config.node_id,
        &tunnel,
        &hello.bridge_version,
    );
    crate::link::presence::prompt_waiting(&state.store, &state.oauth, &tunnel);
    info!(tunnel = %tunnel.name, bridge_version = %hello.bridge_version, from = %admission.peer, "bridge connected");

    // Writer: drain the queue, feed everything, flush once.
    let closed = tunnel.closed.clone();
    let farewell = tunnel.clone();
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.tick().await;
        let mut ping_seq = 0u64;
        loop {
            tokio::select! {
                f = rx.recv() => {
                    let Some(f) = f else { break };
                    if sink.feed(Message::Binary(f.encode())).await.is_err() { break; }
                    let mut n = 0;
                    while n < 256 {
                        match rx.try_recv() {
                            Ok(f) => {
                                if sink.feed(Message::Binary(f.encode())).await.is_err() { return; }
                                n += 1;
                            }
                            Err(_) => break,
                        }
                    }
                    if sink.flush().await.is_err() { break; }
                }
                _ = ping.tick() => {
                    ping_seq += 1;
                    if sink.send(Message::Binary(Frame::Ping(ping_seq).encode())).await.is_err() { break; }
                }
                _ = closed.cancelled() => {
                    if let Some(f) = farewell.take_farewell() {
                        let _ = sink.send(Message::Binary(f.encode())).await;
                    }
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            }
        }
    });

    // Reader: dispatch frames until the connection ends or misbehaves. Silence is
    // checked on a coarse tick (no timer per message on the hot path).
    let mut last_heard = tokio::time::Instant::now();
    let mut idle_check = tokio::time::interval(Duration::from_secs(1));
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = idle_check.tick() => {
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    warn!(tunnel = %tunnel.name, "bridge silent for {IDLE_TIMEOUT:?}; closing");
                    break;
                }
                continue;
            }
            _ = tunnel.closed.cancelled() => break,
        };
        last_heard = tokio::time::Instant::now();
        let msg = match msg {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Binary(b))) => {
                tunnel.heard();
                b
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                tunnel.heard();
                continue;
            }
            Some(Ok(Message::Frame(_))) => continue,
            Some(Ok(Message::Text(_))) => {
                warn!(tunnel = %tunnel.name, "text message from bridge; closing");
                break;
            }
        };
        if !dispatch(&state, &tunnel, msg, &limits) {
            break;
        }
    }
    tunnel.close();
    state.registry.remove(&tunnel.name, tunnel.conn_id);
    crate::link::presence::disconnected(&state.store, &state.config.node_id, &tunnel);
    // The farewell and the close go to a connection that may be half-open: do not wait
    // for it forever.
    if tokio::time::timeout(WRITER_GRACE, writer).await.is_err() {
        debug!(tunnel = %tunnel.name, "the connection's writer did not finish; dropped");
    }
    info!(tunnel = %tunnel.name, "bridge disconnected");
}

/// Makes `tunnel` the connection serving its name. A connection already serving it is
/// probed first: if it answers, the newcomer is refused (naming the live bridge's address)
/// and the live bridge warned (naming the newcomer's); if it stays silent (half-open: a
/// machine that slept, a network that changed), the newcomer replaces it and the old one
/// is told so, by whom, before it is closed. `in_use_ok`: the newcomer understands
/// [`RefuseReason::InUse`].
async fn take_name(
    state: &LinkState,
    tunnel: &Arc<Tunnel>,
    in_use_ok: bool,
) -> Result<(), (RefuseReason, String)> {
    let name = &tunnel.name;
    for _ in 0..4 {
        let current = state
            .registry
            .get(name)
            .filter(|t| !t.closed.is_cancelled());
        let Some(old) = current else {
            if let Err(holder) = super::claim::from_other_node(state, tunnel, PROBE_TIMEOUT).await {
                return Err((
                    in_use(in_use_ok),
                    format!(
                        "tunnel {name:?} is served by a live bridge connected to relay node \
                         {holder} with this bridge token: is another `bridge run` with this \
                         token running? Stop it first, or choose another name with --name"
                    ),
                ));
            }
            match state.registry.install_if(tunnel.clone(), None) {
                Ok(_) => return Ok(()),
                Err(_) => continue,
            }
        };
        // The name changed owner (the operator released it and another token claimed it,
        // which admission checked): the old connection no longer owns it, live or not.
        if old.token_id != tunnel.token_id {
            match state.registry.install_if(tunnel.clone(), Some(old.conn_id)) {
                Ok(_) => {
                    info!(
                        tunnel = %name,
                        from = %tunnel.peer,
                        replaced = %old.peer,
                        "the tunnel's name now belongs to another bridge token; its new owner replaced the old connection"
                    );
                    old.displace(Frame::Refused(Refusal {
                        reason: RefuseReason::NameTaken,
                        message: format!(
                            "tunnel {name:?} now belongs to another bridge token (the relay's \
                             operator released the name); this connection was closed"
                        ),
                    }));
                    return Ok(());
                }
                Err(_) => continue,
            }
        }
        if old.answers_probe(PROBE_TIMEOUT).await {
            let now = protocol::time::readable_ms(protocol::time::now_ms());
            warn!(
                tunnel = %name,
                from = %tunnel.peer,
                holder = %old.peer,
                "a second bridge with this tunnel's token was refused: the connected bridge answered"
            );
            state.history.takeover(name, false, tunnel.peer, old.peer);
            let _ = old.try_send(name_taken(format!(
                "WARNING: at {now} a bridge from {} tried to take over tunnel {name:?} \
                     with this bridge's token; it was refused because this bridge answered. If \
                     that was not you, the bridge token has leaked: revoke it on the relay \
                     (`relay token revoke LABEL`) and create a new one",
                tunnel.peer
            )));
            let since = old
                .since
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            return Err((
                in_use(in_use_ok),
                format!(
                    "tunnel {name:?} is served by a live bridge from {} (connected since {}) \
                     with this bridge token: is another `bridge run` with this token running? \
                     Stop it first, or choose another name with --name",
                    old.peer,
                    protocol::time::readable_ms(since)
                ),
            ));
        }
        match state.registry.install_if(tunnel.clone(), Some(old.conn_id)) {
            Ok(_) => {
                let now = protocol::time::readable_ms(protocol::time::now_ms());
                warn!(
                    tunnel = %name,
                    from = %tunnel.peer,
                    replaced = %old.peer,
                    "the tunnel's bridge did not answer a probe; a new connection replaced it"
                );
                state.history.takeover(name, true, tunnel.peer, old.peer);
                old.displace(name_taken(format!(
                    "WARNING: at {now} tunnel {name:?} was taken over by a bridge from \
                         {} with this bridge's token, because this connection did not answer \
                         for {PROBE_TIMEOUT:?} (the machine slept or its network changed?). If \
                         that was not you, the bridge token has leaked: revoke it on the relay \
                         (`relay token revoke LABEL`) and create a new one",
                    tunnel.peer
                )));
                return Ok(());
            }
            Err(_) => continue,
        }
    }
    Err((
        RefuseReason::Busy,
        format!("tunnel {name:?} is changing hands; retry shortly"),
    ))
}

/// Why a newcomer is refused while a live bridge holds its tunnel: "in use" for a bridge
/// that understands it (it then stops instead of retrying), else "name taken".
fn in_use(in_use_ok: bool) -> RefuseReason {
    if in_use_ok {
        RefuseReason::InUse
    } else {
        RefuseReason::NameTaken
    }
}

/// The warning a bridge gets when another connection with its token claimed its tunnel.
fn name_taken(message: String) -> Frame {
    Frame::Refused(Refusal {
        reason: RefuseReason::NameTaken,
        message,
    })
}

/// Handles one frame from the bridge; `false` ends the connection.
fn dispatch(state: &LinkState, tunnel: &Tunnel, bytes: Bytes, limits: &Limits) -> bool {
    match Frame::decode(bytes, limits) {
        Ok(Frame::Response(r)) => {
            if !tunnel.deliver(r) {
                warn!(tunnel = %tunnel.name, "a client is not reading its stream; exchange dropped");
            }
            true
        }
        Ok(Frame::Cancel { exchange }) => {
            tunnel.abandon(exchange);
            true
        }
        Ok(Frame::AssetResponse(a)) if tunnel.serves_assets => {
            tunnel.deliver_asset(a);
            true
        }
        Ok(Frame::Ping(v)) => {
            let _ = tunnel.try_send(Frame::Pong(v));
            true
        }
        Ok(Frame::Pong(_)) => true,
        Ok(Frame::Snapshot(s)) => {
            crate::link::presence::snapshot(&state.store, tunnel, &s);
            state.registry.set_snapshot(&tunnel.name, s);
            true
        }
        Ok(Frame::Status(s)) => {
            state.registry.set_status(&tunnel.name, s);
            true
        }
        Ok(Frame::ServerHealth { down_since }) => {
            match down_since {
                Some(_) => {
                    warn!(tunnel = %tunnel.name, "the bridge reports its local MCP server unreachable: answering from its snapshot")
                }
                None if tunnel.server_down_since().is_some() => {
                    info!(tunnel = %tunnel.name, "the bridge's local MCP server answers again")
                }
                None => {}
            }
            tunnel.set_server_down(down_since);
            true
        }
        Ok(Frame::ConsentDecision { id, approve }) => {
            // Off the read loop: the ownership check asks the database (a bounded number
            // at once: the owner decides rarely, a flood is not the owner).
            let Some(permit) = crate::link::presence::write_permit() else {
                warn!(tunnel = %tunnel.name, "too many consent decisions at once; ignored");
                return true;
            };
            let decision = decide_consent(
                state.store.clone(),
                state.oauth.clone(),
                tunnel.name.clone(),
                tunnel.token_id,
                id,
                approve,
            );
            tokio::spawn(async move {
                let _permit = permit;
                decision.await;
            });
            true
        }
        Ok(other) => {
            warn!(tunnel = %tunnel.name, "unexpected frame from bridge: {}", other.name());
            false
        }
        Err(e) => {
            warn!(tunnel = %tunnel.name, "malformed frame from bridge: {e}");
            false
        }
    }
}

/// A bridge's decision on one of its tunnel's consents. Only decisions about the tunnel's
/// own consents count, and an approval only while the connection's token (still) owns the
/// name.
async fn decide_consent(
    store: Arc<Store>,
    oauth: Arc<OAuth>,
    name: String,
    token_id: i64,
    id: String,
    approve: bool,
) {
    let owns = store.name_owner(&name).await.ok().flatten() == Some(token_id);
    let decision = (approve && owns).then_some(token_id);
    if (approve && !owns) || !oauth.consents.decide(&id, &name, decision).await {
        warn!(tunnel = %name, "ignored a consent decision");
    } else {
        info!(tunnel = %name, approve, "the owner decided on an authorization in the bridge");
    }
}

/// Decides whether a bridge may serve this tunnel.
async fn admit(
    state: &LinkState,
    path_name: &str,
    hello: &Hello,
    credential: &Credential,
) -> Result<i64, (RefuseReason, String)> {
    if hello.protocol != protocol::PROTOCOL_VERSION {
        return Err((
            RefuseReason::UnsupportedVersion,
            format!(
                "wire protocol {} is not supported; this relay speaks {}",
                hello.protocol,
                protocol::PROTOCOL_VERSION
            ),
        ));
    }
    let looked_up = match credential {
        // Checked before the upgrade; a Hello may repeat the token (it must be the same).
        Credential::Checked(id) if hello.token.is_empty() => Ok(Some(*id)),
        Credential::Checked(id) => state
            .store
            .token_id(&hello.token)
            .await
            .map(|found| found.filter(|found| found == id)),
        Credential::InHello { .. } => state.store.token_id(&hello.token).await,
    };
    let token_id = match looked_up {
        Ok(Some(id)) => id,
        Ok(None) => {
            return Err((
                RefuseReason::BadToken,
                "the relay does not know this bridge token (or it was revoked)".into(),
            ));
        }
        Err(e) => {
            tracing::error!("token lookup: {e}");
            return Err((
                RefuseReason::Busy,
                "the relay cannot check tokens right now".into(),
            ));
        }
    };
    if !protocol::valid_tunnel_name(&hello.tunnel) || hello.tunnel != path_name {
        return Err((
            RefuseReason::BadName,
            format!(
                "invalid tunnel name {:?}: use 3-40 characters a-z, 0-9 and '-', not a reserved name",
                hello.tunnel
            ),
        ));
    }
    if hello.client_auth == ClientAuth::None
        && !state.config.is_loopback()
        && !state.config.allow_unauthenticated
    {
        return Err((
            RefuseReason::AuthNotAllowed,
            "this relay is public and does not allow tunnels without client authentication \
             (start it with --allow-unauthenticated to permit that)"
                .into(),
        ));
    }
    let taken = || {
        (
            RefuseReason::NameTaken,
            format!(
                "the tunnel name {:?} belongs to another bridge token",
                hello.tunnel
            ),
        )
    };
    match state.store.claim_name(&hello.tunnel, token_id).await {
        Ok(true) => {}
        Ok(false) => return Err(taken()),
        Err(e) => {
            tracing::error!("name claim: {e}");
            return Err((
                RefuseReason::Busy,
                "the relay cannot claim names right now".into(),
            ));
        }
    }
    match state
        .registry
        .claim(&hello.tunnel, token_id, state.config.max_tunnels)
    {
        Ok(()) => Ok(token_id),
        Err(ClaimError::Full) => Err((RefuseReason::Busy, "the relay is full".into())),
    }
}

async fn refuse<S>(sink: &mut S, reason: RefuseReason, message: &str)
where
    S: SinkExt<Message> + Unpin,
{
    let frame = Frame::Refused(Refusal {
        reason,
        message: message.to_owned(),
    });
    let _ = sink.send(Message::Binary(frame.encode())).await;
    let _ = sink.send(Message::Close(None)).await;
}
