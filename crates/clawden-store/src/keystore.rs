//! The key store: wrapped data keys and the wrapped server pepper, in a database of their own
//! (`keys.db` beside the SQLite data file, or the `clawden_keys` schema on PostgreSQL), so a
//! backup of the data alone never holds a usable key.

use crate::sql::{open_pool, Backend};
use crate::{StoreError, StoreResult};
use clawden_crypto::WrappedDek;
use sqlx::{AnyPool, Executor, Row};
use std::path::Path;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("keys-migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("keys-migrations/postgres");

/// The PostgreSQL schema that holds the key store when no separate URL is given.
pub const POSTGRES_KEY_SCHEMA: &str = "clawden_keys";

/// Persistent wrapped keys, by owner name (`user:<id>`, `instance:<id>`, `server:pepper`).
#[derive(Clone)]
pub struct KeyStore {
    pool: AnyPool,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyStore")
    }
}

impl KeyStore {
    /// The key store URL that goes with a data URL: `keys.db` in the data dir for SQLite,
    /// the `clawden_keys` schema of the same database for PostgreSQL.
    pub fn default_url(database_url: &str, data_dir: &Path) -> String {
        match Backend::of_url(database_url) {
            Some(Backend::Postgres) => {
                let sep = if database_url.contains('?') { '&' } else { '?' };
                format!("{database_url}{sep}options=-c%20search_path%3D{POSTGRES_KEY_SCHEMA}")
            }
            _ => crate::sql::sqlite_url(&data_dir.join("keys.db")),
        }
    }

    /// Connects and migrates.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let (pool, backend) = open_pool(url, 4).await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => {
                pool.execute(format!("CREATE SCHEMA IF NOT EXISTS {POSTGRES_KEY_SCHEMA}").as_str()).await?;
                POSTGRES_MIGRATIONS.run(&pool).await?
            }
        }
        Ok(Self { pool })
    }

    /// The wrapped key of `owner`, if it has one.
    pub async fn get(&self, owner: &str) -> StoreResult<Option<WrappedDek>> {
        let row = sqlx::query("SELECT kek_version, wrapped FROM wrapped_keys WHERE owner = $1")
            .bind(owner)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let version: i64 = row.try_get("kek_version")?;
            Ok(WrappedDek {
                kek_version: u32::try_from(version).map_err(|_| StoreError::corrupt("kek_version"))?,
                bytes: row.try_get("wrapped")?,
            })
        })
        .transpose()
    }

    /// Stores a key for `owner` unless one exists; returns whether this one was stored.
    pub async fn insert_if_absent(&self, owner: &str, wrapped: &WrappedDek, now: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO wrapped_keys (owner, kek_version, wrapped, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (owner) DO NOTHING",
        )
        .bind(owner)
        .bind(i64::from(wrapped.kek_version))
        .bind(wrapped.bytes.clone())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Destroys `owner`'s key (crypto-shredding).
    pub async fn delete(&self, owner: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM wrapped_keys WHERE owner = $1").bind(owner).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Up to `limit` keys wrapped by a version older than `version`. The index on the version
    /// makes each batch start where the stale keys are, so a rotation stays linear in the
    /// number of keys.
    pub async fn wrapped_not_by(&self, version: u32, limit: i64) -> StoreResult<Vec<(String, WrappedDek)>> {
        let rows = sqlx::query("SELECT owner, kek_version, wrapped FROM wrapped_keys WHERE kek_version < $1 LIMIT $2")
            .bind(i64::from(version))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let version: i64 = row.try_get("kek_version")?;
                Ok((
                    row.try_get("owner")?,
                    WrappedDek {
                        kek_version: u32::try_from(version).map_err(|_| StoreError::corrupt("kek_version"))?,
                        bytes: row.try_get("wrapped")?,
                    },
                ))
            })
            .collect()
    }

    /// Replaces wrapped keys in one transaction (a rotation batch). Each replacement only
    /// applies if the row still holds the old version, so a concurrent delete wins.
    pub async fn rewrap_batch(&self, batch: &[(String, u32, WrappedDek)]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for (owner, old_version, wrapped) in batch {
            sqlx::query("UPDATE wrapped_keys SET kek_version = $1, wrapped = $2 WHERE owner = $3 AND kek_version = $4")
                .bind(i64::from(wrapped.kek_version))
                .bind(wrapped.bytes.clone())
                .bind(owner)
                .bind(i64::from(*old_version))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many keys each master key version wraps.
    pub async fn count_by_version(&self) -> StoreResult<Vec<(u32, i64)>> {
        let rows = sqlx::query(
            "SELECT kek_version, COUNT(*) AS n FROM wrapped_keys GROUP BY kek_version ORDER BY kek_version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let v: i64 = row.try_get("kek_version")?;
                Ok((u32::try_from(v).map_err(|_| StoreError::corrupt("kek_version"))?, row.try_get("n")?))
            })
            .collect()
    }

    /// The recorded head of every audit chain: (chain, seq, mac).
    pub async fn audit_heads(&self) -> StoreResult<Vec<(String, i64, Vec<u8>)>> {
        let rows = sqlx::query("SELECT chain, seq, mac FROM audit_heads").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get("chain")?, r.try_get("seq")?, r.try_get("mac")?))).collect()
    }

    /// Moves chains' heads forward (never backwards).
    pub async fn advance_audit_heads(&self, heads: &[(String, i64, Vec<u8>)]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for (chain, seq, mac) in heads {
            sqlx::query(
                "INSERT INTO audit_heads (chain, seq, mac) VALUES ($1, $2, $3)
                 ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, mac = excluded.mac
                 WHERE audit_heads.seq < excluded.seq",
            )
            .bind(chain)
            .bind(*seq)
            .bind(mac.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Retention checkpoints: (chain, seq, mac) of the last record removed from each chain.
    pub async fn audit_checkpoints(&self) -> StoreResult<Vec<(String, i64, Vec<u8>)>> {
        let rows = sqlx::query("SELECT chain, seq, mac FROM audit_checkpoints").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get("chain")?, r.try_get("seq")?, r.try_get("mac")?))).collect()
    }

    /// Moves a chain's checkpoint forward.
    pub async fn advance_audit_checkpoint(&self, chain: &str, seq: i64, mac: &[u8]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (chain, seq, mac) VALUES ($1, $2, $3)
             ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, mac = excluded.mac
             WHERE audit_checkpoints.seq < excluded.seq",
        )
        .bind(chain)
        .bind(seq)
        .bind(mac.to_vec())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a chain's head (its records were deleted with their instance or account).
    pub async fn drop_audit_head(&self, chain: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM audit_heads WHERE chain = $1").bind(chain).execute(&self.pool).await?;
        sqlx::query("DELETE FROM audit_checkpoints WHERE chain = $1").bind(chain).execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
