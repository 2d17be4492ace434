//! The agent's tool pages in headless Chromium: an approval asked for while the Approvals page
//! is open appears without a reload (the page's script follows the WebSocket) and is allowed
//! with a click; screenshots of the policy, approvals and chat pages go to
//! `$CLAWDEN_TEST_ARTIFACTS` (default: a temp dir). Without Chromium the test says it is
//! skipped — except under `CI=true`.

#![allow(clippy::unwrap_used)]

mod common;

use clawden_agent::provider::{ChatMessage, ToolCall};
use clawden_agent::runtime::encode_message;
use clawden_core::{ConversationId, InstanceId, Principal, UserId};
use clawden_store::ApprovalStatus;
use common::browser::{browser, click, screenshot, start_driver, type_into, wait_for};
use common::{TestApp, PASSWORD};
use fantoccini::Locator;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sees_an_approval_arrive_live_allows_it_and_shows_tools_in_chat() {
    let Some(driver) = start_driver().await else { return };
    let app = TestApp::spawn().await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path(), 1500, None).await;

    c.goto(&app.at("/signup")).await.unwrap();
    type_into(&c, "#email", "owner@example.com").await;
    type_into(&c, "#password", PASSWORD).await;
    click(&c, "form[action='/signup'] button[type=submit]").await;
    wait_for(&c, "#me-email").await;

    // The same account from a program, to set things up; invite tier, so tools are offered.
    let api = app.client();
    assert_eq!(app.login(&api, "owner@example.com", PASSWORD).await.status(), 200);
    let me: Value = api.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
    let instance: InstanceId = me["instances"][0]["id"].as_str().unwrap().parse().unwrap();
    let user: UserId = me["id"].as_str().unwrap().parse().unwrap();
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();
    let pool = app.raw_pool().await;
    sqlx::query("UPDATE users SET tier = 'invite' WHERE id = $1").bind(user.to_string()).execute(&pool).await.unwrap();
    pool.close().await;
    let res = api
        .put(app.at(&format!("/api/v1/instances/{instance}/policy")))
        .header("x-csrf-token", &csrf)
        .json(&json!({"profile": "full", "deny": ["apply_patch"], "egress_allow": ["docs.rs", "*.example.com"],
            "always_allow": [["uname", "-a"]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Agent → Tool policy.
    c.goto(&app.at("/agent")).await.unwrap();
    click(&c, &format!("#agents a[href='/agent/{instance}/policy']")).await;
    wait_for(&c, "form#policy").await;
    let offered = c.find(Locator::Css("#offered")).await.unwrap().text().await.unwrap();
    assert!(offered.contains("memory_write") && !offered.contains("apply_patch"), "{offered}");
    screenshot(&c, "tools-policy.png").await;

    // Agent → Approvals, live.
    c.goto(&app.at(&format!("/agent/{instance}/approvals"))).await.unwrap();
    wait_for(&c, "#no-approvals").await;
    wait_for(&c, "body[data-live='on']").await;
    let res = api
        .post(app.at("/api/v1/conversations"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"title": "Tidy the build"}))
        .send()
        .await
        .unwrap();
    let conversation: ConversationId = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    let hub = app.state.runtime.approvals().unwrap();
    let pending = hub
        .request(
            instance,
            conversation,
            user,
            "exec",
            &json!({"command": "cargo build --release", "timeout_secs": 120}),
        )
        .await
        .unwrap();
    let id = pending.approval.id;
    wait_for(&c, &format!("#approval-{id}")).await;
    assert!(c.find(Locator::Css("#no-approvals")).await.is_err(), "the empty notice is gone");
    screenshot(&c, "tools-approvals.png").await;
    click(&c, &format!("#approval-{id} button[value='allow']")).await;
    wait_for(&c, "p.ok").await;
    assert_eq!(pending.decision().await, ApprovalStatus::Allowed);
    assert!(c.find(Locator::Css(&format!("#approval-{id}"))).await.is_err());

    // Chat with a tool call, its result, and a call still waiting in the history.
    let now = app.state.now();
    let history = [
        ("user", ChatMessage::User { content: "Build it and tell me how big the binary is.".into() }),
        (
            "assistant",
            ChatMessage::Assistant {
                content: "Let me build it first.".into(),
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "exec".into(),
                    arguments: json!({"command": "cargo build --release"}),
                }],
            },
        ),
        (
            "tool",
            ChatMessage::ToolResult {
                call_id: "call_1".into(),
                content: "   Compiling clawden v0.1.0\n    Finished `release` profile in 41.2s".into(),
                is_error: false,
            },
        ),
        (
            "assistant",
            ChatMessage::Assistant {
                content: String::new(),
                tool_calls: vec![ToolCall {
                    id: "call_2".into(),
                    name: "read".into(),
                    arguments: json!({"path": "/etc/shadow"}),
                }],
            },
        ),
        (
            "tool",
            ChatMessage::ToolResult {
                call_id: "call_2".into(),
                content: "/etc/shadow is outside the sandbox's workspace".into(),
                is_error: true,
            },
        ),
        (
            "assistant",
            ChatMessage::Assistant {
                content: "The build finished; checking the size next.".into(),
                tool_calls: vec![],
            },
        ),
    ];
    for (role, m) in &history {
        app.state
            .store
            .append_server_message(&Principal::System, user, conversation, role, &encode_message(m), now)
            .await
            .unwrap();
    }
    let waiting = hub
        .request(instance, conversation, user, "exec", &json!({"command": "ls -l target/release/clawden"}))
        .await
        .unwrap();
    c.goto(&app.at(&format!("/chat/{conversation}"))).await.unwrap();
    wait_for(&c, "li.msg.tool").await;
    for summary in c.find_all(Locator::Css("li.msg.tool summary")).await.unwrap() {
        summary.click().await.unwrap();
    }
    let notice = wait_for(&c, "p.notice.waiting a").await;
    assert_eq!(notice.attr("href").await.unwrap().unwrap(), format!("/agent/{instance}/approvals"));
    screenshot(&c, "tools-chat.png").await;
    drop(waiting);

    c.close().await.unwrap();
    app.stop().await;
}
