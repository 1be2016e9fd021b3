//! What a client sent, as the core takes it: where a message came from and how it is
//! answered ([`Ctx`]), and a request, which always carries its id ([`ClientRequest`]).

use std::ops::Range;

use bytes::Bytes;
use protocol::jsonrpc::{Envelope, Kind};

/// The transport a client message came on, which decides how it is answered.
#[derive(Debug, Clone)]
pub(super) enum Transport {
    /// Streamable HTTP: the POST itself carries the answer; in a session or not.
    Streamable { session: Option<String> },
    /// HTTP+SSE: answers go to the session's stream, the POST gets 202.
    HttpSse { session: String },
}

/// Where a client message came from, and where its answer goes.
#[derive(Debug, Clone)]
pub(super) struct Ctx {
    /// Who sent it.
    pub(super) principal: String,
    /// The exchange it came on.
    pub(super) exchange: u64,
    /// How it is answered.
    pub(super) transport: Transport,
    /// The `MCP-Protocol-Version` header, if any.
    pub(super) header_version: Option<String>,
}

impl Ctx {
    /// The session it names, if any.
    pub(super) fn session(&self) -> Option<&str> {
        match &self.transport {
            Transport::Streamable { session } => session.as_deref(),
            Transport::HttpSse { session } => Some(session),
        }
    }

    /// Whether it came on the HTTP+SSE transport.
    pub(super) fn is_http_sse(&self) -> bool {
        matches!(self.transport, Transport::HttpSse { .. })
    }

    /// The same context without a session (2026-07-28 requests ignore any).
    pub(super) fn without_session(&self) -> Ctx {
        Ctx {
            transport: Transport::Streamable { session: None },
            ..self.clone()
        }
    }
}

/// A client's JSON-RPC request: its body, and the parts of it the core reads, the id
/// among them.
#[derive(Debug, Clone)]
pub(super) struct ClientRequest {
    body: Bytes,
    id: Range<usize>,
    method: String,
    params: Option<Range<usize>>,
    progress_token: Option<Range<usize>>,
    meta_protocol_version: Option<String>,
}

impl ClientRequest {
    /// The request `body` holds (scanned as `env`); `None` unless it is a request with
    /// an id.
    pub(super) fn new(body: Bytes, env: &Envelope<'_>) -> Option<Self> {
        let id = match (env.kind, &env.id) {
            (Kind::Request, Some(id)) => id.clone(),
            _ => return None,
        };
        Some(Self {
            id,
            method: env.method.as_deref().unwrap_or_default().to_owned(),
            params: env.params.clone(),
            progress_token: env.progress_token.clone(),
            meta_protocol_version: env.meta_protocol_version.as_deref().map(str::to_owned),
            body,
        })
    }

    /// Scans `body` as a request; `None` unless it is a request with an id.
    pub(super) fn parse(body: Bytes) -> Option<Self> {
        let env = protocol::scan::parse_fast(&body).ok()?;
        Self::new(body.clone(), &env)
    }

    /// The whole message.
    pub(super) fn body(&self) -> &Bytes {
        &self.body
    }

    /// The id, as written (raw JSON; a copy, so the body need not be kept for it).
    pub(super) fn id(&self) -> Bytes {
        Bytes::copy_from_slice(&self.body[self.id.clone()])
    }

    /// Where the id is in the body.
    pub(super) fn id_span(&self) -> Range<usize> {
        self.id.clone()
    }

    /// The method.
    pub(super) fn method(&self) -> &str {
        &self.method
    }

    /// The `params` value, as written.
    pub(super) fn params(&self) -> Option<&[u8]> {
        self.params.clone().map(|r| &self.body[r])
    }

    /// Where `params._meta.progressToken` is in the body, if present.
    pub(super) fn progress_token_span(&self) -> Option<Range<usize>> {
        self.progress_token.clone()
    }

    /// The protocol version `params._meta` names (2026-07-28 requests).
    pub(super) fn meta_protocol_version(&self) -> Option<&str> {
        self.meta_protocol_version.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_with_an_id_are_requests() {
        let body = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":"a1","method":"tools/call","params":{"_meta":{"progressToken":7}}}"#,
        );
        let r = ClientRequest::parse(body.clone()).expect("a request");
        assert_eq!(&r.id()[..], br#""a1""#);
        assert_eq!(r.method(), "tools/call");
        assert_eq!(r.progress_token_span().map(|s| &body[s]), Some(&b"7"[..]));
        assert!(r.params().is_some_and(|p| p.starts_with(b"{")));
        for not_one in [
            &br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        ] {
            assert!(
                ClientRequest::parse(Bytes::from_static(not_one)).is_none(),
                "{}",
                String::from_utf8_lossy(not_one)
            );
        }
    }

    #[test]
    fn a_context_knows_its_session_and_transport() {
        let ctx = Ctx {
            principal: "alice".into(),
            exchange: 3,
            transport: Transport::HttpSse {
                session: "s1".into(),
            },
            header_version: None,
        };
        assert_eq!(ctx.session(), Some("s1"));
        assert!(ctx.is_http_sse());
        let bare = ctx.without_session();
        assert_eq!((bare.session(), bare.is_http_sse()), (None, false));
        assert_eq!(bare.exchange, 3);
    }
}
