//! Bridge tokens and the tunnel names they own, in SQLite.

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::store::records::{Presence, TokenInfo};
use crate::store::{StoreError, new_secret, now};
use protocol::digest::sha256;

impl SqliteStore {
    // ----- bridge tokens -----------------------------------------------------------

    /// Creates a bridge token; returns it (shown once, stored hashed).
    pub fn create_token(&self, label: &str) -> Result<String, StoreError> {
        let secret = new_secret("brt_");
        self.add_token(label, &secret)?;
        Ok(secret)
    }

    /// Stores a bridge token chosen elsewhere (configured through the environment).
    /// Adding the same token again is a no-op.
    pub fn add_token(&self, label: &str, secret: &str) -> Result<i64, StoreError> {
        self.add_token_hash(label, sha256(secret.as_bytes()))
    }

    /// Stores a bridge token given by its SHA-256 digest; a no-op if already present.
    pub fn add_token_hash(&self, label: &str, hash: [u8; 32]) -> Result<i64, StoreError> {
        self.write(|tx| {
            let added: Option<i64> = tx
                .query_row(
                    "INSERT INTO bridge_tokens (label, hash, created) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING RETURNING id",
                    params![label, &hash[..], now()],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = added {
                return Ok(id);
            }
            tx.query_row(
                "SELECT id FROM bridge_tokens WHERE hash = ?1",
                params![&hash[..]],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::DuplicateLabel(label.to_owned()))
        })
    }

    /// The live (not revoked) token with this secret.
    pub fn token_id(&self, secret: &str) -> Result<Option<i64>, StoreError> {
        let hash = sha256(secret.as_bytes());
        Ok(self
            .db()
            .query_row(
                "SELECT id FROM bridge_tokens WHERE hash = ?1 AND revoked IS NULL",
                params![&hash[..]],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Whether a token id is live.
    pub fn token_live(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT 1 FROM bridge_tokens WHERE id = ?1 AND revoked IS NULL",
                params![id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Those of `ids` whose bridge token is revoked (or gone).
    pub fn revoked_among(&self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        let db = self.db();
        let mut st =
            db.prepare_cached("SELECT 1 FROM bridge_tokens WHERE id = ?1 AND revoked IS NULL")?;
        let mut revoked = Vec::new();
        for &id in ids {
            if !st.exists(params![id])? {
                revoked.push(id);
            }
        }
        Ok(revoked)
    }

    /// All tokens with the names they own.
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let db = self.db();
        let mut st =
            db.prepare("SELECT id, label, created, revoked FROM bridge_tokens ORDER BY id")?;
        let mut tokens: Vec<TokenInfo> = st
            .query_map([], |r| {
                Ok(TokenInfo {
                    id: r.get(0)?,
                    label: r.get(1)?,
                    created: r.get(2)?,
                    revoked: r.get(3)?,
                    names: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut st = db.prepare("SELECT name, token_id FROM tunnel_names ORDER BY name")?;
        let names = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for n in names {
            let (name, id) = n?;
            if let Some(t) = tokens.iter_mut().find(|t| t.id == id) {
                t.names.push(name);
            }
        }
        Ok(tokens)
    }

    /// Revokes a token by label. Its names stay reserved; the OAuth grants made on its
    /// authority (access and refresh tokens, unused codes) are revoked with it.
    pub fn revoke_token(&self, label: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let id: Option<i64> = tx
                .query_row(
                    "UPDATE bridge_tokens SET revoked = ?2 WHERE label = ?1 AND revoked IS NULL
                     RETURNING id",
                    params![label, now()],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(id) = id else {
                return Err(StoreError::NoSuchToken(label.to_owned()));
            };
            tx.execute(
                "UPDATE oauth_tokens SET revoked = 1 WHERE owner_token = ?1",
                params![id],
            )?;
            tx.execute(
                "UPDATE auth_codes SET used = 1 WHERE owner_token = ?1",
                params![id],
            )?;
            Ok(())
        })
    }

    // ----- tunnel names ----------------------------------------------------------------

    /// The token owning a name.
    pub fn name_owner(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT token_id FROM tunnel_names WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The token owning a name, if that token is live (not revoked): the only owner on
    /// whose authority OAuth grants for the name are made and honoured.
    pub fn live_owner(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT n.token_id FROM tunnel_names n JOIN bridge_tokens t ON t.id = n.token_id
                 WHERE n.name = ?1 AND t.revoked IS NULL",
                params![name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Claims a name for a token; `Ok(false)` if another token owns it.
    pub fn claim_name(&self, name: &str, token_id: i64) -> Result<bool, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tunnel_names (name, token_id, claimed) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
                params![name, token_id, now()],
            )?;
            let owner: i64 = tx.query_row(
                "SELECT token_id FROM tunnel_names WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )?;
            Ok(owner == token_id)
        })
    }

    /// Releases a name (operator action); `false` if it was not claimed.
    pub fn release_name(&self, name: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            let released =
                tx.execute("DELETE FROM tunnel_names WHERE name = ?1", params![name])? > 0;
            // The next owner of the name must not see the previous owner's clients.
            tx.execute("DELETE FROM oauth_trace WHERE tunnel = ?1", params![name])?;
            tx.execute("DELETE FROM tunnel_presence WHERE name = ?1", params![name])?;
            tx.execute(
                "DELETE FROM tunnel_snapshots WHERE name = ?1",
                params![name],
            )?;
            tx.execute(
                "DELETE FROM oauth_client_use WHERE tunnel = ?1",
                params![name],
            )?;
            Ok(released)
        })
    }

    /// Records that `node` holds tunnel `name`'s bridge (connection `conn`) since now.
    pub fn set_presence(
        &self,
        name: &str,
        node: &str,
        conn: i64,
        auth: &str,
        bridge_version: &str,
    ) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO tunnel_presence
             (name, node, conn, auth, bridge_version, connected_at, disconnected_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)
             ON CONFLICT (name) DO UPDATE SET node = excluded.node, conn = excluded.conn,
               auth = excluded.auth, bridge_version = excluded.bridge_version,
               connected_at = excluded.connected_at, disconnected_at = NULL,
               gauges = NULL",
            params![name, node, conn, auth, bridge_version, now()],
        )?;
        Ok(())
    }

    /// Records that connection `conn` of tunnel `name` on `node` ended.
    pub fn clear_presence(&self, name: &str, node: &str, conn: i64) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE tunnel_presence SET disconnected_at = ?4
             WHERE name = ?1 AND node = ?2 AND conn = ?3 AND disconnected_at IS NULL",
            params![name, node, conn, now()],
        )?;
        Ok(())
    }

    /// Keeps a tunnel's last snapshot.
    pub fn put_snapshot(
        &self,
        name: &str,
        token_id: i64,
        initialize: &[u8],
        tools: &[u8],
    ) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO tunnel_snapshots (name, token_id, initialize, tools, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET token_id = excluded.token_id,
               initialize = excluded.initialize, tools = excluded.tools,
               updated_ms = excluded.updated_ms",
            params![name, token_id, initialize, tools, protocol::time::now_ms()],
        )?;
        Ok(())
    }

    /// A tunnel's last snapshot: its bridge token, `initialize`, `tools`.
    #[allow(clippy::type_complexity)]
    pub fn snapshot(&self, name: &str) -> Result<Option<(i64, Vec<u8>, Vec<u8>)>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT token_id, initialize, tools FROM tunnel_snapshots WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?)
    }

    /// Where tunnel `name`'s bridge is (or last was) connected.
    pub fn presence(&self, name: &str) -> Result<Option<Presence>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT p.node, p.auth, p.bridge_version, p.connected_at, p.disconnected_at,
                   p.gauges, p.recent, n.heartbeat_ms
                 FROM tunnel_presence p LEFT JOIN relay_nodes n ON n.node = p.node
                 WHERE p.name = ?1",
                params![name],
                |r| {
                    Ok(Presence {
                        node: r.get(0)?,
                        auth: r.get(1)?,
                        bridge_version: r.get(2)?,
                        connected_at: r.get(3)?,
                        disconnected_at: r.get(4)?,
                        gauges: r.get(5)?,
                        recent: r.get(6)?,
                        node_seen_ms: r.get(7)?,
                    })
                },
            )
            .optional()?)
    }

    /// Number of claimed names.
    pub fn name_count(&self) -> Result<usize, StoreError> {
        Ok(self
            .db()
            .query_row("SELECT COUNT(*) FROM tunnel_names", [], |r| {
                r.get::<_, i64>(0)
            })? as usize)
    }
}
