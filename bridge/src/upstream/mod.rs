//! Local MCP servers that speak HTTP instead of stdio: a Streamable HTTP endpoint
//! (`http://127.0.0.1:3845/mcp`) or an older HTTP+SSE one (`…/sse`).
//!
//! The bridge core talks to every server as to a stdio process: it starts "children",
//! writes JSON-RPC lines to them and reads lines back ([`crate::core::Children`]). For an
//! HTTP server a child is one upstream MCP session ([`HttpUpstreams`]): starting it opens
//! nothing, its first line (the core's `initialize`) opens the session, each request line
//! becomes a `POST`, and what the server answers (a JSON body, or the messages of an SSE
//! stream: progress, logs, its requests to the client, then the answer) comes back as
//! lines. The core runs such servers with one upstream session per remote session and one
//! per principal for sessionless traffic (`CoreConfig::isolate`), so two clients never
//! share an upstream session, and keeps one session of its own to learn whether the
//! server is up and what it offers (`CoreConfig::keep_shared`).
//!
//! Files:
//! - `address.rs`: which addresses may be upstreams (loopback and private networks unless
//!   `--allow-remote-upstream`);
//! - `sse.rs`: the bounded decoder of `text/event-stream` bodies;
//! - `streamable.rs`: one session over Streamable HTTP (session ids, resumption, renewal
//!   of an expired session);
//! - `legacy.rs`: one session over HTTP+SSE (the `endpoint` event, answers on the stream);
//! - `link.rs`: what the sessions of one server share, and a session's way back to the
//!   core;
//! - `health.rs`: [`Health`], whether the server answers;
//! - `children.rs`: [`HttpUpstreams`], the core's children over HTTP: a task per session,
//!   the transport detection, and the prober of a server that is down.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

pub mod address;
mod children;
mod health;
mod legacy;
mod link;
pub mod sse;
mod streamable;

pub use children::HttpUpstreams;
pub use health::Health;

/// Which HTTP transport an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Streamable HTTP, else HTTP+SSE, as MCP clients decide: a `POST` of `initialize`
    /// first; a 4xx answer to it means an HTTP+SSE server, tried with `GET`.
    #[default]
    Auto,
    /// Streamable HTTP (MCP 2025-03-26 and later).
    #[serde(alias = "streamable-http", alias = "streamableHttp")]
    #[value(alias = "streamable-http")]
    Http,
    /// HTTP+SSE (MCP 2024-11-05): a `GET` event stream whose `endpoint` event names
    /// where to `POST`.
    Sse,
}

/// A local HTTP MCP server to publish.
#[derive(Clone, PartialEq)]
pub struct HttpServer {
    /// Its endpoint (`http://127.0.0.1:3845/mcp`, or `…/sse` for HTTP+SSE).
    pub url: Url,
    /// Which transport it speaks.
    pub transport: Transport,
    /// Headers sent with every request to it (an API key the server wants); never sent to
    /// the relay.
    pub headers: Vec<(String, String)>,
}

/// Header values are secrets (API keys): `Debug` shows their names only.
impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("HttpServer")
            .field("url", &self.url.as_str())
            .field("transport", &self.transport)
            .field("headers", &names)
            .finish()
    }
}

/// What a tunnel publishes: a command to run, or a local HTTP server.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerSource {
    /// A stdio server: the command, its environment and working directory.
    Command {
        /// Program and arguments.
        command: Vec<String>,
        /// Environment variables set for it (on top of the bridge's own).
        env: Vec<(String, String)>,
        /// Working directory.
        cwd: Option<std::path::PathBuf>,
    },
    /// A local HTTP server.
    Http(HttpServer),
}

impl ServerSource {
    /// How the server is named in messages and remembered (the command line, or the URL).
    pub fn words(&self) -> Vec<String> {
        match self {
            ServerSource::Command { command, .. } => command.clone(),
            ServerSource::Http(h) => vec![h.url.to_string()],
        }
    }
}

/// Settings of the HTTP children of one core.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The server.
    pub server: HttpServer,
    /// Longest message accepted from it (a JSON body or one SSE event).
    pub max_message: usize,
    /// Longest wait for the server to accept a connection and send response headers.
    pub connect_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_names_headers_without_their_values() {
        let s = HttpServer {
            url: Url::parse("http://127.0.0.1:3845/mcp").unwrap(),
            transport: Transport::Auto,
            headers: vec![("Authorization".into(), "Bearer sekrit".into())],
        };
        let shown = format!("{s:?}");
        assert!(shown.contains("Authorization"), "{shown}");
        assert!(!shown.contains("sekrit"), "{shown}");
    }
}
