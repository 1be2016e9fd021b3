//! The relay as an OAuth 2.1 authorization server (and resource server) for its tunnels.
//! How the flows work, what is checked and why: `docs/design/oauth.md`.
//!
//! - `metadata`: RFC 9728 protected-resource metadata per tunnel, RFC 8414 server metadata;
//! - `register`: dynamic client registration (RFC 7591);
//! - `cimd`: client ID metadata documents, fetched with SSRF guards;
//! - `authorize` + `consent`: the authorization endpoint and the owner-only consent page;
//! - `token`: code and refresh grants (PKCE S256, rotating refresh tokens), revocation;
//! - `access`: checking access tokens on every MCP request (audience = the tunnel), with
//!   `token_cache` keeping the database off that path;
//! - `consents`: authorizations waiting for the owner; `redirect`: allowed redirect URIs;
//! - `state`: the server's limits and in-memory state; `failures`: failed sign-ins counted
//!   across nodes; `error`: OAuth error answers;
//! - `trace`: the OAuth trace, recorded as each request is answered;
//! - `routes`: the endpoints' paths.
//!
//! One issuer: the relay's public base URL.

pub mod access;
pub mod authorize;
pub mod cimd;
pub mod consent;
pub mod consents;
pub mod error;
pub mod failures;
pub mod limits;
pub mod metadata;
pub mod redirect;
pub mod register;
pub mod routes;
pub mod state;
pub mod token;
pub mod token_cache;
pub mod trace;
