//! Chat over the WebSocket: authentication in the first frame, its timeout, streaming replies,
//! and gateway-token rotation notices.

#![allow(clippy::unwrap_used)]

mod common;

use clawden_store::testing::TestDb;
use common::TestApp;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestApp) -> Socket {
    let url = app.url.replace("http://", "ws://") + "/api/v1/ws";
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next JSON frame (pings skipped), within 10 s.
async fn next_json(ws: &mut Socket) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.ok()??.ok()?;
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).ok(),
            Message::Close(frame) => return Some(json!({"type": "closed", "code": frame.map(|f| u16::from(f.code))})),
            _ => continue,
        }
    }
}

async fn setup(app: &TestApp) -> (String, String, String) {
    let browser = app.client();
    let me = app.signup(&browser, "ws@example.com").await;
    let token = me["csrf_token"].as_str().unwrap().to_owned();
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let key: Value = browser
        .post(app.at("/api/v1/api-keys"))
        .header("x-csrf-token", &token)
        .json(&json!({"name": "ws"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conv: Value = browser
        .post(app.at("/api/v1/conversations"))
        .header("x-csrf-token", &token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (key["key"].as_str().unwrap().to_owned(), conv["id"].as_str().unwrap().to_owned(), instance)
}

#[tokio::test]
async fn websocket_chat_streams_after_first_frame_auth() {
    let app = TestApp::spawn().await;
    let (key, conv, _) = setup(&app).await;
    let mut ws = connect(&app).await;
    ws.send(Message::Text(json!({"type": "auth", "token": key}).to_string().into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "ready");
    ws.send(Message::Text(
        json!({"type": "chat", "conversation_id": conv, "content": "over the socket"}).to_string().into(),
    ))
    .await
    .unwrap();
    let accepted = next_json(&mut ws).await.unwrap();
    assert_eq!(accepted["type"], "accepted");
    assert_eq!(accepted["message"]["content"], "over the socket");
    let mut text = String::new();
    loop {
        let frame = next_json(&mut ws).await.unwrap();
        match frame["type"].as_str().unwrap() {
            "delta" => text.push_str(frame["text"].as_str().unwrap()),
            "done" => {
                assert_eq!(frame["reply"]["content"].as_str().unwrap(), text);
                break;
            }
            other => panic!("unexpected frame {other}: {frame}"),
        }
    }
    assert!(text.contains("over the socket"));
    ws.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "pong");
    ws.send(Message::Text("{\"type\": \"bogus\"}".into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await.unwrap()["code"], "invalid_frame");
    app.stop().await;
}

#[tokio::test]
async fn websocket_without_auth_is_closed_after_the_timeout() {
    let app =
        TestApp::spawn_with(TestDb::sqlite(), |s| s.chat.websocket_auth_timeout = Duration::from_millis(300)).await;
    let mut silent = connect(&app).await;
    let started = std::time::Instant::now();
    let closed = next_json(&mut silent).await.unwrap();
    assert_eq!(closed, json!({"type": "closed", "code": 4401}));
    assert!(started.elapsed() < Duration::from_secs(5));
    // A wrong credential is refused the same way.
    let mut wrong = connect(&app).await;
    wrong
        .send(Message::Text(json!({"type": "auth", "token": "cd_not-a-real-key-0000000000000"}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut wrong).await.unwrap()["code"], 4401);
    // Chat before auth is not auth.
    let mut eager = connect(&app).await;
    eager.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.unwrap();
    assert_eq!(next_json(&mut eager).await.unwrap()["code"], 4401);
    app.stop().await;
}

#[tokio::test]
async fn gateway_token_clients_hear_of_scheduled_rotation() {
    let app = TestApp::spawn_with(TestDb::sqlite(), |s| {
        s.gateway.rotate_every = Duration::from_secs(3600);
        s.gateway.overlap = Duration::from_secs(60);
    })
    .await;
    let (_, _, instance) = setup(&app).await;
    let browser = app.client();
    app.login(&browser, "ws@example.com", common::PASSWORD).await;
    let me: Value = browser.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
    let gw: Value = browser
        .post(app.at(&format!("/api/v1/instances/{instance}/gateway-token/rotate")))
        .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ws = connect(&app).await;
    ws.send(Message::Text(json!({"type": "auth", "token": gw["token"]}).to_string().into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "ready");
    app.clock.advance_secs(3601);
    assert_eq!(clawden_server::gateway::rotate_due(&app.state).await.unwrap(), 1);
    let notice = next_json(&mut ws).await.unwrap();
    assert_eq!(notice["type"], "gateway_token_rotated");
    assert_eq!(notice["instance_id"], instance);
    let fresh = notice["token"].as_str().unwrap();
    assert!(fresh.starts_with("cdg_") && fresh != gw["token"].as_str().unwrap());
    let models = reqwest::Client::new().get(app.at("/v1/models")).bearer_auth(fresh).send().await.unwrap();
    assert_eq!(models.status(), 200);
    app.stop().await;
}
