//! Node heartbeats and failed sign-ins, in SQLite (a file of one node's own: kept so that
//! every store answers the same, and for `relay` commands sharing the file).

use rusqlite::params;

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::records::Beat;

impl SqliteStore {
    /// Says that `node` is alive and records its tunnels' gauges and newest calls.
    pub fn heartbeat(
        &self,
        node: &str,
        started_ms: i64,
        version: &str,
        beats: &[Beat],
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO relay_nodes (node, started_ms, heartbeat_ms, version)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (node) DO UPDATE SET started_ms = excluded.started_ms,
                   heartbeat_ms = excluded.heartbeat_ms, version = excluded.version",
                params![node, started_ms, protocol::time::now_ms(), version],
            )?;
            let mut st = tx.prepare_cached(
                "UPDATE tunnel_presence SET gauges = ?4, recent = COALESCE(?5, recent)
                 WHERE name = ?1 AND node = ?2 AND conn = ?3",
            )?;
            for b in beats {
                st.execute(params![b.name, node, b.conn, b.gauges, b.recent])?;
            }
            Ok(())
        })
    }

    /// Records a failed sign-in.
    pub fn add_auth_failure(&self, kind: &str, addr: &str, at_ms: i64) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO auth_failures (kind, addr, at_ms) VALUES (?1, ?2, ?3)",
            params![kind, addr, at_ms],
        )?;
        Ok(())
    }

    /// Failed sign-ins of `kind` from `addr` since `since_ms`.
    pub fn auth_failures(
        &self,
        kind: &str,
        addr: &str,
        since_ms: i64,
    ) -> Result<usize, StoreError> {
        Ok(self.db().query_row(
            "SELECT COUNT(*) FROM auth_failures WHERE kind = ?1 AND addr = ?2 AND at_ms >= ?3",
            params![kind, addr, since_ms],
            |r| r.get::<_, i64>(0),
        )? as usize)
    }
}
