//! `GET /api/v1/ws`: chat over a WebSocket. A browser is authenticated by its session cookie
//! (the `Origin` must be this server); a program sends its bearer credential in the first frame
//! (`{"type":"auth","token":"…"}`) — never in the URL — within the authentication timeout.
//!
//! Client frames: `{"type":"chat","conversation_id","content"}`, `{"type":"ping"}`.
//! Server frames: `accepted`, `delta`, `tool_call`, `approval_required`, `tool_result`,
//! `done`, `error`, `pong`; `gateway_token_rotated` for instances the caller owns;
//! `approval_required` and `approval_decided` for every approval of instances the caller owns
//! or administers; and `done` for a turn that finished in the background after a 202. Outgoing frames go through a bounded queue: a client that
//! does not read is disconnected rather than buffered without end.

use crate::auth::{authenticate_bearer, Auth, MaybeAuthed};
use crate::chat::turn_error;
use crate::client_ip::ClientIp;
use crate::error::ApiError;
use crate::routes::conversations::{approval_json, MessageBody};
use crate::state::AppState;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use clawden_agent::runtime::TurnEvent;
use clawden_core::{ConversationId, Role};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;

const MAX_FRAME_BYTES: usize = 256 * 1024;
const OUTGOING_QUEUE: usize = 256;
const PING_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Auth { token: String },
    Chat { conversation_id: ConversationId, content: String },
    Ping,
}

fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => origin.split_once("://").is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host)),
    }
}

/// Opens a chat WebSocket.
#[utoipa::path(get, path = "/api/v1/ws", tag = "chat", responses((status = 101, description = "switching to the WebSocket protocol"),
    (status = 403, body = crate::error::ErrorBody)))]
pub async fn ws(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    ip: ClientIp,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !same_origin(&headers) {
        return ApiError::forbidden("cross_origin", "cross-site WebSocket connections are not accepted")
            .into_response();
    }
    upgrade.max_message_size(MAX_FRAME_BYTES).on_upgrade(move |socket| session(state, socket, auth, ip))
}

fn frame(value: Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

async fn close(mut socket: WebSocket, code: u16, reason: &'static str) {
    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))).await;
}

/// Waits for the first frame to carry a bearer credential.
async fn authenticate(state: &AppState, socket: &mut WebSocket, ip: ClientIp) -> Option<Auth> {
    let first = tokio::time::timeout(state.settings.chat.websocket_auth_timeout, socket.next()).await.ok()??.ok()?;
    let Message::Text(text) = first else { return None };
    match serde_json::from_str::<ClientFrame>(text.as_str()).ok()? {
        ClientFrame::Auth { token } => authenticate_bearer(state, &token, "/api/v1/ws", ip).await.ok(),
        _ => None,
    }
}

