//! Frames: the messages of the bridge⇄relay protocol, their encoding and their limits.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{Reader, put_body, put_opt_str, put_str};

/// Longest string field (URLs, names, header values, tokens), in bytes.
pub const MAX_STRING: usize = 4096;
/// Hard ceiling on a body, whatever the configured limit: 64 MiB.
pub const MAX_BODY_CEILING: usize = 64 << 20;

/// Size limits applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest JSON-RPC body a frame may carry.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_body: 32 << 20 }
    }
}

impl Limits {
    /// The largest whole frame these limits allow (body plus headers).
    pub fn max_frame(&self) -> usize {
        self.max_body.min(MAX_BODY_CEILING) + 8 * MAX_STRING + 64
    }
}

/// How public clients of a tunnel authenticate, as the bridge asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// No authentication. Refused by a relay with a public (non-loopback) URL unless its
    /// operator allowed it.
    None,
    /// A static bearer token; the relay receives only its SHA-256 digest.
    Bearer {
        /// SHA-256 of the token clients must send as `Authorization: Bearer <token>`.
        sha256: [u8; 32],
    },
    /// OAuth 2.1 with the relay as authorization server; consent needs the owner.
    OAuth,
}

/// First frame of a connection, bridge → relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Wire-format version the bridge speaks ([`crate::PROTOCOL_VERSION`]).
    pub protocol: u16,
    /// The bridge's software version, for logs.
    pub bridge_version: String,
    /// The bridge token (secret); never logged.
    pub token: String,
    /// The tunnel name being claimed.
    pub tunnel: String,
    /// How the relay must authenticate this tunnel's clients.
    pub client_auth: ClientAuth,
}

/// Positive answer to [`Hello`], relay → bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// Wire-format version the relay will speak on this connection.
    pub protocol: u16,
    /// The relay's software version.
    pub relay_version: String,
    /// Public Streamable HTTP endpoint of the tunnel.
    pub mcp_url: String,
    /// Public HTTP+SSE endpoint of the tunnel.
    pub sse_url: String,
}

/// Why a relay refused a [`Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// The bridge token is not known to the relay.
    BadToken,
    /// The name is held by another token.
    NameTaken,
    /// The name is not `[a-z0-9-]{3,40}` or is reserved.
    BadName,
    /// The wire-format version is not supported.
    UnsupportedVersion,
    /// The requested client authentication is not allowed on this relay.
    AuthNotAllowed,
    /// The first frame was not a valid `Hello`.
    Malformed,
    /// The relay has no room for another tunnel.
    Busy,
    /// The name is served right now by a live bridge with the same token (it answered the
    /// relay's probe). Only sent to bridges announcing [`crate::FEATURE_IN_USE`]; others get
    /// [`RefuseReason::NameTaken`].
    InUse,
}

impl RefuseReason {
    fn code(self) -> u8 {
        match self {
            Self::BadToken => 1,
            Self::NameTaken => 2,
            Self::BadName => 3,
            Self::UnsupportedVersion => 4,
            Self::AuthNotAllowed => 5,
            Self::Malformed => 6,
            Self::Busy => 7,
            Self::InUse => 8,
        }
    }

    fn from_code(c: u8) -> Result<Self, DecodeError> {
        Ok(match c {
            1 => Self::BadToken,
            2 => Self::NameTaken,
            3 => Self::BadName,
            4 => Self::UnsupportedVersion,
            5 => Self::AuthNotAllowed,
            6 => Self::Malformed,
            7 => Self::Busy,
            8 => Self::InUse,
            _ => return Err(DecodeError::InvalidValue("refuse reason")),
        })
    }

    /// Whether retrying the same connection later cannot succeed (the bridge should stop).
    pub fn is_permanent(self) -> bool {
        !matches!(self, Self::Busy)
    }
}

/// Negative answer to [`Hello`], relay → bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Machine-readable reason.
    pub reason: RefuseReason,
    /// Human-readable explanation, shown to the user.
    pub message: String,
}

