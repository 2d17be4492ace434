//! `POST /v1/chat/completions`: OpenAI's Chat Completions wire format, so every OpenAI SDK and
//! chat UI works as a client of the caller's agent. The agent's own system prompt always comes
//! first; the client's `system` messages are added below it as user-supplied context; client
//! tool definitions and `tool` messages are ignored (tools run only server-side). Each call
//! lands in a conversation the user can see.

use crate::auth::Authed;
use crate::chat::turn_error;
use crate::error::{ApiError, ApiJson};
use crate::routes::conversations::{create_conversation, default_instance};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use clawden_agent::context::{from_client_messages, ClientMessage, ClientRole};
use clawden_agent::provider::ChatMessage;
use clawden_agent::runtime::TurnEvent;
use clawden_core::InstanceId;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;

/// Most messages accepted in one request.
const MAX_CLIENT_MESSAGES: usize = 500;

/// The part of OpenAI's request clawden reads; other fields are accepted and ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CompletionRequest {
    /// `clawden` or `clawden/<instance id>`.
    model: String,
    /// The conversation as the client holds it.
    #[schema(value_type = Vec<Object>)]
    messages: Vec<Value>,
    #[serde(default)]
    stream: bool,
}

/// Text of an OpenAI message content: a string, or the text parts of an array.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

async fn instance_for_model(state: &AppState, auth: &crate::auth::Auth, model: &str) -> Result<InstanceId, ApiError> {
    let unknown = || ApiError::bad_request("model_not_found", "model must be `clawden` or `clawden/<instance id>`");
    let wanted = match model {
        "clawden" => None,
        other => Some(other.strip_prefix("clawden/").and_then(|id| id.parse::<InstanceId>().ok()).ok_or_else(unknown)?),
    };
    match (auth.gateway_instance(), wanted) {
        (Some(only), None) => Ok(only),
        (Some(only), Some(w)) if w == only => Ok(only),
        (Some(_), Some(_)) => Err(ApiError::not_found()),
        (None, None) => default_instance(state, auth).await,
        (None, Some(w)) => {
            state.store.role_in(&auth.principal(), w).await?.ok_or_else(ApiError::not_found)?;
            Ok(w)
        }
    }
}

/// Chat with the caller's agent in OpenAI's format, streamed (`stream: true`) or not.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = CompletionRequest,
    responses((status = 200, description = "a chat.completion, or chat.completion.chunk events"), (status = 400, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody)))]
