//! The public MCP routes: `/<name>/mcp` (Streamable HTTP), `/<name>/sse` and
//! `/<name>/messages` (HTTP+SSE), and `/status/<name>`. Each request is authenticated,
//! turned into an exchange on the tunnel's bridge connection (or answered offline), and
//! answered as the bridge's frames arrive.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use protocol::jsonrpc::{self, INVALID_REQUEST, UNAVAILABLE};
use protocol::{Request, RequestKind};

use crate::config::origin::check_origin;
use crate::mcp::guard::authenticate;
use crate::mcp::offline;
use crate::mcp::reply::{SseStyle, answer_exchange, keepalive_only};
use crate::mcp::state::McpState;
use crate::mcp::stateless;
use crate::net::client_addr::ProxyTrust;
use crate::tunnels::http_sse::Carry;
use crate::tunnels::registry::{Lookup, Offline};
use crate::tunnels::tunnel::{OpenError, Tunnel};
use crate::util::http_error::McpError;
use crate::util::path::{PathParam, not_found_tunnel};

/// The MCP routes: `/<name>/mcp` (Streamable HTTP), `/<name>/sse` and `/<name>/messages`
/// (HTTP+SSE), and `/status/<name>` (whether a tunnel's bridge is connected).
pub fn routes<S>() -> Router<S>
where
    S: ProxyTrust + Clone + Send + Sync + 'static,
    Arc<McpState>: FromRef<S>,
{
    Router::new()
        .route(
            "/{name}/mcp",
            get(get_mcp).post(post_mcp).delete(delete_mcp),
        )
        .route("/{name}/sse", get(get_sse))
        .route("/{name}/messages", axum::routing::post(post_messages))
        .route("/status/{name}", get(tunnel_status))
}

/// Where a request goes: a connected bridge, or the offline answers.
enum Target {
    Live(Arc<Tunnel>),
    Offline(Offline),
}

/// Resolves the tunnel and authenticates the client; the error is the HTTP answer. A
/// request for a tunnel whose bridge just left waits for it up to the grace period.
async fn prepare(
    state: &McpState,
    name: &str,
    headers: &HeaderMap,
) -> Result<(Target, String), Response> {
    check_origin(&state.config, headers)?;
    if !protocol::valid_tunnel_name(name) {
        return Err(not_found_tunnel());
    }
    let mut found = state.registry.settled(name, state.config.grace).await;
    if state.auth.store.announces() {
        match &found {
            Lookup::Unknown => found = moved_here(state, name).await,
            // This node's record of a bridge that left (handed over, say) must not hide
            // it live on another node.
            Lookup::Offline(off) if off.away == crate::tunnels::registry::Away::Desktop => {
                if let live @ Lookup::Live(_) = moved_here(state, name).await {
                    found = live;
                }
            }
            _ => {}
        }
    }
    match found {
        Lookup::Live(t) => {
            let principal = authenticate(&state.auth, name, &t.auth, headers).await?;
            crate::observe::reqlog::note_principal(&principal);
            Ok((Target::Live(t), principal))
        }
        Lookup::Offline(off) => {
            let principal = authenticate(&state.auth, name, &off.auth, headers).await?;
            crate::observe::reqlog::note_principal(&principal);
            Ok((Target::Offline(off), principal))
        }
        Lookup::Away { .. } | Lookup::Unknown => Err(McpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            format!(
                "no bridge is connected for tunnel {name:?}; start `bridge run` on the desktop"
            ),
        )
        .into_response()),
    }
}

