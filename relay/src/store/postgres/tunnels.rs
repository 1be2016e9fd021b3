//! Bridge tokens and the tunnel names they own, in PostgreSQL.

use super::{PgStore, announce};
use crate::store::events::Event;
use crate::store::records::{Presence, TokenInfo};
use crate::store::{StoreError, new_secret, now};
use protocol::digest::sha256;

impl PgStore {
    /// Creates a bridge token; returns it (shown once, stored hashed).
    pub async fn create_token(&self, label: &str) -> Result<String, StoreError> {
        let secret = new_secret("brt_");
        self.add_token(label, &secret).await?;
        Ok(secret)
    }

    /// Stores a bridge token chosen elsewhere; a no-op if already present.
    pub async fn add_token(&self, label: &str, secret: &str) -> Result<i64, StoreError> {
        self.add_token_hash(label, sha256(secret.as_bytes())).await
    }

    /// Stores a bridge token given by its SHA-256 digest; a no-op if already present.
    /// Nodes starting together with the same configured tokens all end with its one row.
    pub async fn add_token_hash(&self, label: &str, hash: [u8; 32]) -> Result<i64, StoreError> {
        let c = self.conn().await?;
        let hash = &hash[..];
        let st = c
            .prepare_cached(
                "INSERT INTO bridge_tokens (label, hash, created) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .await?;
        if let Some(row) = c.query_opt(&st, &[&label, &hash, &now()]).await? {
            return Ok(row.try_get(0)?);
        }
        let st = c
            .prepare_cached("SELECT id FROM bridge_tokens WHERE hash = $1")
            .await?;
        match c.query_opt(&st, &[&hash]).await? {
            Some(row) => Ok(row.try_get(0)?),
            None => Err(StoreError::DuplicateLabel(label.to_owned())),
        }
    }

    /// The live (not revoked) token with this secret.
    pub async fn token_id(&self, secret: &str) -> Result<Option<i64>, StoreError> {
        let hash = sha256(secret.as_bytes());
        let c = self.conn().await?;
        let st = c
            .prepare_cached("SELECT id FROM bridge_tokens WHERE hash = $1 AND revoked IS NULL")
            .await?;
        match c.query_opt(&st, &[&&hash[..]]).await? {
            Some(row) => Ok(Some(row.try_get(0)?)),
            None => Ok(None),
        }
    }

    /// Whether a token id is live.
    pub async fn token_live(&self, id: i64) -> Result<bool, StoreError> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached("SELECT 1 FROM bridge_tokens WHERE id = $1 AND revoked IS NULL")
            .await?;
        Ok(c.query_opt(&st, &[&id]).await?.is_some())
    }

