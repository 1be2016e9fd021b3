//! The nodes sharing the database, in PostgreSQL: each node's heartbeat with the gauges
//! and newest calls of the tunnels it holds, and failed sign-ins counted across nodes.

use super::PgStore;
use crate::store::StoreError;
use crate::store::records::Beat;

/// The database's clock in epoch milliseconds (every node's heartbeat is timed by it, so
/// the nodes' own clocks may disagree).
const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

impl PgStore {
    /// Says that `node` is alive and records its tunnels' gauges (and their newest calls
    /// where they changed), in one transaction of two statements.
    pub async fn heartbeat(
        &self,
        node: &str,
        started_ms: i64,
        version: &str,
        beats: &[Beat],
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        let st = tx
            .prepare_cached(&format!(
                "INSERT INTO relay_nodes (node, started_ms, heartbeat_ms, version)
                 VALUES ($1, $2, {DB_NOW_MS}, $3)
                 ON CONFLICT (node) DO UPDATE SET started_ms = EXCLUDED.started_ms,
                   heartbeat_ms = EXCLUDED.heartbeat_ms, version = EXCLUDED.version"
            ))
            .await?;
        tx.execute(&st, &[&node, &started_ms, &version]).await?;
        if !beats.is_empty() {
            let names: Vec<&str> = beats.iter().map(|b| b.name.as_str()).collect();
            let conns: Vec<i64> = beats.iter().map(|b| b.conn).collect();
            let gauges: Vec<&str> = beats.iter().map(|b| b.gauges.as_str()).collect();
            let recent: Vec<Option<&str>> = beats.iter().map(|b| b.recent.as_deref()).collect();
            let st = tx
                .prepare_cached(
                    "UPDATE tunnel_presence p SET gauges = b.gauges,
                       recent = COALESCE(b.recent, p.recent)
                     FROM UNNEST($2::text[], $3::bigint[], $4::text[], $5::text[])
                       AS b(name, conn, gauges, recent)
                     WHERE p.name = b.name AND p.node = $1 AND p.conn = b.conn",
                )
                .await?;
            tx.execute(&st, &[&node, &names, &conns, &gauges, &recent])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed sign-in.
    pub async fn add_auth_failure(
        &self,
        kind: &str,
        addr: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached("INSERT INTO auth_failures (kind, addr, at_ms) VALUES ($1, $2, $3)")
            .await?;
        c.execute(&st, &[&kind, &addr, &at_ms]).await?;
        Ok(())
    }

    /// Failed sign-ins of `kind` from `addr` since `since_ms`.
    pub async fn auth_failures(
        &self,
        kind: &str,
        addr: &str,
        since_ms: i64,
    ) -> Result<usize, StoreError> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT COUNT(*) FROM auth_failures WHERE kind = $1 AND addr = $2 AND at_ms >= $3",
            )
            .await?;
        let n: i64 = c
            .query_one(&st, &[&kind, &addr, &since_ms])
            .await?
            .try_get(0)?;
        Ok(n as usize)
    }
}
