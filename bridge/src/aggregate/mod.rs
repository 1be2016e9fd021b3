//! Several servers behind one tunnel (`tunnel = "NAME"` in a `--config` file), offered as
//! one server: their tools, prompts and resources together, routed to the right member
//! (the design, and what is left: `docs/design/aggregation.md`).
//!
//! Files:
//! - `names.rs`: the public names of the members' tools and prompts, and the way back;
//! - `uris.rs`: the public URIs of the members' resources, and the way back;
//! - `session.rs`: one aggregate session, as a state machine between the core and the
//!   members (tests in `session_tests.rs`);
//! - `children.rs`: [`children::AggregateChildren`], the core's children of an aggregated
//!   tunnel: a task running the sessions over the members' own children.

pub mod children;
pub mod names;
pub mod session;
pub mod uris;