    /// Those of `ids` whose bridge token is revoked (or gone), in one query.
    pub async fn revoked_among(&self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT id FROM UNNEST($1::BIGINT[]) AS ids(id)
                 WHERE NOT EXISTS (SELECT 1 FROM bridge_tokens t
                                   WHERE t.id = ids.id AND t.revoked IS NULL)",
            )
            .await?;
        let ids = ids.to_vec();
        let mut revoked = Vec::new();
        for row in c.query(&st, &[&ids]).await? {
            revoked.push(row.try_get(0)?);
        }
        Ok(revoked)
    }

    /// All tokens with the names they own.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let c = self.conn().await?;
        let mut tokens = Vec::new();
        for row in c
            .query(
                "SELECT id, label, created, revoked FROM bridge_tokens ORDER BY id",
                &[],
            )
            .await?
        {
            tokens.push(TokenInfo {
                id: row.try_get(0)?,
                label: row.try_get(1)?,
                created: row.try_get(2)?,
                revoked: row.try_get(3)?,
                names: Vec::new(),
            });
        }
        for row in c
            .query("SELECT name, token_id FROM tunnel_names ORDER BY name", &[])
            .await?
        {
            let id: i64 = row.try_get(1)?;
            if let Some(t) = tokens.iter_mut().find(|t| t.id == id) {
                t.names.push(row.try_get(0)?);
            }
        }
        Ok(tokens)
    }

    /// Revokes a token by label, with the OAuth grants made on its authority.
    pub async fn revoke_token(&self, label: &str) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "UPDATE bridge_tokens SET revoked = $2 WHERE label = $1 AND revoked IS NULL
                 RETURNING id",
                &[&label, &now()],
            )
            .await?
        else {
            return Err(StoreError::NoSuchToken(label.to_owned()));
        };
        let id: i64 = row.try_get(0)?;
        tx.execute(
            "UPDATE oauth_tokens SET revoked = TRUE WHERE hash IN (
               SELECT hash FROM oauth_tokens WHERE owner_token = $1 ORDER BY hash FOR UPDATE)",
            &[&id],
        )
        .await?;
        tx.execute(
            "UPDATE auth_codes SET used = TRUE WHERE hash IN (
               SELECT hash FROM auth_codes WHERE owner_token = $1 ORDER BY hash FOR UPDATE)",
            &[&id],
        )
        .await?;
        announce(&tx, &Event::BridgeTokenRevoked(id)).await?;
        announce(&tx, &Event::TokensRevoked).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The token owning a name.
    pub async fn name_owner(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached("SELECT token_id FROM tunnel_names WHERE name = $1")
            .await?;
        match c.query_opt(&st, &[&name]).await? {
            Some(row) => Ok(Some(row.try_get(0)?)),
            None => Ok(None),
        }
    }

    /// The token owning a name, if that token is live.
    pub async fn live_owner(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT n.token_id FROM tunnel_names n JOIN bridge_tokens t ON t.id = n.token_id
                 WHERE n.name = $1 AND t.revoked IS NULL",
            )
            .await?;
        match c.query_opt(&st, &[&name]).await? {
            Some(row) => Ok(Some(row.try_get(0)?)),
            None => Ok(None),
        }
    }

    /// Claims a name for a token; `false` if another token owns it. Of two tokens
    /// claiming a free name at once, one wins (the name's primary key decides).
    pub async fn claim_name(&self, name: &str, token_id: i64) -> Result<bool, StoreError> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO tunnel_names (name, token_id, claimed) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
            )
            .await?;
        c.execute(&st, &[&name, &token_id, &now()]).await?;
        // One connection per call: never a second one while holding this one.
        let st = c
            .prepare_cached("SELECT token_id FROM tunnel_names WHERE name = $1")
            .await?;
        let owner: Option<i64> = match c.query_opt(&st, &[&name]).await? {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        };
        Ok(owner == Some(token_id))
    }

    /// Releases a name and forgets its trace and clients; `false` if it was not claimed.
    pub async fn release_name(&self, name: &str) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        let released = tx
            .execute("DELETE FROM tunnel_names WHERE name = $1", &[&name])
            .await?
            > 0;
        tx.execute("DELETE FROM oauth_trace WHERE tunnel = $1", &[&name])
            .await?;
        tx.execute("DELETE FROM oauth_client_use WHERE tunnel = $1", &[&name])
            .await?;
        tx.execute("DELETE FROM tunnel_presence WHERE name = $1", &[&name])
            .await?;
        tx.execute("DELETE FROM tunnel_snapshots WHERE name = $1", &[&name])
            .await?;
        announce(&tx, &Event::NameReleased(name.to_owned())).await?;
        tx.commit().await?;
        Ok(released)
    }

    /// Records that `node` holds tunnel `name`'s bridge (connection `conn`) since now.
    pub async fn set_presence(
        &self,
        name: &str,
        node: &str,
        conn: i64,
        auth: &str,
        bridge_version: &str,
    ) -> Result<(), StoreError> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO tunnel_presence
                 (name, node, conn, auth, bridge_version, connected_at, disconnected_at)
                 VALUES ($1, $2, $3, $4, $5, $6, NULL)
                 ON CONFLICT (name) DO UPDATE SET node = EXCLUDED.node, conn = EXCLUDED.conn,
                   auth = EXCLUDED.auth, bridge_version = EXCLUDED.bridge_version,
                   connected_at = EXCLUDED.connected_at, disconnected_at = NULL,
                   gauges = NULL",
            )
            .await?;
        c.execute(&st, &[&name, &node, &conn, &auth, &bridge_version, &now()])
            .await?;
        Ok(())
    }

    /// Records that connection `conn` of tunnel `name` on `node` ended.
    pub async fn clear_presence(
        &self,
        name: &str,
        node: &str,
        conn: i64,
    ) -> Result<(), StoreError> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "UPDATE tunnel_presence SET disconnected_at = $4
                 WHERE name = $1 AND node = $2 AND conn = $3 AND disconnected_at IS NULL",
            )
            .await?;
        c.execute(&st, &[&name, &node, &conn, &now()]).await?;
        Ok(())
    }

    /// Keeps a tunnel's last snapshot.
    pub async fn put_snapshot(
        &self,
        name: &str,
        token_id: i64,
        initialize: &[u8],
        tools: &[u8],
    ) -> Result<(), StoreError> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO tunnel_snapshots (name, token_id, initialize, tools, updated_ms)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (name) DO UPDATE SET token_id = EXCLUDED.token_id,
                   initialize = EXCLUDED.initialize, tools = EXCLUDED.tools,
                   updated_ms = EXCLUDED.updated_ms",
            )
            .await?;
        c.execute(
            &st,
            &[
                &name,
                &token_id,
                &initialize,
                &tools,
                &protocol::time::now_ms(),
            ],
        )
        .await?;
        Ok(())
    }

    /// A tunnel's last snapshot: its bridge token, `initialize`, `tools`.
    #[allow(clippy::type_complexity)]
    pub async fn snapshot(
        &self,
        name: &str,
    ) -> Result<Option<(i64, Vec<u8>, Vec<u8>)>, StoreError> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT token_id, initialize, tools FROM tunnel_snapshots WHERE name = $1",
            )
            .await?;
        match c.query_opt(&st, &[&name]).await? {
            Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))),
            None => Ok(None),
        }
    }

    /// Where tunnel `name`'s bridge is (or last was) connected.
    pub async fn presence(&self, name: &str) -> Result<Option<Presence>, StoreError> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT p.node, p.auth, p.bridge_version, p.connected_at, p.disconnected_at,
                   p.gauges, p.recent,
                   (extract(epoch from clock_timestamp()) * 1000)::bigint - n.heartbeat_ms
                 FROM tunnel_presence p LEFT JOIN relay_nodes n ON n.node = p.node
                 WHERE p.name = $1",
            )
            .await?;
        let Some(r) = c.query_opt(&st, &[&name]).await? else {
            return Ok(None);
        };
        // The node's silence by the database's clock, on this node's.
        let age_ms: Option<i64> = r.try_get(7)?;
        Ok(Some(Presence {
            node: r.try_get(0)?,
            auth: r.try_get(1)?,
            bridge_version: r.try_get(2)?,
            connected_at: r.try_get(3)?,
            disconnected_at: r.try_get(4)?,
            gauges: r.try_get(5)?,
            recent: r.try_get(6)?,
            node_seen_ms: age_ms.map(|age| protocol::time::now_ms() - age),
        }))
    }

    /// Number of claimed names.
    pub async fn name_count(&self) -> Result<usize, StoreError> {
        let c = self.conn().await?;
        let n: i64 = c
            .query_one("SELECT COUNT(*) FROM tunnel_names", &[])
            .await?
            .try_get(0)?;
        Ok(n as usize)
    }
}