/// What kind of public HTTP exchange a [`Request`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `POST /<name>/mcp` (Streamable HTTP).
    Post,
    /// `GET /<name>/mcp`: the server-initiated SSE stream.
    Get,
    /// `DELETE /<name>/mcp`: end a session.
    Delete,
    /// `GET /<name>/sse`: open an HTTP+SSE session. With a `session`, it carries on
    /// the stream of that session after the bridge reconnected (see
    /// [`crate::FEATURE_SSE_REATTACH`]): only sent to bridges announcing the feature.
    HttpSseOpen,
    /// `POST /<name>/messages?sessionId=…`: a message on an HTTP+SSE session.
    HttpSsePost,
}

impl RequestKind {
    fn code(self) -> u8 {
        match self {
            Self::Post => 1,
            Self::Get => 2,
            Self::Delete => 3,
            Self::HttpSseOpen => 4,
            Self::HttpSsePost => 5,
        }
    }

    fn from_code(c: u8) -> Result<Self, DecodeError> {
        Ok(match c {
            1 => Self::Post,
            2 => Self::Get,
            3 => Self::Delete,
            4 => Self::HttpSseOpen,
            5 => Self::HttpSsePost,
            _ => return Err(DecodeError::InvalidValue("request kind")),
        })
    }
}

/// One public HTTP exchange, relay → bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Exchange number, unique on the connection; responses carry it back.
    pub exchange: u64,
    /// Which endpoint and method.
    pub kind: RequestKind,
    /// `Mcp-Session-Id` (or the HTTP+SSE `sessionId` query parameter; for a
    /// [`RequestKind::HttpSseOpen`], the session whose stream is carried on).
    pub session: Option<String>,
    /// `MCP-Protocol-Version`.
    pub protocol_version: Option<String>,
    /// `Last-Event-ID`.
    pub last_event_id: Option<String>,
    /// The authenticated client, as the relay established it (never its token).
    pub principal: String,
    /// The JSON-RPC body, untouched (empty for GET and DELETE).
    pub body: Bytes,
}

/// Flag bit of [`Response::flags`]: this is the exchange's last frame.
pub const FLAG_FINAL: u8 = 1;
/// Flag bit of [`Response::flags`]: answer with an SSE stream even if the first message
/// is final or absent (GET streams, HTTP+SSE sessions).
pub const FLAG_STREAM: u8 = 2;

/// One piece of the answer to an exchange, bridge → relay.
///
/// The first frame of an exchange decides the HTTP status and headers; later frames only
/// add messages. A frame with an empty body adds no message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The exchange this answers.
    pub exchange: u64,
    /// HTTP status (meaningful on the first frame only).
    pub status: u16,
    /// `Mcp-Session-Id` to return (first frame only).
    pub session: Option<String>,
    /// [`FLAG_FINAL`] and [`FLAG_STREAM`] bits.
    pub flags: u8,
    /// SSE event id for this message, if any.
    pub event_id: Option<String>,
    /// One JSON-RPC message (compact, one line), or empty.
    pub body: Bytes,
}

impl Response {
    /// Whether this is the exchange's last frame.
    pub fn is_final(&self) -> bool {
        self.flags & FLAG_FINAL != 0
    }

    /// Whether the relay must answer with an SSE stream.
    pub fn wants_stream(&self) -> bool {
        self.flags & FLAG_STREAM != 0
    }
}

/// Most headers an asset request or answer carries.
pub const MAX_ASSET_HEADERS: usize = 16;

/// `GET` or `HEAD` of a file under a tunnel's published asset origin, relay → bridge (only
/// to bridges announcing [`crate::FEATURE_ASSETS`]). The answer is one
/// [`Frame::AssetResponse`] with the same exchange number; a [`Frame::Cancel`] abandons it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRequest {
    /// Exchange number, unique on the connection (shared with [`Request`]s).
    pub exchange: u64,
    /// `HEAD` rather than `GET`.
    pub head: bool,
    /// Path and query below `/<name>/assets`, starting with `/`.
    pub path: String,
    /// The few request headers that are passed on (conditional requests), lowercase names.
    pub headers: Vec<(String, String)>,
}

/// The answer to an [`AssetRequest`], bridge → relay: all of it in one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetResponse {
    /// The exchange this answers.
    pub exchange: u64,
    /// HTTP status.
    pub status: u16,
    /// The response headers that are passed on (`content-type`, caching), lowercase names.
    pub headers: Vec<(String, String)>,
    /// The file (empty for `HEAD`).
    pub body: Bytes,
}

