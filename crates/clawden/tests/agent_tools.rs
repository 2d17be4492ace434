//! The agent loop end to end: a real server with real sandboxes, and a local fake provider
//! scripted to ask for tools (see `support/agent.rs`).

#![allow(clippy::unwrap_used)]

#[path = "support/agent.rs"]
mod agent_support;

use agent_support::*;
use clawden_core::Tier;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_then_read_round_trip_lands_in_the_workspace() {
    if !sandbox_available() {
        return;
    }
    let app = App::start(|_| {}).await;
    let alice = app.user("alice@example.com", Tier::Invite).await;
    // Writes in /workspace/scratch run without an approval by default.
    let conv = app.conversation(&alice).await;
    let res = app
        .send(
            &alice,
            &conv,
            json!([
                {"name": "write", "arguments": {"path": "scratch/hello.txt", "content": "hello from the agent"}},
                {"name": "read", "arguments": {"path": "/workspace/scratch/hello.txt"}},
                {"name": "ls", "arguments": {"path": "scratch"}},
            ]),
        )
        .await;
    let text = app.reply(res).await;
    assert!(text.contains("RESULT: hello from the agent"), "{text}");
    assert!(text.contains("hello.txt"), "{text}");
    // The provider was offered the coding profile's tools.
    let first = app.seen.lock().unwrap()[0].clone();
    let offered = tool_names(&first);
    for tool in ["exec", "read", "write", "edit", "ls", "apply_patch", "memory_write"] {
        assert!(offered.contains(&tool.to_owned()), "{tool} not offered: {offered:?}");
    }
    assert!(!offered.contains(&"web_fetch".to_owned()));
    // Tool calls and results are part of the stored conversation.
    let messages: Vec<Value> = alice
        .client
        .get(app.at(&format!("/api/v1/conversations/{conv}/messages")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant", "tool", "assistant", "tool", "assistant"]);
    assert_eq!(messages[1]["tool_calls"][0]["name"], "write");
    assert_eq!(messages[4]["content"], "hello from the agent");
    // The usage counts the three tool calls.
    let usage: Value = alice.client.get(app.at("/api/v1/usage")).send().await.unwrap().json().await.unwrap();
    assert_eq!(usage["tool_calls"], 3, "{usage}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elevated_exec_waits_is_approved_over_the_api_and_runs() {
    if !sandbox_available() {
        return;
    }
    let app = Arc::new(App::start(|_| {}).await);
    let alice = Arc::new(app.user("alice@example.com", Tier::Invite).await);
    let conv = app.conversation(&alice).await;
    let turn =
        spawn_turn(&app, &alice, &conv, json!([{"name": "exec", "arguments": {"command": "echo approved-run"}}]));
    let pending = app.pending(&alice, 1).await;
    assert_eq!(pending[0]["tool"], "exec");
    assert_eq!(pending[0]["arguments"]["command"], "echo approved-run");
    // Nothing ran yet.
    assert!(!turn.is_finished());
    let res = app.decide(&alice, pending[0]["id"].as_str().unwrap(), json!({"decision": "allow"})).await;
    assert_eq!(res.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(60), turn).await.unwrap().unwrap();
    assert!(text.contains("approved-run"), "{text}");
    // Deciding again is a conflict.
    let again = app.decide(&alice, pending[0]["id"].as_str().unwrap(), json!({"decision": "deny"})).await;
    assert_eq!(again.status(), 409);
    // The request and the decision are in the instance's audit log.
    let audit: Vec<Value> = alice
        .client
        .get(app.at(&format!("/api/v1/audit?instance_id={}", alice.instance)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a["action"].as_str().unwrap()).collect();
    for action in ["approval.request", "approval.allow", "tool.run"] {
        assert!(actions.contains(&action), "{action} missing from {actions:?}");
    }
    Arc::try_unwrap(app).ok().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_call_is_reported_denied_and_an_approval_of_a_does_not_authorize_b() {
    if !sandbox_available() {
        return;
    }
    let app = Arc::new(App::start(|_| {}).await);
    let alice = Arc::new(app.user("alice@example.com", Tier::Invite).await);
    let conv = app.conversation(&alice).await;
    let turn = spawn_turn(
        &app,
        &alice,
        &conv,
        json!([
            {"name": "exec", "arguments": {"command": "echo call-a"}},
            {"name": "exec", "arguments": {"command": "echo call-b"}},
        ]),
    );
    let first = app.pending(&alice, 1).await;
    assert_eq!(first[0]["arguments"]["command"], "echo call-a");
    let a_id = first[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.decide(&alice, &a_id, json!({"decision": "allow"})).await.status(), 200);
    // The second call, with other arguments, needs an approval of its own.
    let second = app.next_pending_other_than(&alice, &a_id).await;
    assert_ne!(second[0]["id"], a_id.as_str());
    assert_eq!(second[0]["arguments"]["command"], "echo call-b");
    assert_ne!(second[0]["digest"], first[0]["digest"]);
    let b_id = second[0]["id"].as_str().unwrap().to_owned();
    // A's approval, used and decided, cannot be replayed for B.
    assert_eq!(app.decide(&alice, &a_id, json!({"decision": "allow"})).await.status(), 409);
    assert_eq!(app.decide(&alice, &b_id, json!({"decision": "deny"})).await.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(60), turn).await.unwrap().unwrap();
    assert!(text.contains("call-a"), "{text}");
    assert!(!text.contains("RESULT: call-b"), "{text}");
    assert!(text.contains("denied"), "{text}");
    Arc::try_unwrap(app).ok().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_tier_request_carries_no_tools_and_a_forced_call_is_refused() {
    if !sandbox_available() {
        return;
    }
    let app = App::start(|_| {}).await;
    let bob = app.user("bob@example.com", Tier::Base).await;
    let conv = app.conversation(&bob).await;
    let res = app.send(&bob, &conv, json!([{"name": "exec", "arguments": {"command": "echo should-not-run"}}])).await;
    let text = app.reply(res).await;
    assert!(text.contains("refused: tools are not available on the base tier"), "{text}");
    assert!(!text.contains("RESULT: should-not-run"));
    for request in app.seen.lock().unwrap().iter() {
        assert!(request.get("tools").is_none(), "a base-tier request carried tools: {request}");
    }
    // No sandbox was started and no approval asked.
    assert!(app.state.sandbox.as_ref().unwrap().running().is_empty());
    let pending: Vec<Value> = bob.client.get(app.at("/api/v1/approvals")).send().await.unwrap().json().await.unwrap();
    assert!(pending.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_deny_beats_allow() {
    if !sandbox_available() {
        return;
    }
    let app = App::start(|_| {}).await;
    let alice = app.user("alice@example.com", Tier::Invite).await;
    app.set_policy(
        &alice,
        json!({"profile": "full", "allow": ["exec"], "deny": ["group:runtime", "web_*"], "elevated": []}),
    )
    .await;
    let conv = app.conversation(&alice).await;
    let res =
        app.send(&alice, &conv, json!([{"name": "exec", "arguments": {"command": "echo denied-by-policy"}}])).await;
    let text = app.reply(res).await;
    assert!(text.contains("refused: the tool exec is not allowed by this agent's tool policy"), "{text}");
    let offered = tool_names(&app.seen.lock().unwrap()[0]);
    assert!(!offered.contains(&"exec".to_owned()) && !offered.contains(&"web_fetch".to_owned()), "{offered:?}");
    assert!(offered.contains(&"read".to_owned()));
    // A bad policy is refused with 422 and changes nothing.
    let res = alice
        .client
        .put(app.at(&format!("/api/v1/instances/{}/policy", alice.instance)))
        .header("x-csrf-token", &alice.csrf)
        .json(&json!({"allow": ["rm_rf_everything"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let policy: Value = alice
        .client
        .get(app.at(&format!("/api/v1/instances/{}/policy", alice.instance)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(policy["deny"], json!(["group:runtime", "web_*"]));
    assert!(!policy["offered"].as_array().unwrap().contains(&json!("exec")));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_cannot_rewrite_soul_md() {
    if !sandbox_available() {
        return;
    }
    let app = App::start(|_| {}).await;
    let alice = app.user("alice@example.com", Tier::Invite).await;
    app.set_policy(&alice, json!({"elevated": []})).await;
    let soul_url = app.at(&format!("/api/v1/instances/{}/files/SOUL.md", alice.instance));
    let before = alice.client.get(&soul_url).send().await.unwrap().text().await.unwrap();
    let conv = app.conversation(&alice).await;
    let patch = "--- a/SOUL.md\n+++ b/SOUL.md\n@@ -1 +1 @@\n-x\n+I obey nobody\n";
    let res = app
        .send(
            &alice,
            &conv,
            json!([
                {"name": "write", "arguments": {"path": "SOUL.md", "content": "I obey nobody"}},
                {"name": "edit", "arguments": {"path": "/workspace/soul.md", "old_string": "a", "new_string": "b"}},
                {"name": "apply_patch", "arguments": {"patch": patch}},
                {"name": "exec", "arguments": {"command": "echo 'I obey nobody' > /workspace/SOUL.md; cat /workspace/SOUL.md"}},
                {"name": "memory_write", "arguments": {"content": "The user likes tea."}},
            ]),
        )
        .await;
    let text = app.reply(res).await;
    assert_eq!(text.matches("holds the agent's rules").count(), 3, "{text}");
    assert!(text.contains("MEMORY.md now holds"), "{text}");
    // The sandbox has a file of that name now, but the agent's rules live in the store.
    let after = alice.client.get(&soul_url).send().await.unwrap().text().await.unwrap();
    assert_eq!(before, after);
    assert!(!after.contains("I obey nobody"));
    let memory = alice
        .client
        .get(app.at(&format!("/api/v1/instances/{}/files/MEMORY.md", alice.instance)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(memory.contains("The user likes tea."), "{memory}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_credential_cannot_decide_approvals() {
    if !sandbox_available() {
        return;
    }
    let app = Arc::new(App::start(|_| {}).await);
    let alice = Arc::new(app.user("alice@example.com", Tier::Invite).await);
    let key: Value = alice
        .client
        .post(app.at("/api/v1/api-keys"))
        .header("x-csrf-token", &alice.csrf)
        .json(&json!({"name": "agent-reachable"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    let conv = app.conversation(&alice).await;
    let turn = spawn_turn(&app, &alice, &conv, json!([{"name": "exec", "arguments": {"command": "echo by-bearer"}}]));
    let pending = app.pending(&alice, 1).await;
    let id = pending[0]["id"].as_str().unwrap();
    // The API key lists approvals, but cannot decide one.
    let bare = reqwest::Client::new();
    let listed: Vec<Value> =
        bare.get(app.at("/api/v1/approvals")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.len(), 1);
    let res = bare
        .post(app.at(&format!("/api/v1/approvals/{id}")))
        .bearer_auth(&key)
        .json(&json!({"decision": "allow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "session_required");
    // Nor can the instance's gateway token (valid on the chat routes only).
    let rotated: Value = alice
        .client
        .post(app.at(&format!("/api/v1/instances/{}/gateway-token/rotate", alice.instance)))
        .header("x-csrf-token", &alice.csrf)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gateway = rotated["token"].as_str().unwrap();
    let res = bare
        .post(app.at(&format!("/api/v1/approvals/{id}")))
        .bearer_auth(gateway)
        .json(&json!({"decision": "allow"}))
        .send()
        .await
        .unwrap();
    assert!(matches!(res.status().as_u16(), 401 | 403), "{}", res.status());
    // Still pending; the session denies it.
    assert_eq!(app.pending(&alice, 1).await[0]["status"], "pending");
    assert_eq!(app.decide(&alice, id, json!({"decision": "deny"})).await.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(60), turn).await.unwrap().unwrap();
    assert!(text.contains("denied") && !text.contains("RESULT: by-bearer"), "{text}");
    Arc::try_unwrap(app).ok().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_always_refused_for_writable_script() {
    if !sandbox_available() {
        return;
    }
    let app = Arc::new(App::start(|_| {}).await);
    let alice = Arc::new(app.user("alice@example.com", Tier::Invite).await);
    let conv = app.conversation(&alice).await;
    let turn = spawn_turn(
        &app,
        &alice,
        &conv,
        json!([
            {"name": "exec", "arguments": {"command": "/workspace/run.sh"}},
            {"name": "exec", "arguments": {"command": "uname -s"}},
        ]),
    );
    let pending = app.pending(&alice, 1).await;
    let id = pending[0]["id"].as_str().unwrap().to_owned();
    let res = app.decide(&alice, &id, json!({"decision": "allow", "always": true})).await;
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "allow_always_refused");
    // Nothing changed: still pending, and the policy holds no command.
    assert_eq!(app.pending(&alice, 1).await[0]["id"], id.as_str());
    assert_eq!(app.decide(&alice, &id, json!({"decision": "deny"})).await.status(), 200);
    // A plain system command may be allowed always, and then runs without asking.
    let second = app.next_pending_other_than(&alice, &id).await;
    assert_eq!(second[0]["arguments"]["command"], "uname -s");
    let res = app.decide(&alice, second[0]["id"].as_str().unwrap(), json!({"decision": "allow", "always": true})).await;
    assert_eq!(res.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(60), turn).await.unwrap().unwrap();
    assert!(text.contains("RESULT: [stdout]") || text.contains("Linux"), "{text}");
    let policy: Value = alice
        .client
        .get(app.at(&format!("/api/v1/instances/{}/policy", alice.instance)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(policy["always_allow"], json!([["uname", "-s"]]));
    let res = app.send(&alice, &conv, json!([{"name": "exec", "arguments": {"command": "uname -s"}}])).await;
    let text = app.reply(res).await;
    assert!(text.contains("Linux"), "{text}");
    Arc::try_unwrap(app).ok().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_waiting_for_approval_answers_202_and_finishes_in_the_background() {
    if !sandbox_available() {
        return;
    }
    let app = App::start(|s| s.tools.approval_response_after = Duration::from_millis(300)).await;
    let alice = app.user("alice@example.com", Tier::Invite).await;
    let conv = app.conversation(&alice).await;
    let res = app.send(&alice, &conv, json!([{"name": "exec", "arguments": {"command": "echo later"}}])).await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "waiting_for_approval");
    let id = body["approval_id"].as_str().unwrap();
    assert_eq!(app.decide(&alice, id, json!({"decision": "allow"})).await.status(), 200);
    // The reply lands in the conversation.
    for _ in 0..400 {
        let messages: Vec<Value> = alice
            .client
            .get(app.at(&format!("/api/v1/conversations/{conv}/messages")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(last) = messages.last().filter(|m| m["role"] == "assistant" && m["tool_calls"].is_null()) {
            assert!(last["content"].as_str().unwrap().contains("later"), "{last}");
            app.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the background turn did not land");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_approval_times_out_as_denied() {
    if !sandbox_available() {
        return;
    }
    let app = App::start(|s| s.tools.approval_timeout = Duration::from_millis(600)).await;
    let alice = app.user("alice@example.com", Tier::Invite).await;
    let conv = app.conversation(&alice).await;
    let res = app.send(&alice, &conv, json!([{"name": "exec", "arguments": {"command": "echo never"}}])).await;
    let text = app.reply(res).await;
    assert!(text.contains("denied: nobody approved this call"), "{text}");
    let pending: Vec<Value> = alice.client.get(app.at("/api/v1/approvals")).send().await.unwrap().json().await.unwrap();
    assert!(pending.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_loops_and_call_limits_are_stopped() {
    if !sandbox_available() {
        return;
    }
    let app = App::start(|s| {
        s.tools.max_repeats = 2;
        s.tools.max_calls_per_turn = 4;
    })
    .await;
    let alice = app.user("alice@example.com", Tier::Invite).await;
    app.set_policy(&alice, json!({"elevated": []})).await;
    let conv = app.conversation(&alice).await;
    let same = json!({"name": "exec", "arguments": {"command": "echo again"}});
    let res = app.send(&alice, &conv, json!([same, same, same, same])).await;
    let text = app.reply(res).await;
    assert_eq!(text.matches("RESULT: [stdout]").count(), 2, "{text}");
    assert!(text.contains("(a loop)"), "{text}");
    // Once a limit is reached the provider is asked for an answer without tools.
    let last = app.seen.lock().unwrap().last().cloned().unwrap();
    assert!(last.get("tools").is_none(), "{last}");
    let calls: Vec<Value> =
        (0..6).map(|i| json!({"name": "exec", "arguments": {"command": format!("echo n{i}")}})).collect();
    let res = app.send(&alice, &conv, json!(calls)).await;
    let text = app.reply(res).await;
    assert!(text.contains("the limit of 4 tool calls in one turn"), "{text}");
    assert!(text.contains("n3") && !text.contains("RESULT: [stdout]\nn4"), "{text}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_stop_aborts_the_turn_and_kills_its_processes() {
    if !sandbox_available() {
        return;
    }
    let app = Arc::new(App::start(|_| {}).await);
    let alice = Arc::new(app.user("alice@example.com", Tier::Invite).await);
    app.set_policy(&alice, json!({"elevated": []})).await;
    let conv = app.conversation(&alice).await;
    let turn = {
        let (app, alice, conv) = (app.clone(), alice.clone(), conv.clone());
        tokio::spawn(async move {
            app.send(&alice, &conv, json!([{"name": "exec", "arguments": {"command": "sleep 300"}}])).await
        })
    };
    // Wait until the sandbox runs the command.
    for _ in 0..400 {
        if !app.state.sandbox.as_ref().unwrap().running().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let res = alice
        .client
        .post(app.at(&format!("/api/v1/instances/{}/stop", alice.instance)))
        .header("x-csrf-token", &alice.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["stopped_turns"], 1);
    let res = tokio::time::timeout(Duration::from_secs(30), turn).await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "stopped", "{body}");
    // The conversation stays usable: the dangling call is answered for the provider.
    let res = app.send(&alice, &conv, json!([])).await;
    assert_eq!(app.reply(res).await, "no tools were used");
    Arc::try_unwrap(app).ok().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_provider_runs_a_bang_command_with_the_exec_tool() {
    if !sandbox_available() {
        return;
    }
    let app = Arc::new(
        App::start(|s| {
            s.provider = Some("demo".into());
            s.openai_api_key = None;
        })
        .await,
    );
    let alice = Arc::new(app.user("alice@example.com", Tier::Invite).await);
    let conv = app.conversation(&alice).await;
    let turn = {
        let (app, alice, conv) = (app.clone(), alice.clone(), conv.clone());
        tokio::spawn(async move {
            let res = alice
                .client
                .post(app.at(&format!("/api/v1/conversations/{conv}/messages")))
                .header("x-csrf-token", &alice.csrf)
                .json(&json!({"content": "!echo tools-without-a-key"}))
                .send()
                .await
                .unwrap();
            app.reply(res).await
        })
    };
    let pending = app.pending(&alice, 1).await;
    assert_eq!(pending[0]["arguments"]["command"], "echo tools-without-a-key");
    assert_eq!(
        app.decide(&alice, pending[0]["id"].as_str().unwrap(), json!({"decision": "allow"})).await.status(),
        200
    );
    let text = tokio::time::timeout(Duration::from_secs(60), turn).await.unwrap().unwrap();
    assert!(text.contains("The tool returned") && text.contains("tools-without-a-key"), "{text}");
    Arc::try_unwrap(app).ok().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_member_cannot_change_the_shared_memory_and_links_do_not_widen_scratch() {
    if !sandbox_available() {
        return;
    }
    let app = App::start(|_| {}).await;
    let owner = app.user("owner@example.com", Tier::Invite).await;
    let member = app.user("member@example.com", Tier::Base).await;
    let res = owner
        .client
        .post(app.at(&format!("/api/v1/instances/{}/members", owner.instance)))
        .header("x-csrf-token", &owner.csrf)
        .json(&json!({"email": "member@example.com", "role": "user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let invitations: Vec<Value> =
        member.client.get(app.at("/api/v1/invitations")).send().await.unwrap().json().await.unwrap();
    let res = member
        .client
        .post(app.at(&format!("/api/v1/invitations/{}/accept", invitations[0]["id"].as_str().unwrap())))
        .header("x-csrf-token", &member.csrf)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    // The member chats with the owner's (invite-tier) agent.
    let conv: Value = member
        .client
        .post(app.at("/api/v1/conversations"))
        .header("x-csrf-token", &member.csrf)
        .json(&json!({"instance_id": owner.instance}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conv = conv["id"].as_str().unwrap().to_owned();
    let res = app.send(&member, &conv, json!([{"name": "memory_write", "arguments": {"content": "obey me"}}])).await;
    let text = app.reply(res).await;
    assert!(text.contains("refused: only the conversations of the instance's owners and admins"), "{text}");
    let memory = owner
        .client
        .get(app.at(&format!("/api/v1/instances/{}/files/MEMORY.md", owner.instance)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!memory.contains("obey me"));
    // A link inside the scratch folder does not turn a write elsewhere into a scratch write.
    app.set_policy(&owner, json!({"elevated": ["write"]})).await;
    let conv = app.conversation(&owner).await;
    let res = app
        .send(
            &owner,
            &conv,
            json!([
                {"name": "write", "arguments": {"path": "scratch/keep.txt", "content": "x"}},
                {"name": "exec", "arguments": {"command": "ln -s .. /workspace/scratch/up && echo linked"}},
                {"name": "write", "arguments": {"path": "scratch/up/run.sh", "content": "echo pwned"}},
                {"name": "exec", "arguments": {"command": "ls /workspace/run.sh 2>&1; true"}},
            ]),
        )
        .await;
    let text = app.reply(res).await;
    assert!(text.contains("linked"), "{text}");
    assert!(text.contains("goes through a symbolic link"), "{text}");
    assert!(text.contains("No such file"), "{text}");
    app.stop().await;
}
