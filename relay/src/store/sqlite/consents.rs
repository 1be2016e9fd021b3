//! Authorizations waiting for their tunnel's owner, and status-page sessions, in SQLite.

use rusqlite::{OptionalExtension, Row, params};

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::records::Consent;

/// Columns of `oauth_consents`, in the order [`consent_row`] reads them.
const COLUMNS: &str = "id, code, csrf, tunnel, client_id, client_display, redirect_uri, state, \
     challenge, resource, scope, created_ms, decision, approved_owner";

fn consent_row(r: &Row<'_>) -> rusqlite::Result<Consent> {
    Ok(Consent {
        id: r.get(0)?,
        code: r.get(1)?,
        csrf: r.get(2)?,
        tunnel: r.get(3)?,
        client_id: r.get(4)?,
        client_display: r.get(5)?,
        redirect_uri: r.get(6)?,
        state: r.get(7)?,
        challenge: r.get(8)?,
        resource: r.get(9)?,
        scope: r.get(10)?,
        created_ms: r.get(11)?,
        decision: r.get(12)?,
        approved_owner: r.get(13)?,
    })
}

impl SqliteStore {
    /// Stores a consent, forgetting expired ones; `false` if `max` are live.
    pub fn put_consent(
        &self,
        c: &Consent,
        max: usize,
        live_after_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM oauth_consents WHERE created_ms < ?1",
                params![live_after_ms],
            )?;
            let live: i64 =
                tx.query_row("SELECT COUNT(*) FROM oauth_consents", [], |r| r.get(0))?;
            if live as usize >= max {
                return Ok(false);
            }
            tx.execute(
                &format!(
                    "INSERT INTO oauth_consents ({COLUMNS}, code_norm)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                ),
                params![
                    c.id,
                    c.code,
                    c.csrf,
                    c.tunnel,
                    c.client_id,
                    c.client_display,
                    c.redirect_uri,
                    c.state,
                    c.challenge,
                    c.resource,
                    c.scope,
                    c.created_ms,
                    c.decision,
                    c.approved_owner,
                    c.code_norm()
                ],
            )?;
            Ok(true)
        })
    }

    /// A live consent.
    pub fn consent(&self, id: &str, live_after_ms: i64) -> Result<Option<Consent>, StoreError> {
        Ok(self
            .db()
            .query_row(
                &format!("SELECT {COLUMNS} FROM oauth_consents WHERE id = ?1 AND created_ms >= ?2"),
                params![id, live_after_ms],
                consent_row,
            )
            .optional()?)
    }

    /// Removes a live consent and returns it.
    pub fn take_consent(
        &self,
        id: &str,
        live_after_ms: i64,
    ) -> Result<Option<Consent>, StoreError> {
        self.write(|tx| {
            Ok(tx
                .query_row(
                    &format!(
                        "DELETE FROM oauth_consents WHERE id = ?1 AND created_ms >= ?2
                         RETURNING {COLUMNS}"
                    ),
                    params![id, live_after_ms],
                    consent_row,
                )
                .optional()?)
        })
    }

    /// Records the decision on a live, undecided consent of `tunnel`.
    pub fn decide_consent(
        &self,
        id: &str,
        tunnel: &str,
        approved_owner: Option<i64>,
        live_after_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.db().execute(
            "UPDATE oauth_consents SET decision = ?3, approved_owner = ?4
             WHERE id = ?1 AND tunnel = ?2 AND decision IS NULL AND created_ms >= ?5",
            params![
                id,
                tunnel,
                approved_owner.is_some(),
                approved_owner,
                live_after_ms
            ],
        )? > 0)
    }

    /// The undecided consents of `tunnel` created at or after `live_after_ms`, oldest
    /// first (at most 100).
    pub fn pending_consents(
        &self,
        tunnel: &str,
        live_after_ms: i64,
    ) -> Result<Vec<Consent>, StoreError> {
        let db = self.db();
        let mut st = db.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM oauth_consents
             WHERE tunnel = ?1 AND decision IS NULL AND created_ms >= ?2
             ORDER BY created_ms LIMIT 100"
        ))?;
        let rows = st.query_map(params![tunnel, live_after_ms], consent_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The live consent showing this (normalized) code.
    pub fn consent_by_code(
        &self,
        code_norm: &str,
        live_after_ms: i64,
    ) -> Result<Option<Consent>, StoreError> {
        Ok(self
            .db()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM oauth_consents
                     WHERE code_norm = ?1 AND created_ms >= ?2 LIMIT 1"
                ),
                params![code_norm, live_after_ms],
                consent_row,
            )
            .optional()?)
    }
}

impl SqliteStore {
    /// Stores a status-page session, forgetting those last seen before `seen_after_ms`.
    pub fn put_session(
        &self,
        id_hash: [u8; 32],
        token_id: Option<i64>,
        csrf: &str,
        now_ms: i64,
        seen_after_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM status_sessions WHERE seen_ms < ?1",
                params![seen_after_ms],
            )?;
            tx.execute(
                "INSERT INTO status_sessions (id_hash, token_id, csrf, created_ms, seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![&id_hash[..], token_id, csrf, now_ms],
            )?;
            Ok(())
        })
    }

    /// A live session, marked seen: its bridge token (`None`: the operator) and CSRF token.
    pub fn touch_session(
        &self,
        id_hash: [u8; 32],
        now_ms: i64,
        created_after_ms: i64,
        seen_after_ms: i64,
    ) -> Result<Option<(Option<i64>, String)>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "UPDATE status_sessions SET seen_ms = ?2
                 WHERE id_hash = ?1 AND created_ms >= ?3 AND seen_ms >= ?4
                 RETURNING token_id, csrf",
                params![&id_hash[..], now_ms, created_after_ms, seen_after_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Ends a session.
    pub fn close_session(&self, id_hash: [u8; 32]) -> Result<(), StoreError> {
        self.db().execute(
            "DELETE FROM status_sessions WHERE id_hash = ?1",
            params![&id_hash[..]],
        )?;
        Ok(())
    }
}
