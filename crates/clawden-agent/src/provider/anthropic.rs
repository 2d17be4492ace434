//! Client of Anthropic's Messages API (`POST {base}/v1/messages`, streamed).
//!
//! Request: `x-api-key`, `anthropic-version: 2023-06-01`, `stream: true`, the system prompt
//! in `system`, tools as `{name, description, input_schema}`, assistant tool calls as
//! `tool_use` blocks and tool results as `tool_result` blocks of a user message (consecutive
//! messages of one role are merged, as the API wants turns to alternate).
//!
//! Response events: `message_start` (input tokens), `content_block_start` (`text` or
//! `tool_use` with id and name), `content_block_delta` (`text_delta`, or `input_json_delta`
//! pieces of the tool arguments, joined until `content_block_stop`), `message_delta`
//! (stop reason, output tokens), `message_stop`, `ping`, and `error`. Block and event types
//! this client does not know (thinking, citations, new ones) are skipped, as Anthropic asks
//! clients to do.

use std::collections::HashMap;

use async_trait::async_trait;
use reqwest::header::ACCEPT;
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

/// Anthropic's API host.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The API version sent in `anthropic-version`.
pub const API_VERSION: &str = "2023-06-01";

/// Settings of an [`AnthropicProvider`] (operator settings, never per user).
#[derive(Debug, Clone)]
pub struct AnthropicSettings {
    /// Where the API is; default [`DEFAULT_BASE_URL`].
    pub base_url: BaseUrl,
    /// Timeouts and retries.
    pub http: HttpSettings,
}

impl AnthropicSettings {
    /// Settings for `base_url` with default timeouts and retries.
    pub fn new(base_url: BaseUrl) -> Self {
        Self { base_url, http: HttpSettings::default() }
    }
}

impl Default for AnthropicSettings {
    fn default() -> Self {
        match BaseUrl::parse(DEFAULT_BASE_URL) {
            Ok(base) => Self::new(base),
            // The constant is a valid https URL; the test `default_base_url_is_valid` checks it.
            Err(_) => unreachable!("DEFAULT_BASE_URL is a valid https URL"),
        }
    }
}

/// A client of the Anthropic Messages API.
#[derive(Debug)]
pub struct AnthropicProvider {
    endpoint: Url,
    http: HttpSettings,
    client: reqwest::Client,
}

impl AnthropicProvider {
    /// A client with these settings.
    pub fn new(settings: AnthropicSettings) -> Result<Self, ProviderError> {
        let client = build_client(&settings.base_url, &settings.http)?;
        Ok(Self { endpoint: settings.base_url.endpoint("messages"), http: settings.http, client })
    }
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn requires_key(&self) -> bool {
        true
    }

    #[tracing::instrument(skip_all, fields(provider = "anthropic", model = %request.model))]
    async fn stream(&self, request: &ChatRequest, key: Option<&SecretString>) -> Result<EventStream, ProviderError> {
        let key = key.ok_or(ProviderError::MissingKey)?;
        let key_header = secret_header("", key)?;
        let body = request_body(request);
        open_stream(
            "anthropic",
            &self.http,
            Some(key),
            || {
                self.client
                    .post(self.endpoint.clone())
                    .header("x-api-key", key_header.clone())
                    .header("anthropic-version", API_VERSION)
                    .header(ACCEPT, "text/event-stream")
                    .json(&body)
            },
            || AnthropicDecoder::new(key.clone()),
        )
        .await
    }
}

/// The JSON body of a Messages API call.
pub(crate) fn request_body(request: &ChatRequest) -> Value {
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens,
        "stream": true,
        "messages": messages(&request.messages),
    });
    if !request.system.is_empty() {
        body["system"] = json!(request.system);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": t.input_schema,
                })
            })
            .collect();
    }
    body
}

fn messages(messages: &[ChatMessage]) -> Vec<Value> {
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in messages {
        let (role, blocks) = match message {
            ChatMessage::User { content } => ("user", text_block(content)),
            ChatMessage::Assistant { content, tool_calls } => {
                let mut blocks = text_block(content);
                blocks.extend(tool_calls.iter().map(|call| {
                    json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        // The API wants an object; a model that sent anything else gets `{}`.
                        "input": if call.arguments.is_object() { call.arguments.clone() } else { json!({}) },
                    })
                }));
                ("assistant", blocks)
            }
            ChatMessage::ToolResult { call_id, content, is_error } => {
                let mut block = json!({
                    "type": "tool_result",
                    "tool_use_id": call_id,
                    "content": content,
                });
                if *is_error {
                    block["is_error"] = json!(true);
                }
                ("user", vec![block])
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => out.push((role, blocks)),
        }
    }
    out.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect()
}