/// A tunnel this node knows nothing of, with a store several nodes share: one whose bridge
/// another node holds (the balancer now sends its requests here) is asked for, and waited
/// for like a bridge that just left; one whose bridge is gone is answered offline from the
/// snapshot its last node kept.
async fn moved_here(state: &McpState, name: &str) -> Lookup {
    let me = &state.config.node_id;
    let all = std::net::IpAddr::from([0, 0, 0, 0]);
    if !state.elsewhere_lookups.allow(
        all,
        crate::oauth::state::PRESENCE_LOOKUPS_PER_SEC,
        Duration::from_secs(1),
    ) {
        return Lookup::Unknown;
    }
    let mut presence = match state.auth.store.presence(name).await {
        Ok(Some(p)) => p,
        _ => return Lookup::Unknown,
    };
    // Held by this node before it restarted, or by a node that died without a word:
    // nobody will hand it over.
    let now_ms = protocol::time::now_ms();
    if &presence.node == me || presence.node_silent(now_ms) {
        return offline_from_store(state, name, &presence).await;
    }
    // Its bridge left its node moments ago (handed over, or its node stopping): it is
    // reconnecting, here as the balancer now sends it; wait as for a bridge that just left.
    if let Some(left) = presence.disconnected_at {
        let gone_for = Duration::from_millis((now_ms - left * 1000).max(0) as u64);
        if let Some(rest) = state.config.grace.checked_sub(gone_for) {
            let deadline = std::time::Instant::now() + rest;
            while std::time::Instant::now() < deadline {
                state.registry.wait_for_arrival(name, deadline).await;
                if let Lookup::Live(t) = state.registry.lookup(name, state.config.grace) {
                    return Lookup::Live(t);
                }
            }
        }
        // It may have reconnected to another node meanwhile: then ask for it as below.
        match state.auth.store.presence(name).await {
            Ok(Some(now)) if now.disconnected_at.is_none() && &now.node != me => presence = now,
            _ => return offline_from_store(state, name, &presence).await,
        }
    }
    let deadline = std::time::Instant::now() + state.config.grace;
    while std::time::Instant::now() < deadline {
        crate::link::handoff::want(&state.auth.store, &state.wanted, name, me).await;
        let next = (std::time::Instant::now() + std::time::Duration::from_secs(1)).min(deadline);
        state.registry.wait_for_arrival(name, next).await;
        if let Lookup::Live(t) = state.registry.lookup(name, state.config.grace) {
            return Lookup::Live(t);
        }
    }
    // Nobody handed it over (its node died without a word): offline, as a bridge gone.
    offline_from_store(state, name, &presence).await
}

/// The offline answer of a tunnel whose bridge is gone, from the snapshot in the store (of
/// the name's current owner; a tunnel of static bearer tokens is not, as their digest
/// stays with the bridge's node).
async fn offline_from_store(
    state: &McpState,
    name: &str,
    presence: &crate::store::Presence,
) -> Lookup {
    let auth = match presence.auth.as_str() {
        "oauth" => protocol::ClientAuth::OAuth,
        "none" => protocol::ClientAuth::None,
        _ => return Lookup::Unknown,
    };
    let store = &state.auth.store;
    let (Ok(Some((token_id, initialize, tools))), Ok(Some(owner))) =
        (store.snapshot(name).await, store.live_owner(name).await)
    else {
        return Lookup::Unknown;
    };
    if token_id != owner {
        return Lookup::Unknown;
    }
    let since_secs = presence
        .gone_since(protocol::time::now_ms())
        .unwrap_or(presence.connected_at);
    Lookup::Offline(Offline {
        auth,
        since: std::time::UNIX_EPOCH + std::time::Duration::from_secs(since_secs.max(0) as u64),
        snapshot: Some(Arc::new(protocol::Snapshot {
            initialize: initialize.into(),
            tools: tools.into(),
        })),
        away: crate::tunnels::registry::Away::Desktop,
    })
}

fn header_str(headers: &HeaderMap, name: &str) -> Result<Option<String>, Response> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(s) if !s.is_empty() && s.len() <= protocol::frame::MAX_STRING => {
                Ok(Some(s.to_owned()))
            }
            _ => Err(McpError::new(
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                format!("Bad Request: invalid {name} header"),
            )
            .into_response()),
        },
    }
}

/// Checks `Content-Type`, `Accept` and the body, returning the body.
async fn read_json_body(
    state: &McpState,
    headers: &HeaderMap,
    body: Body,
    check_accept: bool,
) -> Result<(Bytes, Option<Bytes>), Response> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(McpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            INVALID_REQUEST,
            "Unsupported Media Type: Content-Type must be application/json",
        )
        .into_response());
    }
    if check_accept && let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
    {
        let a = accept.to_ascii_lowercase();
        let ok = a.contains("application/json")
            || a.contains("text/event-stream")
            || a.contains("*/*")
            || a.contains("application/*");
        if !ok {
            return Err(McpError::new(
                StatusCode::NOT_ACCEPTABLE,
                INVALID_REQUEST,
                "Not Acceptable: Accept must include application/json and text/event-stream",
            )
            .into_response());
        }
    }
    let max = state.config.max_body;
    let too_large = || {
        let mut r = McpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            INVALID_REQUEST,
            format!("Payload Too Large: the body exceeds {max} bytes"),
        )
        .into_response();
        r.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        r
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > (max + DISCARD_CAP) as u64) {
        // Too big to even read past: answer and close.
        return Err(too_large());
    }
    let bytes = match read_limited(body, max).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return Err(too_large()),
        Err(BodyError::Read) => {
            return Err(McpError::new(
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                "Bad Request: could not read the body",
            )
            .into_response());
        }
    };
    let id = match jsonrpc::parse(&bytes) {
        Ok(env) => {
            crate::observe::reqlog::note_body(&bytes, &env);
            env.id.map(|span| bytes.slice(span))
        }
        Err(e) => {
            return Err(McpError::new(
                StatusCode::BAD_REQUEST,
                e.code(),
                format!("Bad Request: {e}"),
            )
            .into_response());
        }
    };
    Ok((bytes, id))
}

