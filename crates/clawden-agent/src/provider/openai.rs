//! Client of OpenAI's Chat Completions API (`POST {base}/v1/chat/completions`, streamed), and
//! so of every OpenAI-compatible server (Ollama, vLLM, llama.cpp) at a configured base URL.
//!
//! Request: `Authorization: Bearer <key>` (no header when no key is given, for local servers
//! that need none), `stream: true` with `stream_options: {include_usage: true}`, the system
//! prompt as the first `system` message, tools as `{type: "function", function: {name,
//! description, parameters}}`, assistant tool calls in `tool_calls` with the arguments as a
//! JSON string, tool results as `role: "tool"` messages (a failed tool's content is prefixed
//! with `error: `, since the format has no error flag).
//!
//! Response: `data:` chunks with `choices[0].delta.content` text and `delta.tool_calls[]`
//! pieces keyed by `index` (id and name in the first piece, `function.arguments` streamed in
//! parts), a `finish_reason`, a final chunk with `usage` and no choices, then `data: [DONE]`.
//! An `{"error": …}` chunk mid-stream is an error. Tool calls are emitted once the choice
//! finishes, with their arguments complete.

use std::collections::BTreeMap;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use secrecy::SecretString;
use serde_json::{json, Value};
use url::Url;

use super::error::ProviderError;
use super::http::{build_client, error_from_stream, secret_header};
use super::sse::SseEvent;
use super::stream::{open_stream, Decoder};
use super::{
    BaseUrl, ChatMessage, ChatRequest, EventStream, HttpSettings, Provider, StopReason, StreamEvent, ToolCall, Usage,
};

/// OpenAI's API host.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com";

/// Which request field carries the reply length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxTokensField {
    /// `max_tokens`: understood by every OpenAI-compatible server and by OpenAI's chat models.
    #[default]
    MaxTokens,
    /// `max_completion_tokens`: required by OpenAI's reasoning models.
    MaxCompletionTokens,
}

/// Settings of an [`OpenAiProvider`] (operator settings, never per user).
#[derive(Debug, Clone)]
pub struct OpenAiSettings {
    /// Where the API is; default [`DEFAULT_BASE_URL`]. `http://localhost:11434` for Ollama.
    pub base_url: BaseUrl,
    /// Whether a key is required. True for OpenAI; a local server may need none.
    pub require_key: bool,
    /// The field used for [`ChatRequest::max_tokens`].
    pub max_tokens_field: MaxTokensField,
    /// Timeouts and retries.
    pub http: HttpSettings,
}

impl OpenAiSettings {
    /// Settings for `base_url` with default timeouts and retries; a key is required unless the
    /// base URL is a loopback one.
    pub fn new(base_url: BaseUrl) -> Self {
        Self {
            require_key: !base_url.is_loopback(),
            base_url,
            max_tokens_field: MaxTokensField::default(),
            http: HttpSettings::default(),
        }
    }
}

impl Default for OpenAiSettings {
    fn default() -> Self {
        match BaseUrl::parse(DEFAULT_BASE_URL) {
            Ok(base) => Self::new(base),
            // The constant is a valid https URL; the test `default_base_url_is_valid` checks it.
            Err(_) => unreachable!("DEFAULT_BASE_URL is a valid https URL"),
        }
    }
}

/// A client of the Chat Completions API.
#[derive(Debug)]
pub struct OpenAiProvider {
    endpoint: Url,
    require_key: bool,
    max_tokens_field: MaxTokensField,
    http: HttpSettings,
    client: reqwest::Client,
}

