//! The bridge side of the relay: the WebSocket upgrade and the socket a bridge holds a tunnel through.

pub mod claim;
pub mod connect;
pub mod handoff;
pub mod heartbeat;
pub mod presence;
pub mod socket;
pub mod state;
pub mod upgrade;
