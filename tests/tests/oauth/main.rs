//! The relay as an OAuth 2.1 authorization server, end to end: real `relay serve`
//! processes (public URL `http://localhost:<port>`, a data directory, bridge tokens made
//! with `relay token create`), bridges in `--auth oauth` mode serving the fixture, and real
//! clients.
//!
//! - The Python SDK's OAuth client through three redirect URIs and three ways to approve,
//!   and a relay restart survived by the stored grant (`python_flow`); the conformance
//!   suite's authorization-server scenarios (`conformance`).
//! - Every refusal (`token_refusals`, `authorization_refusals`, `owners`,
//!   `grant_edges`): audience, expiry, reused codes, PKCE, redirect URIs, unknown clients,
//!   client metadata documents on private addresses, revoked refresh tokens, wrong
//!   operator passwords and their rate limit, forged CSRF fields, consent polls from
//!   another browser, `bridge approve` by the wrong bridge token, a tunnel name that
//!   changed owner. No refusal ever lets a code out.
//! - Attacks from many loopback addresses at once (`attacker`, `attack_passwords`,
//!   `attack_bridge_tokens`, `attack_client_metadata`, `attack_codes`).
//! - The consent page (`consent_page`) and the owner's status page and OAuth trace
//!   (`status_page`) in headless Chromium with JavaScript off, with a test site (`site`)
//!   that tries to frame them.
//!
//! Needs `tests/deps/install.sh` (Python SDK venv, Node 22, the conformance prerelease,
//! playwright-core), `tests/deps/system.sh` (chromium) and `cargo build --workspace
//! --bins` first.

mod attack_bridge_tokens;
mod attack_client_metadata;
mod attack_codes;
mod attack_passwords;
mod attacker;
mod authorization_refusals;
mod conformance;
mod consent_page;
mod grant_edges;
mod grants;
mod owners;
mod py_oauth;
mod python_flow;
mod site;
mod status_page;
mod token_refusals;

use std::time::Duration;

use e2e::raw_http::{HttpAnswer, request};

/// A PKCE verifier and its S256 challenge (RFC 7636, appendix B).
const PKCE_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// `BASE64URL(SHA256(PKCE_VERIFIER))`.
const PKCE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// A loopback redirect URI (RFC 8252); nothing listens there, the Location is read.
const LOOPBACK_REDIRECT: &str = "http://127.0.0.1:39999/callback";
/// ChatGPT's connector callback.
const CHATGPT_REDIRECT: &str = "https://chatgpt.com/connector_platform_oauth_redirect";
/// Claude's connector callback.
const CLAUDE_REDIRECT: &str = "https://claude.ai/api/mcp/auth_callback";
/// How long the relay trusts a validated access token (or a name's owner) without its
/// database (`relay/src/oauth/token_cache.rs`), plus a margin.
const CACHE_WINDOW: Duration = Duration::from_secs(7);

/// An MCP `initialize` POST to `mcp_url` with this access token, over plain HTTP/1.1.
fn initialize_with_token(mcp_url: &str, access: &str) -> HttpAnswer {
    let body = e2e::mcp::initialize(
        serde_json::json!(1),
        "2025-06-18",
        serde_json::json!({}),
        "oauth-e2e",
    );
    let bearer = format!("Bearer {access}");
    request(
        "POST",
        mcp_url,
        &[
            ("Content-Type", "application/json"),
            ("Accept", e2e::mcp::ACCEPT_BOTH),
            ("Authorization", &bearer),
        ],
        &body.to_string(),
    )
}
