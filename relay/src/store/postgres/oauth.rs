//! OAuth clients, authorization codes, access and refresh tokens, and which clients used
//! which tunnel, in PostgreSQL.

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::{PgStore, SWEEP_LOCK, announce};
use crate::store::events::Event;
use crate::store::records::*;
use crate::store::{StoreError, new_secret, now};
use protocol::digest::sha256;

type PgResult<T> = Result<T, tokio_postgres::Error>;

impl PgStore {
    /// Stores (or replaces) a client.
    pub async fn put_client(&self, c: &Client) -> Result<(), StoreError> {
        let db = self.conn().await?;
        let st = db
            .prepare_cached(
                "INSERT INTO oauth_clients
                 (client_id, kind, name, redirect_uris, auth_method, secret_hash, metadata, created)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (client_id) DO UPDATE SET kind = EXCLUDED.kind,
                   name = EXCLUDED.name, redirect_uris = EXCLUDED.redirect_uris,
                   auth_method = EXCLUDED.auth_method, secret_hash = EXCLUDED.secret_hash,
                   metadata = EXCLUDED.metadata, created = EXCLUDED.created",
            )
            .await?;
        let uris = serde_json::Value::from(c.redirect_uris.clone()).to_string();
        let secret = c.secret_hash.as_ref().map(|h| &h[..]);
        db.execute(
            &st,
            &[
                &c.client_id,
                &c.kind,
                &c.name,
                &uris,
                &c.auth_method,
                &secret,
                &c.metadata,
                &c.created,
            ],
        )
        .await?;
        Ok(())
    }