/// Whether the client takes a single `application/json` answer (an `Accept` naming only
/// `text/event-stream` does not).
fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let a = accept.to_ascii_lowercase();
    !a.contains("text/event-stream")
        || a.contains("application/json")
        || a.contains("*/*")
        || a.contains("application/*")
}

/// Most of an unread body read off after an early answer (401, 403, 503…).
const EARLY_DRAIN: usize = 64 << 10;
/// Longest wait for that.
const EARLY_DRAIN_TIME: Duration = Duration::from_secs(2);

/// An answer given before the request body was read (authentication, tunnel lookup): a
/// small body is read off so the connection can carry the client's next request (the
/// first POST of an OAuth client is answered 401, and clients reuse the connection);
/// otherwise the answer says `Connection: close`, so no client reuses a connection the
/// server is about to drop.
async fn answer_unread(mut resp: Response, body: Body) -> Response {
    use http_body_util::BodyExt;
    let drained = tokio::time::timeout(EARLY_DRAIN_TIME, async {
        let mut body = body;
        let mut seen = 0usize;
        loop {
            match body.frame().await {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(f)) => {
                    seen += f.data_ref().map_or(0, |d| d.len());
                    if seen > EARLY_DRAIN {
                        return false;
                    }
                }
            }
        }
    })
    .await
    .unwrap_or(false);
    if !drained {
        resp.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    resp
}

/// How much of an oversized body is read (and dropped) so the client, still sending,
/// receives the 413 instead of a reset connection.
const DISCARD_CAP: usize = 64 << 20;
/// Longest wait for each piece of a body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

enum BodyError {
    TooLarge,
    Read,
}

/// Reads a body of at most `max` bytes. A larger body is read on (and dropped) up to
/// [`DISCARD_CAP`] more bytes before giving up, so the 413 reaches the client.
async fn read_limited(mut body: Body, max: usize) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt;
    let mut buf = bytes::BytesMut::new();
    let mut single: Option<Bytes> = None;
    let mut over = 0usize;
    loop {
        let frame = match tokio::time::timeout(BODY_READ_TIMEOUT, body.frame()).await {
            Err(_) => return Err(BodyError::Read),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(BodyError::Read),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let have = single.as_ref().map_or(0, Bytes::len) + buf.len();
        if over > 0 || have + data.len() > max {
            over += data.len();
            single = None;
            buf.clear();
            if over > DISCARD_CAP {
                return Err(BodyError::TooLarge);
            }
            continue;
        }
        // The common case is one frame: keep it without copying.
        match single.take() {
            None if buf.is_empty() => single = Some(data),
            Some(first) => {
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&data);
            }
            None => buf.extend_from_slice(&data),
        }
    }
    if over > 0 {
        return Err(BodyError::TooLarge);
    }
    Ok(single.unwrap_or_else(|| buf.freeze()))
}

fn check_protocol_version(v: &Option<String>) -> Result<(), Response> {
    if let Some(v) = v
        && !protocol::LEGACY_MCP_VERSIONS.contains(&v.as_str())
        && !protocol::MODERN_MCP_VERSIONS.contains(&v.as_str())
    {
        return Err(McpError::new(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            format!(
                "Bad Request: unsupported MCP-Protocol-Version {v:?}; supported: {}",
                protocol::LEGACY_MCP_VERSIONS.join(", ")
            ),
        )
        .into_response());
    }
    Ok(())
}

