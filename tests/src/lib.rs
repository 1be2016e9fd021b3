//! The end-to-end test harness: `bridge` and `relay` as real processes with the fixture
//! server, the pinned third-party clients, and the clients the tests speak with.
//!
//! The binaries are the ones cargo built next to the test executable
//! (`target/<profile>/bridge`, `relay`, `mcp-fixture`); build them first
//! (`cargo build --workspace --bins`).
//!
//! - [`process`]: child processes ([`Proc`]), signals, `/proc` lookups.
//! - [`bridge`], [`relay`]: the two binaries started with options ([`Bridge`],
//!   [`BridgeOpts`], [`Relay`], [`relay::OAuthRelay`]).
//! - [`clients`]: the pinned helpers ([`Deps`]) and the scripts of `tests/clients/`.
//! - [`fixture_truth`]: what the fixture serves, asked directly over stdio.
//! - [`browser`]: the headless Chromium driver for the relay's pages.
//! - [`cut_proxy`]: a TCP proxy that cuts the bridge⇄relay link on demand.
//! - [`http`]: reqwest with one configuration, complete answers, a blocking client.
//! - [`mcp`], [`sse`]: an MCP client of both protocol eras over HTTP, and its events.
//! - [`fake_bridge`]: the relay's bridge WebSocket spoken frame by frame.
//! - [`ports`], [`raw_http`]: ports named before binding, and HTTP/1.1 by hand.
//! - [`postgres`]: a throwaway PostgreSQL server with a fresh database per test
//!   ([`Postgres`]).
//! - [`status_page`]: the owner status page's forms over HTTP.
//! - [`text`]: checks on pages, logs and files.
//! - [`upstreams`]: real MCP servers over HTTP (Streamable HTTP and HTTP+SSE) for
//!   `bridge run --upstream` ([`Upstream`]).
//! - [`wait`]: polling until something holds.

pub mod bridge;
pub mod browser;
pub mod clients;
pub mod cut_proxy;
pub mod fake_bridge;
pub mod fixture_truth;
pub mod http;
pub mod mcp;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod raw_http;
pub mod relay;
pub mod release;
pub mod sse;
pub mod status_page;
pub mod text;
pub mod upstreams;
pub mod wait;

pub use bridge::{Bridge, BridgeOpts, teed};
pub use clients::{Deps, run_json};
pub use ports::{addr_of, unused_port};
pub use postgres::Postgres;
pub use process::{Proc, bin, install_crypto_provider, repo_root};
pub use raw_http::{HttpAnswer, http_post, parse_http_answer};
pub use relay::Relay;
pub use upstreams::Upstream;
