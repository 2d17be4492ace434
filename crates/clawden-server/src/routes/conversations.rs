//! `/api/v1/conversations`: the caller's own conversations and their messages. Sending a
//! message answers with the reply as JSON, or streams it as server-sent events.

use crate::audit;
use crate::auth::Authed;
use crate::chat::turn_error;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use clawden_agent::provider::ChatMessage;
use clawden_agent::runtime::{decode_message, TurnEvent};
use clawden_core::{ConversationId, InstanceId, Role};
use clawden_store::{AuditChain, Conversation, StoreError, StoredMessage};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;

/// A conversation as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationBody {
    #[schema(value_type = String)]
    id: ConversationId,
    #[schema(value_type = String)]
    instance_id: InstanceId,
    title: String,
    created_at: i64,
    updated_at: i64,
}

impl From<Conversation> for ConversationBody {
    fn from(c: Conversation) -> Self {
        Self {
            id: c.id,
            instance_id: c.instance_id,
            title: c.title,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A message as shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageBody {
    id: String,
    seq: i64,
    /// `user`, `assistant` or `tool`.
    role: String,
    content: String,
    created_at: i64,
    /// The tool calls an assistant message made.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallBody>,
    /// For a `tool` message: the call it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    call_id: Option<String>,
    /// For a `tool` message: whether the tool failed or was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    is_error: Option<bool>,
}

/// A tool call as shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ToolCallBody {
    /// The call's id.
    pub id: String,
    /// The tool.
    pub name: String,
    /// Its arguments.
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
}

impl MessageBody {
    /// `user`, `assistant` or `tool`.
    pub fn role_name(&self) -> &str {
        &self.role
    }

    /// The message text.
    pub fn text(&self) -> &str {
        &self.content
    }

    /// The tool calls of an assistant message.
    pub fn tool_calls(&self) -> &[ToolCallBody] {
        &self.tool_calls
    }

    /// For a `tool` message: the id of the call it answers.
    pub fn call_id(&self) -> Option<&str> {
        self.call_id.as_deref()
    }

    /// Whether a `tool` message reports a failure.
    pub fn is_error(&self) -> bool {
        self.is_error == Some(true)
    }
}

impl From<&StoredMessage> for MessageBody {
    fn from(m: &StoredMessage) -> Self {
        let mut body = Self {
            id: m.id.clone(),
            seq: m.seq,
            role: m.role.clone(),
            content: String::new(),
            created_at: m.created_at,
            tool_calls: Vec::new(),
            call_id: None,
            is_error: None,
        };
        match decode_message(&m.body) {
            Some(ChatMessage::User { content }) => body.content = content,
            Some(ChatMessage::Assistant { content, tool_calls }) => {
                body.content = content;
                body.tool_calls = tool_calls
                    .into_iter()
                    .map(|c| ToolCallBody { id: c.id, name: c.name, arguments: c.arguments })
                    .collect();
            }
            Some(ChatMessage::ToolResult { call_id, content, is_error }) => {
                body.content = content;
                body.call_id = Some(call_id);
                body.is_error = Some(is_error);
            }
            None => {}
        }
        body
    }
}

/// The caller's conversations, newest first.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "chat", responses((status = 200, body = [ConversationBody])))]
pub async fn list(
    State(state): State<AppState>,
    Authed(auth): Authed,
) -> Result<Json<Vec<ConversationBody>>, ApiError> {
    Ok(Json(state.store.conversations(&auth.principal()).await?.into_iter().map(Into::into).collect()))
}

/// A new conversation.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct NewConversation {
    /// The agent to talk to; default: the caller's own (first owned) instance.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    instance_id: Option<InstanceId>,
    #[serde(default)]
    title: Option<String>,
}

/// Created.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedBody {
    #[schema(value_type = String)]
    id: ConversationId,
}

/// The caller's default instance: the first they own, else the first they belong to.
pub(crate) async fn default_instance(state: &AppState, auth: &crate::auth::Auth) -> Result<InstanceId, ApiError> {
    let memberships = state.store.memberships(&auth.principal()).await?;
    memberships
        .iter()
        .find(|m| m.role == Role::Owner)
        .or_else(|| memberships.first())
        .map(|m| m.id)
        .ok_or_else(|| ApiError::bad_request("no_instance", "you belong to no instance"))
}

