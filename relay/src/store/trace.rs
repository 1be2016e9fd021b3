//! The OAuth trace as stored: its steps, outcomes and events, and the table that keeps them
//! (what is recorded and when is in `oauth/trace.rs`).

use protocol::time::readable_ms as format_time;

/// A step of the OAuth flows (stored by its [`Step::as_str`] name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// RFC 9728 protected-resource metadata of a tunnel.
    ResourceMetadata,
    /// RFC 8414 authorization-server metadata.
    ServerMetadata,
    /// Dynamic client registration.
    Register,
    /// A client ID metadata document fetched (or refused).
    ClientDocument,
    /// The authorization endpoint.
    Authorize,
    /// The owner's consent.
    Consent,
    /// An authorization code exchanged at the token endpoint.
    Token,
    /// A refresh token exchanged at the token endpoint.
    Refresh,
    /// Token revocation.
    Revoke,
    /// A request of the MCP endpoint answered 401.
    Unauthorized,
}

impl Step {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Step::ResourceMetadata => "resource_metadata",
            Step::ServerMetadata => "server_metadata",
            Step::Register => "register",
            Step::ClientDocument => "client_document",
            Step::Authorize => "authorize",
            Step::Consent => "consent",
            Step::Token => "token",
            Step::Refresh => "refresh",
            Step::Revoke => "revoke",
            Step::Unauthorized => "mcp_401",
        }
    }
}

/// How a step ended (stored by its [`Outcome::as_str`] name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It waits for someone (a consent shown to the owner).
    Pending,
    /// The relay refused it (4xx, or an OAuth error sent to the client).
    Refused,
    /// The relay failed (5xx).
    Error,
}

impl Outcome {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Pending => "pending",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
        }
    }
}

/// One event of the trace, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceEvent {
    /// Row id (0 before it is stored); ids grow with time.
    pub id: i64,
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The tunnel, or `None` for a relay-wide event.
    pub tunnel: Option<String>,
    /// The step ([`Step::as_str`]).
    pub step: String,
    /// The outcome ([`Outcome::as_str`]).
    pub outcome: String,
    /// The OAuth `error` code sent to the client, if any.
    pub error: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// The client's `client_id`, when known.
    pub client_id: Option<String>,
    /// The client's self-declared name, when known (unverified).
    pub client_name: Option<String>,
    /// The client's address (behind a local reverse proxy, the one it forwarded).
    pub ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// Only the request tied it to its tunnel, nothing the relay issued (module
    /// documentation); kept apart from the others.
    pub unverified: bool,
}

impl TraceEvent {
    /// Who the event is about, for people: the client's name as it gave it, else a
    /// shortened id.
    pub fn who(&self) -> String {
        match (&self.client_name, &self.client_id) {
            (Some(n), _) if !n.is_empty() => n.clone(),
            (_, Some(id)) => format!("Client {}", short_id(id)),
            _ => "A client".into(),
        }
    }

    /// One sentence: "py-client's token request was refused (invalid_target): …".
    pub fn summary(&self) -> String {
        let what = match self.step.as_str() {
            "resource_metadata" => "protected-resource metadata fetch",
            "server_metadata" => "authorization-server metadata fetch",
            "register" => "registration",
            "client_document" => "client metadata document",
            "authorize" => "authorization request",
            "consent" => "consent",
            "token" => "token request",
            "refresh" => "token refresh",
            "revoke" => "revocation",
            "mcp_401" => "MCP request",
            other => other,
        };
        let verb = match self.outcome.as_str() {
            "ok" => "succeeded",
            "pending" => "is waiting",
            "refused" => "was refused",
            "error" => "failed",
            other => other,
        };
        let error = self
            .error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        format!("{}'s {what} {verb}{error}: {}", self.who(), self.reason)
    }

    /// The event as one JSON object (`relay logs --json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "time": format_time(self.time_ms),
            "time_ms": self.time_ms,
            "tunnel": self.tunnel,
            "step": self.step,
            "outcome": self.outcome,
            "error": self.error,
            "reason": self.reason,
            "client_id": self.client_id,
            "client_name": self.client_name,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "unverified": self.unverified,
            "summary": self.summary(),
        })
    }
}

/// A client id cut for display (registered ids are long and random).
pub fn short_id(id: &str) -> String {
    if id.starts_with("https://") || id.chars().count() <= 18 {
        id.to_owned()
    } else {
        format!("{}…", id.chars().take(14).collect::<String>())
    }
}
