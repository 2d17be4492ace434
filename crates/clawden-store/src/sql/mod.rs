//! The one SQL implementation of the store traits, over SQLite or PostgreSQL.
//!
//! Both backends share every query: the schema keeps to types both speak the same way (text
//! ids, integer times and flags, byte blobs), so the SQL is written once. What differs —
//! connection setup, migrations, and how a write transaction starts — lives here.

mod agents;
mod anomalies;
mod audit;
mod chain;
mod data;
pub use chain::ChainBreak;
mod gateway;
mod invites;
mod members;
mod secrets;
mod sessions;
mod tools;
mod totp;
mod users;

use crate::{Store, StoreError, StoreResult};
use async_trait::async_trait;
use clawden_core::Principal;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (WAL mode).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The backend a database URL names.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// The store over SQLite or PostgreSQL.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer at a time; taking this lock before a write transaction
    /// serialises writers inside the process instead of letting them fail with `BUSY`.
    write_lock: Arc<Mutex<()>>,
    /// Seals and opens values under their owner's data key, inside the store, so no caller
    /// can forget to.
    keyring: Arc<crate::Keyring>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore").field("backend", &self.backend).finish_non_exhaustive()
    }
}

/// A write transaction, holding the SQLite writer lock while it lives.
pub(crate) struct WriteTx<'a> {
    pub(crate) tx: Transaction<'static, Any>,
    _guard: Option<MutexGuard<'a, ()>>,
}

impl WriteTx<'_> {
    pub(crate) async fn commit(self) -> StoreResult<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// Opens a pool for `url` with the per-connection settings of its backend.
pub(crate) async fn open_pool(url: &str, max_connections: u32) -> StoreResult<(AnyPool, Backend)> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of_url(url)
        .ok_or_else(|| StoreError::corrupt("database URL must start with sqlite: or postgres://"))?;
    let options = sqlx::any::AnyConnectOptions::from_str(url)?;
    let pool = match backend {
        Backend::Sqlite => {
            AnyPoolOptions::new()
                .max_connections(max_connections)
                // A local file cannot drop a connection the way a network can; the ping before
                // each checkout was a third of the round trips to SQLite's connection threads.
                // (sqlx still pings each connection when it goes back to the pool.)
                .test_before_acquire(false)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;",
                        )
                        .await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await?
        }
        Backend::Postgres => AnyPoolOptions::new().max_connections(max_connections).connect_with(options).await?,
    };
    if backend == Backend::Sqlite {
        pool.execute("PRAGMA journal_mode = WAL;").await?;
    }
    Ok((pool, backend))
}

/// The PostgreSQL pool the application uses: every connection works as `clawden_app` (a
/// role without `BYPASSRLS`) when it logged in as a superuser or a role that bypasses row
/// security, and forgets the principal it acted for when it goes back to the pool.
async fn open_app_pool(url: &str, max_connections: u32) -> StoreResult<AnyPool> {
    let options = sqlx::any::AnyConnectOptions::from_str(url)?;
    Ok(AnyPoolOptions::new()
        .max_connections(max_connections)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                let privileged: i64 = sqlx::query_scalar(
                    "SELECT (CASE WHEN rolsuper OR rolbypassrls THEN 1 ELSE 0 END)::bigint FROM pg_roles WHERE rolname = current_user",
                )
                .fetch_one(&mut *conn)
                .await?;
                if privileged == 1 {
                    conn.execute("SET ROLE clawden_app").await?;
                }
                Ok(())
            })
        })
        .after_release(|conn, _meta| {
            Box::pin(async move {
                conn.execute("RESET clawden.user_id; RESET clawden.system").await?;
                Ok(true)
            })
        })
        .connect_with(options)
        .await?)
}

/// The SQLite URL for a file, created if missing.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

