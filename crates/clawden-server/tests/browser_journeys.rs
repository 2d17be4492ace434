//! Whole journeys through the dashboard in headless Chromium: an account's life from sign-up to
//! deletion, and a team member who chats but cannot change the agent's rules. Screenshots of
//! the main pages go to `$CLAWDEN_TEST_ARTIFACTS` (default: a temp dir) — test artifacts, never
//! committed. Without Chromium the tests say they are skipped — except under `CI=true`.

#![allow(clippy::unwrap_used)]

mod common;

use common::browser::{browser, click, screenshot, start_driver, type_into, wait_for};
use common::{TestApp, PASSWORD};
use fantoccini::{Client, Locator};
use std::time::{Duration, Instant};

async fn sign_up(c: &Client, app: &TestApp, email: &str) {
    c.goto(&app.at("/signup")).await.unwrap();
    type_into(c, "#email", email).await;
    type_into(c, "#password", PASSWORD).await;
    click(c, "form[action='/signup'] button[type=submit]").await;
    wait_for(c, "#me-email").await;
}

/// Starts a conversation with the agent chosen in the select (by its option value, if given)
/// and sends one message without relying on the page's script finishing first.
async fn chat(c: &Client, app: &TestApp, instance: Option<&str>, text: &str) {
    c.goto(&app.at("/chat")).await.unwrap();
    if let Some(id) = instance {
        click(c, &format!("#instance_id option[value='{id}']")).await;
    }
    click(c, "form[action='/chat/new'] button").await;
    wait_for(c, "#send textarea").await;
    type_into(c, "#send textarea", text).await;
    click(c, "#send button[type=submit]").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(el) = c.find(Locator::Css("li.msg.assistant .text")).await {
            if el.text().await.map(|t| !t.is_empty()).unwrap_or(false) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no reply: {}", c.source().await.unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_up_chats_audits_exports_and_deletes_the_account() {
    let Some(driver) = start_driver().await else { return };
    let app = TestApp::spawn().await;
    let profile = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path(), 900, Some(downloads.path())).await;

    sign_up(&c, &app, "journey@example.com").await;
    screenshot(&c, "account.png").await;
    chat(&c, &app, None, "hello, agent").await;
    screenshot(&c, "chat.png").await;

    // The audit log shows what was done.
    click(&c, "header nav a[href='/settings']").await;
    wait_for(&c, "ul.hub").await;
    screenshot(&c, "settings.png").await;
    click(&c, "header nav.sub a[href='/account/audit']").await;
    let audit = wait_for(&c, "#audit").await.text().await.unwrap();
    assert!(audit.contains("auth.login"), "{audit}");
    screenshot(&c, "audit.png").await;

    // Usage has today's message in its chart.
    click(&c, "header nav a[href='/usage']").await;
    wait_for(&c, "#usage-chart").await;
    let today = c.find(Locator::Css("#usage-today")).await.unwrap().text().await.unwrap();
    assert!(today.contains("1 / 50"), "{today}");
    assert_eq!(c.find_all(Locator::Css("#usage-chart rect.bar")).await.unwrap().len(), 30);
    screenshot(&c, "usage.png").await;

    // The agent hub and its files.
    click(&c, "header nav a[href='/agent']").await;
    wait_for(&c, "#agents").await;
    screenshot(&c, "agent.png").await;
    click(&c, "#agents a[href$='/files']").await;
    wait_for(&c, "main table").await;
    screenshot(&c, "files.png").await;

    // Export: the download lands as a zip holding the workspace.
    c.goto(&app.at("/settings/data")).await.unwrap();
    wait_for(&c, "#export-download").await;
    screenshot(&c, "data.png").await;
    click(&c, "#export-download").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let zip_path = loop {
        let found = std::fs::read_dir(downloads.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "zip"));
        if let Some(p) = found {
            break p;
        }
        assert!(Instant::now() < deadline, "the export did not download");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let bytes = std::fs::read(&zip_path).unwrap();
    let archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("the download is a zip");
    assert!(
        archive.file_names().any(|n| n.ends_with("/workspace/SOUL.md")),
        "{:?}",
        archive.file_names().collect::<Vec<_>>()
    );
    assert!(archive.file_names().any(|n| n == "account.json"));

    // Clearing history asks first.
    click(&c, "#clear-history").await;
    wait_for(&c, "form[action='/settings/data/clear']").await;
    screenshot(&c, "clear-confirm.png").await;
    click(&c, "#confirm").await;
    click(&c, "form[action='/settings/data/clear'] button[type=submit]").await;
    wait_for(&c, "#history p.muted").await;

    // Deleting the account needs the password and the confirmation.
    type_into(&c, "#delete-password", "not-the-password").await;
    click(&c, "#delete-confirm").await;
    click(&c, "form[action^='/settings/data/delete-account'] button[type=submit]").await;
    let error = wait_for(&c, "#delete-account p.error").await.text().await.unwrap();
    assert!(error.contains("wrong password"), "{error}");
    screenshot(&c, "delete-refused.png").await;
    type_into(&c, "#delete-password", PASSWORD).await;
    click(&c, "#delete-confirm").await;
    click(&c, "form[action^='/settings/data/delete-account'] button[type=submit]").await;
    wait_for(&c, "#account-deleted").await;
    screenshot(&c, "deleted.png").await;

    // Signed out, and signing in again fails.
    c.goto(&app.at("/account")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    type_into(&c, "#email", "journey@example.com").await;
    type_into(&c, "#password", PASSWORD).await;
    click(&c, "form[action='/login'] button[type=submit]").await;
    let alert = wait_for(&c, "p.error").await.text().await.unwrap();
    assert!(alert.contains("wrong email or password"), "{alert}");
    c.close().await.unwrap();
    app.stop().await;
    drop(driver);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_member_accepts_an_invitation_chats_but_cannot_edit_soul_md() {
    let Some(driver) = start_driver().await else { return };
    let app = TestApp::spawn().await;
    let (p1, p2, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let owner = browser(&driver, p1.path(), 900, Some(d.path())).await;
    let member = browser(&driver, p2.path(), 900, Some(d.path())).await;

    sign_up(&owner, &app, "owner@example.com").await;
    sign_up(&member, &app, "member@example.com").await;

    // The owner invites from the agent's members page.
    click(&owner, "header nav a[href='/agent']").await;
    click(&owner, "#agents a[href$='/members']").await;
    let form = wait_for(&owner, "form[action$='/members'] #email").await;
    let action =
        owner.find(Locator::Css("form[action$='/members']")).await.unwrap().attr("action").await.unwrap().unwrap();
    let instance = action.trim_start_matches("/agent/").trim_end_matches("/members").to_owned();
    form.send_keys("member@example.com").await.unwrap();
    click(&owner, "form[action$='/members'] button[type=submit]").await;
    wait_for(&owner, "main table").await;
    screenshot(&owner, "members.png").await;

    // The member accepts.
    member.goto(&app.at("/account/invitations")).await.unwrap();
    wait_for(&member, "form[action$='/accept'] button").await;
    screenshot(&member, "invitations.png").await;
    click(&member, "form[action$='/accept'] button").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while member.find(Locator::Css("form[action$='/accept']")).await.is_ok() {
        assert!(Instant::now() < deadline, "the invitation stayed pending");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // They chat with the team's agent…
    chat(&member, &app, Some(&instance), "hello, team agent").await;

    // …and read SOUL.md, but cannot change it.
    member.goto(&app.at(&format!("/agent/{instance}/files/SOUL.md"))).await.unwrap();
    let editor = wait_for(&member, "#content").await;
    assert_eq!(editor.attr("readonly").await.unwrap().as_deref(), Some("true"));
    assert!(member.find(Locator::Css("form[action$='/files/SOUL.md'] button[type=submit]")).await.is_err());
    screenshot(&member, "file-readonly.png").await;
    // Even a hand-made post is refused by the server.
    let status = member
        .execute(
            "const f = document.querySelector(\"form[action$='/files/SOUL.md']\");\
             const body = new URLSearchParams(new FormData(f)); body.set('content', 'pwned');\
             return fetch(f.action, {method: 'POST', body}).then(r => r.status);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, serde_json::json!(403));
    owner.goto(&app.at(&format!("/agent/{instance}/files/SOUL.md"))).await.unwrap();
    let soul = wait_for(&owner, "#content").await.prop("value").await.unwrap().unwrap_or_default();
    assert!(!soul.contains("pwned"), "{soul}");
    owner.close().await.unwrap();
    member.close().await.unwrap();
    app.stop().await;
    drop(driver);
}