/// Opens the exchange and answers it. `request_id` (the JSON-RPC id of a POSTed request)
/// lets the answer name the request if the bridge goes away before answering.
async fn forward(
    state: &McpState,
    tunnel: Arc<Tunnel>,
    request: Request,
    style: SseStyle,
    request_id: Option<Bytes>,
    accepts_json: bool,
) -> Response {
    // A 2025-11-25 session's POST stream starts with a priming event (an id, no data) and
    // a reconnection delay, so the client can resume it with `GET` + `Last-Event-ID`.
    let style = match style {
        SseStyle::Streamable
            if request.kind == RequestKind::Post
                && request.session.is_some()
                && request.protocol_version.as_deref() == Some("2025-11-25") =>
        {
            SseStyle::Resumable {
                close_after: state.config.sse_poll,
            }
        }
        other => other,
    };
    let call = crate::observe::recent::Call::start(&state.recent, &tunnel, &request);
    match tunnel.open(request).await {
        Ok(ex) => {
            crate::observe::reqlog::note_exchange(ex.id());
            if let Some(call) = call {
                crate::observe::reqlog::note_recent(call);
            }
            answer_exchange(ex, state.config.keepalive, style, request_id, accepts_json).await
        }
        Err(OpenError::Gone) => McpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            "the bridge for this tunnel just disconnected; retry shortly",
        )
        .into_response(),
        Err(OpenError::Busy) => McpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            "too many requests in flight on this tunnel; retry shortly",
        )
        .into_response(),
        Err(OpenError::PrincipalBusy) => McpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            UNAVAILABLE,
            "too many requests of this client in flight on this tunnel; retry when some finish",
        )
        .into_response(),
    }
}

/// The frame of a request's exchange (the tunnel numbers it when it opens the exchange).
fn request(
    kind: RequestKind,
    principal: String,
    session: Option<String>,
    protocol_version: Option<String>,
    last_event_id: Option<String>,
    body: Bytes,
) -> Request {
    Request {
        exchange: 0,
        kind,
        session,
        protocol_version,
        last_event_id,
        principal,
        body,
    }
}

/// An admitted `/<name>/mcp` request: where it goes, who sent it, and its session and
/// protocol headers.
struct McpRequest {
    target: Target,
    principal: String,
    session: Option<String>,
    protocol_version: Option<String>,
}

async fn admit(state: &McpState, name: &str, headers: &HeaderMap) -> Result<McpRequest, Response> {
    let (c, version) = admit_unchecked(state, name, headers).await?;
    version?;
    Ok(c)
}

/// Like [`admit`], with the `MCP-Protocol-Version` check's outcome returned apart: a
/// POST decides whether it applies once the body is read (a stateless request carries its
/// version in the body, and an unknown one is the bridge's to answer).
async fn admit_unchecked(
    state: &McpState,
    name: &str,
    headers: &HeaderMap,
) -> Result<(McpRequest, Result<(), Response>), Response> {
    let (target, principal) = prepare(state, name, headers).await?;
    let session = header_str(headers, "mcp-session-id")?;
    let (protocol_version, version) = match header_str(headers, "mcp-protocol-version") {
        Ok(v) => {
            let checked = check_protocol_version(&v);
            (v, checked)
        }
        Err(r) => (None, Err(r)),
    };
    let c = McpRequest {
        target,
        principal,
        session,
        protocol_version,
    };
    Ok((c, version))
}

async fn post_mcp(
    State(state): State<Arc<McpState>>,
    PathParam(name): PathParam,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let (c, version) = match admit_unchecked(&state, &name, &headers).await {
        Ok(v) => v,
        Err(r) => return Err(answer_unread(r, body).await),
    };
    let (body, id) = match read_json_body(&state, &headers, body, true).await {
        Ok(read) => read,
        // A refused version is answered first, as if checked before the body.
        Err(r) => return Err(version.err().unwrap_or(r)),
    };
    // The tool list the bridge reported, for the `Mcp-Param-{Name}` checks of stateless
    // requests.
    let snapshot = match &c.target {
        Target::Offline(off) => off.snapshot.clone(),
        Target::Live(_) if stateless::might_be_stateless(&body) => state.registry.snapshot(&name),
        Target::Live(_) => None,
    };
    let tools = snapshot.as_deref().map(|s| &s.tools[..]);
    match stateless::check(&headers, &body, tools)? {
        // Its header equals the `_meta` version, known or not.
        stateless::Era::Stateless => {}
        stateless::Era::Handshake => version?,
    }
    let tunnel = match c.target {
        Target::Live(t) => match state.registry.server_away(&t) {
            // The bridge is here but its server is not: answered as while offline.
            Some(off) => return Ok(offline::post(&off, &body)),
            None => t,
        },
        Target::Offline(off) => return Ok(offline::post(&off, &body)),
    };
    let req = request(
        RequestKind::Post,
        c.principal,
        c.session,
        c.protocol_version,
        None,
        body,
    );
    Ok(forward(
        &state,
        tunnel,
        req,
        SseStyle::Streamable,
        id,
        accepts_json(&headers),
    )
    .await)
}

