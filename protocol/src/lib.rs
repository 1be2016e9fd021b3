//! The bridge⇄relay wire format and a light JSON-RPC envelope.
//! Where the protocol sits between relay and bridge: `docs/design/architecture.md`.
//!
//! A bridge dials the relay's `/<name>/connect` WebSocket and speaks [`Frame`]s, one per
//! binary WebSocket message:
//!
//! 0. The upgrade request carries the bridge token in `Authorization: Bearer <token>`
//!    ([`TOKEN_HEADER`]) and the bridge's optional features in [`FEATURES_HEADER`]. A
//!    relay that knows the header checks the token before upgrading (an unknown token
//!    gets a plain HTTP 401, and a bridge stops on it) and lists its own features in the
//!    `101` answer's [`FEATURES_HEADER`]; [`FEATURE_TOKEN_HEADER`] there means the token
//!    was checked and the `Hello` need not repeat it. Upgrades without the header (bridges
//!    of earlier releases) are still served, with tight limits until their `Hello` proves
//!    a token: a few pending handshakes per address, and at most [`MAX_HELLO_READ`] bytes
//!    read before it.
//! 1. The bridge sends [`Frame::Hello`] (protocol version, its own version, its bridge
//!    token — empty when the relay confirmed [`FEATURE_TOKEN_HEADER`] —, the tunnel name
//!    and how clients must authenticate). A relay of an earlier release ignores the
//!    upgrade headers and reads the token from the `Hello`, so a bridge that gets no
//!    [`FEATURE_TOKEN_HEADER`] back sends it there.
//! 2. The relay answers [`Frame::Welcome`] with the public URLs, or [`Frame::Refused`]
//!    with a precise reason, and closes.
//! 3. For every public HTTP exchange the relay sends one [`Frame::Request`]; the bridge
//!    answers with one or more [`Frame::Response`] frames for the same exchange number,
//!    the last one marked final. Either side may send [`Frame::Cancel`]; both send
//!    [`Frame::Ping`] and answer [`Frame::Pong`].
//!
//! One connection serves a tunnel name at a time. When a bridge claims a name whose
//! connection is still registered, the relay probes that connection (a [`Frame::Ping`];
//! any frame back within about two seconds counts):
//!
//! - it answers: the newcomer is refused ([`RefuseReason::InUse`] for bridges announcing
//!   [`FEATURE_IN_USE`], [`RefuseReason::NameTaken`] for earlier ones) with a message naming
//!   the live bridge's address, and the live bridge gets a [`Frame::Refused`] *after* its
//!   `Welcome`, a warning naming the newcomer's address (it stays connected);
//! - it does not (a laptop that slept, a network that changed: the connection is
//!   half-open): the newcomer replaces it, and the old connection gets a [`Frame::Refused`]
//!   naming the newcomer's address before it is closed.
//!
//! A `Refused` after `Welcome` is therefore a warning for the owner, never a reason to
//! stop; bridges of earlier releases log it as an unexpected frame and go on.
//!
//! HTTP+SSE streams outlive a short cut of the connection between bridges and
//! relays that both speak [`FEATURE_SSE_REATTACH`]: the relay keeps the client's stream
//! open through its grace period, and on the bridge's next connection sends a
//! [`RequestKind::HttpSseOpen`] with the session (and the principal that opened it); the
//! bridge answers it like the stream's first frame (`FLAG_STREAM`, no message), then
//! sends what the session produced meanwhile, and the session's messages from then on.
//! An unknown session, or one of another principal, gets a final 404 and the relay
//! ends the client's stream.
//!
//! A bridge with a published asset origin (both sides announcing [`FEATURE_ASSETS`]) gets
//! one [`Frame::AssetRequest`] per public `GET`/`HEAD` under `/<name>/assets/`, and answers
//! with one [`Frame::AssetResponse`] carrying the whole file.
//!
//! JSON-RPC bodies travel untouched; [`jsonrpc`] finds the few fields the bridge must
//! rewrite without re-serialising anything else.

pub mod calls;
pub mod digest;
pub mod frame;
pub mod jsonrpc;
pub mod net;
pub mod scan;
pub mod stateless;
pub mod sync;
pub mod text;
pub mod time;
pub mod version;
mod wire;

pub use frame::{
    AssetRequest, AssetResponse, BridgeStatus, ClientAuth, ConsentRequest, DecodeError, Frame,
    Hello, Limits, Refusal, RefuseReason, Request, RequestKind, Response, Snapshot, Welcome,
};

/// The version of the wire format this crate speaks. A relay refuses a [`Hello`] whose
/// version it does not support, naming the versions it does.
pub const PROTOCOL_VERSION: u16 = 1;

/// The upgrade request's header carrying the bridge token (`Bearer <token>`).
pub const TOKEN_HEADER: &str = "authorization";

/// The upgrade request's and answer's header listing optional features, comma-separated.
/// Unknown features are ignored, so either side may add some.
pub const FEATURES_HEADER: &str = "mcp-tunnel-features";

