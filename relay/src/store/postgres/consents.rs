//! Authorizations waiting for their tunnel's owner, in PostgreSQL: any node shows, decides
//! and finishes them, and the node holding the tunnel's bridge hears of each new one. And
//! status-page sessions, which any node knows.

use tokio_postgres::Row;

use super::{PgStore, announce};
use crate::store::StoreError;
use crate::store::events::Event;
use crate::store::records::Consent;

/// Columns of `oauth_consents`, in the order [`consent_row`] reads them.
const COLUMNS: &str = "id, code, csrf, tunnel, client_id, client_display, redirect_uri, state, \
     challenge, resource, scope, created_ms, decision, approved_owner";

fn consent_row(r: &Row) -> Result<Consent, tokio_postgres::Error> {
    Ok(Consent {
        id: r.try_get(0)?,
        code: r.try_get(1)?,
        csrf: r.try_get(2)?,
        tunnel: r.try_get(3)?,
        client_id: r.try_get(4)?,
        client_display: r.try_get(5)?,
        redirect_uri: r.try_get(6)?,
        state: r.try_get(7)?,
        challenge: r.try_get(8)?,
        resource: r.try_get(9)?,
        scope: r.try_get(10)?,
        created_ms: r.try_get(11)?,
        decision: r.try_get(12)?,
        approved_owner: r.try_get(13)?,
    })
}

impl PgStore {
    /// Stores a consent, forgetting expired ones, and announces it; `false` if `max` are
    /// live.
    pub async fn put_consent(
        &self,
        c: &Consent,
        max: usize,
        live_after_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut db = self.conn().await?;
        let tx = db.transaction().await?;
        tx.execute(
            "DELETE FROM oauth_consents WHERE created_ms < $1",
            &[&live_after_ms],
        )
        .await?;
        let live: i64 = tx
            .query_one("SELECT COUNT(*) FROM oauth_consents", &[])
            .await?
            .try_get(0)?;
        if live as usize >= max {
            tx.commit().await?;
            return Ok(false);
        }
        tx.execute(
            &format!(
                "INSERT INTO oauth_consents ({COLUMNS}, code_norm)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            ),
            &[
                &c.id,
                &c.code,
                &c.csrf,
                &c.tunnel,
                &c.client_id,
                &c.client_display,
                &c.redirect_uri,
                &c.state,
                &c.challenge,
                &c.resource,
                &c.scope,
                &c.created_ms,
                &c.decision,
                &c.approved_owner,
                &c.code_norm(),
            ],
        )
        .await?;
        announce(
            &tx,
            &Event::ConsentWaiting {
                tunnel: c.tunnel.clone(),
                id: c.id.clone(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A live consent.
    pub async fn consent(
        &self,
        id: &str,
        live_after_ms: i64,
    ) -> Result<Option<Consent>, StoreError> {
        let db = self.conn().await?;
        let st = db
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM oauth_consents WHERE id = $1 AND created_ms >= $2"
            ))
            .await?;
        match db.query_opt(&st, &[&id, &live_after_ms]).await? {
            Some(r) => Ok(Some(consent_row(&r)?)),
            None => Ok(None),
        }
    }

    /// Removes a live consent and returns it; of two nodes taking it at once, one gets it.
    pub async fn take_consent(
        &self,
        id: &str,
        live_after_ms: i64,
    ) -> Result<Option<Consent>, StoreError> {
        let db = self.conn().await?;
        let st = db
            .prepare_cached(&format!(
                "DELETE FROM oauth_consents WHERE id = $1 AND created_ms >= $2 RETURNING {COLUMNS}"
            ))
            .await?;
        match db.query_opt(&st, &[&id, &live_after_ms]).await? {
            Some(r) => Ok(Some(consent_row(&r)?)),
            None => Ok(None),
        }
    }

    /// Records the decision on a live, undecided consent of `tunnel`.
    pub async fn decide_consent(
        &self,
        id: &str,
        tunnel: &str,
        approved_owner: Option<i64>,
        live_after_ms: i64,
    ) -> Result<bool, StoreError> {
        let db = self.conn().await?;
        let st = db
            .prepare_cached(
                "UPDATE oauth_consents SET decision = $3, approved_owner = $4
                 WHERE id = $1 AND tunnel = $2 AND decision IS NULL AND created_ms >= $5",
            )
            .await?;
        let n = db
            .execute(
                &st,
                &[
                    &id,
                    &tunnel,
                    &approved_owner.is_some(),
                    &approved_owner,
                    &live_after_ms,
                ],
            )
            .await?;
        Ok(n > 0)
    }

    /// The live consent showing this (normalized) code.
    pub async fn consent_by_code(
        &self,
        code_norm: &str,
        live_after_ms: i64,
    ) -> Result<Option<Consent>, StoreError> {
        let db = self.conn().await?;
        let st = db
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM oauth_consents
                 WHERE code_norm = $1 AND created_ms >= $2 LIMIT 1"
            ))
            .await?;
        match db.query_opt(&st, &[&code_norm, &live_after_ms]).await? {
            Some(r) => Ok(Some(consent_row(&r)?)),
            None => Ok(None),
        }
    }
}

impl PgStore {
    /// The undecided consents of `tunnel` created at or after `live_after_ms`, oldest
    /// first (at most 100).
    pub async fn pending_consents(
        &self,
        tunnel: &str,
        live_after_ms: i64,
    ) -> Result<Vec<Consent>, StoreError> {
        let db = self.conn().await?;
        let st = db
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM oauth_consents
                 WHERE tunnel = $1 AND decision IS NULL AND created_ms >= $2
                 ORDER BY created_ms LIMIT 100"
            ))
            .await?;
        let rows = db.query(&st, &[&tunnel, &live_after_ms]).await?;
        Ok(rows.iter().map(consent_row).collect::<Result<_, _>>()?)
    }
}