    /// A client by id.
    pub async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let db = self.conn().await?;
        let st = db
            .prepare_cached(
                "SELECT client_id, kind, name, redirect_uris, auth_method, secret_hash, metadata,
                 created FROM oauth_clients WHERE client_id = $1",
            )
            .await?;
        let Some(r) = db.query_opt(&st, &[&client_id]).await? else {
            return Ok(None);
        };
        let uris: String = r.try_get(3)?;
        let secret: Option<Vec<u8>> = r.try_get(5)?;
        Ok(Some(Client {
            client_id: r.try_get(0)?,
            kind: r.try_get(1)?,
            name: r.try_get(2)?,
            redirect_uris: serde_json::from_str(&uris).unwrap_or_default(),
            auth_method: r.try_get(4)?,
            secret_hash: secret.and_then(|s| s.try_into().ok()),
            metadata: r.try_get(6)?,
            created: r.try_get(7)?,
        }))
    }

    /// Number of dynamically registered clients.
    pub async fn dcr_client_count(&self) -> Result<usize, StoreError> {
        let db = self.conn().await?;
        let n: i64 = db
            .query_one("SELECT COUNT(*) FROM oauth_clients WHERE kind = 'dcr'", &[])
            .await?
            .try_get(0)?;
        Ok(n as usize)
    }

    /// Stores an authorization code (by the hash of its value).
    pub async fn put_code(&self, code: &str, c: &CodeGrant) -> Result<(), StoreError> {
        let g = &c.grant;
        let db = self.conn().await?;
        let st = db
            .prepare_cached(
                "INSERT INTO auth_codes (hash, client_id, tunnel, resource, owner_token, scope,
                 redirect_uri, challenge, expires, family)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .await?;
        db.execute(
            &st,
            &[
                &&sha256(code.as_bytes())[..],
                &g.client_id,
                &g.tunnel,
                &g.resource,
                &g.owner_token,
                &g.scope,
                &c.redirect_uri,
                &c.challenge,
                &c.expires,
                &new_secret("fam_"),
            ],
        )
        .await?;
        Ok(())
    }

    /// Consumes a code: its grant and family the first time; a second use revokes (and
    /// burns) the family. Concurrent uses wait on the code's row: one wins.
    pub async fn take_code(&self, code: &str) -> Result<Option<(CodeGrant, String)>, StoreError> {
        self.redeem(code, None).await
    }

    /// [`Self::take_code`], storing `issue`'s tokens in the same transaction.
    pub async fn redeem_code(
        &self,
        code: &str,
        issue: &Issue,
    ) -> Result<Option<(CodeGrant, String)>, StoreError> {
        self.redeem(code, Some(issue)).await
    }

    async fn redeem(
        &self,
        code: &str,
        issue: Option<&Issue>,
    ) -> Result<Option<(CodeGrant, String)>, StoreError> {
        let hash = sha256(code.as_bytes());
        let hash = &hash[..];
        let mut db = self.conn().await?;
        let tx = db.transaction().await?;
        let Some(family) = tx
            .query_opt("SELECT family FROM auth_codes WHERE hash = $1", &[&hash])
            .await?
        else {
            return Ok(None);
        };
        let family: String = family.try_get(0)?;
        lock_family(&tx, &family).await?;
        let won = tx
            .query_opt(
                "UPDATE auth_codes SET used = TRUE WHERE hash = $1 AND NOT used
                 RETURNING client_id, tunnel, resource, owner_token, scope, redirect_uri,
                 challenge, expires, family",
                &[&hash],
            )
            .await?;
        let result = match won {
            Some(r) => {
                let c = code_grant(&r)?;
                if c.expires > now() {
                    if let Some(i) = issue {
                        issue_tokens(&tx, i, &c.grant, &family).await?;
                    }
                    Some((c, family))
                } else {
                    None
                }
            }
            None => {
                burn_family(&tx, &family).await?;
                None
            }
        };
        tx.commit().await?;
        Ok(result)
    }

    /// Stores an access or refresh token; one of a burned family is stored revoked.
    pub async fn put_token(
        &self,
        kind: &str,
        token: &str,
        g: &Grant,
        expires: i64,
        family: &str,
    ) -> Result<(), StoreError> {
        let mut db = self.conn().await?;
        let tx = db.transaction().await?;
        // After a burn of the family that is still committing, not before it.
        lock_family(&tx, family).await?;
        insert_token(&tx, kind, token, g, expires, family).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A live access token's grant and expiry.
    pub async fn access_token(&self, token: &str) -> Result<Option<AccessGrant>, StoreError> {
        let db = self.conn().await?;
        let st = db
            .prepare_cached(
                "SELECT client_id, tunnel, resource, owner_token, scope, expires, family
                 FROM oauth_tokens
                 WHERE hash = $1 AND kind = 'access' AND NOT revoked AND expires > $2",
            )
            .await?;
        let Some(r) = db
            .query_opt(&st, &[&&sha256(token.as_bytes())[..], &now()])
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(AccessGrant {
            grant: grant(&r)?,
            expires: r.try_get(5)?,
            family: r.try_get(6)?,
        }))
    }

    /// Uses a refresh token once: its grant and family. Reuse revokes (and burns) the
    /// family. Concurrent uses wait on the token's row: one wins.
    pub async fn use_refresh(
        &self,
        token: &str,
    ) -> Result<Result<(Grant, String), RefreshError>, StoreError> {
        self.rotate(token, None).await
    }

    /// [`Self::use_refresh`], storing `issue`'s tokens in the same transaction.
    pub async fn rotate_refresh(
        &self,
        token: &str,
        issue: &Issue,
    ) -> Result<Result<(Grant, String), RefreshError>, StoreError> {
        self.rotate(token, Some(issue)).await
    }

    async fn rotate(
        &self,
        token: &str,
        issue: Option<&Issue>,
    ) -> Result<Result<(Grant, String), RefreshError>, StoreError> {
        let hash = sha256(token.as_bytes());
        let hash = &hash[..];
        let mut db = self.conn().await?;
        let tx = db.transaction().await?;
        let Some(family) = tx
            .query_opt(
                "SELECT family FROM oauth_tokens WHERE hash = $1 AND kind = 'refresh'",
                &[&hash],
            )
            .await?
        else {
            return Ok(Err(RefreshError::Invalid));
        };
        let family: String = family.try_get(0)?;
        lock_family(&tx, &family).await?;
        let won = tx
            .query_opt(
                "UPDATE oauth_tokens SET used = TRUE
                 WHERE hash = $1 AND kind = 'refresh' AND NOT used AND NOT revoked
                   AND expires > $2
                 RETURNING client_id, tunnel, resource, owner_token, scope, family",
                &[&hash, &now()],
            )
            .await?;
        let result = match won {
            Some(r) => {
                let g = grant(&r)?;
                if let Some(i) = issue {
                    issue_tokens(&tx, i, &g, &family).await?;
                }
                Ok((g, family.clone()))
            }
            None => {
                let row = tx
                    .query_one(
                        "SELECT used, revoked FROM oauth_tokens WHERE hash = $1",
                        &[&hash],
                    )
                    .await?;
                if row.try_get::<_, bool>(0)? || row.try_get::<_, bool>(1)? {
                    burn_family(&tx, &family).await?;
                    Err(RefreshError::Reused)
                } else {
                    Err(RefreshError::Invalid)
                }
            }
        };
        tx.commit().await?;
        Ok(result)
    }

    /// The grant of a refresh token, without using it.
    pub async fn peek_refresh(&self, token: &str) -> Result<Option<Grant>, StoreError> {
        let db = self.conn().await?;
        let st = db
            .prepare_cached(
                "SELECT client_id, tunnel, resource, owner_token, scope FROM oauth_tokens
                 WHERE hash = $1 AND kind = 'refresh'",
            )
            .await?;
        match db.query_opt(&st, &[&&sha256(token.as_bytes())[..]]).await? {
            Some(r) => Ok(Some(grant(&r)?)),
            None => Ok(None),
        }
    }

    /// The client a token (access or refresh) was issued to.
    pub async fn token_client(&self, token: &str) -> Result<Option<String>, StoreError> {
        let db = self.conn().await?;
        let st = db
            .prepare_cached("SELECT client_id FROM oauth_tokens WHERE hash = $1")
            .await?;
        match db.query_opt(&st, &[&&sha256(token.as_bytes())[..]]).await? {
            Some(r) => Ok(Some(r.try_get(0)?)),
            None => Ok(None),
        }
    }

    /// Revokes a token (RFC 7009): a refresh token takes its family with it.
    pub async fn revoke(&self, token: &str) -> Result<(), StoreError> {
        let hash = sha256(token.as_bytes());
        let hash = &hash[..];
        let mut db = self.conn().await?;
        let tx = db.transaction().await?;
        let found = tx
            .query_opt(
                "SELECT kind, family FROM oauth_tokens WHERE hash = $1",
                &[&hash],
            )
            .await?;
        if let Some(r) = found {
            let kind: String = r.try_get(0)?;
            if kind == "refresh" {
                let family: String = r.try_get(1)?;
                lock_family(&tx, &family).await?;
                burn_family(&tx, &family).await?;
            } else {
                tx.execute(
                    "UPDATE oauth_tokens SET revoked = TRUE WHERE hash = $1",
                    &[&hash],
                )
                .await?;
                announce(&tx, &Event::TokensRevoked).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes expired codes and tokens; one node at a time (the others skip it).
    pub async fn sweep(&self) -> Result<(), StoreError> {
        let t = now();
        let mut db = self.conn().await?;
        let tx = db.transaction().await?;
        let mine: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SWEEP_LOCK])
            .await?
            .try_get(0)?;
        if mine {
            tx.execute("DELETE FROM auth_codes WHERE expires < $1", &[&(t - 3600)])
                .await?;
            tx.execute(
                "DELETE FROM oauth_tokens WHERE expires < $1",
                &[&(t - 86_400)],
            )
            .await?;
            tx.execute(
                "DELETE FROM oauth_client_use WHERE last_used < $1",
                &[&(t - 90 * 86_400)],
            )
            .await?;
            tx.execute(
                "DELETE FROM revoked_families WHERE at < $1",
                &[&(t - 86_400)],
            )
            .await?;
            // Consents live minutes, sessions hours: whatever a day old is gone.
            let day_ago_ms = (t - 86_400) * 1000;
            tx.execute(
                "DELETE FROM oauth_consents WHERE created_ms < $1",
                &[&day_ago_ms],
            )
            .await?;
            tx.execute(
                "DELETE FROM status_sessions WHERE seen_ms < $1",
                &[&day_ago_ms],
            )
            .await?;
            tx.execute("DELETE FROM auth_failures WHERE at_ms < $1", &[&day_ago_ms])
                .await?;
            // A node silent for a week is gone for good.
            tx.execute(
                "DELETE FROM relay_nodes WHERE heartbeat_ms < $1",
                &[&((t - 7 * 86_400) * 1000)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Notes that `client_id` got tokens for, or used, `tunnel` at `at` (epoch seconds).
    pub async fn client_used(
        &self,
        tunnel: &str,
        client_id: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        let db = self.conn().await?;
        let st = db
            .prepare_cached(
                "INSERT INTO oauth_client_use (tunnel, client_id, first_used, last_used)
                 VALUES ($1, $2, $3, $3)
                 ON CONFLICT (tunnel, client_id) DO UPDATE
                 SET last_used = GREATEST(oauth_client_use.last_used, EXCLUDED.last_used)",
            )
            .await?;
        db.execute(&st, &[&tunnel, &client_id, &at]).await?;
        Ok(())
    }

    /// The clients holding live tokens for `tunnel` granted under its current owner, most
    /// recently used first.
    pub async fn authorized_clients(
        &self,
        tunnel: &str,
    ) -> Result<Vec<AuthorizedClient>, StoreError> {
        let db = self.conn().await?;
        let st = db
            .prepare_cached(
                "SELECT t.client_id, MAX(c.name), MAX(c.kind), MAX(c.redirect_uris),
                        MAX(u.first_used), MAX(u.last_used)
                 FROM oauth_tokens t
                 LEFT JOIN oauth_clients c ON c.client_id = t.client_id
                 LEFT JOIN oauth_client_use u
                   ON u.tunnel = t.tunnel AND u.client_id = t.client_id
                 WHERE t.tunnel = $1 AND NOT t.revoked AND t.expires > $2
                   AND NOT (t.kind = 'refresh' AND t.used)
                   AND t.owner_token = (SELECT token_id FROM tunnel_names WHERE name = $1)
                 GROUP BY t.client_id
                 ORDER BY MAX(u.last_used) DESC NULLS LAST, t.client_id",
            )
            .await?;
        let mut out = Vec::new();
        for r in db.query(&st, &[&tunnel, &now()]).await? {
            let uris: Option<String> = r.try_get(3)?;
            out.push(AuthorizedClient {
                client_id: r.try_get(0)?,
                name: r.try_get(1)?,
                kind: r.try_get(2)?,
                redirect_uris: uris
                    .and_then(|u| serde_json::from_str(&u).ok())
                    .unwrap_or_default(),
                first_used: r.try_get(4)?,
                last_used: r.try_get(5)?,
            });
        }
        Ok(out)
    }

    /// Revokes every token `client_id` holds for `tunnel` and burns its unused codes for
    /// it; returns how many tokens were live.
    pub async fn revoke_client(&self, tunnel: &str, client_id: &str) -> Result<usize, StoreError> {
        let mut db = self.conn().await?;
        let tx = db.transaction().await?;
        let n = tx
            .execute(
                "UPDATE oauth_tokens SET revoked = TRUE WHERE hash IN (
                   SELECT hash FROM oauth_tokens
                   WHERE tunnel = $1 AND client_id = $2 AND NOT revoked
                   ORDER BY hash FOR UPDATE)",
                &[&tunnel, &client_id],
            )
            .await?;
        tx.execute(
            "UPDATE auth_codes SET used = TRUE WHERE hash IN (
               SELECT hash FROM auth_codes WHERE tunnel = $1 AND client_id = $2
               ORDER BY hash FOR UPDATE)",
            &[&tunnel, &client_id],
        )
        .await?;
        announce(&tx, &Event::TokensRevoked).await?;
        tx.commit().await?;
        Ok(n as usize)
    }

    /// An authorization code's request and whether it was used, without using it.
    pub async fn peek_code(&self, code: &str) -> Result<Option<(CodeGrant, bool)>, StoreError> {
        let db = self.conn().await?;
        let st = db
            .prepare_cached(
                "SELECT client_id, tunnel, resource, owner_token, scope, redirect_uri, challenge,
                 expires, used FROM auth_codes WHERE hash = $1",
            )
            .await?;
        match db.query_opt(&st, &[&&sha256(code.as_bytes())[..]]).await? {
            Some(r) => Ok(Some((code_grant(&r)?, r.try_get(8)?))),
            None => Ok(None),
        }
    }

    /// What the store knows of a token, live or not.
    pub async fn token_state(&self, token: &str) -> Result<Option<TokenState>, StoreError> {
        let db = self.conn().await?;
        let st = db
            .prepare_cached(
                "SELECT kind, client_id, tunnel, resource, owner_token, scope, expires, revoked
                 FROM oauth_tokens WHERE hash = $1",
            )
            .await?;
        let Some(r) = db.query_opt(&st, &[&&sha256(token.as_bytes())[..]]).await? else {
            return Ok(None);
        };
        Ok(Some(TokenState {
            kind: r.try_get(0)?,
            grant: Grant {
                client_id: r.try_get(1)?,
                tunnel: r.try_get(2)?,
                resource: r.try_get(3)?,
                owner_token: r.try_get(4)?,
                scope: r.try_get(5)?,
            },
            expires: r.try_get(6)?,
            revoked: r.try_get(7)?,
        }))
    }
}

/// Stores an issue's access and refresh tokens (revoked if the family is burned).
async fn issue_tokens(
    tx: &Transaction<'_>,
    issue: &Issue,
    g: &Grant,
    family: &str,
) -> PgResult<()> {
    for (kind, token, expires) in [
        ("access", &issue.access, issue.access_expires),
        ("refresh", &issue.refresh, issue.refresh_expires),
    ] {
        insert_token(tx, kind, token, g, expires, family).await?;
    }
    Ok(())
}

/// Stores one token; one of a burned family is stored revoked. The caller holds the
/// family's lock.
async fn insert_token(
    tx: &Transaction<'_>,
    kind: &str,
    token: &str,
    g: &Grant,
    expires: i64,
    family: &str,
) -> PgResult<()> {
    let st = tx
        .prepare_cached(
            "INSERT INTO oauth_tokens (hash, kind, client_id, tunnel, resource, owner_token,
             scope, expires, family, revoked) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
             EXISTS (SELECT 1 FROM revoked_families WHERE family = $9))",
        )
        .await?;
    tx.execute(
        &st,
        &[
            &&sha256(token.as_bytes())[..],
            &kind,
            &g.client_id,
            &g.tunnel,
            &g.resource,
            &g.owner_token,
            &g.scope,
            &expires,
            &family,
        ],
    )
    .await?;
    Ok(())
}