/// Relay feature: the token of the upgrade's [`TOKEN_HEADER`] was checked, and the
/// `Hello` may carry an empty token.
pub const FEATURE_TOKEN_HEADER: &str = "token-header";

/// Bridge feature: it understands [`RefuseReason::InUse`].
pub const FEATURE_IN_USE: &str = "in-use";

/// Bridge feature: it keeps an HTTP+SSE session across a reconnect, and carries its
/// stream on when the relay sends a [`RequestKind::HttpSseOpen`] naming the session (and
/// the principal that opened it) on the next connection.
///
/// A relay holds an HTTP+SSE client's stream open through its grace period only when
/// the connection that dropped and the one that came back both announced this feature
/// (and belong to the same bridge token and client authentication); otherwise the stream
/// ends with the connection, as with bridges of earlier releases, which would take such
/// a request for a new session.
pub const FEATURE_SSE_REATTACH: &str = "sse-reattach";

/// Relay feature: it understands [`Frame::ServerHealth`] (a bridge publishing an HTTP
/// server reports whether that server answers; while it does not, the relay answers
/// `POST`s from the bridge's snapshot as it does while the desktop is offline, and its
/// status page says so). Bridges send the frame only to relays announcing this.
pub const FEATURE_SERVER_HEALTH: &str = "server-health";

/// Bridge and relay feature: the tunnel publishes a local asset origin under
/// `/<name>/assets/` ([`Frame::AssetRequest`], [`Frame::AssetResponse`]). A bridge announces
/// it only when it has an asset origin; a relay sends asset requests only to bridges that
/// announced it, and a bridge that has one warns when its relay does not announce it.
pub const FEATURE_ASSETS: &str = "assets";

/// Most bytes a relay reads from a connection before its `Hello` proves a bridge token
/// (a `Hello` is at most three [`frame::MAX_STRING`] strings and a few bytes).
pub const MAX_HELLO_READ: usize = 32 * 1024;

/// Whether a features header value (comma-separated) lists `feature`.
pub fn has_feature(value: &str, feature: &str) -> bool {
    value
        .split(',')
        .any(|f| f.trim().eq_ignore_ascii_case(feature))
}

/// MCP protocol revisions of the initialize era that the endpoint accepts.
pub const LEGACY_MCP_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// MCP protocol revisions of the stateless revision that clients may announce.
pub const MODERN_MCP_VERSIONS: &[&str] = &["2026-07-28"];

/// The newest MCP revision the endpoint negotiates in `initialize`.
pub const LATEST_LEGACY_MCP_VERSION: &str = "2025-11-25";

/// The SSE event id of message `seq` of the resumable stream opened by exchange `stream`
/// (`seq` 0 is the relay's priming event).
pub fn event_id(stream: u64, seq: u32) -> String {
    format!("{stream:x}.{seq}")
}

/// Splits an SSE event id made by [`event_id`].
pub fn parse_event_id(id: &str) -> Option<(u64, u32)> {
    let (stream, seq) = id.split_once('.')?;
    if stream.is_empty() || stream.len() > 16 || seq.is_empty() || seq.len() > 10 {
        return None;
    }
    Some((u64::from_str_radix(stream, 16).ok()?, seq.parse().ok()?))
}

/// Checks a tunnel name: `[a-z0-9-]{3,40}`, not starting or ending with `-`, and not one
/// of the relay's own route names.
pub fn valid_tunnel_name(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "well-known",
        "oauth",
        "admin",
        "healthz",
        "readyz",
        "metrics",
        "static",
        "api",
        "connect",
        "authorize",
        "token",
        "register",
        "status",
    ];
    (3..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !RESERVED.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features() {
        assert!(has_feature("token-header, notice", "notice"));
        assert!(has_feature("Token-Header", FEATURE_TOKEN_HEADER));
        assert!(!has_feature("", "notice"));
        assert!(!has_feature("notices", "notice"));
    }

    #[test]
    fn tunnel_names() {
        assert!(valid_tunnel_name("abc"));
        assert!(valid_tunnel_name("my-server-2"));
        assert!(!valid_tunnel_name("ab"));
        assert!(!valid_tunnel_name("Abc"));
        assert!(!valid_tunnel_name("-abc"));
        assert!(!valid_tunnel_name("abc-"));
        assert!(!valid_tunnel_name("a.b.c"));
        assert!(!valid_tunnel_name("healthz"));
        assert!(!valid_tunnel_name(&"a".repeat(41)));
    }
}

#[cfg(test)]
mod event_id_tests {
    use super::*;

    #[test]
    fn round_trip() {
        let id = event_id(0x1_0000_002a, 7);
        assert_eq!(id, "10000002a.7");
        assert_eq!(parse_event_id(&id), Some((0x1_0000_002a, 7)));
        for bad in [
            "",
            ".",
            "a.",
            ".1",
            "x.1",
            "1.x",
            "1",
            "12345678901234567.1",
            "1.-1",
        ] {
            assert_eq!(parse_event_id(bad), None, "{bad}");
        }
    }
}