impl SqlStore {
    /// Connects and runs the migrations of the URL's backend.
    pub async fn connect(url: &str, keyring: Arc<crate::Keyring>) -> StoreResult<Self> {
        let (pool, backend) = open_pool(url, 16).await?;
        let pool = match backend {
            Backend::Sqlite => {
                SQLITE_MIGRATIONS.run(&pool).await?;
                pool
            }
            Backend::Postgres => {
                // Migrations run as the login role (the tables' owner); the application then
                // works through a pool subject to row-level security.
                POSTGRES_MIGRATIONS.run(&pool).await?;
                pool.close().await;
                open_app_pool(url, 16).await?
            }
        };
        Ok(Self { pool, backend, write_lock: Arc::new(Mutex::new(())), keyring })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for the conformance tests' raw checks.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a write transaction on behalf of `by`.
    pub(crate) async fn begin(&self, by: &Principal) -> StoreResult<WriteTx<'_>> {
        let guard = match self.backend {
            Backend::Sqlite => Some(self.write_lock.lock().await),
            Backend::Postgres => None,
        };
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            set_principal(&mut tx, by, true).await?;
        }
        Ok(WriteTx { tx, _guard: guard })
    }

    /// A connection acting for `by`. On PostgreSQL the principal is set on the session for as
    /// long as the connection is out of the pool (and reset when it returns), so row-level
    /// security sees who is asking even if a query forgets to.
    pub(crate) async fn conn(&self, by: &Principal) -> StoreResult<sqlx::pool::PoolConnection<Any>> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            set_principal(&mut conn, by, false).await?;
        }
        Ok(conn)
    }

    /// The keyring.
    pub fn keyring(&self) -> &Arc<crate::Keyring> {
        &self.keyring
    }

    /// Seals `plaintext` for `table.column` of row `row` under `owner`'s data key.
    pub(crate) async fn seal(
        &self,
        owner: crate::KeyOwner,
        table: &str,
        column: &str,
        row: &str,
        plaintext: &[u8],
        now: i64,
    ) -> StoreResult<Vec<u8>> {
        let dek = self.keyring.dek(owner, now).await?;
        Ok(dek.seal(plaintext, &clawden_crypto::Aad::new(table, column, row, &owner.name())))
    }

    /// Opens a value sealed by [`Self::seal`]; fails if the owner's key was destroyed.
    pub(crate) async fn open(
        &self,
        owner: crate::KeyOwner,
        table: &str,
        column: &str,
        row: &str,
        sealed: &[u8],
    ) -> StoreResult<zeroize::Zeroizing<Vec<u8>>> {
        let dek = self.keyring.existing_dek(owner).await?.ok_or(StoreError::KeyDestroyed)?;
        dek.open(sealed, &clawden_crypto::Aad::new(table, column, row, &owner.name()))
            .map_err(|e| StoreError::Crypto(e.into()))
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Sets the principal row-level security checks: `clawden.user_id` and `clawden.system`,
/// for the transaction (`local`) or the session.
async fn set_principal(conn: &mut sqlx::AnyConnection, by: &Principal, local: bool) -> StoreResult<()> {
    sqlx::query("SELECT set_config('clawden.user_id', $1, $3) AS a, set_config('clawden.system', $2, $3) AS b")
        .bind(by.user_id().map(|u| u.to_string()).unwrap_or_default())
        .bind(if by.is_system() { "on" } else { "off" })
        .bind(local)
        .execute(conn)
        .await?;
    Ok(())
}

/// Requires the system principal.
pub(crate) fn require_system(by: &Principal) -> StoreResult<()> {
    if by.is_system() {
        Ok(())
    } else {
        Err(StoreError::Forbidden)
    }
}

/// The acting user of a principal; the system acts for nobody here.
pub(crate) fn require_user(by: &Principal) -> StoreResult<clawden_core::UserId> {
    by.user_id().ok_or(StoreError::Forbidden)
}

pub(crate) fn get_str(row: &AnyRow, col: &str) -> StoreResult<String> {
    Ok(row.try_get::<String, _>(col)?)
}

pub(crate) fn get_opt_str(row: &AnyRow, col: &str) -> StoreResult<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(col)?)
}

pub(crate) fn get_i64(row: &AnyRow, col: &str) -> StoreResult<i64> {
    Ok(row.try_get::<i64, _>(col)?)
}

pub(crate) fn get_parsed<T: FromStr>(row: &AnyRow, col: &str) -> StoreResult<T>
where
    T::Err: std::fmt::Display,
{
    let text = get_str(row, col)?;
    text.parse::<T>().map_err(|e| StoreError::corrupt(format!("{col}: {e}")))
}

/// Whether an error is a unique-constraint violation.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}