/// Creates a conversation (and checks the per-user cap).
pub(crate) async fn create_conversation(
    state: &AppState,
    auth: &crate::auth::Auth,
    instance: Option<InstanceId>,
    title: Option<&str>,
) -> Result<Conversation, ApiError> {
    let instance = match instance {
        Some(i) => i,
        None => default_instance(state, auth).await?,
    };
    let title: String =
        title.map(str::trim).filter(|t| !t.is_empty()).unwrap_or("New conversation").chars().take(200).collect();
    let max = state.settings.chat.conversations_per_user;
    match state.store.create_conversation(&auth.principal(), instance, &title, max, state.now()).await {
        Err(StoreError::LimitReached(_)) => Err(ApiError::bad_request(
            "too_many_conversations",
            format!("at most {max} conversations; delete some first"),
        )),
        other => Ok(other?),
    }
}

/// Starts a conversation with one of the caller's instances.
#[utoipa::path(post, path = "/api/v1/conversations", tag = "chat", request_body = NewConversation,
    responses((status = 201, body = CreatedBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Authed(auth): Authed,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CreatedBody>), ApiError> {
    // The body is optional: no body means the defaults.
    let req: NewConversation = if body.iter().all(u8::is_ascii_whitespace) {
        NewConversation::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|_| ApiError::bad_request("invalid_json", "the body is not valid JSON"))?
    };
    let conversation = create_conversation(&state, &auth, req.instance_id, req.title.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(CreatedBody { id: conversation.id })))
}

/// Deletes all of the caller's conversations (clear history).
#[utoipa::path(delete, path = "/api/v1/conversations", tag = "chat", responses((status = 204)))]
pub async fn delete_all(State(state): State<AppState>, Authed(auth): Authed) -> Result<StatusCode, ApiError> {
    let ev =
        audit::success(&state, auth.ip, AuditChain::Account(auth.user.id), Some(auth.user.id), "conversation.clear");
    state.store.delete_conversations(&auth.principal(), None, ev).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes one of the caller's conversations.
#[utoipa::path(delete, path = "/api/v1/conversations/{id}", tag = "chat", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_one(
    State(state): State<AppState>,
    Authed(auth): Authed,
    ApiPath(id): ApiPath<ConversationId>,
) -> Result<StatusCode, ApiError> {
    let ev =
        audit::success(&state, auth.ip, AuditChain::Account(auth.user.id), Some(auth.user.id), "conversation.delete");
    match state.store.delete_conversations(&auth.principal(), Some(id), ev).await? {
        0 => Err(ApiError::not_found()),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

/// The messages of one of the caller's conversations, oldest first (the last 500).
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", tag = "chat", params(("id" = String, Path)),
    responses((status = 200, body = [MessageBody]), (status = 404, body = crate::error::ErrorBody)))]
pub async fn messages(
    State(state): State<AppState>,
    Authed(auth): Authed,
    ApiPath(id): ApiPath<ConversationId>,
) -> Result<Json<Vec<MessageBody>>, ApiError> {
    let stored = state.store.messages(&auth.principal(), id, 500).await?;
    Ok(Json(stored.iter().map(MessageBody::from).collect()))
}

/// A message to send.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SendRequest {
    content: String,
}

/// The stored message and the agent's reply.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SendBody {
    message: MessageBody,
    reply: MessageBody,
}

fn wants_stream(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"))
}

/// A turn still waiting for an approval when the request is answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WaitingBody {
    /// `waiting_for_approval`.
    status: &'static str,
    /// The approval it waits for.
    #[schema(value_type = String)]
    approval_id: clawden_core::ApprovalId,
    /// The stored message.
    message: MessageBody,
}

/// The server-sent event of a turn event (`None` for the end events, handled by the caller).
pub fn turn_event_sse(event: &TurnEvent) -> Option<Event> {
    let data = match event {
        TurnEvent::Delta(text) => ("delta", serde_json::json!({"text": text})),
        TurnEvent::ToolCall(call) => {
            ("tool_call", serde_json::json!({"id": call.id, "name": call.name, "arguments": call.arguments}))
        }
        TurnEvent::ApprovalRequired(a) => ("approval_required", approval_json(a)),
        TurnEvent::ToolResult { call_id, tool, content, is_error } => (
            "tool_result",
            serde_json::json!({"call_id": call_id, "tool": tool, "content": content, "is_error": is_error}),
        ),
        TurnEvent::Finished { .. } | TurnEvent::Failed { .. } => return None,
    };
    Some(Event::default().event(data.0).json_data(data.1).unwrap_or_default())
}

