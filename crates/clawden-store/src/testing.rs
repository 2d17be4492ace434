//! Test support shared by every crate's tests: a fresh database per test on each backend.
//!
//! SQLite runs everywhere in a temporary directory. PostgreSQL runs when
//! `CLAWDEN_TEST_POSTGRES_URL` is set (each test gets a database of its own, dropped at the
//! end); without it the PostgreSQL half says it is skipped — except under `CI=true`, where a
//! missing database fails the test so a broken install cannot turn CI green.

use crate::sql::{open_pool, Backend};
use crate::{KeyStore, Keyring, MasterKeySource, SqlStore};
use clawden_crypto::MasterKeys;
use sqlx::Executor;
use std::sync::Arc;

/// Whether tests run under CI, where nothing may be skipped.
pub fn under_ci() -> bool {
    std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false)
}

/// The PostgreSQL URL for tests, or `None` (skipped) outside CI. Panics under CI when unset.
pub fn postgres_url() -> Option<String> {
    match std::env::var("CLAWDEN_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if under_ci() => {
            panic!("CLAWDEN_TEST_POSTGRES_URL is not set, and CI=true forbids skipping PostgreSQL tests")
        }
        _ => {
            eprintln!("skipped: PostgreSQL half of this test (set CLAWDEN_TEST_POSTGRES_URL to run it)");
            None
        }
    }
}

/// One test database: its URLs, and what to drop afterwards.
#[derive(Debug)]
pub struct TestDb {
    /// The backend.
    pub backend: Backend,
    /// URL of the data database.
    pub url: String,
    /// URL of the key store.
    pub keys_url: String,
    /// Keeps a SQLite temp dir alive.
    pub dir: tempfile::TempDir,
    admin_url: Option<String>,
    db_name: Option<String>,
}

impl TestDb {
    /// A fresh SQLite database in a temp dir.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("create temp dir");
        let url = crate::sqlite_url(&dir.path().join("clawden.db"));
        let keys_url = crate::sqlite_url(&dir.path().join("keys.db"));
        Self { backend: Backend::Sqlite, url, keys_url, dir, admin_url: None, db_name: None }
    }

    /// A fresh PostgreSQL database on the server at `admin_url`.
    pub async fn postgres(admin_url: &str) -> Self {
        let name = format!("clawden_t_{}", uuid::Uuid::new_v4().simple());
        let (pool, _) = open_pool(admin_url, 1).await.expect("connect to PostgreSQL");
        pool.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create test database");
        pool.close().await;
        let url = replace_db_name(admin_url, &name);
        let keys_url = KeyStore::default_url(&url, std::path::Path::new("/nonexistent"));
        Self {
            backend: Backend::Postgres,
            url,
            keys_url,
            dir: tempfile::tempdir().expect("create temp dir"),
            admin_url: Some(admin_url.to_owned()),
            db_name: Some(name),
        }
    }

    /// Every backend available: SQLite, and PostgreSQL when configured.
    pub async fn all() -> Vec<TestDb> {
        let mut out = vec![TestDb::sqlite()];
        if let Some(url) = postgres_url() {
            out.push(TestDb::postgres(&url).await);
        }
        out
    }

    /// Opens the store and a keyring with a fresh master key.
    pub async fn open(&self) -> (Arc<SqlStore>, Arc<Keyring>) {
        self.open_with(MasterKeys::generate_for_tests(), MasterKeySource::Fixed).await
    }

    /// Opens the store and a keyring with the given master key.
    pub async fn open_with(&self, master: MasterKeys, source: MasterKeySource) -> (Arc<SqlStore>, Arc<Keyring>) {
        let keys = KeyStore::connect(&self.keys_url).await.expect("open key store");
        let keyring = Arc::new(Keyring::open(master, source, keys, 0).await.expect("open keyring"));
        let store = SqlStore::connect(&self.url, keyring.clone()).await.expect("open store");
        (Arc::new(store), keyring)
    }

    /// Drops a PostgreSQL test database (SQLite's temp dir goes on drop).
    pub async fn cleanup(self) {
        if let (Some(admin), Some(name)) = (&self.admin_url, &self.db_name) {
            if let Ok((pool, _)) = open_pool(admin, 1).await {
                let _ = pool.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
                pool.close().await;
            }
        }
    }
}

/// `postgres://u@h:p/olddb?x` → `postgres://u@h:p/newdb?x`.
pub fn replace_db_name(url: &str, name: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_path(&format!("/{name}"));
            parsed.to_string()
        }
        Err(_) => url.to_owned(),
    }
}
