//! API keys, stored credentials, TOTP and gateway tokens over HTTP.

#![allow(clippy::unwrap_used)]

mod common;

use clawden_core::Clock;
use clawden_store::testing::TestDb;
use common::{error_code, TestApp, PASSWORD};
use serde_json::{json, Value};

async fn csrf(app: &TestApp, client: &reqwest::Client) -> String {
    let me: Value = client.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
    me["csrf_token"].as_str().unwrap().to_owned()
}

async fn new_api_key(app: &TestApp, client: &reqwest::Client) -> Value {
    let token = csrf(app, client).await;
    let res = client
        .post(app.at("/api/v1/api-keys"))
        .header("x-csrf-token", token)
        .json(&json!({"name": "laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers().get("cache-control").unwrap(), "no-store");
    res.json().await.unwrap()
}

fn files_contain(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(files_contain(&path, needle));
        } else if path.file_name().is_some_and(|n| n != "master.key") {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

#[tokio::test]
async fn api_key_is_shown_once_and_stored_only_as_hmac() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    app.signup(&browser, "a@example.com").await;
    let created = new_api_key(&app, &browser).await;
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("cd_") && key.len() == 55, "{key}");
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    let listed: Value = browser.get(app.at("/api/v1/api-keys")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&key), "the list never shows the key");
    assert!(listed[0]["last_used_at"].is_null());
    // The key works as a bearer credential…
    let program = reqwest::Client::new();
    let me: Value = program.get(app.at("/api/v1/me")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["email"], "a@example.com");
    assert!(me["csrf_token"].is_null(), "no CSRF token without a session");
    let put = program
        .put(app.at("/api/v1/credentials/openai"))
        .bearer_auth(&key)
        .json(&json!({"value": "sk-test-abcdef123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204, "bearer writes need no CSRF token");
    // …but never on the routes that need a browser session.
    for (method, path, body) in [
        ("GET", "/api/v1/api-keys", json!(null)),
        ("POST", "/api/v1/api-keys", json!({"name": "x"})),
        (
            "POST",
            "/api/v1/auth/password",
            json!({"current_password": PASSWORD, "new_password": "amber-lantern-drifts"}),
        ),
        ("POST", "/api/v1/auth/totp/setup", json!(null)),
        ("GET", "/api/v1/sessions", json!(null)),
    ] {
        let req = program.request(method.parse().unwrap(), app.at(path)).bearer_auth(&key);
        let req = if body.is_null() { req } else { req.json(&body) };
        assert_eq!(error_code(req.send().await.unwrap()).await, (403, "session_required".into()), "{method} {path}");
    }
    let listed: Value = browser.get(app.at("/api/v1/api-keys")).send().await.unwrap().json().await.unwrap();
    assert!(listed[0]["last_used_at"].is_i64(), "last use is tracked");
    // Stored only as the keyed hash.
    let expected = app.state.keyring.hasher().hash("api_key", &key);
    let pool = app.raw_pool().await;
    let stored: Vec<u8> = sqlx::query_scalar("SELECT key_hash FROM api_keys").fetch_one(&pool).await.unwrap();
    assert_eq!(stored, expected.0.to_vec());
    assert!(files_contain(&app.state.settings.data_dir, key.as_bytes()).is_empty());
    assert!(files_contain(app.db_dir(), key.as_bytes()).is_empty());
    // Deleting it ends it.
    let id = created["id"].as_str().unwrap();
    let token = csrf(&app, &browser).await;
    assert_eq!(
        browser
            .delete(app.at(&format!("/api/v1/api-keys/{id}")))
            .header("x-csrf-token", token)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        error_code(program.get(app.at("/api/v1/me")).bearer_auth(&key).send().await.unwrap()).await,
        (401, "invalid_token".into())
    );
    app.stop().await;
}

#[tokio::test]
async fn bearer_failures_are_rate_limited() {
    let app = TestApp::spawn().await;
    let program = reqwest::Client::new();
    for i in 0..9 {
        let res =
            program.get(app.at("/api/v1/me")).bearer_auth(format!("cd_{}", "a".repeat(40 + i))).send().await.unwrap();
        assert_eq!(error_code(res).await, (401, "invalid_token".into()));
    }
    let res = program.get(app.at("/api/v1/me")).bearer_auth("cdg_whatever-guess-0000000000").send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = program.get(app.at("/api/v1/me")).bearer_auth("cd_yet-another-guess-000000000").send().await.unwrap();
    assert_eq!(res.status(), 429);
    let wait: i64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    // Locked out even with a valid key while the backoff lasts.
    let browser = app.client();
    app.signup(&browser, "a@example.com").await;
    let key = new_api_key(&app, &browser).await["key"].as_str().unwrap().to_owned();
    assert_eq!(program.get(app.at("/api/v1/me")).bearer_auth(&key).send().await.unwrap().status(), 429);
    app.clock.advance_secs(wait);
    assert_eq!(program.get(app.at("/api/v1/me")).bearer_auth(&key).send().await.unwrap().status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn credentials_are_shown_only_by_last_four_characters() {
    let app = TestApp::spawn().await;
    let alice = app.client();
    app.signup(&alice, "alice@example.com").await;
    let token = csrf(&app, &alice).await;
    let put = |name: &str, value: Value| {
        alice
            .put(app.at(&format!("/api/v1/credentials/{name}")))
            .header("x-csrf-token", &token)
            .json(&json!({"value": value}))
            .send()
    };
    assert_eq!(put("anthropic", json!("sk-ant-PLANTED-provider-key-7788")).await.unwrap().status(), 204);
    assert_eq!(put("telegram", json!("123456:PLANTED-channel-token-ABCD")).await.unwrap().status(), 204);
    assert_eq!(error_code(put("../etc", json!("x")).await.unwrap()).await.0, 404);
    assert_eq!(error_code(put("Bad Name", json!("x")).await.unwrap()).await, (400, "invalid_name".into()));
    assert_eq!(error_code(put("openai", json!("x".repeat(9000))).await.unwrap()).await, (400, "invalid_value".into()));
    assert_eq!(error_code(put("openai", json!("")).await.unwrap()).await, (400, "invalid_value".into()));
    let listed: Value = alice.get(app.at("/api/v1/credentials")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed[0]["name"], "anthropic");
    assert_eq!(listed[0]["last4"], "7788");
    assert_eq!(listed[1]["last4"], "ABCD");
    assert!(!listed.to_string().contains("PLANTED"));
    let bob = app.client();
    app.signup(&bob, "bob@example.com").await;
    let theirs: Value = bob.get(app.at("/api/v1/credentials")).send().await.unwrap().json().await.unwrap();
    assert_eq!(theirs, json!([]));
    let bob_token = csrf(&app, &bob).await;
    let res =
        bob.delete(app.at("/api/v1/credentials/anthropic")).header("x-csrf-token", bob_token).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res =
        alice.delete(app.at("/api/v1/credentials/anthropic")).header("x-csrf-token", &token).send().await.unwrap();
    assert_eq!(res.status(), 204);
    app.stop().await;
}

/// Acts as an authenticator app: the code for the server clock's current step.
fn code_now(app: &TestApp, secret_b32: &str) -> String {
    let secret = data_encoding::BASE32_NOPAD.decode(secret_b32.as_bytes()).unwrap();
    let step = clawden_server::totp::step_of(app.clock.now_secs());
    clawden_server::totp::code_for_step(&secret, step).unwrap()
}

#[tokio::test]
async fn totp_code_cannot_be_replayed() {
    let app = TestApp::spawn().await;
    let client = app.client();
    app.signup(&client, "two@example.com").await;
    let token = csrf(&app, &client).await;
    let setup: Value = client
        .post(app.at("/api/v1/auth/totp/setup"))
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = setup["secret"].as_str().unwrap().to_owned();
    assert!(setup["otpauth_url"].as_str().unwrap().starts_with("otpauth://totp/clawden:two%40example.com?secret="));
    let wrong = client
        .post(app.at("/api/v1/auth/totp/enable"))
        .header("x-csrf-token", &token)
        .json(&json!({"code": "000000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(wrong).await, (400, "invalid_totp".into()));
    let enabling_code = code_now(&app, &secret);
    let enabled: Value = client
        .post(app.at("/api/v1/auth/totp/enable"))
        .header("x-csrf-token", &token)
        .json(&json!({"code": enabling_code}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recovery: Vec<String> =
        enabled["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(recovery.len(), 10);
    let me: Value = client.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["totp_enabled"], true);

    let login = |code: Option<String>| {
        let c = app.client();
        let url = app.at("/api/v1/auth/login");
        async move {
            c.post(url)
                .json(&json!({"email": "two@example.com", "password": PASSWORD, "totp_code": code}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(error_code(login(None).await).await, (401, "totp_required".into()));
    // The code that enabled 2FA is spent already.
    assert_eq!(error_code(login(Some(enabling_code.clone())).await).await, (401, "invalid_totp".into()));
    app.clock.advance_secs(30);
    let fresh = code_now(&app, &secret);
    assert_eq!(login(Some(fresh.clone())).await.status(), 200);
    assert_eq!(error_code(login(Some(fresh)).await).await, (401, "invalid_totp".into()), "replay refused");
    // A recovery code works once, typed in any case.
    assert_eq!(login(Some(recovery[0].to_uppercase())).await.status(), 200);
    assert_eq!(error_code(login(Some(recovery[0].clone())).await).await, (401, "invalid_totp".into()));
    // Disabling needs the password and a code.
    app.clock.advance_secs(30);
    let res = client
        .post(app.at("/api/v1/auth/totp/disable"))
        .header("x-csrf-token", &token)
        .json(&json!({"password": "not-the-password", "code": code_now(&app, &secret)}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (403, "invalid_credentials".into()));
    app.clock.advance_secs(30);
    let res = client
        .post(app.at("/api/v1/auth/totp/disable"))
        .header("x-csrf-token", &token)
        .json(&json!({"password": PASSWORD, "code": code_now(&app, &secret)}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(login(None).await.status(), 200);
    app.stop().await;
}

async fn rotate(app: &TestApp, client: &reqwest::Client, instance: &str) -> reqwest::Response {
    let token = csrf(app, client).await;
    client
        .post(app.at(&format!("/api/v1/instances/{instance}/gateway-token/rotate")))
        .header("x-csrf-token", token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn old_gateway_token_works_only_inside_overlap_window() {
    let app = TestApp::spawn().await;
    let owner = app.client();
    let me = app.signup(&owner, "owner@example.com").await;
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let first: Value = rotate(&app, &owner, &instance).await.json().await.unwrap();
    let t1 = first["token"].as_str().unwrap().to_owned();
    assert!(t1.starts_with("cdg_"));
    let program = reqwest::Client::new();
    let models: Value = program.get(app.at("/v1/models")).bearer_auth(&t1).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["clawden".to_owned(), format!("clawden/{instance}")]);
    // A gateway token acts on the chat routes only.
    assert_eq!(
        error_code(program.get(app.at("/api/v1/me")).bearer_auth(&t1).send().await.unwrap()).await,
        (401, "invalid_token".into())
    );
    let res = program
        .post(app.at(&format!("/api/v1/instances/{instance}/gateway-token/rotate")))
        .bearer_auth(&t1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let second: Value = rotate(&app, &owner, &instance).await.json().await.unwrap();
    let t2 = second["token"].as_str().unwrap().to_owned();
    app.clock.advance_secs(9 * 60);
    assert_eq!(
        program.get(app.at("/v1/models")).bearer_auth(&t1).send().await.unwrap().status(),
        200,
        "inside the overlap"
    );
    assert_eq!(program.get(app.at("/v1/models")).bearer_auth(&t2).send().await.unwrap().status(), 200);
    app.clock.advance_secs(61);
    assert_eq!(
        program.get(app.at("/v1/models")).bearer_auth(&t1).send().await.unwrap().status(),
        401,
        "after the overlap"
    );
    assert_eq!(program.get(app.at("/v1/models")).bearer_auth(&t2).send().await.unwrap().status(), 200);

    // Nobody else can rotate it, and nobody learns whether it exists.
    let stranger = app.client();
    app.signup(&stranger, "stranger@example.com").await;
    assert_eq!(error_code(rotate(&app, &stranger, &instance).await).await, (404, "not_found".into()));
    app.stop().await;
}

#[tokio::test]
async fn gateway_tokens_rotate_on_schedule_with_notice() {
    let app = TestApp::spawn_with(TestDb::sqlite(), |s| {
        s.gateway.rotate_every = std::time::Duration::from_secs(3600);
        s.gateway.overlap = std::time::Duration::from_secs(60);
    })
    .await;
    let owner = app.client();
    let me = app.signup(&owner, "owner@example.com").await;
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let t1 = rotate(&app, &owner, &instance).await.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let mut notices = app.state.notices.0.subscribe();
    assert_eq!(clawden_server::gateway::rotate_due(&app.state).await.unwrap(), 0, "not due yet");
    app.clock.advance_secs(3601);
    assert_eq!(clawden_server::gateway::rotate_due(&app.state).await.unwrap(), 1);
    let notice = notices.try_recv().unwrap();
    assert_eq!(notice.instance.to_string(), instance);
    let program = reqwest::Client::new();
    assert_eq!(
        program.get(app.at("/v1/models")).bearer_auth(notice.token.expose()).send().await.unwrap().status(),
        200
    );
    assert_eq!(program.get(app.at("/v1/models")).bearer_auth(&t1).send().await.unwrap().status(), 200);
    app.clock.advance_secs(61);
    assert_eq!(program.get(app.at("/v1/models")).bearer_auth(&t1).send().await.unwrap().status(), 401);
    app.stop().await;
}
