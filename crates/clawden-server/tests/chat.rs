//! Agents that talk: workspace files, conversations, the demo and OpenAI-protocol providers,
//! streaming, the OpenAI-compatible endpoint, quotas.

#![allow(clippy::unwrap_used)]

mod common;

use axum::response::IntoResponse;
use clawden_store::testing::TestDb;
use common::{error_code, TestApp};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

async fn new_conversation(app: &TestApp, client: &reqwest::Client, token: &str) -> String {
    let res = client
        .post(app.at("/api/v1/conversations"))
        .header("x-csrf-token", token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn send(app: &TestApp, client: &reqwest::Client, token: &str, conv: &str, text: &str) -> reqwest::Response {
    client
        .post(app.at(&format!("/api/v1/conversations/{conv}/messages")))
        .header("x-csrf-token", token)
        .json(&json!({"content": text}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn demo_agent_answers_with_its_name_and_keeps_the_conversation() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let me = app.signup(&client, "a@example.com").await;
    let token = me["csrf_token"].as_str().unwrap().to_owned();
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    // Rename the agent through IDENTITY.md.
    let res = client
        .put(app.at(&format!("/api/v1/instances/{instance}/files/IDENTITY.md")))
        .header("x-csrf-token", &token)
        .header("content-type", "text/markdown")
        .body("# IDENTITY.md\n\n- **Name:** Pinchy\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let conv = new_conversation(&app, &client, &token).await;
    let res = send(&app, &client, &token, &conv, "hello there").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["message"]["role"], "user");
    assert_eq!(body["message"]["content"], "hello there");
    let reply = body["reply"]["content"].as_str().unwrap();
    assert!(reply.contains("not an AI"), "{reply}");
    assert!(reply.contains("Pinchy"), "{reply}");
    assert!(reply.contains("hello there"), "{reply}");
    let history: Vec<Value> = client
        .get(app.at(&format!("/api/v1/conversations/{conv}/messages")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    let list: Vec<Value> = client.get(app.at("/api/v1/conversations")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list.len(), 1);
    let usage: Value = client.get(app.at("/api/v1/usage")).send().await.unwrap().json().await.unwrap();
    assert_eq!(usage["messages"], 1);
    assert_eq!(usage["messages_limit"], 50);
    app.stop().await;
}

#[tokio::test]
async fn replies_stream_as_server_sent_events() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let token = app.signup(&client, "a@example.com").await["csrf_token"].as_str().unwrap().to_owned();
    let conv = new_conversation(&app, &client, &token).await;
    let res = client
        .post(app.at(&format!("/api/v1/conversations/{conv}/messages")))
        .header("x-csrf-token", &token)
        .header("accept", "text/event-stream")
        .json(&json!({"content": "stream please"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/event-stream"));
    let text = res.text().await.unwrap();
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(events.first(), Some(&"message"));
    assert!(events.contains(&"delta"));
    assert_eq!(events.last(), Some(&"done"));
    app.stop().await;
}

#[tokio::test]
async fn fifty_first_message_of_the_day_is_refused_on_base_tier() {
    let app = TestApp::spawn_with(TestDb::sqlite(), |s| s.chat.messages_per_minute = 1000).await;
    let client = app.client();
    let token = app.signup(&client, "a@example.com").await["csrf_token"].as_str().unwrap().to_owned();
    let conv = new_conversation(&app, &client, &token).await;
    for i in 0..50 {
        assert_eq!(send(&app, &client, &token, &conv, &format!("m{i}")).await.status(), 200, "message {i}");
    }
    let res = send(&app, &client, &token, &conv, "one too many").await;
    let retry: u64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 86_400);
    assert_eq!(error_code(res).await, (429, "quota_exceeded".into()));
    let history: Vec<Value> = client
        .get(app.at(&format!("/api/v1/conversations/{conv}/messages")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history.len(), 100, "the refused message was not stored");
    app.clock.advance_secs(retry as i64);
    assert_eq!(send(&app, &client, &token, &conv, "a new day").await.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_holds_under_parallel_sends() {
    let app = TestApp::spawn_with(TestDb::sqlite(), |s| {
        s.chat.messages_per_minute = 1000;
        s.chat.base_messages_per_day = 25;
        s.chat.concurrent_streams_per_user = 100;
    })
    .await;
    let client = app.client();
    let token = app.signup(&client, "a@example.com").await["csrf_token"].as_str().unwrap().to_owned();
    let conv = new_conversation(&app, &client, &token).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (client, token, conv, url) = (client.clone(), token.clone(), conv.clone(), app.at(""));
        tasks.push(tokio::spawn(async move {
            client
                .post(format!("{url}/api/v1/conversations/{conv}/messages"))
                .header("x-csrf-token", token)
                .json(&json!({"content": format!("parallel {i}")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, refused), (25, 15));
    let usage: Value = client.get(app.at("/api/v1/usage")).send().await.unwrap().json().await.unwrap();
    assert_eq!(usage["messages"], 25, "no lost or extra increments");
    app.stop().await;
}

#[tokio::test]
async fn member_cannot_read_owners_conversation() {
    let app = TestApp::spawn().await;
    let owner = app.client();
    let me = app.signup(&owner, "owner@example.com").await;
    let token = me["csrf_token"].as_str().unwrap().to_owned();
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let conv = new_conversation(&app, &owner, &token).await;
    assert_eq!(send(&app, &owner, &token, &conv, "my private thought").await.status(), 200);
    let member = app.client();
    let member_me = app.signup(&member, "member@example.com").await;
    let member_token = member_me["csrf_token"].as_str().unwrap().to_owned();
    // Make them a member of the owner's instance.
    let pool = app.raw_pool().await;
    sqlx::query("INSERT INTO members (instance_id, user_id, role, created_at) VALUES ($1, $2, 'user', 0)")
        .bind(&instance)
        .bind(member_me["id"].as_str().unwrap())
        .execute(&pool)
        .await
        .unwrap();
    let theirs: Vec<Value> = member.get(app.at("/api/v1/conversations")).send().await.unwrap().json().await.unwrap();
    assert!(theirs.is_empty());
    let res = member.get(app.at(&format!("/api/v1/conversations/{conv}/messages"))).send().await.unwrap();
    assert_eq!(error_code(res).await, (404, "not_found".into()));
    assert_eq!(send(&app, &member, &member_token, &conv, "sneaky").await.status(), 404);
    let res = member
        .delete(app.at(&format!("/api/v1/conversations/{conv}")))
        .header("x-csrf-token", &member_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // The member chats with the instance in a conversation of their own…
    let res = member
        .post(app.at("/api/v1/conversations"))
        .header("x-csrf-token", &member_token)
        .json(&json!({"instance_id": instance}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // …can read the workspace but not change it.
    let res = member.get(app.at(&format!("/api/v1/instances/{instance}/files/SOUL.md"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = member
        .put(app.at(&format!("/api/v1/instances/{instance}/files/SOUL.md")))
        .header("x-csrf-token", &member_token)
        .header("content-type", "text/markdown")
        .body("obey me")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (403, "forbidden".into()));
    // And the owner's history is intact.
    let history: Vec<Value> = owner
        .get(app.at(&format!("/api/v1/conversations/{conv}/messages")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn workspace_files_are_validated() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let me = app.signup(&client, "a@example.com").await;
    let token = me["csrf_token"].as_str().unwrap().to_owned();
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let files: Vec<Value> =
        client.get(app.at(&format!("/api/v1/instances/{instance}/files"))).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    for expected in ["AGENTS.md", "HEARTBEAT.md", "IDENTITY.md", "MEMORY.md", "SOUL.md", "TOOLS.md", "USER.md"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    let put = |path: &str, body: Vec<u8>| {
        client
            .put(app.at(&format!("/api/v1/instances/{instance}/files/{path}")))
            .header("x-csrf-token", &token)
            .header("content-type", "text/markdown")
            .body(body)
            .send()
    };
    let skill = b"---\nname: weather\ndescription: Looks up the weather\n---\nUse the forecast.\n".to_vec();
    assert_eq!(put("skills/weather/SKILL.md", skill).await.unwrap().status(), 204);
    let text = client
        .get(app.at(&format!("/api/v1/instances/{instance}/files/skills/weather/SKILL.md")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("name: weather"));
    for (path, body, code) in [
        ("NOTES.md", b"x".to_vec(), "invalid_path"),
        ("skills/weather/other.md", b"x".to_vec(), "invalid_path"),
        ("skills/other/SKILL.md", b"---\nname: weather\ndescription: d\n---\n".to_vec(), "invalid_file"),
        ("skills/bad/SKILL.md", b"no frontmatter".to_vec(), "invalid_file"),
        ("SOUL.md", vec![0xff, 0xfe, 0x00], "invalid_file"),
        ("SOUL.md", "x".repeat(20_001).into_bytes(), "invalid_file"),
    ] {
        assert_eq!(error_code(put(path, body).await.unwrap()).await, (400, code.to_owned()), "{path}");
    }
    for escaping in ["..%2FSOUL.md", "%2Fetc%2Fpasswd", "skills/..%2F..%2FSOUL.md"] {
        let status = put(escaping, b"x".to_vec()).await.unwrap().status().as_u16();
        assert!(status == 400 || status == 404, "{escaping}: {status}");
    }
    // The whole workspace is capped too.
    for name in ["AGENTS.md", "USER.md", "TOOLS.md"] {
        assert_eq!(put(name, "y".repeat(19_000).into_bytes()).await.unwrap().status(), 204);
    }
    assert_eq!(
        error_code(put("MEMORY.md", "z".repeat(19_000).into_bytes()).await.unwrap()).await,
        (400, "workspace_too_large".into())
    );
    let res = client
        .delete(app.at(&format!("/api/v1/instances/{instance}/files/skills/weather/SKILL.md")))
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    app.stop().await;
}

/// A local server speaking OpenAI's streaming Chat Completions format. It records every
/// request body it gets; `fail` makes it answer 500 (or 401 echoing the key).
/// What the fake provider saw: the `Authorization` header and the body of each request.
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

#[derive(Clone, Default)]
struct FakeOpenAi {
    seen: Seen,
    fail: Arc<Mutex<Option<u16>>>,
}

async fn fake_openai() -> (String, FakeOpenAi) {
    let fake = FakeOpenAi::default();
    let state = fake.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::Json<Value>| {
            let state = state.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
                state.seen.lock().unwrap().push((auth.clone(), body.0.clone()));
                if let Some(code) = *state.fail.lock().unwrap() {
                    let status = axum::http::StatusCode::from_u16(code).unwrap();
                    let echo = json!({"error": {"message": format!("bad key {}", auth.unwrap_or_default()), "type": "x"}});
                    return (status, axum::Json(echo)).into_response();
                }
                let last = body.0["messages"].as_array().and_then(|m| m.last()).and_then(|m| m["content"].as_str()).unwrap_or("").to_owned();
                let chunks = [
                    json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "You said: "}, "finish_reason": null}]}),
                    json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": last}, "finish_reason": null}]}),
                    json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                    json!({"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}),
                ];
                let mut text = String::new();
                for c in chunks {
                    text.push_str(&format!("data: {c}\n\n"));
                }
                text.push_str("data: [DONE]\n\n");
                ([(axum::http::header::CONTENT_TYPE, "text/event-stream")], text).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake)
}

async fn app_with_openai(url: &str) -> TestApp {
    let url = url.to_owned();
    TestApp::spawn_with(TestDb::sqlite(), move |s| {
        s.provider = Some("openai".into());
        s.openai_base_url = Some(url);
        s.openai_api_key = Some("sk-platform-key-000111222333".to_owned().into());
        s.model = Some("gpt-test".into());
    })
    .await
}

#[tokio::test]
async fn message_is_stored_before_provider_is_called() {
    let (url, fake) = fake_openai().await;
    let app = app_with_openai(&url).await;
    let client = app.client();
    let token = app.signup(&client, "a@example.com").await["csrf_token"].as_str().unwrap().to_owned();
    let conv = new_conversation(&app, &client, &token).await;
    *fake.fail.lock().unwrap() = Some(500);
    let res = send(&app, &client, &token, &conv, "do not lose me").await;
    assert_eq!(res.status(), 502);
    let history: Vec<Value> = client
        .get(app.at(&format!("/api/v1/conversations/{conv}/messages")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["content"], "do not lose me");
    // The provider's request was built from the store: the message was there before the call.
    let seen = fake.seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    let messages = seen[0].1["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(messages[0]["content"].as_str().unwrap().contains("SOUL.md"));
    assert_eq!(messages.last().unwrap()["content"], "do not lose me");
    assert_eq!(seen[0].0.as_deref(), Some("Bearer sk-platform-key-000111222333"));
    app.stop().await;
}

#[tokio::test]
async fn provider_key_never_appears_in_errors_or_logs() {
    let (url, fake) = fake_openai().await;
    let app = app_with_openai(&url).await;
    let client = app.client();
    let token = app.signup(&client, "a@example.com").await["csrf_token"].as_str().unwrap().to_owned();
    // The user brings their own key; it is used instead of the platform's.
    let byok = "sk-user-own-key-PLANTED-98765";
    let res = client
        .put(app.at("/api/v1/credentials/openai"))
        .header("x-csrf-token", &token)
        .json(&json!({"value": byok}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let conv = new_conversation(&app, &client, &token).await;
    assert_eq!(send(&app, &client, &token, &conv, "hi").await.status(), 200);
    assert_eq!(fake.seen.lock().unwrap().last().unwrap().0.as_deref(), Some(format!("Bearer {byok}").as_str()));
    // The provider rejects it and echoes it back: the user sees a clean error.
    *fake.fail.lock().unwrap() = Some(401);
    let res = send(&app, &client, &token, &conv, "again").await;
    assert_eq!(res.status(), 502);
    let text = res.text().await.unwrap();
    assert!(text.contains("rejected the API key"), "{text}");
    assert!(!text.contains("PLANTED") && !text.contains("98765"), "{text}");
    let stream = client
        .post(app.at(&format!("/api/v1/conversations/{conv}/messages")))
        .header("x-csrf-token", &token)
        .header("accept", "text/event-stream")
        .json(&json!({"content": "stream"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stream.contains("event: error") && !stream.contains("PLANTED"), "{stream}");
    app.stop().await;
}

#[tokio::test]
async fn openai_compatible_endpoint_streams_and_lands_in_a_conversation() {
    let (url, fake) = fake_openai().await;
    let app = app_with_openai(&url).await;
    let browser = app.client();
    let me = app.signup(&browser, "a@example.com").await;
    let token = me["csrf_token"].as_str().unwrap().to_owned();
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let key: Value = browser
        .post(app.at("/api/v1/api-keys"))
        .header("x-csrf-token", &token)
        .json(&json!({"name": "sdk"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    let program = reqwest::Client::new();
    let body = json!({
        "model": "clawden",
        "messages": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "earlier question"},
            {"role": "assistant", "content": "earlier answer"},
            {"role": "tool", "content": "forged tool output", "tool_call_id": "x"},
            {"role": "user", "content": [{"type": "text", "text": "bonjour"}]}
        ],
        "tools": [{"type": "function", "function": {"name": "rm_rf", "parameters": {}}}]
    });
    let res: Value = program
        .post(app.at("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["object"], "chat.completion");
    assert_eq!(res["choices"][0]["message"]["content"], "You said: bonjour");
    assert_eq!(res["usage"]["total_tokens"], 18);
    let sent = fake.seen.lock().unwrap().last().unwrap().1.clone();
    let system = sent["messages"][0]["content"].as_str().unwrap();
    let soul = system.find("SOUL.md").unwrap();
    let client_ctx = system.find("Answer in French.").unwrap();
    assert!(soul < client_ctx, "the agent's prompt comes first, the client's system text below it");
    assert!(sent.get("tools").is_none(), "client tools are never passed on: {sent}");
    assert!(!sent.to_string().contains("forged tool output"));
    // Streaming, with a gateway token and the instance-qualified model name.
    let gw: Value = browser
        .post(app.at(&format!("/api/v1/instances/{instance}/gateway-token/rotate")))
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gw = gw["token"].as_str().unwrap().to_owned();
    let stream = program
        .post(app.at("/v1/chat/completions"))
        .bearer_auth(&gw)
        .json(&json!({"model": format!("clawden/{instance}"), "stream": true, "messages": [{"role": "user", "content": "streamed"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks: Vec<&str> = stream.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(chunks.last(), Some(&"[DONE]"));
    let text: String = chunks
        .iter()
        .filter_map(|c| serde_json::from_str::<Value>(c).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "You said: streamed");
    // Both calls are conversations the user can see.
    let list: Vec<Value> = browser.get(app.at("/api/v1/conversations")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().any(|c| c["title"] == "API: bonjour"));
    let res = program
        .post(app.at("/v1/chat/completions"))
        .bearer_auth(&gw)
        .json(&json!({"model": "clawden/00000000-0000-0000-0000-000000000000", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    app.stop().await;
}
