//! The OAuth trace's table in SQLite.

use rusqlite::params;

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::trace::TraceEvent;

/// Columns of `oauth_trace`, in the order [`trace_row`] reads them.
const TRACE_COLUMNS: &str = "id, time, tunnel, step, outcome, error, reason, client_id, \
     client_name, ip, user_agent, unverified";

fn trace_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TraceEvent> {
    Ok(TraceEvent {
        id: r.get(0)?,
        time_ms: r.get(1)?,
        tunnel: r.get(2)?,
        step: r.get(3)?,
        outcome: r.get(4)?,
        error: r.get(5)?,
        reason: r.get(6)?,
        client_id: r.get(7)?,
        client_name: r.get(8)?,
        ip: r.get(9)?,
        user_agent: r.get(10)?,
        unverified: r.get(11)?,
    })
}

impl SqliteStore {
    // ----- OAuth trace and client use ------------------------------------------------

    /// Appends an event to the OAuth trace and keeps only the newest `keep` events of its
    /// tunnel (relay-wide events, without a tunnel, count as one more tunnel) that are,
    /// like it, verified or not: unverified events never evict the others. Returns the
    /// event's id.
    pub fn trace_add(&self, e: &TraceEvent, keep: usize) -> Result<i64, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO oauth_trace (time, tunnel, step, outcome, error, reason, client_id,
             client_name, ip, user_agent, unverified)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                params![
                    e.time_ms,
                    e.tunnel,
                    e.step,
                    e.outcome,
                    e.error,
                    e.reason,
                    e.client_id,
                    e.client_name,
                    e.ip,
                    e.user_agent,
                    e.unverified
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "DELETE FROM oauth_trace WHERE tunnel IS ?1 AND unverified = ?3 AND id <= (
             SELECT id FROM oauth_trace WHERE tunnel IS ?1 AND unverified = ?3
             ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                params![e.tunnel, keep as i64, e.unverified],
            )?;
            Ok(id)
        })
    }

    /// The newest `limit` events of a tunnel's trace, newest first. They include the
    /// relay-wide events that belong to the tunnel's clients: those of a registered
    /// client (its own `client_id`) that appears in the tunnel's trace, and those without
    /// a client (metadata fetches) from an address that appears in the tunnel's trace
    /// within `link_ms` of them.
    pub fn trace_for_tunnel(
        &self,
        tunnel: &str,
        limit: usize,
        link_ms: i64,
    ) -> Result<Vec<TraceEvent>, StoreError> {
        let db = self.db();
        let sql = format!(
            "SELECT {TRACE_COLUMNS} FROM oauth_trace WHERE tunnel = ?1
             UNION ALL
             SELECT {TRACE_COLUMNS} FROM oauth_trace w WHERE w.tunnel IS NULL AND (
               (w.client_id IS NOT NULL AND w.client_id NOT LIKE 'https://%' AND w.client_id IN
                 (SELECT c.client_id FROM oauth_trace c
                  WHERE c.tunnel = ?1 AND c.client_id IS NOT NULL))
               OR (w.client_id IS NULL AND w.ip IS NOT NULL AND EXISTS
                 (SELECT 1 FROM oauth_trace t
                  WHERE t.tunnel = ?1 AND t.ip = w.ip AND ABS(t.time - w.time) <= ?3)))
             ORDER BY id DESC LIMIT ?2"
        );
        let mut st = db.prepare(&sql)?;
        let rows = st.query_map(params![tunnel, limit as i64, link_ms], trace_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest `limit` events of the whole trace (every tunnel and the relay-wide
    /// events), newest first; only the relay-wide ones with `relay_wide_only`.
    pub fn trace_all(
        &self,
        limit: usize,
        relay_wide_only: bool,
    ) -> Result<Vec<TraceEvent>, StoreError> {
        let db = self.db();
        let filter = if relay_wide_only {
            "WHERE tunnel IS NULL"
        } else {
            ""
        };
        let sql =
            format!("SELECT {TRACE_COLUMNS} FROM oauth_trace {filter} ORDER BY id DESC LIMIT ?1");
        let mut st = db.prepare(&sql)?;
        let rows = st.query_map(params![limit as i64], trace_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