fn text_block(text: &str) -> Vec<Value> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![json!({"type": "text", "text": text})]
    }
}

/// A content block being received.
enum Block {
    Text,
    Tool { id: String, name: String, json: String },
    Other,
}

/// Reads the Messages API event stream.
pub(crate) struct AnthropicDecoder {
    key: SecretString,
    blocks: HashMap<u64, Block>,
    usage: Usage,
    stop_reason: Option<StopReason>,
    done: bool,
}

impl AnthropicDecoder {
    pub(crate) fn new(key: SecretString) -> Self {
        Self { key, blocks: HashMap::new(), usage: Usage::default(), stop_reason: None, done: false }
    }

    fn read_usage(&mut self, usage: &Value) {
        let field = |name: &str| usage.get(name).and_then(Value::as_u64);
        let input = ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"]
            .iter()
            .filter_map(|name| field(name))
            .reduce(|a, b| a.saturating_add(b));
        if let Some(input) = input {
            self.usage.input_tokens = input;
        }
        if let Some(output) = field("output_tokens") {
            self.usage.output_tokens = output;
        }
    }
}

fn malformed(detail: &str) -> ProviderError {
    ProviderError::Protocol { detail: detail.to_owned() }
}

fn str_field<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value.get(name).and_then(Value::as_str)
}

/// Maps Anthropic's `stop_reason`.
fn stop_reason(reason: &str) -> StopReason {
    match reason {
        "end_turn" => StopReason::EndTurn,
        "tool_use" => StopReason::ToolUse,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "refusal" => StopReason::Refusal,
        other => StopReason::Other(other.to_owned()),
    }
}

