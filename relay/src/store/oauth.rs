//! OAuth clients, authorization codes, access and refresh tokens, and which clients used
//! which tunnel.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, new_secret, now};
use protocol::digest::sha256;

/// What an OAuth grant allows: one client, one tunnel, one owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The OAuth client.
    pub client_id: String,
    /// The tunnel name.
    pub tunnel: String,
    /// The resource (the tunnel's public MCP URL): the token's audience.
    pub resource: String,
    /// The bridge token that owned the tunnel when the grant was made.
    pub owner_token: i64,
    /// Granted scope (space-separated).
    pub scope: String,
}

/// A live access token's grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    /// What it grants.
    pub grant: Grant,
    /// When it expires (epoch seconds).
    pub expires: i64,
    /// The token family: one authorization (one consent), kept across refreshes.
    pub family: String,
}

/// An authorization code's stored request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGrant {
    /// The grant it leads to.
    pub grant: Grant,
    /// The exact redirect URI of the request.
    pub redirect_uri: String,
    /// PKCE S256 challenge.
    pub challenge: String,
    /// Expiry (epoch seconds).
    pub expires: i64,
}

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// `client_id` (random for DCR, the document URL for CIMD).
    pub client_id: String,
    /// `dcr` or `cimd`.
    pub kind: String,
    /// Self-declared name (never shown as truth).
    pub name: Option<String>,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// `none`, `client_secret_post` or `client_secret_basic`.
    pub auth_method: String,
    /// SHA-256 of the client secret, for confidential clients.
    pub secret_hash: Option<[u8; 32]>,
    /// The registration (or document) as received, JSON.
    pub metadata: String,
    /// Registration time.
    pub created: i64,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshError {
    /// Unknown or expired.
    Invalid,
    /// Already used or revoked: its whole family is now revoked.
    Reused,
}

/// An OAuth client holding live tokens for a tunnel, for its owner's status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedClient {
    /// `client_id`.
    pub client_id: String,
    /// Self-declared name, if any (unverified).
    pub name: Option<String>,
    /// `dcr` or `cimd` (`None` if the client record is gone).
    pub kind: Option<String>,
    /// Its registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// First grant of tokens for the tunnel (epoch seconds), when known.
    pub first_used: Option<i64>,
    /// Last token grant or MCP request on the tunnel (epoch seconds), when known.
    pub last_used: Option<i64>,
}

/// What the store knows of an access or refresh token, live or not (to explain a refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenState {
    /// `access` or `refresh`.
    pub kind: String,
    /// The grant it carries.
    pub grant: Grant,
    /// Expiry (epoch seconds).
    pub expires: i64,
    /// Whether it was revoked.
    pub revoked: bool,
}

impl Store {
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
    /// use returns `None` and revokes every token issued from the first.
    pub fn take_code(&self, code: &str) -> Result<Option<(CodeGrant, String)>, StoreError> {
        let hash = sha256(code.as_bytes());
        let mut db = self.db();
        let tx = db.transaction()?;
        let row = tx
            .query_row(
                "SELECT client_id, tunnel, resource, owner_token, scope, redirect_uri, challenge,
                 expires, used, family FROM auth_codes WHERE hash = ?1",
                params![&hash[..]],
                |r| {
                    Ok((
                        code_grant(r)?,
                        r.get::<_, i64>(8)? != 0,
                        r.get::<_, String>(9)?,
                    ))
                },
            )
            .optional()?;
        let result = match row {
            None => None,
            Some((_, true, family)) => {
                tx.execute(
                    "UPDATE oauth_tokens SET revoked = 1 WHERE family = ?1",
                    params![family],
                )?;
                None
            }
            Some((c, false, family)) => {
                tx.execute(
                    "UPDATE auth_codes SET used = 1 WHERE hash = ?1",
                    params![&hash[..]],
                )?;
                (c.expires > now()).then_some((c, family))
            }
        };
        tx.commit()?;
        Ok(result)
    }

    /// Stores an access (`kind` = "access") or refresh ("refresh") token.
    pub fn put_token(
        &self,
        kind: &str,
        token: &str,
        g: &Grant,
        expires: i64,
        family: &str,
    ) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO oauth_tokens (hash, kind, client_id, tunnel, resource, owner_token, scope,
             expires, family) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
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

    /// Uses a refresh token once: returns its grant and family. Reuse revokes the family.
    pub fn use_refresh(
        &self,
        token: &str,
    ) -> Result<Result<(Grant, String), RefreshError>, StoreError> {
        let hash = sha256(token.as_bytes());
        let mut db = self.db();
        let tx = db.transaction()?;
        let row = tx
            .query_row(
                "SELECT client_id, tunnel, resource, owner_token, scope, expires, family, used, revoked
                 FROM oauth_tokens WHERE hash = ?1 AND kind = 'refresh'",
                params![&hash[..]],
                |r| {
                    Ok((
                        grant(r)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, i64>(7)? != 0,
                        r.get::<_, i64>(8)? != 0,
                    ))
                },
            )
            .optional()?;
        let result = match row {
            None => Err(RefreshError::Invalid),
            Some((_, _, family, used, revoked)) if used || revoked => {
                tx.execute(
                    "UPDATE oauth_tokens SET revoked = 1 WHERE family = ?1",
                    params![family],
                )?;
                Err(RefreshError::Reused)
            }
            Some((_, expires, _, _, _)) if expires <= now() => Err(RefreshError::Invalid),
            Some((g, _, family, _, _)) => {
                tx.execute(
                    "UPDATE oauth_tokens SET used = 1 WHERE hash = ?1",
                    params![&hash[..]],
                )?;
                Ok((g, family))
            }
        };
        tx.commit()?;
        Ok(result)
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
        let db = self.db();
        let family: Option<(String, String)> = db
            .query_row(
                "SELECT kind, family FROM oauth_tokens WHERE hash = ?1",
                params![&hash[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match family {
            Some((kind, family)) if kind == "refresh" => {
                db.execute(
                    "UPDATE oauth_tokens SET revoked = 1 WHERE family = ?1",
                    params![family],
                )?;
            }
            Some(_) => {
                db.execute(
                    "UPDATE oauth_tokens SET revoked = 1 WHERE hash = ?1",
                    params![&hash[..]],
                )?;
            }
            None => {}
        }
        Ok(())
    }

    /// Removes expired codes and tokens.
    pub fn sweep(&self) -> Result<(), StoreError> {
        let db = self.db();
        let t = now();
        db.execute(
            "DELETE FROM auth_codes WHERE expires < ?1 - 3600",
            params![t],
        )?;
        db.execute(
            "DELETE FROM oauth_tokens WHERE expires < ?1 - 86400",
            params![t],
        )?;
        db.execute(
            "DELETE FROM oauth_client_use WHERE last_used < ?1 - 90 * 86400",
            params![t],
        )?;
        Ok(())
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
        let mut db = self.db();
        let tx = db.transaction()?;
        let n = tx.execute(
            "UPDATE oauth_tokens SET revoked = 1
             WHERE tunnel = ?1 AND client_id = ?2 AND revoked = 0",
            params![tunnel, client_id],
        )?;
        tx.execute(
            "UPDATE auth_codes SET used = 1 WHERE tunnel = ?1 AND client_id = ?2",
            params![tunnel, client_id],
        )?;
        tx.commit()?;
        Ok(n)
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