/// A protocol message. See the crate documentation for the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bridge → relay, first frame.
    Hello(Hello),
    /// Relay → bridge, accepts the `Hello`.
    Welcome(Welcome),
    /// Relay → bridge, refuses the `Hello`; the relay then closes.
    Refused(Refusal),
    /// Relay → bridge, a public HTTP exchange.
    Request(Request),
    /// Bridge → relay, (part of) an exchange's answer.
    Response(Response),
    /// Either way: abandon an exchange (the client went away, or the bridge gives up).
    Cancel {
        /// The exchange to abandon.
        exchange: u64,
    },
    /// Either way: liveness probe carrying an opaque value.
    Ping(u64),
    /// Answer to [`Frame::Ping`] with the same value.
    Pong(u64),
    /// Bridge → relay: what the relay may answer from while the desktop is offline.
    Snapshot(Snapshot),
    /// Bridge → relay: the bridge's gauges, for status pages and tests.
    Status(BridgeStatus),
    /// Relay → bridge: a client asks for access to the tunnel; the owner decides.
    ConsentRequest(ConsentRequest),
    /// Bridge → relay: the owner's decision on a [`ConsentRequest`].
    ConsentDecision {
        /// The request's id.
        id: String,
        /// Whether the owner approved.
        approve: bool,
    },
    /// Bridge → relay, to relays announcing [`crate::FEATURE_SERVER_HEALTH`]: whether the
    /// local MCP server answers. Sent when it changes, and after each `Welcome` while the
    /// server is down.
    ServerHealth {
        /// Since when (seconds since the Unix epoch) the server is not reachable; `None`
        /// while it answers.
        down_since: Option<u64>,
    },
    /// Relay → bridge: a file under the tunnel's published asset origin.
    AssetRequest(AssetRequest),
    /// Bridge → relay: the answer to an [`Frame::AssetRequest`].
    AssetResponse(AssetResponse),
}

/// An OAuth authorization waiting for the tunnel owner's consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRequest {
    /// Identifies the request in the decision.
    pub id: String,
    /// The short code the consent page shows (`bridge approve <code>`).
    pub code: String,
    /// Host of the client's metadata document, or a note that it registered itself.
    pub client: String,
    /// Host the authorization code will be sent to.
    pub redirect_host: String,
}

/// The server's cached answers, kept by the relay to serve `initialize` and
/// `tools/list` while the bridge is away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The `InitializeResult` object (JSON).
    pub initialize: Bytes,
    /// The `tools/list` result object (JSON), or empty if unknown.
    pub tools: Bytes,
}

/// Counters the bridge reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeStatus {
    /// Live sessions.
    pub sessions: u32,
    /// Requests in flight on server processes.
    pub pending: u32,
    /// Open exchanges.
    pub exchanges: u32,
    /// Running server processes.
    pub children: u32,
    /// Server processes restarted after exiting, since the bridge started.
    pub restarts: u32,
}

pub use crate::wire::DecodeError;

const T_HELLO: u8 = 1;
const T_WELCOME: u8 = 2;
const T_REFUSED: u8 = 3;
const T_REQUEST: u8 = 4;
const T_RESPONSE: u8 = 5;
const T_CANCEL: u8 = 6;
const T_PING: u8 = 7;
const T_PONG: u8 = 8;
const T_SNAPSHOT: u8 = 9;
const T_STATUS: u8 = 10;
const T_CONSENT_REQUEST: u8 = 11;
const T_CONSENT_DECISION: u8 = 12;
const T_SERVER_HEALTH: u8 = 13;
const T_ASSET_REQUEST: u8 = 14;
const T_ASSET_RESPONSE: u8 = 15;

