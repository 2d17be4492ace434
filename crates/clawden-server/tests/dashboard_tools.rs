//! The dashboard's tool pages as plain HTML forms: the tool policy (edited by owners and
//! admins, read by everyone else), the approvals of elevated calls, and the stop button.

#![allow(clippy::unwrap_used)]

mod common;

use clawden_core::{ApprovalId, ConversationId, InstanceId, Principal, UserId};
use clawden_store::ApprovalStatus;
use common::TestApp;
use serde_json::{json, Value};

struct Person {
    client: reqwest::Client,
    csrf: String,
    id: String,
    instance: String,
}

async fn person(app: &TestApp, email: &str) -> Person {
    let client = app.client();
    let me = app.signup(&client, email).await;
    Person {
        csrf: me["csrf_token"].as_str().unwrap().to_owned(),
        id: me["id"].as_str().unwrap().to_owned(),
        instance: me["instances"][0]["id"].as_str().unwrap().to_owned(),
        client,
    }
}

/// `owner`'s instance with `member` accepted in it as `role`.
async fn join(app: &TestApp, owner: &Person, member: &Person, email: &str, role: &str) {
    let res = owner
        .client
        .post(app.at(&format!("/api/v1/instances/{}/members", owner.instance)))
        .header("x-csrf-token", &owner.csrf)
        .json(&json!({"email": email, "role": role}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let pending: Vec<Value> =
        member.client.get(app.at("/api/v1/invitations")).send().await.unwrap().json().await.unwrap();
    let id = pending[0]["id"].as_str().unwrap();
    let res = member
        .client
        .post(app.at(&format!("/api/v1/invitations/{id}/accept")))
        .header("x-csrf-token", &member.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}

async fn page(p: &Person, app: &TestApp, path: &str) -> (u16, String) {
    let res = p.client.get(app.at(path)).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn post_form(p: &Person, app: &TestApp, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = vec![("csrf_token", &p.csrf)];
    form.extend_from_slice(fields);
    p.client.post(app.at(path)).form(&form).send().await.unwrap()
}

async fn stored_policy(p: &Person, app: &TestApp) -> Value {
    let res = p.client.get(app.at(&format!("/api/v1/instances/{}/policy", p.instance))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn audit_actions(p: &Person, app: &TestApp) -> Vec<String> {
    let res = p.client.get(app.at(&format!("/api/v1/audit?instance_id={}", p.instance))).send().await.unwrap();
    let rows: Vec<Value> = res.json().await.unwrap();
    rows.iter().map(|r| r["action"].as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test]
async fn policy_page_is_a_form_for_the_owner_and_read_only_for_a_user_member() {
    let app = TestApp::spawn().await;
    let owner = person(&app, "owner@example.com").await;
    let user = person(&app, "user@example.com").await;
    join(&app, &owner, &user, "user@example.com", "user").await;
    let path = format!("/agent/{}/policy", owner.instance);

    let (status, html) = page(&owner, &app, &path).await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!("<form id=\"policy\" method=\"post\" action=\"{path}\"")), "{html}");
    for field in ["profile", "allow", "deny", "elevated", "scratch", "egress_allow"] {
        assert!(html.contains(&format!("for=\"{field}\"")), "a label for {field}");
        assert!(html.contains(&format!("name=\"{field}\"")), "a field {field}");
    }
    assert!(html.contains("id=\"offered\""), "what is offered now");
    assert!(html.contains("/workspace/scratch"), "the default scratch folder");

    let (status, html) = page(&user, &app, &path).await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"policy-read-only\""));
    assert!(!html.contains("<form id=\"policy\""), "no form for a user member");
    assert!(!html.contains("name=\"allow\""));
    assert!(!html.contains("/approvals\""), "no link to a page a user member may not open");

    // A user member cannot post the form either, and nothing changes.
    let res = post_form(&user, &app, &path, &[("profile", "full")]).await;
    assert_eq!(res.status(), 403);
    assert_eq!(stored_policy(&owner, &app).await["profile"], "coding");

    // A stranger does not see the instance at all.
    let stranger = person(&app, "stranger@example.com").await;
    assert_eq!(page(&stranger, &app, &path).await.0, 404);
    app.stop().await;
}

#[tokio::test]
async fn posted_policy_form_saves_and_audits_and_a_bad_one_shows_why_and_saves_nothing() {
    let app = TestApp::spawn().await;
    let owner = person(&app, "owner@example.com").await;
    let path = format!("/agent/{}/policy", owner.instance);
    let fields = [
        ("profile", "full"),
        ("allow", "group:web\r\n\r\n"),
        ("deny", "apply_patch"),
        ("elevated", "exec\r\nwrite"),
        ("scratch", "/workspace/scratch\r\n/workspace/tmp"),
        ("egress_allow", "Example.COM\r\n*.docs.rs"),
    ];
    let res = post_form(&owner, &app, &path, &fields).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], format!("{path}?saved=1"));
    let policy = stored_policy(&owner, &app).await;
    assert_eq!(policy["profile"], "full");
    assert_eq!(policy["allow"], json!(["group:web"]));
    assert_eq!(policy["deny"], json!(["apply_patch"]));
    assert_eq!(policy["elevated"], json!(["exec", "write"]));
    assert_eq!(policy["scratch"], json!(["/workspace/scratch", "/workspace/tmp"]));
    assert_eq!(policy["egress_allow"], json!(["example.com", "*.docs.rs"]));
    assert!(audit_actions(&owner, &app).await.contains(&"policy.update".to_owned()));
    let (_, html) = page(&owner, &app, &format!("{path}?saved=1")).await;
    assert!(html.contains("Saved."));

    // A tool that does not exist: the page says so, keeps what was typed, and stores nothing.
    let bad = [("profile", "minimal"), ("allow", "rm_rf_everything"), ("egress_allow", "example.com")];
    let res = post_form(&owner, &app, &path, &bad).await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(html.contains("names no tool"), "the policy's own message: {html}");
    assert!(html.contains("rm_rf_everything"), "what was typed stays in the form");
    assert_eq!(stored_policy(&owner, &app).await, policy, "nothing saved");

    // An address in egress_allow is refused the same way.
    let res = post_form(&owner, &app, &path, &[("profile", "full"), ("egress_allow", "169.254.169.254")]).await;
    assert_eq!(res.status(), 422);
    assert!(res.text().await.unwrap().contains("egress_allow takes domain names only"));
    assert_eq!(stored_policy(&owner, &app).await, policy);
    app.stop().await;
}

#[tokio::test]
async fn always_allowed_commands_are_listed_and_removed_one_by_one() {
    let app = TestApp::spawn().await;
    let owner = person(&app, "owner@example.com").await;
    let res = owner
        .client
        .put(app.at(&format!("/api/v1/instances/{}/policy", owner.instance)))
        .header("x-csrf-token", &owner.csrf)
        .json(&json!({"always_allow": [["ls", "-la"], ["uname", "-a"]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let path = format!("/agent/{}/policy", owner.instance);
    let (_, html) = page(&owner, &app, &path).await;
    assert!(html.contains("<code>ls -la</code>") && html.contains("<code>uname -a</code>"), "{html}");

    // Saving the main form keeps them.
    let res = post_form(&owner, &app, &path, &[("profile", "coding"), ("elevated", "exec")]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(stored_policy(&owner, &app).await["always_allow"], json!([["ls", "-la"], ["uname", "-a"]]));

    let res = post_form(&owner, &app, &format!("{path}/always-allow/remove"), &[("command", r#"["ls","-la"]"#)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(stored_policy(&owner, &app).await["always_allow"], json!([["uname", "-a"]]));
    app.stop().await;
}

#[tokio::test]
async fn approvals_page_is_empty_at_first_and_refuses_user_members() {
    let app = TestApp::spawn().await;
    let owner = person(&app, "owner@example.com").await;
    let user = person(&app, "user@example.com").await;
    join(&app, &owner, &user, "user@example.com", "user").await;

    for path in ["/agent/approvals".to_owned(), format!("/agent/{}/approvals", owner.instance)] {
        let (status, html) = page(&owner, &app, &path).await;
        assert_eq!(status, 200, "{path}");
        assert!(html.contains("id=\"no-approvals\""), "{path}: {html}");
        assert!(!html.contains("class=\"approval\""));
        assert!(html.contains("<script src=\"/static/approvals.js\" defer>"));
    }
    // Like the members page: 403 for a member without the right, 404 for a stranger.
    assert_eq!(page(&user, &app, &format!("/agent/{}/approvals", owner.instance)).await.0, 403);
    assert_eq!(page(&user, &app, &format!("/agent/{}/stop", owner.instance)).await.0, 403);
    let res = post_form(&user, &app, &format!("/agent/{}/stop", owner.instance), &[]).await;
    assert_eq!(res.status(), 403);
    let stranger = person(&app, "stranger@example.com").await;
    assert_eq!(page(&stranger, &app, &format!("/agent/{}/approvals", owner.instance)).await.0, 404);
    let js = app.client().get(app.at("/static/approvals.js")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    app.stop().await;
}

/// A pending `exec` approval in a conversation of `member` on `owner`'s instance, as the agent
/// loop would ask for it. Keep the returned value: dropping it expires the approval.
async fn pending_exec(
    app: &TestApp,
    owner: &Person,
    member: &Person,
    command: &str,
) -> (clawden_agent::approvals::PendingApproval, ConversationId) {
    let res = member
        .client
        .post(app.at("/api/v1/conversations"))
        .header("x-csrf-token", &member.csrf)
        .json(&json!({"instance_id": owner.instance}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let conversation: ConversationId = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    let hub = app.state.runtime.approvals().unwrap();
    let instance: InstanceId = owner.instance.parse().unwrap();
    let user: UserId = member.id.parse().unwrap();
    let pending = hub.request(instance, conversation, user, "exec", &json!({"command": command})).await.unwrap();
    (pending, conversation)
}

async fn status_of(app: &TestApp, id: ApprovalId) -> ApprovalStatus {
    app.state.store.approval(&Principal::System, id).await.unwrap().unwrap().status
}

#[tokio::test]
async fn approvals_page_lists_a_pending_call_and_its_forms_decide_it() {
    let app = TestApp::spawn().await;
    let owner = person(&app, "owner@example.com").await;
    let user = person(&app, "asker@example.com").await;
    join(&app, &owner, &user, "asker@example.com", "user").await;
    let (first, conversation) = pending_exec(&app, &owner, &user, "echo hi").await;
    let (second, _) = pending_exec(&app, &owner, &user, "sh /workspace/run.sh").await;
    let (third, _) = pending_exec(&app, &owner, &user, "echo bye").await;

    let path = format!("/agent/{}/approvals", owner.instance);
    let (status, html) = page(&owner, &app, &path).await;
    assert_eq!(status, 200);
    let id = first.approval.id;
    assert!(html.contains(&format!("id=\"approval-{id}\"")), "{html}");
    assert!(html.contains("&quot;command&quot;: &quot;echo hi&quot;"), "pretty-printed arguments: {html}");
    assert!(html.contains("asker@example.com"), "who asked");
    assert!(html.contains(&conversation.to_string()), "the conversation");
    assert!(html.contains("Allow always (this exact command)"));
    assert!(!html.contains("id=\"no-approvals\""));
    // The Agent hub counts them.
    let (_, hub) = page(&owner, &app, "/agent").await;
    assert!(hub.contains("3 approvals wait for you"), "{hub}");
    // The same rows on the page of every administered instance.
    assert!(page(&owner, &app, "/agent/approvals").await.1.contains(&format!("id=\"approval-{id}\"")));

    // Without the CSRF field the decision is refused and nothing changes.
    let res = owner
        .client
        .post(app.at(&format!("/agent/approvals/{id}")))
        .form(&[("decision", "allow")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(status_of(&app, id).await, ApprovalStatus::Pending);
    // A user member cannot decide.
    let res = post_form(&user, &app, &format!("/agent/approvals/{id}"), &[("decision", "allow")]).await;
    assert_eq!(res.status(), 404);
    assert_eq!(status_of(&app, id).await, ApprovalStatus::Pending);

    // Allow: back to the list, where it is gone, and the waiting turn learns it at once.
    let from = owner.instance.clone();
    let res =
        post_form(&owner, &app, &format!("/agent/approvals/{id}"), &[("decision", "allow"), ("from", &from)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], format!("{path}?done=allowed"));
    assert_eq!(status_of(&app, id).await, ApprovalStatus::Allowed);
    assert_eq!(first.decision().await, ApprovalStatus::Allowed);
    let (_, html) = page(&owner, &app, &format!("{path}?done=allowed")).await;
    assert!(!html.contains(&format!("id=\"approval-{id}\"")));
    assert!(html.contains("Allowed"));

    // "Allow always" for a script in a writable place: refused with the reason, still pending.
    let id2 = second.approval.id;
    let res = post_form(&owner, &app, &format!("/agent/approvals/{id2}"), &[("decision", "always")]).await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && html.contains("Not decided:"), "{html}");
    assert_eq!(status_of(&app, id2).await, ApprovalStatus::Pending);

    // Deny.
    let id3 = third.approval.id;
    let res = post_form(&owner, &app, &format!("/agent/approvals/{id3}"), &[("decision", "deny")]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(status_of(&app, id3).await, ApprovalStatus::Denied);
    let actions = audit_actions(&owner, &app).await;
    assert!(actions.contains(&"approval.allow".to_owned()) && actions.contains(&"approval.deny".to_owned()));
    drop(second);
    app.stop().await;
}

#[tokio::test]
async fn stop_button_asks_first_then_stops_and_audits() {
    let app = TestApp::spawn().await;
    let owner = person(&app, "owner@example.com").await;
    let path = format!("/agent/{}/stop", owner.instance);
    let (status, html) = page(&owner, &app, &path).await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!("action=\"{path}\"")), "a confirmation form: {html}");
    let res = post_form(&owner, &app, &path, &[]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], format!("/agent/{}/approvals?stopped=0", owner.instance));
    assert!(audit_actions(&owner, &app).await.contains(&"instance.stop".to_owned()));
    app.stop().await;
}

#[tokio::test]
async fn chat_history_shows_tool_calls_and_results() {
    use clawden_agent::provider::{ChatMessage, ToolCall};
    use clawden_agent::runtime::encode_message;
    let app = TestApp::spawn().await;
    let owner = person(&app, "owner@example.com").await;
    let res = owner
        .client
        .post(app.at("/api/v1/conversations"))
        .header("x-csrf-token", &owner.csrf)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let conversation: ConversationId = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    let user: UserId = owner.id.parse().unwrap();
    let now = 1_800_000_000_000;
    let messages = [
        (
            "assistant",
            ChatMessage::Assistant {
                content: String::new(),
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "exec".into(),
                    arguments: json!({"command": "ls <dir>"}),
                }],
            },
        ),
        ("tool", ChatMessage::ToolResult { call_id: "c1".into(), content: "<b>not bold</b>".into(), is_error: true }),
    ];
    for (role, m) in &messages {
        app.state
            .store
            .append_server_message(&Principal::System, user, conversation, role, &encode_message(m), now)
            .await
            .unwrap();
    }
    let (status, html) = page(&owner, &app, &format!("/chat/{conversation}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("<code class=\"tool-name\">exec</code>"), "{html}");
    assert!(html.contains("&quot;command&quot;: &quot;ls &lt;dir&gt;&quot;"), "escaped arguments");
    assert!(html.contains("<li class=\"msg tool failed\"><details>"), "a folded, failed result");
    assert!(html.contains("&lt;b&gt;not bold&lt;/b&gt;"), "escaped output");
    assert!(!html.contains("<b>not bold</b>"));
    app.stop().await;
}