pub async fn completions(
    State(state): State<AppState>,
    Authed(auth): Authed,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    if req.messages.is_empty() || req.messages.len() > MAX_CLIENT_MESSAGES {
        return Err(ApiError::bad_request("invalid_messages", format!("send 1 to {MAX_CLIENT_MESSAGES} messages")));
    }
    let instance = instance_for_model(&state, &auth, &req.model).await?;
    let client: Vec<ClientMessage> = req
        .messages
        .iter()
        .filter_map(|m| {
            let role = ClientRole::parse(m.get("role")?.as_str()?)?;
            Some(ClientMessage { role, content: m.get("content").map(content_text).unwrap_or_default() })
        })
        .collect();
    let mut conversation = from_client_messages(&client);
    let Some(ChatMessage::User { content: latest }) = conversation.messages.pop() else {
        return Err(ApiError::bad_request("invalid_messages", "the last message must be from the user"));
    };
    let user = auth.user.id;
    state.chat.burst(user)?;
    let slot = state.chat.stream_slot(user, state.settings.chat.concurrent_streams_per_user)?;
    let title: String = format!("API: {}", latest.chars().take(60).collect::<String>());
    let stored = create_conversation(&state, &auth, Some(instance), Some(&title)).await?;
    for earlier in &conversation.messages {
        state.runtime.record_transcript(user, &stored, earlier).await.map_err(turn_error)?;
    }
    let message = state.runtime.accept(user, &stored, &latest).await.map_err(turn_error)?;
    let mut events = state.runtime.respond(user, stored, conversation.user_context);
    let id = format!("chatcmpl-{}", message.id);
    let created = state.clock.now_secs();
    let model = req.model.clone();
    if req.stream {
        let stream = async_stream::stream! {
            let _slot = slot;
            let chunk = |delta: Value, finish: Value| json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
            });
            yield Ok::<_, Infallible>(Event::default().data(chunk(json!({"role": "assistant", "content": ""}), Value::Null).to_string()));
            while let Some(event) = events.recv().await {
                match event {
                    TurnEvent::Delta(text) => {
                        yield Ok(Event::default().data(chunk(json!({"content": text}), Value::Null).to_string()));
                    }
                    TurnEvent::Finished { usage, .. } => {
                        let mut last = chunk(json!({}), json!("stop"));
                        last["usage"] = json!({
                            "prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
                            "total_tokens": usage.input_tokens.saturating_add(usage.output_tokens)
                        });
                        yield Ok(Event::default().data(last.to_string()));
                        break;
                    }
                    TurnEvent::Failed { code, message } => {
                        yield Ok(Event::default().data(json!({"error": {"code": code, "message": message}}).to_string()));
                        break;
                    }
                    TurnEvent::ApprovalRequired(a) => {
                        // Shown as text, which every OpenAI client prints; the stream stays
                        // open (kept alive with comments) until the decision.
                        yield Ok(Event::default().data(chunk(json!({"content": pending_text(&a)}), Value::Null).to_string()));
                    }
                    TurnEvent::ToolCall(_) | TurnEvent::ToolResult { .. } => {}
                }
            }
            yield Ok(Event::default().data("[DONE]"));
        };
        return Ok(Sse::new(stream).keep_alive(axum::response::sse::KeepAlive::default()).into_response());
    }
    let mut waiting: Option<(clawden_store::Approval, tokio::time::Instant)> = None;
    let answer_after = state.settings.tools.approval_response_after;
    loop {
        let next = match &waiting {
            Some((_, deadline)) => match tokio::time::timeout_at(*deadline, events.recv()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => events.recv().await,
        };
        let Some(event) = next else { return Err(ApiError::internal("the turn ended without a result")) };
        match event {
            TurnEvent::ApprovalRequired(a) => waiting = Some((a, tokio::time::Instant::now() + answer_after)),
            TurnEvent::ToolResult { .. } => waiting = None,
            TurnEvent::Delta(_) | TurnEvent::ToolCall(_) => {}
            TurnEvent::Finished { text, usage, .. } => {
                return Ok(Json(json!({
                    "id": id, "object": "chat.completion", "created": created, "model": req.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
                              "total_tokens": usage.input_tokens.saturating_add(usage.output_tokens)}
                }))
                .into_response());
            }
            TurnEvent::Failed { code, message } => return Err(ApiError::new(StatusCode::BAD_GATEWAY, code, message)),
        }
    }
    // Still waiting for a decision: a completion that says so; the turn finishes in the
    // background and its reply lands in the conversation.
    let Some((approval, _)) = waiting else { return Err(ApiError::internal("no approval to wait for")) };
    crate::chat::finish_in_background(&state.chat, user, approval.conversation_id, events, slot);
    Ok(Json(json!({
        "id": id, "object": "chat.completion", "created": created, "model": req.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": pending_text(&approval)}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "clawden": {"status": "waiting_for_approval", "approval_id": approval.id, "conversation_id": approval.conversation_id}
    }))
    .into_response())
}

/// The text that tells an OpenAI-compatible client a tool call waits for an approval.
fn pending_text(a: &clawden_store::Approval) -> String {
    format!(
        "[clawden: the agent's `{}` call waits for approval {}. An owner or admin of the instance can allow or \
         deny it on the dashboard's Approvals page; the reply then lands in conversation {}.]",
        a.tool, a.id, a.conversation_id
    )
}