fn check_str(s: &str) -> &str {
    // Encoding never produces an undecodable frame: over-long strings are cut at a
    // character boundary (they come from our own code, so this is a last resort).
    if s.len() <= MAX_STRING {
        return s;
    }
    let mut end = MAX_STRING;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Frame {
    /// The frame type's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "Hello",
            Frame::Welcome(_) => "Welcome",
            Frame::Refused(_) => "Refused",
            Frame::Request(_) => "Request",
            Frame::Response(_) => "Response",
            Frame::Cancel { .. } => "Cancel",
            Frame::Ping(_) => "Ping",
            Frame::Pong(_) => "Pong",
            Frame::Snapshot(_) => "Snapshot",
            Frame::Status(_) => "Status",
            Frame::ConsentRequest(_) => "ConsentRequest",
            Frame::ConsentDecision { .. } => "ConsentDecision",
            Frame::ServerHealth { .. } => "ServerHealth",
            Frame::AssetRequest(_) => "AssetRequest",
            Frame::AssetResponse(_) => "AssetResponse",
        }
    }

    /// Encodes the frame into a new buffer.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out);
        out.freeze()
    }

    fn encoded_len_hint(&self) -> usize {
        64 + match self {
            Frame::Request(r) => r.body.len() + 128,
            Frame::Response(r) => r.body.len() + 64,
            Frame::AssetResponse(r) => r.body.len() + 512,
            _ => 256,
        }
    }

    /// Appends the encoded frame to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        match self {
            Frame::Hello(h) => {
                out.put_u8(T_HELLO);
                out.put_u16_le(h.protocol);
                put_str(out, check_str(&h.bridge_version));
                put_str(out, check_str(&h.token));
                put_str(out, check_str(&h.tunnel));
                match &h.client_auth {
                    ClientAuth::None => out.put_u8(0),
                    ClientAuth::Bearer { sha256 } => {
                        out.put_u8(1);
                        out.put_slice(sha256);
                    }
                    ClientAuth::OAuth => out.put_u8(2),
                }
            }
            Frame::Welcome(w) => {
                out.put_u8(T_WELCOME);
                out.put_u16_le(w.protocol);
                put_str(out, check_str(&w.relay_version));
                put_str(out, check_str(&w.mcp_url));
                put_str(out, check_str(&w.sse_url));
            }
            Frame::Refused(r) => {
                out.put_u8(T_REFUSED);
                out.put_u8(r.reason.code());
                put_str(out, check_str(&r.message));
            }
            Frame::Request(r) => {
                out.put_u8(T_REQUEST);
                out.put_u64_le(r.exchange);
                out.put_u8(r.kind.code());
                put_opt_str(out, r.session.as_deref().map(check_str));
                put_opt_str(out, r.protocol_version.as_deref().map(check_str));
                put_opt_str(out, r.last_event_id.as_deref().map(check_str));
                put_str(out, check_str(&r.principal));
                put_body(out, &r.body);
            }
            Frame::Response(r) => {
                out.put_u8(T_RESPONSE);
                out.put_u64_le(r.exchange);
                out.put_u16_le(r.status);
                put_opt_str(out, r.session.as_deref().map(check_str));
                out.put_u8(r.flags);
                put_opt_str(out, r.event_id.as_deref().map(check_str));
                put_body(out, &r.body);
            }
            Frame::Cancel { exchange } => {
                out.put_u8(T_CANCEL);
                out.put_u64_le(*exchange);
            }
            Frame::Ping(v) => {
                out.put_u8(T_PING);
                out.put_u64_le(*v);
            }
            Frame::Pong(v) => {
                out.put_u8(T_PONG);
                out.put_u64_le(*v);
            }
            Frame::Snapshot(s) => {
                out.put_u8(T_SNAPSHOT);
                put_body(out, &s.initialize);
                put_body(out, &s.tools);
            }
            Frame::ServerHealth { down_since } => {
                out.put_u8(T_SERVER_HEALTH);
                // 0 = reachable (no server was down at the epoch).
                out.put_u64_le(down_since.unwrap_or(0));
            }
            Frame::Status(s) => {
                out.put_u8(T_STATUS);
                for v in [s.sessions, s.pending, s.exchanges, s.children, s.restarts] {
                    out.put_u32_le(v);
                }
            }
            Frame::ConsentRequest(c) => {
                out.put_u8(T_CONSENT_REQUEST);
                put_str(out, check_str(&c.id));
                put_str(out, check_str(&c.code));
                put_str(out, check_str(&c.client));
                put_str(out, check_str(&c.redirect_host));
            }
            Frame::ConsentDecision { id, approve } => {
                out.put_u8(T_CONSENT_DECISION);
                put_str(out, check_str(id));
                out.put_u8(u8::from(*approve));
            }
            Frame::AssetRequest(a) => {
                out.put_u8(T_ASSET_REQUEST);
                out.put_u64_le(a.exchange);
                out.put_u8(u8::from(a.head));
                put_str(out, check_str(&a.path));
                put_headers(out, &a.headers);
            }
            Frame::AssetResponse(a) => {
                out.put_u8(T_ASSET_RESPONSE);
                out.put_u64_le(a.exchange);
                out.put_u16_le(a.status);
                put_headers(out, &a.headers);
                put_body(out, &a.body);
            }
        }
    }

    /// Decodes one frame, checking every length against `limits`. Never panics.
    pub fn decode(buf: Bytes, limits: &Limits) -> Result<Frame, DecodeError> {
        if buf.is_empty() {
            return Err(DecodeError::Empty);
        }
        if buf.len() > limits.max_frame() {
            return Err(DecodeError::TooLong {
                field: "frame",
                len: buf.len(),
                max: limits.max_frame(),
            });
        }
        let max_body = limits.max_body.min(MAX_BODY_CEILING);
        let mut r = Reader::new(buf);
        let frame = match r.u8()? {
            T_HELLO => {
                let protocol = r.u16()?;
                let bridge_version = r.string("bridge version", MAX_STRING)?;
                let token = r.string("token", MAX_STRING)?;
                let tunnel = r.string("tunnel", MAX_STRING)?;
                let client_auth = match r.u8()? {
                    0 => ClientAuth::None,
                    1 => {
                        let mut sha256 = [0u8; 32];
                        for b in &mut sha256 {
                            *b = r.u8()?;
                        }
                        ClientAuth::Bearer { sha256 }
                    }
                    2 => ClientAuth::OAuth,
                    _ => return Err(DecodeError::InvalidValue("client auth")),
                };
                Frame::Hello(Hello {
                    protocol,
                    bridge_version,
                    token,
                    tunnel,
                    client_auth,
                })
            }
            T_WELCOME => Frame::Welcome(Welcome {
                protocol: r.u16()?,
                relay_version: r.string("relay version", MAX_STRING)?,
                mcp_url: r.string("mcp url", MAX_STRING)?,
                sse_url: r.string("sse url", MAX_STRING)?,
            }),
            T_REFUSED => Frame::Refused(Refusal {
                reason: RefuseReason::from_code(r.u8()?)?,
                message: r.string("message", MAX_STRING)?,
            }),
            T_REQUEST => Frame::Request(Request {
                exchange: r.u64()?,
                kind: RequestKind::from_code(r.u8()?)?,
                session: r.opt_string("session", MAX_STRING)?,
                protocol_version: r.opt_string("protocol version", MAX_STRING)?,
                last_event_id: r.opt_string("last event id", MAX_STRING)?,
                principal: r.string("principal", MAX_STRING)?,
                body: r.body(max_body)?,
            }),
            T_RESPONSE => {
                let exchange = r.u64()?;
                let status = r.u16()?;
                if !(100..=599).contains(&status) {
                    return Err(DecodeError::InvalidValue("status"));
                }
                let session = r.opt_string("session", MAX_STRING)?;
                let flags = r.u8()?;
                if flags & !(FLAG_FINAL | FLAG_STREAM) != 0 {
                    return Err(DecodeError::InvalidValue("flags"));
                }
                Frame::Response(Response {
                    exchange,
                    status,
                    session,
                    flags,
                    event_id: r.opt_string("event id", MAX_STRING)?,
                    body: r.body(max_body)?,
                })
            }
            T_CANCEL => Frame::Cancel { exchange: r.u64()? },
            T_PING => Frame::Ping(r.u64()?),
            T_PONG => Frame::Pong(r.u64()?),
            T_SNAPSHOT => Frame::Snapshot(Snapshot {
                initialize: r.body(max_body)?,
                tools: r.body(max_body)?,
            }),
            T_CONSENT_REQUEST => Frame::ConsentRequest(ConsentRequest {
                id: r.string("consent id", MAX_STRING)?,
                code: r.string("consent code", MAX_STRING)?,
                client: r.string("client", MAX_STRING)?,
                redirect_host: r.string("redirect host", MAX_STRING)?,
            }),
            T_CONSENT_DECISION => Frame::ConsentDecision {
                id: r.string("consent id", MAX_STRING)?,
                approve: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::InvalidValue("decision")),
                },
            },
            T_STATUS => Frame::Status(BridgeStatus {
                sessions: r.u32()?,
                pending: r.u32()?,
                exchanges: r.u32()?,
                children: r.u32()?,
                restarts: r.u32()?,
            }),
            T_SERVER_HEALTH => Frame::ServerHealth {
                down_since: Some(r.u64()?).filter(|&t| t != 0),
            },
            T_ASSET_REQUEST => Frame::AssetRequest(AssetRequest {
                exchange: r.u64()?,
                head: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::InvalidValue("asset method")),
                },
                path: r.string("asset path", MAX_STRING)?,
                headers: read_headers(&mut r)?,
            }),
            T_ASSET_RESPONSE => {
                let exchange = r.u64()?;
                let status = r.u16()?;
                if !(100..=599).contains(&status) {
                    return Err(DecodeError::InvalidValue("status"));
                }
                Frame::AssetResponse(AssetResponse {
                    exchange,
                    status,
                    headers: read_headers(&mut r)?,
                    body: r.body(max_body)?,
                })
            }
            t => return Err(DecodeError::UnknownType(t)),
        };
        r.finish()?;
        Ok(frame)
    }
}

