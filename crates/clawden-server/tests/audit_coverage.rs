//! Every state-changing route leaves an audit record, whether it succeeds or is refused.

#![allow(clippy::unwrap_used)]

mod common;

use common::TestApp;
use serde_json::{json, Value};

async fn audit_rows(pool: &sqlx::AnyPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_log").fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn every_write_route_leaves_an_audit_record() {
    let app = TestApp::spawn().await;
    let pool = app.raw_pool().await;
    let owner = app.client();
    let me = app.signup(&owner, "owner@example.com").await;
    let owner_csrf = me["csrf_token"].as_str().unwrap().to_owned();
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let other = app.client();
    let other_me = app.signup(&other, "other@example.com").await;
    let other_csrf = other_me["csrf_token"].as_str().unwrap().to_owned();
    let conv: Value = owner
        .post(app.at("/api/v1/conversations"))
        .header("x-csrf-token", &owner_csrf)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conv = conv["id"].as_str().unwrap().to_owned();
    let key: Value = owner
        .post(app.at("/api/v1/api-keys"))
        .header("x-csrf-token", &owner_csrf)
        .json(&json!({"name": "k"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key_id = key["id"].as_str().unwrap().to_owned();
    let sessions: Vec<Value> = other.get(app.at("/api/v1/sessions")).send().await.unwrap().json().await.unwrap();
    let other_session = sessions[0]["id"].as_str().unwrap().to_owned();

    // (caller: 0 owner, 1 other; method; path; body). Each must add at least one record.
    // Chat messages themselves are not in this list: each is stored, sealed, with its author,
    // time and order in its conversation, which is its record; deleting conversations is.
    let writes: Vec<(usize, &str, String, Option<Value>)> = vec![
        (0, "PUT", "/api/v1/credentials/openai".into(), Some(json!({"value": "sk-audit-coverage-1"}))),
        (0, "DELETE", "/api/v1/credentials/openai".into(), None),
        (0, "PUT", format!("/api/v1/instances/{instance}/files/MEMORY.md"), Some(json!("# note"))),
        (0, "DELETE", format!("/api/v1/instances/{instance}/files/MEMORY.md"), None),
        (0, "POST", format!("/api/v1/instances/{instance}/gateway-token/rotate"), None),
        (
            0,
            "POST",
            format!("/api/v1/instances/{instance}/members"),
            Some(json!({"email": "other@example.com", "role": "user"})),
        ),
        (0, "DELETE", format!("/api/v1/conversations/{conv}"), None),
        (0, "DELETE", "/api/v1/conversations".into(), None),
        (0, "DELETE", format!("/api/v1/api-keys/{key_id}"), None),
        (0, "POST", "/api/v1/invites/redeem".into(), Some(json!({"code": "cdi_not-a-code"}))),
        (
            0,
            "POST",
            "/api/v1/auth/password".into(),
            Some(json!({"current_password": "wrong-password-1", "new_password": "amber-lantern-drifts"})),
        ),
        (1, "DELETE", format!("/api/v1/sessions/{other_session}"), None),
        (0, "POST", "/api/v1/auth/logout".into(), None),
    ];
    let clients = [(&owner, owner_csrf.as_str()), (&other, other_csrf.as_str())];
    let mut silent = Vec::new();
    for (who, method, path, body) in writes {
        let (client, csrf) = clients[who];
        let before = audit_rows(&pool).await;
        let mut req = client.request(method.parse().unwrap(), app.at(&path)).header("x-csrf-token", csrf);
        if let Some(body) = body {
            req = if path.contains("/files/") {
                req.header("content-type", "text/markdown").body(body.as_str().unwrap_or("").to_owned())
            } else {
                req.json(&body)
            };
        }
        let status = req.send().await.unwrap().status().as_u16();
        if audit_rows(&pool).await <= before {
            silent.push(format!("{method} {path} ({status})"));
        }
    }
    assert!(silent.is_empty(), "writes without an audit record: {silent:#?}");
    app.stop().await;
}

#[tokio::test]
async fn failed_login_is_recorded_even_though_nothing_changed() {
    let app = TestApp::spawn().await;
    let pool = app.raw_pool().await;
    let client = app.client();
    app.signup(&client, "owner@example.com").await;
    let before = audit_rows(&pool).await;
    app.login(&app.client(), "owner@example.com", "not-the-password").await;
    app.login(&app.client(), "nobody@example.com", "not-the-password").await;
    assert_eq!(audit_rows(&pool).await, before + 2);
    // The user sees the failure on their own account in the viewer, filtered.
    let mine: Vec<Value> = client
        .get(app.at("/api/v1/audit?action=auth.login&outcome=failure"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(mine.is_empty(), "a failed attempt by someone else is not the user's own action");
    let all: Vec<Value> =
        client.get(app.at("/api/v1/audit?outcome=success")).send().await.unwrap().json().await.unwrap();
    assert!(!all.is_empty() && all.iter().all(|r| r["outcome"] == "success"));
    app.stop().await;
}
