//! A node's heartbeat in a store several nodes share: every [`EVERY`] the node says it is
//! alive and records the gauges and newest calls of the tunnels it holds, in one batch, so
//! that every node's status page shows them, and so that the others know when it died
//! without a word (silent for [`crate::store::NODE_SILENT_MS`]: its bridges count as gone
//! since its last heartbeat, and their tunnels are answered offline at once). A store of
//! one node's own (SQLite) gets none: the node's registry is the whole truth.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::observe::recent::RecentCalls;
use crate::store::{Beat, Store};
use crate::tunnels::registry::Registry;

/// How often a node beats.
pub const EVERY: Duration = Duration::from_secs(5);

/// What a heartbeat reads.
pub struct Heart {
    /// Where the beats go.
    pub store: Arc<Store>,
    /// This node's id.
    pub node: String,
    /// The tunnels this node holds.
    pub registry: Arc<Registry>,
    /// Their newest calls.
    pub recent: Arc<RecentCalls>,
}

impl Heart {
    /// Beats every [`EVERY`] until the runtime stops (nothing, on a store of its own).
    pub async fn run(self) {
        if !self.store.announces() {
            return;
        }
        let started_ms = protocol::time::now_ms();
        let version = env!("CARGO_PKG_VERSION");
        // What each tunnel's calls looked like at the last beat (a digest, not the calls).
        let mut sent: HashMap<String, u64> = HashMap::new();
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let beats = self.beats(&mut sent);
            let outcome = self
                .store
                .heartbeat(&self.node, started_ms, version, &beats)
                .await;
            if let Err(e) = outcome {
                tracing::warn!("the node's heartbeat: {e}");
                // Send every tunnel's calls again next time.
                sent.clear();
            }
        }
    }

    /// The beats of the tunnels this node holds now, with the calls of those whose calls
    /// changed since `sent` (which is updated).
    fn beats(&self, sent: &mut HashMap<String, u64>) -> Vec<Beat> {
        let live = self.registry.live();
        sent.retain(|name, _| live.iter().any(|t| &t.name == name));
        live.iter()
            .filter_map(|t| {
                let (_, status) = self.registry.status(&t.name)?;
                let b = status.bridge;
                let gauges = gauges_json([
                    b.sessions.into(),
                    b.pending.into(),
                    b.children.into(),
                    b.restarts.into(),
                    status.exchanges as u64,
                ]);
                let calls = self.recent.list(&t.name, t.token_id);
                let json = serde_json::to_string(&calls).ok()?;
                let mut h = std::collections::hash_map::DefaultHasher::new();
                json.hash(&mut h);
                let digest = h.finish();
                let changed = sent.insert(t.name.clone(), digest) != Some(digest);
                Some(Beat {
                    name: t.name.clone(),
                    conn: t.conn_id as i64,
                    gauges,
                    recent: changed.then_some(json),
                })
            })
            .collect()
    }
}

/// Gauges as the store keeps them.
pub fn gauges_json(g: [u64; 5]) -> String {
    format!("[{},{},{},{},{}]", g[0], g[1], g[2], g[3], g[4])
}

/// Gauges the store kept, if well-formed.
pub fn parse_gauges(json: &str) -> Option<[u64; 5]> {
    serde_json::from_str(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_round_trip_and_odd_ones_are_refused() {
        let g = [1, 2, 3, 4, u64::MAX];
        assert_eq!(parse_gauges(&gauges_json(g)), Some(g));
        for odd in ["", "[1,2,3,4]", "[1,2,3,4,5,6]", "[-1,0,0,0,0]", "{}"] {
            assert_eq!(parse_gauges(odd), None, "{odd}");
        }
    }
}
