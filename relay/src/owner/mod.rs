//! The owner's status page, `GET /status`: server-rendered HTML with plain forms, no
//! JavaScript and nothing loaded from anywhere (a strict CSP whose only allowance is the
//! page's own style sheet, by hash), never framed, never cached.
//!
//! Sign-in takes the relay operator password (Argon2, the hash of
//! `--operator-password-file`) or a bridge token; failures are rate-limited per address
//! together with the consent page's operator password, each attempt reserved before it is
//! checked ([`crate::util::gate`]). A sign-in opens a server-side
//! session named by an HttpOnly, SameSite=Strict cookie (`__Host-relay_status`, Secure,
//! when the public URL is https) that ends after [`session::IDLE`] without use or
//! [`session::ABSOLUTE`] in all; every form carries the session's CSRF token, and the
//! sign-in form a token bound to a cookie of its own.
//!
//! The page shows, per tunnel: its connection (connected, or offline since when), how its
//! clients authenticate, the bridge's version and gauges (sessions, requests in flight,
//! server processes, from its Status frames); the other connections that claimed it with
//! its bridge token (refused, or replacing a bridge that did not answer: when, from which
//! address); the OAuth clients holding tokens for it
//! (name, redirect host, first and last use) with a Revoke button; its recent calls
//! ([`crate::observe::recent`]); and the newest events of its OAuth trace ([`crate::oauth::trace`]). A
//! bridge token sees the tunnels it owns; the operator sees every tunnel, and the
//! relay-wide OAuth events.
//!
//! - `session`: sessions, their cookies and CSRF tokens;
//! - `state`: what the page needs of the relay;
//! - `view`: what the page shows, gathered for who is signed in;
//! - `render`: the HTML;
//! - `response`: HTML answers and redirects with the page's protective headers;
//! - `page`: `GET /status`, the dashboard or the sign-in page;
//! - `actions`: `POST /status`, sign in, log out, revoke a client.

mod actions;
mod page;
mod render;
mod response;
mod session;
mod state;
mod view;

pub use actions::act;
pub use page::show;
pub use session::StatusPage;
pub use state::OwnerState;
