//! A real server on 127.0.0.1:0 per test, with a clock the test moves.
#![allow(dead_code)]

use clawden_core::FixedClock;
use clawden_server::{AppState, Server, Settings};
use clawden_store::testing::TestDb;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::oneshot;

pub const PASSWORD: &str = "violet-kettle-sings";

pub struct TestApp {
    pub url: String,
    pub clock: FixedClock,
    pub state: AppState,
    pub data_dir: tempfile::TempDir,
    pub db_url: String,
    db_dir: std::path::PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    db: Option<TestDb>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestDb::sqlite(), |_| {}).await
    }

    pub async fn spawn_with(db: TestDb, tweak: impl FnOnce(&mut Settings)) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings {
            data_dir: data_dir.path().join("data"),
            database_url: Some(db.url.clone().into()),
            key_store_url: Some(db.keys_url.clone().into()),
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..Settings::default()
        };
        tweak(&mut settings);
        let listener = std::net::TcpListener::bind(settings.listen).expect("bind");
        let clock = FixedClock::at(1_800_000_000_000);
        let server =
            Server::build_with_clock(settings, listener, Arc::new(clock.clone())).await.expect("server builds");
        let url = server.url();
        let state = server.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("server runs");
        });
        let (db_url, db_dir) = (db.url.clone(), db.dir.path().to_owned());
        Self { url, clock, state, data_dir, db_url, db_dir, stop: Some(stop), task: Some(task), db: Some(db) }
    }

    /// The directory of the SQLite database files (empty on PostgreSQL).
    pub fn db_dir(&self) -> &std::path::Path {
        &self.db_dir
    }

    /// A raw connection to the data database, as a backup or a curious operator would read it.
    pub async fn raw_pool(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&self.db_url).await.expect("raw pool")
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(true)
            .build()
            .expect("client")
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// Signs up `email` with `client` and returns the `me` body (with the CSRF token).
    pub async fn signup(&self, client: &reqwest::Client, email: &str) -> Value {
        let res = client
            .post(self.at("/api/v1/auth/signup"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("signup request");
        assert_eq!(res.status(), 201, "signup of {email}");
        res.json().await.expect("signup body")
    }

    pub async fn login(&self, client: &reqwest::Client, email: &str, password: &str) -> reqwest::Response {
        client
            .post(self.at("/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login request")
    }

    /// Stops the server and drops its database.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(db) = self.db.take() {
            db.cleanup().await;
        }
    }
}

pub async fn error_code(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.expect("JSON error body");
    (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
}
pub mod browser;
