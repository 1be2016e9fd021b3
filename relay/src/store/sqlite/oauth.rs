//! OAuth clients, authorization codes, access and refresh tokens, and which clients used
//! which tunnel, in SQLite.

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::store::records::*;
use crate::store::{StoreError, new_secret, now};
use protocol::digest::sha256;

impl SqliteStore {
    // ----- OAuth clients ---------------------------------------------------------------

    /// Stores (or replaces) a client.
    pub fn put_client(&self, c: &Client) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT OR REPLACE INTO oauth_clients
             (client_id, kind, name, redirect_uris, auth_method, secret_hash, metadata, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                c.client_id,
                c.kind,
                c.name,
                serde_json::Value::from(c.redirect_uris.clone()).to_string(),
                c.auth_method,
                c.secret_hash.as_ref().map(|h| &h[..]),
                c.metadata,
                c.created
            ],
        )?;
        Ok(())
    }

    /// A client by id.
    pub fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT client_id, kind, name, redirect_uris, auth_method, secret_hash, metadata, created
                 FROM oauth_clients WHERE client_id = ?1",
                params![client_id],
                |r| {
                    let uris: String = r.get(3)?;
                    let secret: Option<Vec<u8>> = r.get(5)?;
                    Ok(Client {
                        client_id: r.get(0)?,
                        kind: r.get(1)?,
                        name: r.get(2)?,
                        redirect_uris: serde_json::from_str(&uris).unwrap_or_default(),
                        auth_method: r.get(4)?,
                        secret_hash: secret.and_then(|s| s.try_into().ok()),
                        metadata: r.get(6)?,
                        created: r.get(7)?,
                    })
                },
            )
            .optional()?)
    }

    /// Number of dynamically registered clients.
    pub fn dcr_client_count(&self) -> Result<usize, StoreError> {
        Ok(self.db().query_row(
            "SELECT COUNT(*) FROM oauth_clients WHERE kind = 'dcr'",
            [],
            |r| r.get::<_, i64>(0),
        )? as usize)
    }

    // ----- codes and tokens ------------------------------------------------------------

    /// Stores an authorization code (by the hash of its value).
    pub fn put_code(&self, code: &str, c: &CodeGrant) -> Result<(), StoreError> {
        let g = &c.grant;
        self.db().execute(
            "INSERT INTO auth_codes (hash, client_id, tunnel, resource, owner_token, scope,
             redirect_uri, challenge, expires, family) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
            params![
                &sha256(code.as_bytes())[..],
                g.client_id,
                g.tunnel,
                g.resource,
                g.owner_token,
                g.scope,
                c.redirect_uri,
                c.challenge,
                c.expires,
                new_secret("fam_")
            ],
        )?;
        Ok(())
    }

    /// Consumes a code: returns its grant and token family the first time. A second
    /// use returns `None` and revokes every token issued from the first (and those issued
    /// from it later: the family is burned).
    pub fn take_code(&self, code: &str) -> Result<Option<(CodeGrant, String)>, StoreError> {
        self.redeem(code, None)
    }

    /// [`Self::take_code`], storing `issue`'s tokens in the same transaction.
    pub fn redeem_code(
        &self,
        code: &str,
        issue: &Issue,
    ) -> Result<Option<(CodeGrant, String)>, StoreError> {
        self.redeem(code, Some(issue))
    }

    fn redeem(
        &self,
        code: &str,
        issue: Option<&Issue>,
    ) -> Result<Option<(CodeGrant, String)>, StoreError> {
        let hash = sha256(code.as_bytes());
        self.write(|tx| {
            let won = tx
                .query_row(
                    "UPDATE auth_codes SET used = 1 WHERE hash = ?1 AND used = 0
                     RETURNING client_id, tunnel, resource, owner_token, scope, redirect_uri,
                     challenge, expires, family",
                    params![&hash[..]],
                    |r| Ok((code_grant(r)?, r.get::<_, String>(8)?)),
                )
                .optional()?;
            if let Some((c, family)) = won {
                if c.expires <= now() {
                    return Ok(None);
                }
                if let Some(i) = issue {
                    issue_tokens(tx, i, &c.grant, &family)?;
                }
                return Ok(Some((c, family)));
            }
            let family: Option<String> = tx
                .query_row(
                    "SELECT family FROM auth_codes WHERE hash = ?1",
                    params![&hash[..]],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(family) = family {
                burn_family(tx, &family)?;
            }
            Ok(None)
        })
    }

    /// Stores an access (`kind` = "access") or refresh ("refresh") token. A token of a
    /// burned family (its code or refresh token was reused meanwhile) is stored revoked.
    pub fn put_token(
        &self,
        kind: &str,
        token: &str,
        g: &Grant,
        expires: i64,
        family: &str,
    ) -> Result<(), StoreError> {
        insert_token(&self.db(), kind, token, g, expires, family)
    }

    /// A live access token's grant and expiry.
    pub fn access_token(&self, token: &str) -> Result<Option<AccessGrant>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT client_id, tunnel, resource, owner_token, scope, expires, family
                 FROM oauth_tokens
                 WHERE hash = ?1 AND kind = 'access' AND revoked = 0 AND expires > ?2",
                params![&sha256(token.as_bytes())[..], now()],
                |r| {
                    Ok(AccessGrant {
                        grant: grant(r)?,
                        expires: r.get(5)?,
                        family: r.get(6)?,
                    })
                },
            )
            .optional()?)
    }

    /// Uses a refresh token once: returns its grant and family. Reuse revokes (and burns)
    /// the family.
    pub fn use_refresh(
        &self,
        token: &str,
    ) -> Result<Result<(Grant, String), RefreshError>, StoreError> {
        self.rotate(token, None)
    }

    /// [`Self::use_refresh`], storing `issue`'s tokens in the same transaction.
    pub fn rotate_refresh(
        &self,
        token: &str,
        issue: &Issue,
    ) -> Result<Result<(Grant, String), RefreshError>, StoreError> {
        self.rotate(token, Some(issue))
    }

    fn rotate(
        &self,
        token: &str,
        issue: Option<&Issue>,
    ) -> Result<Result<(Grant, String), RefreshError>, StoreError> {
        let hash = sha256(token.as_bytes());
        self.write(|tx| {
            let won = tx
                .query_row(
                    "UPDATE oauth_tokens SET used = 1
                     WHERE hash = ?1 AND kind = 'refresh' AND used = 0 AND revoked = 0
                       AND expires > ?2
                     RETURNING client_id, tunnel, resource, owner_token, scope, family",
                    params![&hash[..], now()],
                    |r| Ok((grant(r)?, r.get::<_, String>(5)?)),
                )
                .optional()?;
            if let Some((g, family)) = won {
                if let Some(i) = issue {
                    issue_tokens(tx, i, &g, &family)?;
                }
                return Ok(Ok((g, family)));
            }
            let row: Option<(String, bool, bool)> = tx
                .query_row(
                    "SELECT family, used, revoked FROM oauth_tokens
                     WHERE hash = ?1 AND kind = 'refresh'",
                    params![&hash[..]],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get::<_, i64>(1)? != 0,
                            r.get::<_, i64>(2)? != 0,
                        ))
                    },
                )
                .optional()?;
            match row {
                Some((family, used, revoked)) if used || revoked => {
                    burn_family(tx, &family)?;
                    Ok(Err(RefreshError::Reused))
                }
                _ => Ok(Err(RefreshError::Invalid)),
            }
        })
    }

    /// The grant of a live refresh token, without using it.
    pub fn peek_refresh(&self, token: &str) -> Result<Option<Grant>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT client_id, tunnel, resource, owner_token, scope FROM oauth_tokens
                 WHERE hash = ?1 AND kind = 'refresh'",
                params![&sha256(token.as_bytes())[..]],
                grant,
            )
            .optional()?)
    }

    /// The client a token (access or refresh) was issued to.
    pub fn token_client(&self, token: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT client_id FROM oauth_tokens WHERE hash = ?1",
                params![&sha256(token.as_bytes())[..]],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Revokes a token (RFC 7009): a refresh token takes its family with it.
    pub fn revoke(&self, token: &str) -> Result<(), StoreError> {
        let hash = sha256(token.as_bytes());
        self.write(|tx| {
            let found: Option<(String, String)> = tx
                .query_row(
                    "SELECT kind, family FROM oauth_tokens WHERE hash = ?1",
                    params![&hash[..]],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match found {
                Some((kind, family)) if kind == "refresh" => burn_family(tx, &family)?,
                Some(_) => {
                    tx.execute(
                        "UPDATE oauth_tokens SET revoked = 1 WHERE hash = ?1",
                        params![&hash[..]],
                    )?;
                }
                None => {}
            }
            Ok(())
        })
    }

    /// Removes expired codes and tokens.
    pub fn sweep(&self) -> Result<(), StoreError> {
        let t = now();
        self.write(|tx| {
            tx.execute(
                "DELETE FROM auth_codes WHERE expires < ?1 - 3600",
                params![t],
            )?;
            tx.execute(
                "DELETE FROM oauth_tokens WHERE expires < ?1 - 86400",
                params![t],
            )?;
            tx.execute(
                "DELETE FROM oauth_client_use WHERE last_used < ?1 - 90 * 86400",
                params![t],
            )?;
            tx.execute(
                "DELETE FROM revoked_families WHERE at < ?1 - 86400",
                params![t],
            )?;
            // Consents live minutes, sessions hours: whatever a day old is gone.
            tx.execute(
                "DELETE FROM oauth_consents WHERE created_ms < ?1",
                params![(t - 86_400) * 1000],
            )?;
            tx.execute(
                "DELETE FROM status_sessions WHERE seen_ms < ?1",
                params![(t - 86_400) * 1000],
            )?;
            tx.execute(
                "DELETE FROM auth_failures WHERE at_ms < ?1",
                params![(t - 86_400) * 1000],
            )?;
            tx.execute(
                "DELETE FROM relay_nodes WHERE heartbeat_ms < ?1",
                params![(t - 7 * 86_400) * 1000],
            )?;
            Ok(())
        })
    }
    /// Notes that `client_id` got tokens for, or used, `tunnel` at `at` (epoch seconds).
    pub fn client_used(&self, tunnel: &str, client_id: &str, at: i64) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO oauth_client_use (tunnel, client_id, first_used, last_used)
             VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (tunnel, client_id) DO UPDATE
             SET last_used = MAX(last_used, excluded.last_used)",
            params![tunnel, client_id, at],
        )?;
        Ok(())
    }

    /// The clients holding live tokens for `tunnel` granted under its current owner, most
    /// recently used first.
    pub fn authorized_clients(&self, tunnel: &str) -> Result<Vec<AuthorizedClient>, StoreError> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT t.client_id, MAX(c.name), MAX(c.kind), MAX(c.redirect_uris),
                    MAX(u.first_used), MAX(u.last_used)
             FROM oauth_tokens t
             LEFT JOIN oauth_clients c ON c.client_id = t.client_id
             LEFT JOIN oauth_client_use u ON u.tunnel = t.tunnel AND u.client_id = t.client_id
             WHERE t.tunnel = ?1 AND t.revoked = 0 AND t.expires > ?2
               AND NOT (t.kind = 'refresh' AND t.used = 1)
               AND t.owner_token = (SELECT token_id FROM tunnel_names WHERE name = ?1)
             GROUP BY t.client_id
             ORDER BY MAX(u.last_used) DESC, t.client_id",
        )?;
        let rows = st.query_map(params![tunnel, now()], |r| {
            let uris: Option<String> = r.get(3)?;
            Ok(AuthorizedClient {
                client_id: r.get(0)?,
                name: r.get(1)?,
                kind: r.get(2)?,
                redirect_uris: uris
                    .and_then(|u| serde_json::from_str(&u).ok())
                    .unwrap_or_default(),
                first_used: r.get(4)?,
                last_used: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes every token `client_id` holds for `tunnel` (refresh token families with
    /// them) and burns its unused codes for it; returns how many tokens were live.
    pub fn revoke_client(&self, tunnel: &str, client_id: &str) -> Result<usize, StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE oauth_tokens SET revoked = 1
                 WHERE tunnel = ?1 AND client_id = ?2 AND revoked = 0",
                params![tunnel, client_id],
            )?;
            tx.execute(
                "UPDATE auth_codes SET used = 1 WHERE tunnel = ?1 AND client_id = ?2",
                params![tunnel, client_id],
            )?;
            Ok(n)
        })
    }

    /// An authorization code's request and whether it was used, without using it (to
    /// explain a refusal).
    pub fn peek_code(&self, code: &str) -> Result<Option<(CodeGrant, bool)>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT client_id, tunnel, resource, owner_token, scope, redirect_uri, challenge,
                 expires, used FROM auth_codes WHERE hash = ?1",
                params![&sha256(code.as_bytes())[..]],
                |r| Ok((code_grant(r)?, r.get::<_, i64>(8)? != 0)),
            )
            .optional()?)
    }

    /// What the store knows of a token, live or not.
    pub fn token_state(&self, token: &str) -> Result<Option<TokenState>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT kind, client_id, tunnel, resource, owner_token, scope, expires, revoked
                 FROM oauth_tokens WHERE hash = ?1",
                params![&sha256(token.as_bytes())[..]],
                |r| {
                    Ok(TokenState {
                        kind: r.get(0)?,
                        grant: Grant {
                            client_id: r.get(1)?,
                            tunnel: r.get(2)?,
                            resource: r.get(3)?,
                            owner_token: r.get(4)?,
                            scope: r.get(5)?,
                        },
                        expires: r.get(6)?,
                        revoked: r.get::<_, i64>(7)? != 0,
                    })
                },
            )
            .optional()?)
    }
}

