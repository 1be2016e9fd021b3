//! Fault injection, end to end: the tunnel under the failures it is built to survive.
//!
//! Each test runs the real `bridge` (and, where the fault needs it, a separate `relay serve`)
//! with the stdio fixture server, breaks something on purpose and checks the reliability
//! rules of the design:
//!
//! * the relay link is cut (a TCP proxy between bridge and relay drops every connection and
//!   refuses new ones for a while) under thousands of calls, and the relay is killed and
//!   restarted on the same port: calls in flight get an error, calls made meanwhile wait for
//!   the bridge and succeed, sessions survive, a late answer never reaches another call, and
//!   a flapping link does not keep the bridge away past the relay's grace period;
//! * the bridge is frozen (`SIGSTOP`) past the relay's grace period: the relay answers from
//!   the snapshot and says since when the desktop is offline, and after `SIGCONT` the bridge
//!   is back within seconds;
//! * the server is killed again and again while calls run (shared and `--isolate`);
//! * a client stops reading a streaming answer while other sessions keep being served;
//! * an HTTP+SSE session survives a short cut of the link (a real Python SDK client, and
//!   the relay's side of it with hand-made bridges);
//! * the bridge is killed (`SIGKILL`) or stopped (`SIGTERM`) with a server that ignores
//!   `SIGTERM` and has forked a grandchild: nothing is left behind;
//! * a graceful stop drains the call in flight, and a call past `--call-timeout-secs` is
//!   answered with an error and cancelled on the server.
//!
//! Every test checks the same invariants: every call is answered exactly once within a
//! deadline (no hang), successful answers carry the call's own payload, the fixture ran each
//! call at most once and only calls that got an answer or an error after reaching it
//! (`FIXTURE_RECORD_ECHO=1` records `echoed <text>` per `echo`), no process carrying the
//! test's `FIXTURE_COUNTS` path survives the bridge, and the gauges of `/healthz` and
//! `/status/<name>` return to their baseline (no exchange, no pending request, the same
//! number of server processes).
//!
//! Modules: `link_cut`, `frozen_bridge`, `server_crashes`, `relay_restart`,
//! `stalled_reader`, `http_sse_link_cut`, `stream_carry_on`, `orphans`, `shutdown`; the
//! calls and their judging (`calls`), load runs (`load`) and the bridge's processes and
//! gauges (`stack`).

mod calls;
mod frozen_bridge;
mod http_sse_link_cut;
mod link_cut;
mod load;
mod orphans;
mod relay_restart;
mod server_crashes;
mod shutdown;
mod stack;
mod stalled_reader;
mod stream_carry_on;