impl OpenAiProvider {
    /// A client with these settings.
    pub fn new(settings: OpenAiSettings) -> Result<Self, ProviderError> {
        let client = build_client(&settings.base_url, &settings.http)?;
        Ok(Self {
            endpoint: settings.base_url.endpoint("chat/completions"),
            require_key: settings.require_key,
            max_tokens_field: settings.max_tokens_field,
            http: settings.http,
            client,
        })
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn requires_key(&self) -> bool {
        self.require_key
    }

    #[tracing::instrument(skip_all, fields(provider = "openai", model = %request.model))]
    async fn stream(&self, request: &ChatRequest, key: Option<&SecretString>) -> Result<EventStream, ProviderError> {
        if self.require_key && key.is_none() {
            return Err(ProviderError::MissingKey);
        }
        let auth = key.map(|k| secret_header("Bearer ", k)).transpose()?;
        let body = request_body(request, self.max_tokens_field);
        open_stream(
            "openai",
            &self.http,
            key,
            || {
                let builder = self.client.post(self.endpoint.clone()).header(ACCEPT, "text/event-stream").json(&body);
                match &auth {
                    Some(auth) => builder.header(AUTHORIZATION, auth.clone()),
                    None => builder,
                }
            },
            || OpenAiDecoder::new(key.cloned()),
        )
        .await
    }
}

/// The JSON body of a Chat Completions call.
pub(crate) fn request_body(request: &ChatRequest, max_tokens_field: MaxTokensField) -> Value {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if !request.system.is_empty() {
        messages.push(json!({"role": "system", "content": request.system}));
    }
    for message in &request.messages {
        messages.push(match message {
            ChatMessage::User { content } => json!({"role": "user", "content": content}),
            ChatMessage::Assistant { content, tool_calls } => {
                let mut m = json!({
                    "role": "assistant",
                    "content": if content.is_empty() { Value::Null } else { json!(content) },
                });
                if !tool_calls.is_empty() {
                    m["tool_calls"] = tool_calls
                        .iter()
                        .map(|call| {
                            json!({
                                "id": call.id,
                                "type": "function",
                                "function": {
                                    "name": call.name,
                                    "arguments": call.arguments.to_string(),
                                },
                            })
                        })
                        .collect();
                }
                m
            }
            ChatMessage::ToolResult { call_id, content, is_error } => json!({
                "role": "tool",
                "tool_call_id": call_id,
                "content": if *is_error { format!("error: {content}") } else { content.clone() },
            }),
        });
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let field = match max_tokens_field {
        MaxTokensField::MaxTokens => "max_tokens",
        MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
    };
    body[field] = json!(request.max_tokens);
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.input_schema,
                    },
                })
            })
            .collect();
    }
    body
}

/// A tool call being received, keyed by its `index`.
#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Reads the Chat Completions chunk stream.
pub(crate) struct OpenAiDecoder {
    key: Option<SecretString>,
    calls: BTreeMap<u64, PartialCall>,
    usage: Option<Usage>,
    finish: Option<StopReason>,
    done: bool,
}

impl OpenAiDecoder {
    pub(crate) fn new(key: Option<SecretString>) -> Self {
        Self { key, calls: BTreeMap::new(), usage: None, finish: None, done: false }
    }

    /// The closing events: complete tool calls, usage, finish.
    fn close(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        self.done = true;
        let mut out = self.take_calls()?;
        if let Some(usage) = self.usage {
            out.push(StreamEvent::Usage(usage));
        }
        let reason = self.finish.take().unwrap_or(StopReason::EndTurn);
        out.push(StreamEvent::Finish(reason));
        Ok(out)
    }

    fn take_calls(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        std::mem::take(&mut self.calls)
            .into_values()
            .map(|call| {
                if call.name.is_empty() {
                    return Err(malformed("a tool call has no name"));
                }
                let arguments = if call.arguments.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(&call.arguments)
                        .map_err(|_| malformed("tool call arguments are not valid JSON"))?
                };
                Ok(StreamEvent::ToolCall(ToolCall { id: call.id, name: call.name, arguments }))
            })
            .collect()
    }
}

fn malformed(detail: &str) -> ProviderError {
    ProviderError::Protocol { detail: detail.to_owned() }
}

/// Maps OpenAI's `finish_reason`.
fn finish_reason(reason: &str) -> StopReason {
    match reason {
        "stop" => StopReason::EndTurn,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "length" => StopReason::MaxTokens,
        "content_filter" => StopReason::ContentFilter,
        other => StopReason::Other(other.to_owned()),
    }
}

