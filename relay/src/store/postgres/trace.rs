//! The OAuth trace's table in PostgreSQL.

use tokio_postgres::Row;

use super::PgStore;
use crate::store::StoreError;
use crate::store::trace::TraceEvent;

/// Columns of `oauth_trace`, in the order [`trace_row`] reads them.
const TRACE_COLUMNS: &str = "id, time, tunnel, step, outcome, error, reason, client_id, \
     client_name, ip, user_agent, unverified";

fn trace_row(r: &Row) -> Result<TraceEvent, tokio_postgres::Error> {
    Ok(TraceEvent {
        id: r.try_get(0)?,
        time_ms: r.try_get(1)?,
        tunnel: r.try_get(2)?,
        step: r.try_get(3)?,
        outcome: r.try_get(4)?,
        error: r.try_get(5)?,
        reason: r.try_get(6)?,
        client_id: r.try_get(7)?,
        client_name: r.try_get(8)?,
        ip: r.try_get(9)?,
        user_agent: r.try_get(10)?,
        unverified: r.try_get(11)?,
    })
}

fn trace_rows(rows: Vec<Row>) -> Result<Vec<TraceEvent>, StoreError> {
    Ok(rows.iter().map(trace_row).collect::<Result<Vec<_>, _>>()?)
}

impl PgStore {
    /// Appends an event to the OAuth trace and keeps only the newest `keep` events of its
    /// tunnel that are, like it, verified or not. Returns the event's id.
    pub async fn trace_add(&self, e: &TraceEvent, keep: usize) -> Result<i64, StoreError> {
        let mut db = self.conn().await?;
        let tx = db.transaction().await?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO oauth_trace (time, tunnel, step, outcome, error, reason, client_id,
                 client_name, ip, user_agent, unverified)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                &[
                    &e.time_ms,
                    &e.tunnel,
                    &e.step,
                    &e.outcome,
                    &e.error,
                    &e.reason,
                    &e.client_id,
                    &e.client_name,
                    &e.ip,
                    &e.user_agent,
                    &e.unverified,
                ],
            )
            .await?
            .try_get(0)?;
        tx.execute(
            "DELETE FROM oauth_trace WHERE tunnel IS NOT DISTINCT FROM $1 AND unverified = $3
             AND id <= (SELECT id FROM oauth_trace
                        WHERE tunnel IS NOT DISTINCT FROM $1 AND unverified = $3
                        ORDER BY id DESC LIMIT 1 OFFSET $2)",
            &[&e.tunnel, &(keep as i64), &e.unverified],
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The newest `limit` events of a tunnel's trace, with the relay-wide events of its
    /// clients, newest first (as the SQLite backend selects them).
    pub async fn trace_for_tunnel(
        &self,
        tunnel: &str,
        limit: usize,
        link_ms: i64,
    ) -> Result<Vec<TraceEvent>, StoreError> {
        let db = self.conn().await?;
        let sql = format!(
            "SELECT {TRACE_COLUMNS} FROM oauth_trace WHERE tunnel = $1
             UNION ALL
             SELECT {TRACE_COLUMNS} FROM oauth_trace w WHERE w.tunnel IS NULL AND (
               (w.client_id IS NOT NULL AND w.client_id NOT LIKE 'https://%' AND w.client_id IN
                 (SELECT c.client_id FROM oauth_trace c
                  WHERE c.tunnel = $1 AND c.client_id IS NOT NULL))
               OR (w.client_id IS NULL AND w.ip IS NOT NULL AND EXISTS
                 (SELECT 1 FROM oauth_trace t
                  WHERE t.tunnel = $1 AND t.ip = w.ip AND ABS(t.time - w.time) <= $3)))
             ORDER BY id DESC LIMIT $2"
        );
        let st = db.prepare_cached(&sql).await?;
        trace_rows(db.query(&st, &[&tunnel, &(limit as i64), &link_ms]).await?)
    }

    /// The newest `limit` events of the whole trace, newest first; only the relay-wide
    /// ones with `relay_wide_only`.
    pub async fn trace_all(
        &self,
        limit: usize,
        relay_wide_only: bool,
    ) -> Result<Vec<TraceEvent>, StoreError> {
        let db = self.conn().await?;
        let filter = if relay_wide_only {
            "WHERE tunnel IS NULL"
        } else {
            ""
        };
        let sql =
            format!("SELECT {TRACE_COLUMNS} FROM oauth_trace {filter} ORDER BY id DESC LIMIT $1");
        let st = db.prepare_cached(&sql).await?;
        trace_rows(db.query(&st, &[&(limit as i64)]).await?)
    }
}