/// An approval as clients see it (the arguments included: the decider must see what runs).
pub fn approval_json(a: &clawden_store::Approval) -> serde_json::Value {
    serde_json::json!({
        "id": a.id,
        "instance_id": a.instance_id,
        "conversation_id": a.conversation_id,
        "user_id": a.user_id,
        "tool": a.tool,
        "digest": a.digest,
        "arguments": serde_json::from_str::<serde_json::Value>(&a.arguments).unwrap_or(serde_json::Value::Null),
        "status": a.status,
        "always": a.always,
        "created_at": a.created_at,
        "expires_at": a.expires_at,
        "decided_at": a.decided_at,
        "decided_by": a.decided_by,
    })
}

/// Sends a message and answers with the agent's reply. The message is stored (and counted)
/// before the provider is called. With `Accept: text/event-stream` the reply streams as
/// server-sent events: `message` (the stored message), `delta` (text), `tool_call`,
/// `approval_required` and `tool_result` while the agent uses tools, then `done` or `error`.
/// Without streaming, a turn still waiting for an approval after 30 s (a setting) answers
/// 202 `waiting_for_approval`; it finishes in the background and its reply reaches the
/// user's WebSockets.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "chat", params(("id" = String, Path)), request_body = SendRequest,
    responses((status = 200, body = SendBody), (status = 202, body = WaitingBody), (status = 404, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody)))]
pub async fn send(
    State(state): State<AppState>,
    Authed(auth): Authed,
    ApiPath(id): ApiPath<ConversationId>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SendRequest>,
) -> Result<Response, ApiError> {
    let user = auth.user.id;
    let conversation = state.store.conversation(&auth.principal(), id).await?.ok_or_else(ApiError::not_found)?;
    state.chat.burst(user)?;
    let slot = state.chat.stream_slot(user, state.settings.chat.concurrent_streams_per_user)?;
    let message = state.runtime.accept(user, &conversation, &req.content).await.map_err(turn_error)?;
    let mut events = state.runtime.respond(user, conversation, Vec::new());
    let message = MessageBody::from(&message);
    if wants_stream(&headers) {
        let stream = async_stream::stream! {
            let _slot = slot;
            yield Ok::<_, Infallible>(Event::default().event("message").json_data(&message).unwrap_or_default());
            while let Some(event) = events.recv().await {
                match event {
                    TurnEvent::Finished { reply, .. } => {
                        yield Ok(Event::default().event("done").json_data(MessageBody::from(&reply)).unwrap_or_default());
                        break;
                    }
                    TurnEvent::Failed { code, message } => {
                        yield Ok(Event::default().event("error").json_data(serde_json::json!({"code": code, "message": message})).unwrap_or_default());
                        break;
                    }
                    other => {
                        if let Some(sse) = turn_event_sse(&other) {
                            yield Ok(sse);
                        }
                    }
                }
            }
        };
        return Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response());
    }
    let mut waiting: Option<(clawden_core::ApprovalId, tokio::time::Instant)> = None;
    let answer_after = state.settings.tools.approval_response_after;
    loop {
        let next = match waiting {
            Some((_, deadline)) => match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => events.recv().await,
        };
        match next {
            None => return Err(ApiError::internal("the turn ended without a result")),
            Some(TurnEvent::Finished { reply, .. }) => {
                return Ok(Json(SendBody { message, reply: MessageBody::from(&reply) }).into_response());
            }
            Some(TurnEvent::Failed { code, message }) => {
                return Err(ApiError::new(StatusCode::BAD_GATEWAY, code, message));
            }
            Some(TurnEvent::ApprovalRequired(a)) => {
                waiting = Some((a.id, tokio::time::Instant::now() + answer_after));
            }
            Some(TurnEvent::ToolResult { .. }) => waiting = None,
            Some(_) => {}
        }
    }
    // Still waiting: answer now, finish in the background.
    let approval_id = waiting.map(|(a, _)| a).ok_or_else(|| ApiError::internal("no approval to wait for"))?;
    crate::chat::finish_in_background(&state.chat, user, id, events, slot);
    Ok((StatusCode::ACCEPTED, Json(WaitingBody { status: "waiting_for_approval", approval_id, message }))
        .into_response())
}
