//! The agent-loop harness shared by `tests/agent_tools.rs` and `benches/agent_tools.rs`: a real
//! server with real sandboxes, and a local fake provider that speaks OpenAI's streaming Chat
//! Completions format and is scripted to ask for tools.
//!
//! The script is the user's message: `{"calls": [{"name": …, "arguments": {…}}, …]}`. The
//! fake asks for one call per round, in order, and once every call has a result (or tools were
//! taken away) it answers with the results it was sent (`RESULT: …` lines), so a caller reads
//! what the model saw.

#![allow(dead_code, clippy::unwrap_used)]

use clawden_core::{FixedClock, Outcome, Principal, Tier, UserId};
use clawden_server::{AppState, Server, Settings};
use clawden_store::{AuditChain, AuditEvent};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[path = "sandbox.rs"]
mod sandbox;
pub use sandbox::sandbox_available;

pub const PASSWORD: &str = "violet-kettle-sings";

/// Every request body the fake provider received.
pub type Seen = Arc<Mutex<Vec<Value>>>;

pub fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

/// What the scripted model does next, given the request.
pub fn scripted_reply(body: &Value) -> String {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last_user = messages.iter().rposition(|m| m["role"] == "user").unwrap_or(0);
    let script: Value =
        serde_json::from_str(messages.get(last_user).and_then(|m| m["content"].as_str()).unwrap_or("{}"))
            .unwrap_or(json!({}));
    let calls = script["calls"].as_array().cloned().unwrap_or_default();
    let results: Vec<String> = messages[last_user..]
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    let mut events = Vec::new();
    // Like a well-behaved model: once tools are taken away after some results, it answers.
    let answer_now = body.get("tools").is_none() && !results.is_empty();
    if let Some(call) = calls.get(results.len()).filter(|_| !answer_now) {
        events.push(chunk(json!({"role": "assistant", "content": ""}), Value::Null));
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": format!("call_{}", results.len()), "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"].to_string()}}]}),
            Value::Null,
        ));
        events.push(chunk(json!({}), json!("tool_calls")));
    } else {
        let text: String = results.iter().map(|r| format!("RESULT: {r}\n")).collect();
        let text = if text.is_empty() { "no tools were used".to_owned() } else { text };
        events.push(chunk(json!({"role": "assistant", "content": text}), Value::Null));
        events.push(chunk(json!({}), json!("stop")));
    }
    events.push(json!({"id": "c1", "object": "chat.completion.chunk", "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}));
    let mut out = String::new();
    for e in events {
        out.push_str(&format!("data: {e}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out
}

pub async fn fake_provider() -> (String, Seen) {
    use axum::response::IntoResponse;
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: axum::Json<Value>| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(body.0.clone());
                ([(axum::http::header::CONTENT_TYPE, "text/event-stream")], scripted_reply(&body.0)).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

pub struct App {
    pub url: String,
    provider: String,
    pub state: AppState,
    pub seen: Seen,
    _data: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A user of the app: their client (with cookie), CSRF token, id and instance.
pub struct User {
    pub client: reqwest::Client,
    pub csrf: String,
    pub instance: String,
}

impl App {
    pub async fn start(tweak: impl FnOnce(&mut Settings)) -> App {
        let (provider, seen) = fake_provider().await;
        let provider_url = provider.clone();
        let data = tempfile::tempdir().unwrap();
        let mut settings = Settings {
            data_dir: data.path().join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            provider: Some("openai".into()),
            openai_base_url: Some(provider),
            openai_api_key: Some("sk-platform-key-for-tests-0001".to_owned().into()),
            model: Some("gpt-test".into()),
            ..Settings::default()
        };
        settings.sandbox.helper = Some(env!("CARGO_BIN_EXE_clawden").into());
        settings.sandbox.admin_socket = false;
        settings.sandbox.idle_timeout = Duration::from_secs(20);
        settings.tools.approval_timeout = Duration::from_secs(20);
        settings.tools.approval_poll_interval = Duration::from_millis(200);
        settings.chat.messages_per_minute = 1000;
        tweak(&mut settings);
        let listener = std::net::TcpListener::bind(settings.listen).unwrap();
        let clock = FixedClock::at(1_800_000_000_000);
        let server = Server::build_with_clock(settings, listener, Arc::new(clock)).await.unwrap();
        let url = server.url();
        let state = server.state().clone();
        assert!(state.sandbox.is_some(), "the sandbox manager did not start: {:?}", state.sandbox_unavailable);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        App { url, provider: provider_url, state, seen, _data: data, stop: Some(stop), task: Some(task) }
    }

    /// The fake provider's base URL.
    pub fn provider_url(&self) -> &str {
        &self.provider
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn user(&self, email: &str, tier: Tier) -> User {
        let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
        let res = client
            .post(self.at("/api/v1/auth/signup"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let me: Value = res.json().await.unwrap();
        let id: UserId = me["id"].as_str().unwrap().parse().unwrap();
        if tier == Tier::Invite {
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
            self.state.store.set_tier(&Principal::System, id, Tier::Invite, audit).await.unwrap();
        }
        User {
            client,
            csrf: me["csrf_token"].as_str().unwrap().to_owned(),
            instance: me["instances"][0]["id"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn set_policy(&self, user: &User, policy: Value) {
        let res = user
            .client
            .put(self.at(&format!("/api/v1/instances/{}/policy", user.instance)))
            .header("x-csrf-token", &user.csrf)
            .json(&policy)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }

    pub async fn conversation(&self, user: &User) -> String {
        let res = user
            .client
            .post(self.at("/api/v1/conversations"))
            .header("x-csrf-token", &user.csrf)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
    }

    /// Sends a scripted message (non-streaming) and returns the response.
    pub async fn send(&self, user: &User, conversation: &str, calls: Value) -> reqwest::Response {
        user.client
            .post(self.at(&format!("/api/v1/conversations/{conversation}/messages")))
            .header("x-csrf-token", &user.csrf)
            .json(&json!({"content": json!({"calls": calls}).to_string()}))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap()
    }

    /// The reply text of a 200 send.
    pub async fn reply(&self, res: reqwest::Response) -> String {
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body["reply"]["content"].as_str().unwrap().to_owned()
    }

    /// Waits (bounded) for one pending approval the user can see, and returns it.
    pub async fn pending(&self, user: &User, count: usize) -> Vec<Value> {
        for _ in 0..200 {
            let list: Vec<Value> =
                user.client.get(self.at("/api/v1/approvals")).send().await.unwrap().json().await.unwrap();
            if list.len() >= count {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no pending approval appeared");
    }

    /// Waits (bounded) until the first pending approval is another than `id`, and returns the
    /// list (the last one seen if it never changes).
    pub async fn next_pending_other_than(&self, user: &User, id: &str) -> Vec<Value> {
        let mut list = Vec::new();
        for _ in 0..200 {
            list = self.pending(user, 1).await;
            if list[0]["id"] != id {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        list
    }

    pub async fn decide(&self, user: &User, id: &str, body: Value) -> reqwest::Response {
        user.client
            .post(self.at(&format!("/api/v1/approvals/{id}")))
            .header("x-csrf-token", &user.csrf)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
        }
    }
}

/// Sends a scripted message from `user` in a task of its own (while the test decides its
/// approvals); the task ends with the reply text of the 200 response.
pub fn spawn_turn(app: &Arc<App>, user: &Arc<User>, conversation: &str, calls: Value) -> JoinHandle<String> {
    let (app, user, conversation) = (app.clone(), user.clone(), conversation.to_owned());
    tokio::spawn(async move {
        let res = app.send(&user, &conversation, calls).await;
        app.reply(res).await
    })
}

pub fn tool_names(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|tools| tools.iter().map(|t| t["function"]["name"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}