/// A grant from the first five columns of a row (client_id, tunnel, resource,
/// owner_token, scope).
fn grant(r: &rusqlite::Row<'_>) -> rusqlite::Result<Grant> {
    Ok(Grant {
        client_id: r.get(0)?,
        tunnel: r.get(1)?,
        resource: r.get(2)?,
        owner_token: r.get(3)?,
        scope: r.get(4)?,
    })
}

/// A code's grant from the first eight columns of an `auth_codes` row (client_id, tunnel,
/// resource, owner_token, scope, redirect_uri, challenge, expires).
fn code_grant(r: &rusqlite::Row<'_>) -> rusqlite::Result<CodeGrant> {
    Ok(CodeGrant {
        grant: grant(r)?,
        redirect_uri: r.get(5)?,
        challenge: r.get(6)?,
        expires: r.get(7)?,
    })
}

/// Stores an issue's access and refresh tokens (revoked if the family is burned).
fn issue_tokens(
    tx: &rusqlite::Transaction<'_>,
    issue: &Issue,
    g: &Grant,
    family: &str,
) -> Result<(), StoreError> {
    for (kind, token, expires) in [
        ("access", &issue.access, issue.access_expires),
        ("refresh", &issue.refresh, issue.refresh_expires),
    ] {
        insert_token(tx, kind, token, g, expires, family)?;
    }
    Ok(())
}

/// Stores one token; one of a burned family is stored revoked.
fn insert_token(
    tx: &rusqlite::Connection,
    kind: &str,
    token: &str,
    g: &Grant,
    expires: i64,
    family: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO oauth_tokens (hash, kind, client_id, tunnel, resource, owner_token, scope,
         expires, family, revoked) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,
         EXISTS (SELECT 1 FROM revoked_families WHERE family = ?9))",
        params![
            &sha256(token.as_bytes())[..],
            kind,
            g.client_id,
            g.tunnel,
            g.resource,
            g.owner_token,
            g.scope,
            expires,
            family
        ],
    )?;
    Ok(())
}

/// Revokes every token of a family, and marks the family so that tokens issued from it
/// later (by the step that won the race this reuse lost) are stored revoked.
fn burn_family(tx: &rusqlite::Transaction<'_>, family: &str) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE oauth_tokens SET revoked = 1 WHERE family = ?1",
        params![family],
    )?;
    tx.execute(
        "INSERT INTO revoked_families (family, at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![family, now()],
    )?;
    Ok(())
}