async fn get_mcp(
    State(state): State<Arc<McpState>>,
    PathParam(name): PathParam,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let c = admit(&state, &name, &headers).await?;
    let last_event_id = header_str(&headers, "last-event-id")?;
    let tunnel = match c.target {
        // A stream without a session (the connector probe of hosted clients) never carries
        // a message: the relay keeps it open with keep-alives itself, without an exchange
        // on the bridge. Hosted clients treat a failing GET as a broken connector, so the
        // same answer is given while the desktop is offline.
        Target::Live(_) | Target::Offline(_) if c.session.is_none() && last_event_id.is_none() => {
            return Ok(keepalive_only(state.config.keepalive));
        }
        Target::Live(t) => t,
        Target::Offline(_) => return Ok(keepalive_only(state.config.keepalive)),
    };
    let req = request(
        RequestKind::Get,
        c.principal,
        c.session,
        c.protocol_version,
        last_event_id,
        Bytes::new(),
    );
    Ok(forward(&state, tunnel, req, SseStyle::Streamable, None, true).await)
}

async fn delete_mcp(
    State(state): State<Arc<McpState>>,
    PathParam(name): PathParam,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let c = admit(&state, &name, &headers).await?;
    let tunnel = match c.target {
        Target::Live(t) => t,
        Target::Offline(off) => return Err(offline::unavailable(&off)),
    };
    let req = request(
        RequestKind::Delete,
        c.principal,
        c.session,
        c.protocol_version,
        None,
        Bytes::new(),
    );
    Ok(forward(&state, tunnel, req, SseStyle::Streamable, None, true).await)
}

async fn get_sse(
    State(state): State<Arc<McpState>>,
    PathParam(name): PathParam,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let (target, principal) = prepare(&state, &name, &headers).await?;
    let tunnel = match target {
        Target::Live(t) => t,
        Target::Offline(off) => return Err(offline::unavailable(&off)),
    };
    let req = request(
        RequestKind::HttpSseOpen,
        principal,
        None,
        None,
        None,
        Bytes::new(),
    );
    let endpoint_prefix = format!("{}/{name}/messages?sessionId=", state.config.base());
    // If the bridge's connection drops, the stream waits for the next one (the grace
    // period) and goes on over it.
    let carry = Arc::new(Carry::new(
        state.registry.clone(),
        state.config.grace,
        name.clone(),
        req.principal.clone(),
    ));
    Ok(forward(
        &state,
        tunnel,
        req,
        SseStyle::HttpSse {
            endpoint_prefix,
            carry: Some(carry),
        },
        None,
        true,
    )
    .await)
}

async fn post_messages(
    State(state): State<Arc<McpState>>,
    PathParam(name): PathParam,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let (target, principal) = match prepare(&state, &name, &headers).await {
        Ok(v) => v,
        Err(r) => return Err(answer_unread(r, body).await),
    };
    let session = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "sessionId")
            .map(|(_, v)| v.into_owned())
    });
    let Some(session) = session.filter(|s| !s.is_empty() && s.len() <= protocol::frame::MAX_STRING)
    else {
        return Err(McpError::new(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "Bad Request: the sessionId query parameter is required",
        )
        .into());
    };
    let (body, _) = read_json_body(&state, &headers, body, false).await?;
    let tunnel = match target {
        Target::Live(t) => t,
        Target::Offline(off) => return Err(offline::unavailable(&off)),
    };
    let req = request(
        RequestKind::HttpSsePost,
        principal,
        Some(session),
        None,
        None,
        body,
    );
    Ok(forward(&state, tunnel, req, SseStyle::Streamable, None, true).await)
}

/// `GET /status/<name>`: the tunnel's connection state and the bridge's gauges (for the
/// tunnel's own clients: the same authentication as its MCP endpoint).
async fn tunnel_status(
    State(state): State<Arc<McpState>>,
    PathParam(name): PathParam,
    headers: HeaderMap,
) -> Result<Response, Response> {
    check_origin(&state.config, &headers)?;
    let Some((auth, status)) = state.registry.status(&name) else {
        return Err(not_found_tunnel());
    };
    authenticate(&state.auth, &name, &auth, &headers).await?;
    Ok(axum::Json(status).into_response())
}