impl Decoder for AnthropicDecoder {
    fn on_event(&mut self, event: SseEvent) -> Result<Vec<StreamEvent>, ProviderError> {
        let data: Value =
            serde_json::from_str(&event.data).map_err(|_| malformed("an event's data is not valid JSON"))?;
        // The data's `type` repeats the SSE event name; the data is what counts.
        let kind = str_field(&data, "type").or(event.event.as_deref());
        let index =
            || data.get("index").and_then(Value::as_u64).ok_or_else(|| malformed("a content block event has no index"));
        let mut out = Vec::new();
        match kind {
            Some("message_start") => {
                if let Some(usage) = data.get("message").and_then(|m| m.get("usage")) {
                    self.read_usage(usage);
                }
            }
            Some("content_block_start") => {
                let block = data.get("content_block").unwrap_or(&Value::Null);
                let started = match str_field(block, "type") {
                    Some("text") => {
                        if let Some(text) = str_field(block, "text").filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::TextDelta(text.to_owned()));
                        }
                        Block::Text
                    }
                    Some("tool_use") => {
                        let id = str_field(block, "id").ok_or_else(|| malformed("a tool_use block has no id"))?;
                        let name = str_field(block, "name").ok_or_else(|| malformed("a tool_use block has no name"))?;
                        // Streams start with `input: {}` and send the arguments as deltas; a
                        // non-empty start value is kept in case no delta follows.
                        let json = match block.get("input") {
                            Some(input) if input.as_object().is_some_and(|o| !o.is_empty()) => input.to_string(),
                            _ => String::new(),
                        };
                        Block::Tool { id: id.to_owned(), name: name.to_owned(), json }
                    }
                    _ => Block::Other,
                };
                self.blocks.insert(index()?, started);
            }
            Some("content_block_delta") => {
                let index = index()?;
                let delta = data.get("delta").unwrap_or(&Value::Null);
                match (str_field(delta, "type"), self.blocks.get_mut(&index)) {
                    (Some("text_delta"), Some(Block::Text)) => {
                        if let Some(text) = str_field(delta, "text") {
                            out.push(StreamEvent::TextDelta(text.to_owned()));
                        }
                    }
                    (Some("input_json_delta"), Some(Block::Tool { json, .. })) => {
                        if let Some(piece) = str_field(delta, "partial_json") {
                            json.push_str(piece);
                        }
                    }
                    (Some("text_delta" | "input_json_delta"), _) => {
                        return Err(malformed("a delta does not match its content block"))
                    }
                    _ => {}
                }
            }
            Some("content_block_stop") => {
                if let Some(Block::Tool { id, name, json }) = self.blocks.remove(&index()?) {
                    let arguments = if json.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&json).map_err(|_| malformed("tool call arguments are not valid JSON"))?
                    };
                    out.push(StreamEvent::ToolCall(ToolCall { id, name, arguments }));
                }
            }
            Some("message_delta") => {
                if let Some(reason) = data.get("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str) {
                    self.stop_reason = Some(stop_reason(reason));
                }
                if let Some(usage) = data.get("usage") {
                    self.read_usage(usage);
                }
            }
            Some("message_stop") => {
                self.done = true;
                out.push(StreamEvent::Usage(self.usage));
                out.push(StreamEvent::Finish(self.stop_reason.take().unwrap_or(StopReason::EndTurn)));
            }
            Some("error") => {
                let error = data.get("error").unwrap_or(&Value::Null);
                return Err(error_from_stream(str_field(error, "type"), str_field(error, "message"), Some(&self.key)));
            }
            // `ping` and event types added after this client was written.
            _ => {}
        }
        Ok(out)
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn on_end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        Err(ProviderError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ToolDefinition;

    fn feed(decoder: &mut AnthropicDecoder, events: &[Value]) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        for data in events {
            let event = SseEvent { event: data["type"].as_str().map(str::to_owned), data: data.to_string(), id: None };
            out.extend(decoder.on_event(event).expect("valid event"));
        }
        out
    }

    #[test]
    fn thinking_blocks_and_unknown_events_are_skipped() {
        let mut decoder = AnthropicDecoder::new(SecretString::from("k"));
        let out = feed(
            &mut decoder,
            &[
                json!({"type": "message_start", "message": {"usage": {"input_tokens": 3}}}),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "brand_new_event", "whatever": 1}),
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "hi"}}),
                json!({"type": "content_block_stop", "index": 1}),
                json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 7}}),
                json!({"type": "message_stop"}),
            ],
        );
        assert_eq!(
            out,
            vec![
                StreamEvent::TextDelta("hi".into()),
                StreamEvent::Usage(Usage { input_tokens: 3, output_tokens: 7 }),
                StreamEvent::Finish(StopReason::MaxTokens),
            ]
        );
        assert!(decoder.is_done());
    }

    #[test]
    fn invalid_tool_json_is_a_protocol_error() {
        let mut decoder = AnthropicDecoder::new(SecretString::from("k"));
        feed(
            &mut decoder,
            &[
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "exec", "input": {}}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"a\": "}}),
            ],
        );
        let stop =
            SseEvent { event: None, data: json!({"type": "content_block_stop", "index": 0}).to_string(), id: None };
        assert!(matches!(decoder.on_event(stop), Err(ProviderError::Protocol { .. })));
    }

    #[test]
    fn default_base_url_is_valid() {
        assert!(BaseUrl::parse(DEFAULT_BASE_URL).is_ok());
    }

    #[test]
    fn tool_results_become_user_tool_result_blocks_and_turns_alternate() {
        let request = ChatRequest {
            model: "claude-test".into(),
            system: "be kind".into(),
            messages: vec![
                ChatMessage::user("list files"),
                ChatMessage::Assistant {
                    content: String::new(),
                    tool_calls: vec![
                        ToolCall { id: "toolu_1".into(), name: "exec".into(), arguments: json!({"command": "ls"}) },
                        ToolCall { id: "toolu_2".into(), name: "exec".into(), arguments: json!({"command": "pwd"}) },
                    ],
                },
                ChatMessage::tool_result("toolu_1", "a.txt"),
                ChatMessage::ToolResult { call_id: "toolu_2".into(), content: "denied".into(), is_error: true },
            ],
            tools: vec![ToolDefinition {
                name: "exec".into(),
                description: "run a command".into(),
                input_schema: json!({"type": "object"}),
            }],
            max_tokens: 512,
            agent_name: None,
        };
        let body = request_body(&request);
        assert_eq!(body["system"], "be kind");
        assert_eq!(body["stream"], true);
        assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
        let messages = body["messages"].as_array().expect("array");
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1]["content"][1]["type"], "tool_use");
        assert_eq!(messages[1]["content"][1]["input"]["command"], "pwd");
        assert_eq!(messages[2]["role"], "user");
        assert_eq!(messages[2]["content"][0]["tool_use_id"], "toolu_1");
        assert_eq!(messages[2]["content"][1]["is_error"], true);
        assert!(messages[2]["content"][0].get("is_error").is_none());
    }
}