async fn session(state: AppState, mut socket: WebSocket, auth: Option<Auth>, ip: ClientIp) {
    let auth = match auth {
        Some(auth) => auth,
        None => match authenticate(&state, &mut socket, ip).await {
            Some(auth) => auth,
            None => return close(socket, 4401, "authentication required").await,
        },
    };
    let user = auth.user.id;
    let Some(_slot) = state.chat.sockets.take(user, state.settings.chat.websockets_per_user) else {
        return close(socket, 4429, "too many connections").await;
    };
    let (mut sink, mut incoming) = socket.split();
    let (out, mut queue) = mpsc::channel::<Message>(OUTGOING_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(message) = queue.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let _ = out.try_send(frame(json!({"type": "ready", "user_id": user})));
    let mut notices = state.notices.0.subscribe();
    let mut background = state.chat.background.subscribe();
    let mut approvals = match state.runtime.approvals() {
        Some(hub) => hub.subscribe(),
        // No hub: a receiver that never yields.
        None => tokio::sync::broadcast::channel(1).1,
    };
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            received = incoming.next() => {
                let Some(Ok(message)) = received else { break };
                let text = match message {
                    Message::Text(text) => text,
                    Message::Close(_) => break,
                    _ => continue,
                };
                let reply = match serde_json::from_str::<ClientFrame>(text.as_str()) {
                    Ok(ClientFrame::Ping) => Some(json!({"type": "pong"})),
                    Ok(ClientFrame::Auth { .. }) => Some(json!({"type": "error", "code": "already_authenticated", "message": "this connection is authenticated"})),
                    Ok(ClientFrame::Chat { conversation_id, content }) => {
                        tokio::spawn(chat(state.clone(), auth.clone(), conversation_id, content, out.clone()));
                        None
                    }
                    Err(_) => Some(json!({"type": "error", "code": "invalid_frame", "message": "frames are JSON objects with a known `type`"})),
                };
                if let Some(reply) = reply {
                    if out.try_send(frame(reply)).is_err() {
                        break;
                    }
                }
            }
            notice = notices.recv() => {
                let Ok(notice) = notice else { continue };
                let owns = match auth.gateway_instance() {
                    Some(only) => only == notice.instance,
                    None => state.store.role_in(&auth.principal(), notice.instance).await.ok().flatten() == Some(Role::Owner),
                };
                if owns {
                    let value = json!({"type": "gateway_token_rotated", "instance_id": notice.instance,
                        "token": notice.token.expose(), "previous_valid_until": notice.overlap_until});
                    if out.try_send(frame(value)).is_err() {
                        break;
                    }
                }
            }
            reply = background.recv() => {
                let Ok(reply) = reply else { continue };
                if reply.user != user {
                    continue;
                }
                let value = match reply.outcome {
                    Ok(message) => json!({"type": "done", "conversation_id": reply.conversation,
                        "reply": MessageBody::from(&message)}),
                    Err((code, message)) => json!({"type": "error", "conversation_id": reply.conversation,
                        "code": code, "message": message}),
                };
                if out.try_send(frame(value)).is_err() {
                    break;
                }
            }
            approval = approvals.recv() => {
                let Ok(approval) = approval else { continue };
                // Owners and admins of the instance see its approvals (a gateway token acts as
                // the owner of its own instance only).
                let decider = match auth.gateway_instance() {
                    Some(only) => only == approval.instance_id,
                    None => matches!(
                        state.store.role_in(&auth.principal(), approval.instance_id).await.ok().flatten(),
                        Some(Role::Owner | Role::Admin)
                    ),
                };
                if decider {
                    let kind = if approval.status == clawden_store::ApprovalStatus::Pending { "approval_required" } else { "approval_decided" };
                    if out.try_send(frame(json!({"type": kind, "approval": approval_json(&approval)}))).is_err() {
                        break;
                    }
                }
            }
            _ = ping.tick() => {
                if out.try_send(Message::Ping(Default::default())).is_err() {
                    break;
                }
            }
        }
    }
    drop(out);
    let _ = writer.await;
}

/// Runs one chat turn for a WebSocket, forwarding its events. A full queue (a client that
/// does not read) ends the forwarding; the turn still finishes and is stored.
async fn chat(state: AppState, auth: Auth, id: ConversationId, content: String, out: mpsc::Sender<Message>) {
    let user = auth.user.id;
    let send_error =
        |e: ApiError| frame(json!({"type": "error", "conversation_id": id, "code": e.code(), "message": e.message()}));
    let conversation = match state.store.conversation(&auth.principal(), id).await {
        Ok(Some(c)) => c,
        Ok(None) => return drop(out.try_send(send_error(ApiError::not_found()))),
        Err(e) => return drop(out.try_send(send_error(e.into()))),
    };
    if let Err(e) = state.chat.burst(user) {
        return drop(out.try_send(send_error(e)));
    }
    let _slot = match state.chat.stream_slot(user, state.settings.chat.concurrent_streams_per_user) {
        Ok(slot) => slot,
        Err(e) => return drop(out.try_send(send_error(e))),
    };
    let message = match state.runtime.accept(user, &conversation, &content).await {
        Ok(m) => m,
        Err(e) => return drop(out.try_send(send_error(turn_error(e)))),
    };
    if out
        .try_send(frame(json!({"type": "accepted", "conversation_id": id, "message": MessageBody::from(&message)})))
        .is_err()
    {
        return;
    }
    let mut events = state.runtime.respond(user, conversation, Vec::new());
    while let Some(event) = events.recv().await {
        let value = match event {
            TurnEvent::Delta(text) => json!({"type": "delta", "conversation_id": id, "text": text}),
            TurnEvent::Finished { reply, .. } => {
                json!({"type": "done", "conversation_id": id, "reply": MessageBody::from(&reply)})
            }
            TurnEvent::Failed { code, message } => {
                json!({"type": "error", "conversation_id": id, "code": code, "message": message})
            }
            TurnEvent::ToolCall(call) => json!({"type": "tool_call", "conversation_id": id,
                "call": {"id": call.id, "name": call.name, "arguments": call.arguments}}),
            TurnEvent::ApprovalRequired(a) => {
                json!({"type": "approval_required", "conversation_id": id, "approval": approval_json(&a)})
            }
            TurnEvent::ToolResult { call_id, tool, content, is_error } => json!({"type": "tool_result",
                "conversation_id": id, "call_id": call_id, "tool": tool, "content": content, "is_error": is_error}),
        };
        if out.try_send(frame(value)).is_err() {
            return;
        }
    }
}
