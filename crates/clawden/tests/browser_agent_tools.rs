//! The dashboard and the agent's tools together, in headless Chromium with real sandboxes: a
//! chat message `!echo …` (the demo provider's exec call) streams the tool call and an
//! "approval required" notice into the chat; the owner allows it from the Approvals page,
//! open in a second tab, where the request appeared without a reload; the chat then shows the
//! tool's result and the reply. Screenshots go to `$CLAWDEN_TEST_ARTIFACTS` (default: a temp
//! dir). Skipped without Chromium or a sandbox — except under `CI=true`.

#![allow(clippy::unwrap_used)]

#[path = "../../clawden-server/tests/common/browser.rs"]
mod browser;
#[path = "support/sandbox.rs"]
mod sandbox;

use browser::{browser, click, screenshot, start_driver, type_into};
use clawden_core::{FixedClock, Outcome, Principal, Tier, UserId};
use clawden_server::{Server, Settings};
use clawden_store::{AuditChain, AuditEvent};
use fantoccini::elements::Element;
use fantoccini::{Client, Locator};
use sandbox::sandbox_available;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "violet-kettle-sings";

/// A first sandbox start can be slow: waits longer than `browser::wait_for`.
async fn wait_for(c: &Client, css: &str) -> Element {
    browser::wait_for_within(c, css, Duration::from_secs(30)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_chat_runs_a_tool_after_an_approval_given_on_the_live_approvals_page() {
    if !sandbox_available() {
        return;
    }
    let Some(driver) = start_driver().await else { return };
    let data = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        data_dir: data.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        provider: Some("demo".into()),
        ..Settings::default()
    };
    settings.sandbox.helper = Some(env!("CARGO_BIN_EXE_clawden").into());
    settings.sandbox.admin_socket = false;
    settings.sandbox.idle_timeout = Duration::from_secs(20);
    settings.tools.approval_timeout = Duration::from_secs(60);
    settings.tools.approval_poll_interval = Duration::from_millis(200);
    let listener = std::net::TcpListener::bind(settings.listen).unwrap();
    let server =
        Server::build_with_clock(settings, listener, Arc::new(FixedClock::at(1_800_000_000_000))).await.unwrap();
    let url = server.url();
    let state = server.state().clone();
    assert!(state.sandbox.is_some(), "the sandbox manager did not start: {:?}", state.sandbox_unavailable);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    let at = |path: &str| format!("{url}{path}");

    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path(), 1300, None).await;
    c.goto(&at("/signup")).await.unwrap();
    type_into(&c, "#email", "owner@example.com").await;
    type_into(&c, "#password", PASSWORD).await;
    click(&c, "form[action='/signup'] button[type=submit]").await;
    wait_for(&c, "#me-email").await;
    // Tools need the invite tier.
    let id: UserId = c.find(Locator::Css("dd code")).await.unwrap().text().await.unwrap().parse().unwrap();
    let audit = AuditEvent {
        chain: AuditChain::Account(id),
        actor: Some(id),
        instance: None,
        action: "invite.redeem".into(),
        target: "test".into(),
        outcome: Outcome::Success,
        ip: None,
        at: 1_800_000_000_000,
    };
    state.store.set_tier(&Principal::System, id, Tier::Invite, audit).await.unwrap();
    let instance = state.store.memberships(&Principal::User { user: id }).await.unwrap()[0].id;

    // The chat asks the agent to run a command: the call and the wait appear as they stream.
    c.goto(&at("/chat")).await.unwrap();
    click(&c, "form[action='/chat/new'] button").await;
    wait_for(&c, "#send textarea").await;
    let chat_window = c.window().await.unwrap();
    type_into(&c, "#send textarea", "!echo hello-from-the-sandbox").await;
    click(&c, "#send button[type=submit]").await;
    wait_for(&c, "li.msg.assistant .tool-call .tool-name").await;
    let notice = wait_for(&c, "p.notice.waiting a").await;
    assert_eq!(notice.attr("href").await.unwrap().unwrap(), format!("/agent/{instance}/approvals"));
    screenshot(&c, "tools-chat-waiting.png").await;

    // The Approvals page in a second tab; a second request arrives while it is open.
    let tab = c.new_window(true).await.unwrap();
    c.switch_to_window(tab.handle).await.unwrap();
    c.goto(&at(&format!("/agent/{instance}/approvals"))).await.unwrap();
    wait_for(&c, "body[data-live='on']").await;
    let rows = c.find_all(Locator::Css("li.approval")).await.unwrap();
    assert_eq!(rows.len(), 1, "the chat's request is listed");
    let text = rows[0].text().await.unwrap();
    assert!(text.contains("echo hello-from-the-sandbox"), "{text}");
    click(&c, "li.approval button[value='allow']").await;
    wait_for(&c, "p.ok").await;
    wait_for(&c, "#no-approvals").await;

    // Back in the chat: the result and the reply stream in.
    c.switch_to_window(chat_window).await.unwrap();
    let result = wait_for(&c, "li.msg.tool pre.output").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !result.text().await.unwrap_or_default().contains("hello-from-the-sandbox") {
        assert!(Instant::now() < deadline, "no tool output: {}", c.source().await.unwrap_or_default());
        click(&c, "li.msg.tool summary").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c.find(Locator::Css("p.notice.waiting")).await.is_err(), "the waiting notice is gone");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let replies = c.find_all(Locator::Css("li.msg.assistant .text")).await.unwrap();
        let last = match replies.last() {
            Some(el) => el.text().await.unwrap_or_default(),
            None => String::new(),
        };
        if last.contains("The tool returned") {
            break;
        }
        assert!(Instant::now() < deadline, "no final reply: {}", c.source().await.unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    screenshot(&c, "tools-chat-live.png").await;

    // After a reload the history shows the same, rendered by the server.
    c.refresh().await.unwrap();
    wait_for(&c, "li.msg.tool details").await;
    assert!(c.find(Locator::Css("li.msg.assistant .tool-call .tool-name")).await.is_ok());

    c.close().await.unwrap();
    let _ = stop.send(());
    let _ = task.await;
}