impl Decoder for OpenAiDecoder {
    fn on_event(&mut self, event: SseEvent) -> Result<Vec<StreamEvent>, ProviderError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return self.close();
        }
        let chunk: Value = serde_json::from_str(data).map_err(|_| malformed("a chunk is not valid JSON"))?;
        if let Some(error) = chunk.get("error") {
            let (kind, message) = match error {
                Value::String(text) => (None, Some(text.as_str())),
                _ => (
                    error.get("type").or_else(|| error.get("code")).and_then(Value::as_str),
                    error.get("message").and_then(Value::as_str),
                ),
            };
            return Err(error_from_stream(kind, message, self.key.as_ref()));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            let field = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
            self.usage =
                Some(Usage { input_tokens: field("prompt_tokens"), output_tokens: field("completion_tokens") });
        }
        let mut out = Vec::new();
        // One choice is asked for (no `n`); others, if a server sends them, are ignored.
        let choice = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| choices.iter().find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0));
        let Some(choice) = choice else {
            return Ok(out);
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            if !text.is_empty() {
                out.push(StreamEvent::TextDelta(text.to_owned()));
            }
        }
        if let Some(pieces) = delta.get("tool_calls").and_then(Value::as_array) {
            for (position, piece) in pieces.iter().enumerate() {
                // Some servers omit `index` when they send whole calls; the position stands in.
                let index = piece.get("index").and_then(Value::as_u64).unwrap_or(position as u64);
                let call = self.calls.entry(index).or_default();
                if let Some(id) = piece.get("id").and_then(Value::as_str) {
                    call.id = id.to_owned();
                }
                let function = piece.get("function").unwrap_or(&Value::Null);
                // The name comes whole in the first piece; some servers repeat it later.
                if let Some(name) = function.get("name").and_then(Value::as_str) {
                    if call.name.is_empty() {
                        call.name = name.to_owned();
                    }
                }
                match function.get("arguments") {
                    Some(Value::String(part)) => call.arguments.push_str(part),
                    // Ollama has sent arguments as an object rather than a string.
                    Some(object @ Value::Object(_)) => call.arguments = object.to_string(),
                    _ => {}
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(finish_reason(reason));
        }
        Ok(out)
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn on_end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        // A server that closes after `finish_reason` without `[DONE]` still finished.
        if self.finish.is_some() {
            self.close()
        } else {
            Err(ProviderError::Truncated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ToolDefinition;

    #[test]
    fn default_base_url_is_valid() {
        assert!(BaseUrl::parse(DEFAULT_BASE_URL).is_ok());
        assert!(OpenAiSettings::default().require_key);
    }

    #[test]
    fn request_body_uses_openai_shapes() {
        let request = ChatRequest {
            model: "gpt-test".into(),
            system: "be kind".into(),
            messages: vec![
                ChatMessage::user("hi"),
                ChatMessage::Assistant {
                    content: String::new(),
                    tool_calls: vec![ToolCall {
                        id: "call_1".into(),
                        name: "exec".into(),
                        arguments: json!({"command": "ls"}),
                    }],
                },
                ChatMessage::ToolResult { call_id: "call_1".into(), content: "boom".into(), is_error: true },
            ],
            tools: vec![ToolDefinition {
                name: "exec".into(),
                description: "run".into(),
                input_schema: json!({"type": "object"}),
            }],
            max_tokens: 100,
            agent_name: None,
        };
        let body = request_body(&request, MaxTokensField::MaxTokens);
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][2]["content"], Value::Null);
        assert_eq!(body["messages"][2]["tool_calls"][0]["function"]["arguments"], r#"{"command":"ls"}"#);
        assert_eq!(body["messages"][3]["role"], "tool");
        assert_eq!(body["messages"][3]["content"], "error: boom");
        assert_eq!(body["tools"][0]["function"]["parameters"]["type"], "object");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["max_tokens"], 100);
        let body = request_body(&request, MaxTokensField::MaxCompletionTokens);
        assert_eq!(body["max_completion_tokens"], 100);
        assert!(body.get("max_tokens").is_none());
    }
}