/// Writes at most [`MAX_ASSET_HEADERS`] header pairs.
fn put_headers(out: &mut BytesMut, headers: &[(String, String)]) {
    let n = headers.len().min(MAX_ASSET_HEADERS);
    out.put_u8(n as u8);
    for (name, value) in &headers[..n] {
        put_str(out, check_str(name));
        put_str(out, check_str(value));
    }
}

fn read_headers(r: &mut Reader) -> Result<Vec<(String, String)>, DecodeError> {
    let n = usize::from(r.u8()?);
    if n > MAX_ASSET_HEADERS {
        return Err(DecodeError::InvalidValue("header count"));
    }
    let mut headers = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.string("header name", MAX_STRING)?;
        let value = r.string("header value", MAX_STRING)?;
        headers.push((name, value));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_str() -> impl Strategy<Value = String> {
        proptest::string::string_regex(".{0,40}").unwrap()
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let body = proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from);
        prop_oneof![
            (
                any::<u16>(),
                arb_str(),
                arb_str(),
                arb_str(),
                proptest::option::of(any::<[u8; 32]>()),
                any::<bool>()
            )
                .prop_map(|(protocol, v, t, n, h, oauth)| Frame::Hello(Hello {
                    protocol,
                    bridge_version: v,
                    token: t,
                    tunnel: n,
                    client_auth: match (h, oauth) {
                        (_, true) => ClientAuth::OAuth,
                        (None, false) => ClientAuth::None,
                        (Some(sha256), false) => ClientAuth::Bearer { sha256 },
                    },
                })),
            (arb_str(), arb_str(), arb_str(), arb_str()).prop_map(|(id, code, client, rh)| {
                Frame::ConsentRequest(ConsentRequest {
                    id,
                    code,
                    client,
                    redirect_host: rh,
                })
            }),
            (arb_str(), any::<bool>())
                .prop_map(|(id, approve)| Frame::ConsentDecision { id, approve }),
            (any::<u16>(), arb_str(), arb_str(), arb_str()).prop_map(|(p, v, m, s)| {
                Frame::Welcome(Welcome {
                    protocol: p,
                    relay_version: v,
                    mcp_url: m,
                    sse_url: s,
                })
            }),
            (1u8..=8, arb_str()).prop_map(|(c, m)| Frame::Refused(Refusal {
                reason: RefuseReason::from_code(c).unwrap(),
                message: m,
            })),
            (
                any::<u64>(),
                1u8..=5,
                proptest::option::of(arb_str()),
                proptest::option::of(arb_str()),
                proptest::option::of(arb_str()),
                arb_str(),
                body.clone()
            )
                .prop_map(|(e, k, s, p, l, pr, b)| Frame::Request(Request {
                    exchange: e,
                    kind: RequestKind::from_code(k).unwrap(),
                    session: s,
                    protocol_version: p,
                    last_event_id: l,
                    principal: pr,
                    body: b,
                })),
            (
                any::<u64>(),
                100u16..600,
                proptest::option::of(arb_str()),
                0u8..4,
                proptest::option::of(arb_str()),
                body.clone()
            )
                .prop_map(|(e, st, s, f, ev, b)| Frame::Response(Response {
                    exchange: e,
                    status: st,
                    session: s,
                    flags: f,
                    event_id: ev,
                    body: b,
                })),
            any::<u64>().prop_map(|exchange| Frame::Cancel { exchange }),
            any::<u64>().prop_map(Frame::Ping),
            any::<u64>().prop_map(Frame::Pong),
            (body.clone(), body.clone()).prop_map(|(i, t)| Frame::Snapshot(Snapshot {
                initialize: i,
                tools: t
            })),
            any::<[u32; 5]>().prop_map(|v| Frame::Status(BridgeStatus {
                sessions: v[0],
                pending: v[1],
                exchanges: v[2],
                children: v[3],
                restarts: v[4],
            })),
            proptest::option::of(1u64..).prop_map(|down_since| Frame::ServerHealth { down_since }),
            (
                any::<u64>(),
                any::<bool>(),
                arb_str(),
                proptest::collection::vec((arb_str(), arb_str()), 0..4)
            )
                .prop_map(|(exchange, head, path, headers)| {
                    Frame::AssetRequest(AssetRequest {
                        exchange,
                        head,
                        path,
                        headers,
                    })
                }),
            (
                any::<u64>(),
                100u16..600,
                proptest::collection::vec((arb_str(), arb_str()), 0..4),
                body.clone()
            )
                .prop_map(|(exchange, status, headers, body)| {
                    Frame::AssetResponse(AssetResponse {
                        exchange,
                        status,
                        headers,
                        body,
                    })
                }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(f in arb_frame()) {
            let bytes = f.encode();
            prop_assert_eq!(Frame::decode(bytes, &Limits::default()).unwrap(), f);
        }

        #[test]
        fn every_truncation_is_an_error(f in arb_frame()) {
            let bytes = f.encode();
            for cut in 0..bytes.len() {
                prop_assert!(Frame::decode(bytes.slice(..cut), &Limits::default()).is_err());
            }
        }

        #[test]
        fn trailing_bytes_are_an_error(f in arb_frame(), extra in proptest::collection::vec(any::<u8>(), 1..8)) {
            let mut bytes = f.encode().to_vec();
            bytes.extend_from_slice(&extra);
            prop_assert!(Frame::decode(Bytes::from(bytes), &Limits::default()).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Frame::decode(Bytes::from(bytes), &Limits::default());
        }

        #[test]
        fn single_byte_corruption_never_panics(f in arb_frame(), pos in any::<usize>(), val in any::<u8>()) {
            let mut bytes = f.encode().to_vec();
            let i = pos % bytes.len();
            bytes[i] = val;
            let _ = Frame::decode(Bytes::from(bytes), &Limits::default());
        }
    }

    #[test]
    fn body_limit_is_enforced() {
        let f = Frame::Response(Response {
            exchange: 1,
            status: 200,
            session: None,
            flags: FLAG_FINAL,
            event_id: None,
            body: Bytes::from(vec![b'x'; 2000]),
        });
        let limits = Limits { max_body: 1000 };
        assert!(matches!(
            Frame::decode(f.encode(), &limits),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn lying_length_is_truncated_not_panic() {
        // A Request whose body length claims 4 GiB.
        let mut b = BytesMut::new();
        b.put_u8(T_REQUEST);
        b.put_u64_le(1);
        b.put_u8(1);
        b.put_u8(0);
        b.put_u8(0);
        b.put_u8(0);
        put_str(&mut b, "p");
        b.put_u32_le(u32::MAX);
        assert!(Frame::decode(b.freeze(), &Limits::default()).is_err());
    }

    #[test]
    fn invalid_enum_values_are_rejected() {
        assert_eq!(
            Frame::decode(Bytes::from_static(&[99]), &Limits::default()),
            Err(DecodeError::UnknownType(99))
        );
        assert_eq!(
            Frame::decode(Bytes::new(), &Limits::default()),
            Err(DecodeError::Empty)
        );
        let mut b = BytesMut::new();
        b.put_u8(T_REFUSED);
        b.put_u8(200);
        put_str(&mut b, "x");
        assert!(matches!(
            Frame::decode(b.freeze(), &Limits::default()),
            Err(DecodeError::InvalidValue(_))
        ));
    }
}