impl PgStore {
    /// Stores a status-page session, forgetting those last seen before `seen_after_ms`.
    pub async fn put_session(
        &self,
        id_hash: [u8; 32],
        token_id: Option<i64>,
        csrf: &str,
        now_ms: i64,
        seen_after_ms: i64,
    ) -> Result<(), StoreError> {
        let db = self.conn().await?;
        db.execute(
            "DELETE FROM status_sessions WHERE seen_ms < $1",
            &[&seen_after_ms],
        )
        .await?;
        db.execute(
            "INSERT INTO status_sessions (id_hash, token_id, csrf, created_ms, seen_ms)
             VALUES ($1, $2, $3, $4, $4)",
            &[&&id_hash[..], &token_id, &csrf, &now_ms],
        )
        .await?;
        Ok(())
    }

    /// A live session, marked seen: its bridge token (`None`: the operator) and CSRF token.
    pub async fn touch_session(
        &self,
        id_hash: [u8; 32],
        now_ms: i64,
        created_after_ms: i64,
        seen_after_ms: i64,
    ) -> Result<Option<(Option<i64>, String)>, StoreError> {
        let db = self.conn().await?;
        let st = db
            .prepare_cached(
                "UPDATE status_sessions SET seen_ms = $2
                 WHERE id_hash = $1 AND created_ms >= $3 AND seen_ms >= $4
                 RETURNING token_id, csrf",
            )
            .await?;
        match db
            .query_opt(
                &st,
                &[&&id_hash[..], &now_ms, &created_after_ms, &seen_after_ms],
            )
            .await?
        {
            Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?))),
            None => Ok(None),
        }
    }

    /// Ends a session.
    pub async fn close_session(&self, id_hash: [u8; 32]) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "DELETE FROM status_sessions WHERE id_hash = $1",
                &[&&id_hash[..]],
            )
            .await?;
        Ok(())
    }
}
