//! `relay db copy`: a SQLite relay's state moved into PostgreSQL, table by table, in one
//! transaction, keeping row ids (grants name their bridge token by id).

use std::path::Path;

use rusqlite::types::Value;
use tokio_postgres::types::ToSql;

use super::StoreError;
use super::postgres::PgStore;
use super::sqlite::SqliteStore;

/// How a column is typed in PostgreSQL.
#[derive(Clone, Copy)]
enum Kind {
    /// BIGINT.
    Int,
    /// TEXT.
    Text,
    /// BYTEA.
    Bytes,
    /// BOOLEAN (0 or 1 in SQLite).
    Bool,
}

use Kind::{Bool, Bytes, Int, Text};

/// Every table of lasting state, in an order that respects references, with its columns
/// (not the passing ones: consents waiting minutes, status-page sessions, tunnel presence
/// and snapshots, which the relay rebuilds as it runs).
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "bridge_tokens",
        &[
            ("id", Int),
            ("label", Text),
            ("hash", Bytes),
            ("created", Int),
            ("revoked", Int),
        ],
    ),
    (
        "tunnel_names",
        &[("name", Text), ("token_id", Int), ("claimed", Int)],
    ),
    (
        "oauth_clients",
        &[
            ("client_id", Text),
            ("kind", Text),
            ("name", Text),
            ("redirect_uris", Text),
            ("auth_method", Text),
            ("secret_hash", Bytes),
            ("metadata", Text),
            ("created", Int),
        ],
    ),
    (
        "auth_codes",
        &[
            ("hash", Bytes),
            ("client_id", Text),
            ("tunnel", Text),
            ("resource", Text),
            ("owner_token", Int),
            ("scope", Text),
            ("redirect_uri", Text),
            ("challenge", Text),
            ("expires", Int),
            ("used", Bool),
            ("family", Text),
        ],
    ),
    (
        "oauth_tokens",
        &[
            ("hash", Bytes),
            ("kind", Text),
            ("client_id", Text),
            ("tunnel", Text),
            ("resource", Text),
            ("owner_token", Int),
            ("scope", Text),
            ("expires", Int),
            ("family", Text),
            ("used", Bool),
            ("revoked", Bool),
        ],
    ),
    ("revoked_families", &[("family", Text), ("at", Int)]),
    (
        "oauth_trace",
        &[
            ("id", Int),
            ("time", Int),
            ("tunnel", Text),
            ("step", Text),
            ("outcome", Text),
            ("error", Text),
            ("reason", Text),
            ("client_id", Text),
            ("client_name", Text),
            ("ip", Text),
            ("user_agent", Text),
            ("unverified", Bool),
        ],
    ),
    (
        "oauth_client_use",
        &[
            ("tunnel", Text),
            ("client_id", Text),
            ("first_used", Int),
            ("last_used", Int),
        ],
    ),
];

/// Copies the SQLite database in `dir` into the PostgreSQL database at `url` (migrated
/// first), which must hold no relay state yet. Returns each table and its row count.
pub async fn sqlite_to_postgres(
    dir: &Path,
    url: &str,
) -> Result<Vec<(&'static str, usize)>, StoreError> {
    let from = SqliteStore::open(dir)?;
    let wanted: Vec<(&str, String)> = TABLES
        .iter()
        .map(|(table, columns)| (*table, column_list(columns)))
        .collect();
    let rows = from.rows(&wanted)?;
    let to = PgStore::connect(url, None).await?;
    to.fill(rows).await
}

/// The columns' names, comma-separated.
fn column_list(columns: &[(&str, Kind)]) -> String {
    columns
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl PgStore {
    /// Fills the (empty) tables from `rows` (each table's of [`TABLES`], in its order, with
    /// its columns in theirs), in one transaction.
    async fn fill(
        &self,
        rows: Vec<Vec<Vec<Value>>>,
    ) -> Result<Vec<(&'static str, usize)>, StoreError> {
        let mut db = self.conn().await?;
        let tx = db.transaction().await?;
        for (table, _) in TABLES {
            let any: bool = tx
                .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
                .await?
                .try_get(0)?;
            if any {
                return Err(StoreError::Refused(format!(
                    "the PostgreSQL database already holds relay state (table {table} is not \
                     empty); copy into a new database"
                )));
            }
        }
        let mut counts = Vec::new();
        for ((table, columns), source) in TABLES.iter().zip(rows) {
            let marks: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
            let insert = tx
                .prepare(&format!(
                    "INSERT INTO {table} ({}) VALUES ({})",
                    column_list(columns),
                    marks.join(", ")
                ))
                .await?;
            for row in &source {
                let values = row
                    .iter()
                    .zip(columns.iter())
                    .map(|(v, (name, kind))| param(v, *kind, table, name))
                    .collect::<Result<Vec<_>, _>>()?;
                let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
                tx.execute(&insert, &refs).await?;
            }
            counts.push((*table, source.len()));
        }
        // Identities continue after the copied ids.
        for table in ["bridge_tokens", "oauth_trace"] {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                     COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                ),
                &[],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(counts)
    }
}

/// A SQLite value as the parameter of a PostgreSQL column of `kind`.
fn param(
    v: &Value,
    kind: Kind,
    table: &str,
    column: &str,
) -> Result<Box<dyn ToSql + Sync>, StoreError> {
    Ok(match (kind, v) {
        (Int, Value::Null) => Box::new(None::<i64>),
        (Int, Value::Integer(i)) => Box::new(*i),
        (Bool, Value::Integer(i)) => Box::new(*i != 0),
        (Text, Value::Null) => Box::new(None::<String>),
        (Text, Value::Text(t)) => Box::new(t.clone()),
        (Bytes, Value::Null) => Box::new(None::<Vec<u8>>),
        (Bytes, Value::Blob(b)) => Box::new(b.clone()),
        (_, other) => {
            return Err(StoreError::Refused(format!(
                "{table}.{column} holds an unexpected {:?} value; the SQLite database is \
                 not one this relay wrote",
                other.data_type()
            )));
        }
    })
}
