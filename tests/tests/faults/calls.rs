//! Calls through a tunnel as the fault tests judge them: every call must end with an
//! acceptable answer within its limit (no hang, no broken answer, no answer to another
//! call), in a handshake-era session.

use std::time::Duration;

use e2e::Bridge;
use e2e::mcp::{McpClient, Reply, initialize, notification, session_headers, tool_call};
use serde_json::{Value, json};

/// The protocol revision the tests speak.
pub(crate) const MCP_VERSION: &str = "2025-11-25";

/// Where a tunnel is served: the relay's base URL, the tunnel name and the client token.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) mcp: McpClient,
}

impl Endpoint {
    /// The endpoint a bridge printed.
    pub(crate) fn of(bridge: &Bridge) -> Self {
        Self {
            mcp: McpClient::of(bridge),
        }
    }

    /// `GET /status/<name>`, when the relay knows the tunnel.
    pub(crate) async fn status(&self) -> Option<Value> {
        self.mcp.status().await
    }

    /// `GET /healthz`.
    pub(crate) async fn health(&self) -> Option<Value> {
        self.mcp.health().await
    }

    /// Waits until the relay reports the bridge connected (`want`) or not; how long it took.
    pub(crate) async fn wait_connected(
        &self,
        want: bool,
        within: Duration,
        what: &str,
    ) -> Duration {
        self.mcp.wait_connected(want, within, what).await
    }

    /// POSTs one JSON-RPC message (in `session`, if any) and reads the whole answer; a
    /// hang past `limit`, a broken connection or a body that is not JSON-RPC is an error.
    pub(crate) async fn post(
        &self,
        session: Option<&str>,
        body: &Value,
        limit: Duration,
    ) -> Result<Reply, String> {
        let headers = match session {
            Some(s) => session_headers(s, MCP_VERSION),
            None => vec![("mcp-protocol-version".into(), MCP_VERSION.into())],
        };
        let reply = self
            .mcp
            .clone()
            .with_limit(limit)
            .try_post(body, &headers)
            .await?;
        match &reply.unreadable {
            Some(e) => Err(e.clone()),
            None => Ok(reply),
        }
    }
}

/// How a call ended, when it ended acceptably for *some* test.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Got {
    /// The tool's answer, with this text.
    Text(String),
    /// A tool error (`isError: true`), with this text.
    ToolError(String),
    /// An HTTP error status with a JSON-RPC error body (id null or the call's), or a
    /// JSON-RPC error response to the call.
    Error {
        status: u16,
        code: i64,
        message: String,
    },
}

/// Reads a call's answer. `Err` means no acceptable answer at all: a hang, a broken
/// connection, a response to another request, or several responses.
pub(crate) fn judge(reply: Result<Reply, String>, id: &Value) -> Result<Got, String> {
    let reply = reply?;
    let error_of = |m: &Value| {
        (
            m["error"]["code"].as_i64().unwrap_or(0),
            m["error"]["message"].as_str().unwrap_or("").to_owned(),
        )
    };
    if reply.status != 200 {
        let (code, message) = match reply.messages.as_slice() {
            [m] if m.get("error").is_some() && (m["id"] == *id || m["id"].is_null()) => error_of(m),
            other => {
                return Err(format!(
                    "HTTP {} without a JSON-RPC error for {id}: {other:?}",
                    reply.status
                ));
            }
        };
        return Ok(Got::Error {
            status: reply.status,
            code,
            message,
        });
    }
    let r = reply.response_to(id)?;
    if r.get("error").is_some() {
        let (code, message) = error_of(r);
        return Ok(Got::Error {
            status: 200,
            code,
            message,
        });
    }
    let text = r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok(if r["result"]["isError"] == json!(true) {
        Got::ToolError(text)
    } else {
        Got::Text(text)
    })
}

/// The incident id in a "the local MCP server exited (incident …)" message.
pub(crate) fn incident_of(message: &str) -> Option<&str> {
    let rest = &message[message.find("incident ")? + "incident ".len()..];
    let id = rest.get(..8)?;
    id.bytes().all(|b| b.is_ascii_hexdigit()).then_some(id)
}

/// A Streamable HTTP session.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) ep: Endpoint,
    pub(crate) id: String,
}

impl Session {
    /// `initialize` + `notifications/initialized`.
    pub(crate) async fn open(ep: &Endpoint) -> Result<Self, String> {
        let init = initialize(json!("init"), MCP_VERSION, json!({}), "faults-test");
        let reply = ep.post(None, &init, Duration::from_secs(20)).await?;
        if reply.status != 200 {
            return Err(format!(
                "initialize: HTTP {}: {:?}",
                reply.status, reply.messages
            ));
        }
        let resp = reply.response_to(&json!("init"))?;
        if resp["result"]["serverInfo"]["name"] != "mcp-fixture" {
            return Err(format!("initialize failed: {resp}"));
        }
        let id = reply.session.clone().ok_or("initialize: no session id")?;
        let note = notification("notifications/initialized");
        let r = ep.post(Some(&id), &note, Duration::from_secs(10)).await?;
        if r.status != 202 {
            return Err(format!("notifications/initialized: HTTP {}", r.status));
        }
        Ok(Self { ep: ep.clone(), id })
    }

    /// Opens a session, panicking on failure.
    pub(crate) async fn must_open(ep: &Endpoint) -> Self {
        Self::open(ep)
            .await
            .unwrap_or_else(|e| panic!("cannot open a session: {e}"))
    }

    /// Opens `n` sessions, panicking on a failure.
    pub(crate) async fn must_open_many(ep: &Endpoint, n: usize) -> Vec<Self> {
        let mut sessions = Vec::with_capacity(n);
        for _ in 0..n {
            sessions.push(Self::must_open(ep).await);
        }
        sessions
    }

    pub(crate) async fn call(
        &self,
        id: &Value,
        tool: &str,
        args: Value,
        limit: Duration,
    ) -> Result<Got, String> {
        let body = tool_call(id.clone(), tool, args);
        judge(self.ep.post(Some(&self.id), &body, limit).await, id)
    }

    /// [`Session::call`] on a task of its own.
    pub(crate) fn spawn_call(
        &self,
        id: Value,
        tool: &str,
        args: Value,
        limit: Duration,
    ) -> tokio::task::JoinHandle<Result<Got, String>> {
        let (s, tool) = (self.clone(), tool.to_owned());
        tokio::spawn(async move { s.call(&id, &tool, args, limit).await })
    }

    /// Calls `echo` and checks the answer.
    pub(crate) async fn echo_ok(&self, id: u64, text: &str) {
        let got = self
            .call(
                &json!(id),
                "echo",
                json!({"text": text}),
                Duration::from_secs(20),
            )
            .await;
        assert_eq!(
            got,
            Ok(Got::Text(text.to_owned())),
            "echo {text:?} in session {}",
            self.id
        );
    }

    pub(crate) async fn delete(&self) -> u16 {
        self.ep.mcp.delete(&self.id, MCP_VERSION).await
    }
}

/// The outcome of a call's task, which must end within `limit`; `what` names the call.
pub(crate) async fn ended_within(
    call: tokio::task::JoinHandle<Result<Got, String>>,
    limit: Duration,
    what: &str,
) -> Result<Got, String> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| panic!("{what} did not end within {limit:?}"))
        .expect("task")
}
