//! Plants a password, a provider key, a channel token, a TOTP secret, an API key and a gateway
//! token through the real API, then looks for each (as text, hex and base64) in the database
//! files with their WAL, everything in the data dir except `master.key`, the PostgreSQL tables,
//! and every log line the server wrote at TRACE level. None may be found.

#![allow(clippy::unwrap_used)]

mod common;

use clawden_store::testing::TestDb;
use common::TestApp;
use data_encoding::{BASE32_NOPAD, BASE64, BASE64URL_NOPAD, HEXLOWER, HEXUPPER};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every form a secret could be written in.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    vec![
        secret.to_vec(),
        HEXLOWER.encode(secret).into_bytes(),
        HEXUPPER.encode(secret).into_bytes(),
        BASE64.encode(secret).into_bytes(),
        BASE64URL_NOPAD.encode(secret).into_bytes(),
    ]
}

fn find_in(haystack: &[u8], secrets: &[(&str, Vec<u8>)], place: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for (name, secret) in secrets {
        for form in forms(secret) {
            if form.len() >= 8 && haystack.windows(form.len()).any(|w| w == form.as_slice()) {
                hits.push(format!("{name} in {place}"));
            }
        }
    }
    hits
}

fn scan_dir(dir: &std::path::Path, secrets: &[(&str, Vec<u8>)]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(scan_dir(&path, secrets));
        } else if path.file_name().is_some_and(|n| n != "master.key") {
            hits.extend(find_in(&std::fs::read(&path).unwrap_or_default(), secrets, &path.display().to_string()));
        }
    }
    hits
}

/// Runs the whole flow and returns the planted secrets.
async fn plant(app: &TestApp) -> Vec<(&'static str, Vec<u8>)> {
    let password = "Planted-Password-4417-xyzzy";
    let provider_key = "sk-ant-api03-PLANTEDPROVIDERKEY0123456789";
    let channel_token = "7461:PLANTED-CHANNEL-TOKEN-zq9wx";
    let client = app.client();
    let res = client
        .post(app.at("/api/v1/auth/signup"))
        .json(&json!({"email": "plant@example.com", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let me: Value = res.json().await.unwrap();
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    for (name, value) in [("anthropic", provider_key), ("telegram", channel_token)] {
        let res = client
            .put(app.at(&format!("/api/v1/credentials/{name}")))
            .header("x-csrf-token", &csrf)
            .json(&json!({"value": value}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
    }
    let setup: Value = client
        .post(app.at("/api/v1/auth/totp/setup"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let totp_b32 = setup["secret"].as_str().unwrap().to_owned();
    let totp_raw = BASE32_NOPAD.decode(totp_b32.as_bytes()).unwrap();
    use clawden_core::Clock;
    let code =
        clawden_server::totp::code_for_step(&totp_raw, clawden_server::totp::step_of(app.clock.now_secs())).unwrap();
    let enabled: Value = client
        .post(app.at("/api/v1/auth/totp/enable"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recovery = enabled["recovery_codes"][0].as_str().unwrap().to_owned();
    let key: Value = client
        .post(app.at("/api/v1/api-keys"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "k"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let api_key = key["key"].as_str().unwrap().to_owned();
    let gw: Value = client
        .post(app.at(&format!("/api/v1/instances/{instance}/gateway-token/rotate")))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gateway = gw["token"].as_str().unwrap().to_owned();
    // Use everything once, including failures that get logged.
    app.clock.advance_secs(30);
    let code2 =
        clawden_server::totp::code_for_step(&totp_raw, clawden_server::totp::step_of(app.clock.now_secs())).unwrap();
    let other = app.client();
    let res = other
        .post(app.at("/api/v1/auth/login"))
        .json(&json!({"email": "plant@example.com", "password": password, "totp_code": code2}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = other
        .post(app.at("/api/v1/auth/login"))
        .json(&json!({"email": "plant@example.com", "password": password, "totp_code": recovery}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = other
        .post(app.at("/api/v1/auth/login"))
        .json(&json!({"email": "plant@example.com", "password": format!("{password}-wrong")}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let program = reqwest::Client::new();
    assert_eq!(program.get(app.at("/api/v1/credentials")).bearer_auth(&api_key).send().await.unwrap().status(), 200);
    assert_eq!(program.get(app.at("/v1/models")).bearer_auth(&gateway).send().await.unwrap().status(), 200);
    assert_eq!(
        program.get(app.at("/api/v1/me")).bearer_auth(format!("{api_key}x")).send().await.unwrap().status(),
        401
    );
    let session = client.get(app.at("/api/v1/sessions")).send().await.unwrap();
    assert_eq!(session.status(), 200);
    vec![
        ("password", password.as_bytes().to_vec()),
        ("provider key", provider_key.as_bytes().to_vec()),
        ("channel token", channel_token.as_bytes().to_vec()),
        ("totp secret", totp_raw.clone()),
        ("totp secret (base32)", totp_b32.into_bytes()),
        ("recovery code", recovery.into_bytes()),
        ("api key", api_key.into_bytes()),
        ("gateway token", gateway.into_bytes()),
    ]
}

async fn postgres_tables_text(app: &TestApp) -> Vec<u8> {
    let pool = app.raw_pool().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables
         WHERE table_schema IN ('public', 'clawden_keys') AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(tables.len() >= 10, "{tables:?}");
    let mut all = Vec::new();
    for table in tables {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM {table} t")).fetch_all(&pool).await.unwrap();
        for row in rows {
            all.extend_from_slice(row.as_bytes());
            all.push(b'\n');
        }
    }
    pool.close().await;
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_reach_no_file_table_or_log() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(clawden_server::redact::Redacting(move || writer.clone()))
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let mut hits = Vec::new();
    let app = TestApp::spawn().await;
    let secrets = plant(&app).await;
    hits.extend(scan_dir(&app.state.settings.data_dir, &secrets));
    hits.extend(scan_dir(app.db_dir(), &secrets));
    app.stop().await;

    if let Some(url) = clawden_store::testing::postgres_url() {
        let app = TestApp::spawn_with(TestDb::postgres(&url).await, |_| {}).await;
        let secrets = plant(&app).await;
        hits.extend(find_in(&postgres_tables_text(&app).await, &secrets, "PostgreSQL tables"));
        hits.extend(scan_dir(&app.state.settings.data_dir, &secrets));
        app.stop().await;
    }

    let captured = logs.0.lock().unwrap().clone();
    assert!(captured.len() > 1000, "the flow was logged at TRACE ({} bytes)", captured.len());
    let all_secrets: Vec<(&str, Vec<u8>)> = secrets.clone();
    hits.extend(find_in(&captured, &all_secrets, "logs"));
    assert!(hits.is_empty(), "plaintext secrets found: {hits:#?}");
}
