//! Accounts and sessions, end to end over HTTP.

#![allow(clippy::unwrap_used)]

mod common;

use common::{error_code, TestApp, PASSWORD};
use serde_json::{json, Value};
use std::time::Instant;

#[tokio::test]
async fn session_cookie_is_httponly_and_samesite_strict() {
    let app = TestApp::spawn().await;
    let res = app
        .client()
        .post(app.at("/api/v1/auth/signup"))
        .json(&json!({"email": "a@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let cookie = res.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.starts_with("clawden_session=cds_"), "{cookie}");
    assert!(cookie.contains("HttpOnly"));
    assert!(cookie.contains("SameSite=Strict"));
    assert!(cookie.contains("Path=/"));
    assert!(!cookie.contains("Secure"), "plain HTTP on loopback sets no Secure flag");
    assert_eq!(res.headers().get("cache-control").unwrap(), "no-store");
    app.stop().await;
}

#[tokio::test]
async fn session_cookie_is_secure_under_tls_and_hsts_is_sent() {
    let app = TestApp::spawn_with(clawden_store::testing::TestDb::sqlite(), |s| s.tls_self_signed = true).await;
    assert!(app.url.starts_with("https://"));
    let client = app.client();
    let res = client
        .post(app.at("/api/v1/auth/signup"))
        .json(&json!({"email": "a@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let cookie = res.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.contains("; Secure"));
    assert!(res.headers().get("strict-transport-security").is_some());
    let key = app.state.settings.data_dir.join("tls/self-signed.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600);
    app.stop().await;
}

#[tokio::test]
async fn signup_creates_personal_instance_and_me_shows_it() {
    let app = TestApp::spawn().await;
    let client = app.client();
    app.signup(&client, "Alice@Example.com").await;
    let me: Value = client.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["tier"], "base");
    assert_eq!(me["totp_enabled"], false);
    assert_eq!(me["platform_admin"], false);
    assert!(me["csrf_token"].as_str().unwrap().len() > 20);
    assert_eq!(me["instances"].as_array().unwrap().len(), 1);
    assert_eq!(me["instances"][0]["role"], "owner");
    app.stop().await;
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_the_same() {
    let app = TestApp::spawn().await;
    app.signup(&app.client(), "known@example.com").await;
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..3 {
        let t = Instant::now();
        let res = app.login(&app.client(), &format!("nobody{i}@example.com"), "some-wrong-password").await;
        unknown.push(t.elapsed());
        bodies.push((res.status().as_u16(), res.text().await.unwrap()));
        let t = Instant::now();
        let res = app.login(&app.client(), "known@example.com", "some-wrong-password").await;
        wrong.push(t.elapsed());
        bodies.push((res.status().as_u16(), res.text().await.unwrap()));
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "every answer identical: {bodies:?}");
    assert_eq!(bodies[0].0, 401);
    assert!(bodies[0].1.contains("invalid_credentials"));
    unknown.sort();
    wrong.sort();
    let (u, w) = (unknown[1].as_secs_f64(), wrong[1].as_secs_f64());
    // The unknown email is checked against a dummy hash: both paths pay for one argon2id.
    assert!(u > w / 3.0 && w > u / 3.0, "median times differ too much: unknown {u:.4}s, wrong {w:.4}s");
    app.stop().await;
}

#[tokio::test]
async fn login_is_rate_limited_per_account_and_ip() {
    let app = TestApp::spawn_with(clawden_store::testing::TestDb::sqlite(), |s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    app.signup(&app.client(), "victim@example.com").await;
    let from = |ip: &str| {
        let client = app.client();
        let url = app.at("/api/v1/auth/login");
        let ip = ip.to_owned();
        move |password: &str| {
            client
                .post(&url)
                .header("x-forwarded-for", &ip)
                .json(&json!({"email": "victim@example.com", "password": password}))
                .send()
        }
    };
    let attacker = from("198.51.100.1");
    for _ in 0..5 {
        assert_eq!(attacker("wrong-password-123").await.unwrap().status(), 401);
    }
    let res = attacker("wrong-password-123").await.unwrap();
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(error_code(res).await, (429, "rate_limited".into()));
    // Blocked even with the right password while the backoff lasts.
    assert_eq!(attacker(PASSWORD).await.unwrap().status(), 429);
    // The same account from another address is not blocked.
    let owner = from("203.0.113.7");
    assert_eq!(owner(PASSWORD).await.unwrap().status(), 200);
    // The backoff ends with time, and doubles on the next failure.
    app.clock.advance_secs(retry as i64);
    assert_eq!(attacker("wrong-password-123").await.unwrap().status(), 401);
    let res = attacker("wrong-password-123").await.unwrap();
    assert_eq!(res.status(), 429);
    let retry2: u64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(retry2 >= 2 * retry, "backoff grows: {retry} then {retry2}");
    // Per address: failures across many accounts from one address are limited too.
    let sprayer = app.client();
    let mut last = 0;
    for i in 0..25 {
        let res = sprayer
            .post(app.at("/api/v1/auth/login"))
            .header("x-forwarded-for", "192.0.2.50")
            .json(&json!({"email": format!("user{i}@example.com"), "password": "wrong-password-123"}))
            .send()
            .await
            .unwrap();
        last = res.status().as_u16();
    }
    assert_eq!(last, 429, "one address spraying many accounts is limited");
    app.stop().await;
}

#[tokio::test]
async fn failures_from_elsewhere_cannot_lock_the_owner_out() {
    let app = TestApp::spawn_with(clawden_store::testing::TestDb::sqlite(), |s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        s.auth.login_free_failures_per_account = 10;
    })
    .await;
    let owner = app.client();
    app.signup(&owner, "owner@example.com").await;
    // The owner signed in from 203.0.113.7 before.
    let res = owner
        .post(app.at("/api/v1/auth/login"))
        .header("x-forwarded-for", "203.0.113.7")
        .json(&json!({"email": "owner@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A botnet fails from 60 addresses.
    let bot = app.client();
    for i in 0..60 {
        bot.post(app.at("/api/v1/auth/login"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .json(&json!({"email": "owner@example.com", "password": "wrong-password-123"}))
            .send()
            .await
            .unwrap();
    }
    let res = bot
        .post(app.at("/api/v1/auth/login"))
        .header("x-forwarded-for", "198.51.100.200")
        .json(&json!({"email": "owner@example.com", "password": "wrong-password-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429, "new addresses are slowed for this account");
    let retry: i64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(retry <= 60, "the account-wide backoff is capped short: {retry}");
    // The owner's known address still signs in at once.
    let res = owner
        .post(app.at("/api/v1/auth/login"))
        .header("x-forwarded-for", "203.0.113.7")
        .json(&json!({"email": "owner@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn revoked_session_is_rejected() {
    let app = TestApp::spawn().await;
    let laptop = app.client();
    let me = app.signup(&laptop, "a@example.com").await;
    let phone = app.client();
    assert_eq!(app.login(&phone, "a@example.com", PASSWORD).await.status(), 200);
    let sessions: Vec<Value> = laptop.get(app.at("/api/v1/sessions")).send().await.unwrap().json().await.unwrap();
    assert_eq!(sessions.len(), 2);
    let other = sessions.iter().find(|s| s["current"] == false).unwrap()["id"].as_str().unwrap().to_owned();
    let res = laptop
        .delete(app.at(&format!("/api/v1/sessions/{other}")))
        .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (status, code) = error_code(phone.get(app.at("/api/v1/me")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "unauthenticated"));
    // Logging out ends the laptop's session too.
    let res = laptop
        .post(app.at("/api/v1/auth/logout"))
        .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(laptop.get(app.at("/api/v1/me")).send().await.unwrap().status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn cookie_write_without_csrf_token_is_rejected() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let me = app.signup(&client, "a@example.com").await;
    let csrf = me["csrf_token"].as_str().unwrap();
    let no_token = client.post(app.at("/api/v1/auth/logout")).send().await.unwrap();
    assert_eq!(error_code(no_token).await, (403, "csrf_failed".into()));
    let wrong = client.post(app.at("/api/v1/auth/logout")).header("x-csrf-token", "x".repeat(52)).send().await.unwrap();
    assert_eq!(error_code(wrong).await, (403, "csrf_failed".into()));
    // Still signed in: the refused writes changed nothing.
    assert_eq!(client.get(app.at("/api/v1/me")).send().await.unwrap().status(), 200);
    // A form post carries it as a field.
    let form = client.post(app.at("/logout")).form(&[("csrf_token", csrf)]).send().await.unwrap();
    assert_eq!(form.status(), 303);
    assert_eq!(client.get(app.at("/api/v1/me")).send().await.unwrap().status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn cross_site_write_is_rejected_by_origin() {
    let app = TestApp::spawn().await;
    let res = app
        .client()
        .post(app.at("/api/v1/auth/login"))
        .header("origin", "https://evil.example")
        .json(&json!({"email": "a@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (403, "cross_origin".into()));
    app.stop().await;
}

#[tokio::test]
async fn user_cannot_see_another_users_sessions() {
    let app = TestApp::spawn().await;
    let alice = app.client();
    let a = app.signup(&alice, "alice@example.com").await;
    let bob = app.client();
    app.signup(&bob, "bob@example.com").await;
    let bobs: Vec<Value> = bob.get(app.at("/api/v1/sessions")).send().await.unwrap().json().await.unwrap();
    let bob_session = bobs[0]["id"].as_str().unwrap().to_owned();
    let alices: Vec<Value> = alice.get(app.at("/api/v1/sessions")).send().await.unwrap().json().await.unwrap();
    assert_eq!(alices.len(), 1);
    assert_ne!(alices[0]["id"].as_str().unwrap(), bob_session);
    let res = alice
        .delete(app.at(&format!("/api/v1/sessions/{bob_session}")))
        .header("x-csrf-token", a["csrf_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (404, "not_found".into()));
    assert_eq!(bob.get(app.at("/api/v1/me")).send().await.unwrap().status(), 200, "bob is still signed in");
    app.stop().await;
}

#[tokio::test]
async fn password_change_ends_other_sessions() {
    let app = TestApp::spawn().await;
    let laptop = app.client();
    let me = app.signup(&laptop, "a@example.com").await;
    let phone = app.client();
    app.login(&phone, "a@example.com", PASSWORD).await;
    let csrf = me["csrf_token"].as_str().unwrap();
    let wrong = laptop
        .post(app.at("/api/v1/auth/password"))
        .header("x-csrf-token", csrf)
        .json(&json!({"current_password": "not-my-password", "new_password": "amber-lantern-drifts"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(wrong).await, (403, "invalid_credentials".into()));
    let weak = laptop
        .post(app.at("/api/v1/auth/password"))
        .header("x-csrf-token", csrf)
        .json(&json!({"current_password": PASSWORD, "new_password": "password1234"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(weak).await, (400, "weak_password".into()));
    let ok = laptop
        .post(app.at("/api/v1/auth/password"))
        .header("x-csrf-token", csrf)
        .json(&json!({"current_password": PASSWORD, "new_password": "amber-lantern-drifts"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(laptop.get(app.at("/api/v1/me")).send().await.unwrap().status(), 200, "this session stays");
    assert_eq!(phone.get(app.at("/api/v1/me")).send().await.unwrap().status(), 401, "the other one ended");
    assert_eq!(app.login(&app.client(), "a@example.com", PASSWORD).await.status(), 401);
    assert_eq!(app.login(&app.client(), "a@example.com", "amber-lantern-drifts").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn sessions_expire_when_idle_and_absolutely() {
    let app = TestApp::spawn().await;
    let client = app.client();
    app.signup(&client, "a@example.com").await;
    // Used every 6 days: stays alive past the 7-day idle limit…
    for _ in 0..4 {
        app.clock.advance_secs(6 * 24 * 3600);
        assert_eq!(client.get(app.at("/api/v1/me")).send().await.unwrap().status(), 200);
    }
    // …until the 30-day absolute limit.
    app.clock.advance_secs(6 * 24 * 3600 + 1);
    assert_eq!(client.get(app.at("/api/v1/me")).send().await.unwrap().status(), 401);
    // Idle: 7 days without use ends a fresh session.
    let other = app.client();
    assert_eq!(app.login(&other, "a@example.com", PASSWORD).await.status(), 200);
    app.clock.advance_secs(7 * 24 * 3600 + 1);
    assert_eq!(other.get(app.at("/api/v1/me")).send().await.unwrap().status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn weak_passwords_and_bad_emails_are_refused() {
    let app = TestApp::spawn().await;
    for (email, password, code) in [
        ("a@example.com", "short", "weak_password"),
        ("a@example.com", "password1234", "weak_password"),
        ("longname@example.com", "longname@example.com", "weak_password"),
        ("not-an-email", PASSWORD, "invalid_email"),
        ("a b@example.com", PASSWORD, "invalid_email"),
    ] {
        let res = app
            .client()
            .post(app.at("/api/v1/auth/signup"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(res).await, (400, code.to_owned()), "{email} / {password}");
    }
    app.signup(&app.client(), "a@example.com").await;
    let res = app
        .client()
        .post(app.at("/api/v1/auth/signup"))
        .json(&json!({"email": "A@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (409, "email_taken".into()));
    app.stop().await;
}

#[tokio::test]
async fn signup_is_rate_limited_per_ip() {
    let app =
        TestApp::spawn_with(clawden_store::testing::TestDb::sqlite(), |s| s.auth.signups_per_ip_per_hour = 3).await;
    for i in 0..3 {
        app.signup(&app.client(), &format!("u{i}@example.com")).await;
    }
    let res = app
        .client()
        .post(app.at("/api/v1/auth/signup"))
        .json(&json!({"email": "u9@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("retry-after").is_some());
    assert_eq!(error_code(res).await, (429, "rate_limited".into()));
    app.clock.advance_secs(3600);
    app.signup(&app.client(), "u9@example.com").await;
    app.stop().await;
}

#[tokio::test]
async fn closed_and_invite_only_signup() {
    let closed =
        TestApp::spawn_with(clawden_store::testing::TestDb::sqlite(), |s| s.signup = clawden_core::SignupMode::Closed)
            .await;
    let res = closed
        .client()
        .post(closed.at("/api/v1/auth/signup"))
        .json(&json!({"email": "a@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (403, "signup_closed".into()));
    closed.stop().await;

    let app = TestApp::spawn_with(clawden_store::testing::TestDb::sqlite(), |s| {
        s.signup = clawden_core::SignupMode::InviteOnly
    })
    .await;
    let res = app
        .client()
        .post(app.at("/api/v1/auth/signup"))
        .json(&json!({"email": "a@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (403, "invite_required".into()));
    let res = app
        .client()
        .post(app.at("/api/v1/auth/signup"))
        .json(&json!({"email": "a@example.com", "password": PASSWORD, "invite_code": "cdi_madeup"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (400, "invalid_invite".into()));
    let code = clawden_crypto::PlainToken::generate("cdi_");
    app.state
        .store
        .create_invite(
            &clawden_core::Principal::System,
            clawden_store::NewInvite {
                code_hash: app.state.keyring.hasher().hash("invite", code.expose()),
                uses: 1,
                expires_at: None,
                now: 0,
            },
            clawden_store::AuditEvent {
                chain: clawden_store::AuditChain::System,
                actor: None,
                instance: None,
                action: "admin.invite.create".into(),
                target: String::new(),
                outcome: clawden_core::Outcome::Success,
                ip: None,
                at: 0,
            },
        )
        .await
        .unwrap();
    let res = app
        .client()
        .post(app.at("/api/v1/auth/signup"))
        .json(&json!({"email": "a@example.com", "password": PASSWORD, "invite_code": code.expose()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["tier"], "invite");
    app.stop().await;
}

#[tokio::test]
async fn bcrypt_imported_password_is_rehashed_on_login() {
    let app = TestApp::spawn().await;
    let imported = bcrypt::hash("imported-account-password", 4).unwrap();
    app.state
        .store
        .create_user(
            &clawden_core::Principal::System,
            clawden_store::NewUser {
                email: "old@example.com".into(),
                password_hash: imported,
                tier: clawden_core::Tier::Base,
                platform_admin: false,
                instance_name: "My agent".into(),
                now: 0,
                invite: None,
                gateway_token: app.state.keyring.hasher().hash("gateway", "unused-first-token"),
                initial_files: Vec::new(),
            },
            clawden_store::AuditEvent {
                chain: clawden_store::AuditChain::System,
                actor: None,
                instance: None,
                action: "admin.user.import".into(),
                target: String::new(),
                outcome: clawden_core::Outcome::Success,
                ip: None,
                at: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(app.login(&app.client(), "old@example.com", "imported-account-password").await.status(), 200);
    let stored =
        app.state.store.login_lookup(&clawden_core::Principal::System, "old@example.com").await.unwrap().unwrap();
    assert!(stored.password_hash.starts_with("$argon2id$"), "rehashed to argon2id");
    assert_eq!(app.login(&app.client(), "old@example.com", "imported-account-password").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn accounts_work_on_postgres_too() {
    let Some(url) = clawden_store::testing::postgres_url() else { return };
    let db = clawden_store::testing::TestDb::postgres(&url).await;
    let app = TestApp::spawn_with(db, |_| {}).await;
    let client = app.client();
    let me = app.signup(&client, "pg@example.com").await;
    assert_eq!(me["instances"][0]["role"], "owner");
    assert_eq!(app.login(&app.client(), "pg@example.com", PASSWORD).await.status(), 200);
    let sessions: Vec<Value> = client.get(app.at("/api/v1/sessions")).send().await.unwrap().json().await.unwrap();
    assert_eq!(sessions.len(), 2);
    app.stop().await;
}
