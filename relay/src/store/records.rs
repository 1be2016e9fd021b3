//! What the store keeps, as the rest of the relay sees it: bridge tokens, OAuth grants,
//! codes, clients and token states (the same on every backend).

/// What an OAuth grant allows: one client, one tunnel, one owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The OAuth client.
    pub client_id: String,
    /// The tunnel name.
    pub tunnel: String,
    /// The resource (the tunnel's public MCP URL): the token's audience.
    pub resource: String,
    /// The bridge token that owned the tunnel when the grant was made.
    pub owner_token: i64,
    /// Granted scope (space-separated).
    pub scope: String,
}

/// A live access token's grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    /// What it grants.
    pub grant: Grant,
    /// When it expires (epoch seconds).
    pub expires: i64,
    /// The token family: one authorization (one consent), kept across refreshes.
    pub family: String,
}

/// An authorization code's stored request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGrant {
    /// The grant it leads to.
    pub grant: Grant,
    /// The exact redirect URI of the request.
    pub redirect_uri: String,
    /// PKCE S256 challenge.
    pub challenge: String,
    /// Expiry (epoch seconds).
    pub expires: i64,
}

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// `client_id` (random for DCR, the document URL for CIMD).
    pub client_id: String,
    /// `dcr` or `cimd`.
    pub kind: String,
    /// Self-declared name (never shown as truth).
    pub name: Option<String>,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// `none`, `client_secret_post` or `client_secret_basic`.
    pub auth_method: String,
    /// SHA-256 of the client secret, for confidential clients.
    pub secret_hash: Option<[u8; 32]>,
    /// The registration (or document) as received, JSON.
    pub metadata: String,
    /// Registration time.
    pub created: i64,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshError {
    /// Unknown or expired.
    Invalid,
    /// Already used or revoked: its whole family is now revoked.
    Reused,
}

/// An OAuth client holding live tokens for a tunnel, for its owner's status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedClient {
    /// `client_id`.
    pub client_id: String,
    /// Self-declared name, if any (unverified).
    pub name: Option<String>,
    /// `dcr` or `cimd` (`None` if the client record is gone).
    pub kind: Option<String>,
    /// Its registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// First grant of tokens for the tunnel (epoch seconds), when known.
    pub first_used: Option<i64>,
    /// Last token grant or MCP request on the tunnel (epoch seconds), when known.
    pub last_used: Option<i64>,
}

/// What the store knows of an access or refresh token, live or not (to explain a refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenState {
    /// `access` or `refresh`.
    pub kind: String,
    /// The grant it carries.
    pub grant: Grant,
    /// Expiry (epoch seconds).
    pub expires: i64,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// A bridge token as listed by the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Row id.
    pub id: i64,
    /// Operator-chosen label.
    pub label: String,
    /// Creation time (epoch seconds).
    pub created: i64,
    /// Revocation time, if revoked.
    pub revoked: Option<i64>,
    /// Tunnel names it owns.
    pub names: Vec<String>,
}

/// Where a tunnel's bridge is connected, as the node holding it recorded (so that every
/// node sharing the database knows the tunnel and how its clients authenticate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// The node holding (or last holding) the bridge.
    pub node: String,
    /// How its clients authenticate: `none`, `bearer` or `oauth`.
    pub auth: String,
    /// The bridge's version.
    pub bridge_version: String,
    /// When the bridge connected (epoch seconds).
    pub connected_at: i64,
    /// When it disconnected, if it did.
    pub disconnected_at: Option<i64>,
    /// The holder's last gauges (sessions, requests in flight, server processes, restarts,
    /// exchanges open at the relay), as a JSON array, from its node's heartbeats.
    pub gauges: Option<String>,
    /// The tunnel's newest calls as its node last recorded them (JSON, newest last).
    pub recent: Option<String>,
    /// When the holder's node last said it was alive (epoch milliseconds), if it ever did.
    pub node_seen_ms: Option<i64>,
}

/// A node that says nothing for this long (three missed heartbeats) counts as gone: the
/// bridges it held count as disconnected since its last heartbeat.
pub const NODE_SILENT_MS: i64 = 15_000;

impl Presence {
    /// Whether the holder's node stopped saying it is alive (as of `now_ms`): it died
    /// without recording its bridges' ends.
    pub fn node_silent(&self, now_ms: i64) -> bool {
        self.node_seen_ms
            .is_some_and(|seen| now_ms - seen > NODE_SILENT_MS)
    }

    /// When the bridge stopped being reachable (epoch seconds), if it did: its recorded
    /// end, or its node's last heartbeat when the node went silent.
    pub fn gone_since(&self, now_ms: i64) -> Option<i64> {
        match (self.disconnected_at, self.node_seen_ms) {
            (Some(at), _) => Some(at),
            (None, Some(seen)) if self.node_silent(now_ms) => Some(seen / 1000),
            _ => None,
        }
    }
}

/// One tunnel's news in a node's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// The tunnel.
    pub name: String,
    /// Its connection on this node (a beat of an older connection changes nothing).
    pub conn: i64,
    /// Its gauges, as a JSON array.
    pub gauges: String,
    /// Its newest calls as JSON, when they changed since the last heartbeat.
    pub recent: Option<String>,
}

/// An authorization waiting for the tunnel's owner: its request, its short code and the
/// decision once made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// Random id in the page's URL.
    pub id: String,
    /// The short code shown to the owner.
    pub code: String,
    /// Binds the consent to the browser (cookie) and its forms.
    pub csrf: String,
    /// Tunnel name.
    pub tunnel: String,
    /// Requesting client.
    pub client_id: String,
    /// What the page says about the client (never its self-chosen name as truth).
    pub client_display: String,
    /// Exact redirect URI.
    pub redirect_uri: String,
    /// The client's `state`.
    pub state: Option<String>,
    /// PKCE S256 challenge.
    pub challenge: String,
    /// The resource (the tunnel's MCP URL).
    pub resource: String,
    /// Granted scope.
    pub scope: String,
    /// When it was created (milliseconds since the Unix epoch).
    pub created_ms: i64,
    /// `Some(true)` approved, `Some(false)` denied.
    pub decision: Option<bool>,
    /// The bridge token that owned the tunnel when it was approved: the code is only
    /// issued while that token still owns it.
    pub approved_owner: Option<i64>,
}

impl Consent {
    /// Its code as typed codes are compared: letters and digits only, upper case.
    pub fn code_norm(&self) -> String {
        normalize_code(&self.code)
    }
}

/// A code as codes are compared: letters and digits only, upper case (`ab-cd ef12` is
/// `ABCDEF12`).
pub fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The tokens to issue with a code's redemption or a refresh token's rotation, stored in
/// the same transaction: a step that succeeded always left its tokens (a client retrying
/// after an error never looks like a reuse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The new access token.
    pub access: String,
    /// Its expiry (epoch seconds).
    pub access_expires: i64,
    /// The new refresh token.
    pub refresh: String,
    /// Its expiry (epoch seconds).
    pub refresh_expires: i64,
}
