//! The dashboard in a real browser: headless Chromium driven through chromedriver.
//! Without Chromium the test says it is skipped — except under `CI=true`, where it fails.

#![allow(clippy::unwrap_used)]

mod common;

use common::browser::{browser, screenshot, start_driver, submit, type_into, wait_for};
use common::{TestApp, PASSWORD};
use fantoccini::Locator;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_up_signs_out_and_signs_in() {
    let Some(driver) = start_driver().await else { return };
    let app = TestApp::spawn().await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path(), 900, None).await;

    c.goto(&app.at("/signup")).await.unwrap();
    c.find(Locator::Css("#email")).await.unwrap().send_keys("browser@example.com").await.unwrap();
    c.find(Locator::Css("#password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    c.find(Locator::Css("form[action='/signup'] button[type=submit]")).await.unwrap().click().await.unwrap();
    if c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#me-email")).await.is_err() {
        panic!(
            "no account page after sign-up; at {:?}: {}",
            c.current_url().await,
            c.source().await.unwrap_or_default()
        );
    }
    assert_eq!(c.current_url().await.unwrap().path(), "/account");
    let email = c.find(Locator::Css("#me-email")).await.unwrap().text().await.unwrap();
    assert_eq!(email, "browser@example.com");
    screenshot(&c, "account.png").await;

    c.find(Locator::Css("form[action='/logout'] button")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("form[action='/login']")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    c.goto(&app.at("/account")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login", "signed out: the account page sends to sign-in");

    c.find(Locator::Css("#email")).await.unwrap().send_keys("browser@example.com").await.unwrap();
    c.find(Locator::Css("#password")).await.unwrap().send_keys("not-the-password").await.unwrap();
    c.find(Locator::Css("form[action='/login'] button[type=submit]")).await.unwrap().click().await.unwrap();
    let alert = c.wait().for_element(Locator::Css("p.error")).await.unwrap().text().await.unwrap();
    assert!(alert.contains("wrong email or password"), "{alert}");
    screenshot(&c, "login-error.png").await;

    c.find(Locator::Css("#password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    c.find(Locator::Css("form[action='/login'] button[type=submit]")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("#me-email")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/account");
    // Two devices listed? No: signing out ended the first session, so one remains.
    let rows = c.find_all(Locator::Css("main table")).await.unwrap();
    assert_eq!(rows.len(), 2);
    c.close().await.unwrap();
    app.stop().await;
    drop(driver);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sets_up_two_factor_keys_and_credentials_on_the_security_page() {
    use clawden_core::Clock;
    let Some(driver) = start_driver().await else { return };
    let app = TestApp::spawn().await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path(), 900, None).await;

    c.goto(&app.at("/signup")).await.unwrap();
    type_into(&c, "#email", "secure@example.com").await;
    type_into(&c, "#password", PASSWORD).await;
    submit(&c, "/signup").await;
    wait_for(&c, "#me-email").await;
    c.find(Locator::Css("header nav a[href='/account/security']")).await.unwrap().click().await.unwrap();
    wait_for(&c, "#totp-status").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/account/security");
    let status = c.find(Locator::Css("#totp-status")).await.unwrap().text().await.unwrap();
    assert!(status.starts_with("Off"), "{status}");

    // Two-factor: the QR code is an inline SVG drawn by the server; the secret is typed by hand.
    submit(&c, "/account/security/totp/setup").await;
    let secret_text = wait_for(&c, "#totp-secret").await.text().await.unwrap();
    c.find(Locator::Css("figure.qr svg")).await.expect("an inline SVG QR code");
    screenshot(&c, "totp-setup.png").await;
    let secret = data_encoding::BASE32_NOPAD.decode(secret_text.replace(' ', "").as_bytes()).unwrap();
    assert_eq!(secret.len(), 20);
    let step = clawden_server::totp::step_of(app.clock.now_secs());
    let code = clawden_server::totp::code_for_step(&secret, step).unwrap();

    // A wrong code keeps the same secret on screen and says why.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    type_into(&c, "#totp_code", wrong).await;
    submit(&c, "/account/security/totp/enable").await;
    let alert = wait_for(&c, "p.error").await.text().await.unwrap();
    assert!(alert.contains("not valid"), "{alert}");
    assert_eq!(c.find(Locator::Css("#totp-secret")).await.unwrap().text().await.unwrap(), secret_text);

    type_into(&c, "#totp_code", &code).await;
    submit(&c, "/account/security/totp/enable").await;
    wait_for(&c, "#recovery-codes").await;
    let codes = c.find_all(Locator::Css("#recovery-codes li")).await.unwrap();
    assert_eq!(codes.len(), 10);
    let first_code = codes[0].text().await.unwrap();
    assert_eq!(first_code.len(), 19, "{first_code}");
    screenshot(&c, "recovery-codes.png").await;
    c.find(Locator::Css("a[href='/account/security']")).await.unwrap().click().await.unwrap();
    let status = wait_for(&c, "#totp-status").await.text().await.unwrap();
    assert!(status.starts_with("On"), "{status}");
    assert!(!c.source().await.unwrap().contains(&first_code), "recovery codes are shown once");

    // An API key, shown once.
    type_into(&c, "#key_name", "build script").await;
    submit(&c, "/account/security/keys").await;
    let key = wait_for(&c, "#new-key").await.text().await.unwrap();
    assert!(key.starts_with("cd_") && key.len() > 40, "{key}");
    screenshot(&c, "api-key-created.png").await;
    c.find(Locator::Css("a[href='/account/security']")).await.unwrap().click().await.unwrap();
    let keys = wait_for(&c, "#keys").await.text().await.unwrap();
    assert!(keys.contains("build script"), "{keys}");
    assert!(keys.contains(&key[..9]), "the prefix is listed: {keys}");
    assert!(!c.source().await.unwrap().contains(&key), "the key is shown once");

    // A provider key: only its last four characters come back.
    let provider_key = "sk-ant-browser-test-secret-Q7vZ";
    type_into(&c, "#credential_name", "anthropic").await;
    type_into(&c, "#credential_value", provider_key).await;
    submit(&c, "/account/security/credentials").await;
    let saved = wait_for(&c, "p.ok").await.text().await.unwrap();
    assert!(saved.contains("Credential saved"), "{saved}");
    let last4 = c.find(Locator::Css("#credentials td.last4")).await.unwrap().text().await.unwrap();
    assert_eq!(last4, "…Q7vZ");
    let source = c.source().await.unwrap();
    assert!(!source.contains(provider_key) && !source.contains("browser-test-secret"), "only the last four are shown");
    // Tall enough to show every section in one picture.
    c.set_window_size(1200, 2100).await.unwrap();
    screenshot(&c, "security.png").await;

    // The key made in the browser works for programs, and sees the same last four.
    let listed: serde_json::Value = reqwest::Client::new()
        .get(app.at("/api/v1/credentials"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["name"], "anthropic");
    assert_eq!(listed[0]["last4"], "Q7vZ");

    c.close().await.unwrap();
    app.stop().await;
    drop(driver);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_chats_with_a_streamed_reply_and_edits_soul_md() {
    let Some(driver) = start_driver().await else { return };
    let app = TestApp::spawn().await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path(), 900, None).await;
    c.goto(&app.at("/signup")).await.unwrap();
    c.find(Locator::Css("#email")).await.unwrap().send_keys("chat@example.com").await.unwrap();
    c.find(Locator::Css("#password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    c.find(Locator::Css("form[action='/signup'] button[type=submit]")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("#me-email")).await.unwrap();
    // Rename the agent in IDENTITY.md through the file editor.
    c.goto(&app.at("/chat")).await.unwrap();
    c.find(Locator::Css("a[href$='/files']")).await.unwrap().click().await.unwrap();
    c.find(Locator::LinkText("IDENTITY.md")).await.unwrap().click().await.unwrap();
    let editor = c.find(Locator::Css("#content")).await.unwrap();
    editor.clear().await.unwrap();
    editor.send_keys("# IDENTITY.md\n\n- **Name:** Pinchy\n").await.unwrap();
    c.find(Locator::Css("form[action$='/files/IDENTITY.md'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::LinkText("SOUL.md")).await.unwrap();
    // Chat: the reply streams in through chat.js.
    c.goto(&app.at("/chat")).await.unwrap();
    c.find(Locator::Css("form[action='/chat/new'] button")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("#send textarea")).await.unwrap();
    c.find(Locator::Css("#send textarea")).await.unwrap().send_keys("hello from the browser").await.unwrap();
    c.find(Locator::Css("#send button[type=submit]")).await.unwrap().click().await.unwrap();
    let mut reply = String::new();
    for _ in 0..100 {
        if let Ok(el) = c.find(Locator::Css("li.msg.assistant .text")).await {
            reply = el.text().await.unwrap_or_default();
            if reply.contains("hello from the browser") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reply.contains("Pinchy") && reply.contains("hello from the browser"), "{reply}");
    screenshot(&c, "chat.png").await;
    // After a reload the conversation is still there, from the server.
    c.refresh().await.unwrap();
    let stored = c.find_all(Locator::Css("li.msg")).await.unwrap();
    assert_eq!(stored.len(), 2);
    c.close().await.unwrap();
    app.stop().await;
    drop(driver);
}
