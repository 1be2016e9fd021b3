//! Several servers behind one tunnel: the rules that make their tools, prompts and
//! resources one server's (see `docs/design/aggregation.md` for the whole design and
//! what is built so far).
//!
//! Files:
//! - `names.rs`: the public names of the members' tools and prompts, and the way back;
//! - `session.rs`: one aggregate session, as a state machine between the core and the
//!   members (tests in `session_tests.rs`).

// The task that runs sessions over real member children comes next
// (docs/design/aggregation.md).
#![cfg_attr(
    not(test),
    expect(dead_code, reason = "used by the aggregator, not built yet")
)]

pub mod names;
pub mod session;