/// Takes a token family's lock until the transaction ends. Every step that writes a
/// family's rows (a code redeemed, a refresh token used, a family burned) takes it first,
/// so such steps on one family take turns and never lock its rows in different orders
/// (which would deadlock).
async fn lock_family(tx: &Transaction<'_>, family: &str) -> PgResult<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&family],
    )
    .await?;
    Ok(())
}

/// Revokes every token of a family and marks the family, so that tokens issued from it
/// later (by the step that won the race this reuse lost) are stored revoked. The caller
/// holds the family's lock ([`lock_family`]). Like every statement that revokes several
/// tokens, it locks their rows in the order of their digests: two such statements never
/// wait for each other in a circle.
async fn burn_family(tx: &Transaction<'_>, family: &str) -> PgResult<()> {
    tx.execute(
        "UPDATE oauth_tokens SET revoked = TRUE WHERE hash IN (
           SELECT hash FROM oauth_tokens WHERE family = $1 ORDER BY hash FOR UPDATE)",
        &[&family],
    )
    .await?;
    tx.execute(
        "INSERT INTO revoked_families (family, at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&family, &now()],
    )
    .await?;
    announce(tx, &Event::TokensRevoked).await
}

/// A grant from the first five columns of a row (client_id, tunnel, resource,
/// owner_token, scope).
fn grant(r: &Row) -> PgResult<Grant> {
    Ok(Grant {
        client_id: r.try_get(0)?,
        tunnel: r.try_get(1)?,
        resource: r.try_get(2)?,
        owner_token: r.try_get(3)?,
        scope: r.try_get(4)?,
    })
}

/// A code's grant from the first eight columns of an `auth_codes` row.
fn code_grant(r: &Row) -> PgResult<CodeGrant> {
    Ok(CodeGrant {
        grant: grant(r)?,
        redirect_uri: r.try_get(5)?,
        challenge: r.try_get(6)?,
        expires: r.try_get(7)?,
    })
}
