//! AI providers behind one streaming trait.
//!
//! A [`Provider`] takes a [`ChatRequest`] (model, system prompt, messages, tool definitions,
//! max tokens) and the API key to use for this one request, and returns a stream of
//! [`StreamEvent`]s: text deltas, complete tool calls, token usage and a final
//! [`StreamEvent::Finish`]. [`collect_reply`] folds such a stream into a [`Reply`].
//!
//! The key is chosen by the caller (the user's own key, or the platform key) and passed as a
//! [`SecretString`] reference; no provider stores it, and no error, `Debug` output or log line
//! contains it (see [`ProviderError`]).
//!
//! Clients: [`anthropic::AnthropicProvider`], [`openai::OpenAiProvider`] and the offline
//! [`demo::DemoProvider`]. Their HTTP behaviour (base URL rules, TLS, timeouts, retries) is
//! described by [`HttpSettings`] and [`BaseUrl`].

pub mod anthropic;
pub mod demo;
mod error;
mod http;
pub mod openai;
pub mod sse;
mod stream;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use error::ProviderError;
pub use http::{BaseUrl, HttpSettings, RetrySettings};

/// One message of the conversation sent to a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum ChatMessage {
    /// Something the user wrote.
    User {
        /// The text.
        content: String,
    },
    /// An earlier reply of the model: its text and the tool calls it made.
    Assistant {
        /// The text of the reply (may be empty when the reply was only tool calls).
        content: String,
        /// Tool calls the model made in this reply, in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// The result of running one tool call, sent back to the model.
    ToolResult {
        /// The id of the [`ToolCall`] this answers.
        call_id: String,
        /// What the tool produced (or the error it reported).
        content: String,
        /// Whether the tool failed; the model sees the content as an error report.
        #[serde(default)]
        is_error: bool,
    },
}

impl ChatMessage {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage::User { content: content.into() }
    }

    /// An assistant message without tool calls.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage::Assistant { content: content.into(), tool_calls: Vec::new() }
    }

    /// A successful tool result.
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage::ToolResult { call_id: call_id.into(), content: content.into(), is_error: false }
    }

    /// The number of characters of text this message carries (used for token estimates).
    pub fn char_len(&self) -> usize {
        match self {
            ChatMessage::User { content } => content.chars().count(),
            ChatMessage::Assistant { content, tool_calls } => {
                content.chars().count()
                    + tool_calls
                        .iter()
                        .map(|c| c.name.chars().count() + c.arguments.to_string().chars().count())
                        .sum::<usize>()
            }
            ChatMessage::ToolResult { content, .. } => content.chars().count(),
        }
    }
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for this call; a [`ChatMessage::ToolResult`] refers to it.
    pub id: String,
    /// The tool's name, as given in [`ToolDefinition::name`].
    pub name: String,
    /// The arguments, a JSON value (an object for every well-behaved model).
    pub arguments: serde_json::Value,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    /// The tool's name (`exec`, `read`, …).
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// A JSON schema of the tool's arguments (an `object` schema).
    pub input_schema: serde_json::Value,
}

/// Everything a provider needs for one model call, except the key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The provider's model name (`claude-…`, `gpt-…`, `llama3.1`, …).
    pub model: String,
    /// The system prompt (built by [`crate::context`]); empty means none.
    pub system: String,
    /// The conversation, oldest first; it should start with a user message.
    pub messages: Vec<ChatMessage>,
    /// The tools offered; empty means the model is given no tools at all.
    pub tools: Vec<ToolDefinition>,
    /// The most tokens the reply may have.
    pub max_tokens: u32,
    /// The agent's display name (from `IDENTITY.md`). Real providers do not send it — the
    /// system prompt already holds `IDENTITY.md` — but the demo provider answers with it.
    pub agent_name: Option<String>,
}

/// Tokens counted by the provider for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens read (prompt, including cached prompt tokens).
    pub input_tokens: u64,
    /// Tokens written (the reply).
    pub output_tokens: u64,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its answer.
    EndTurn,
    /// The model wants the tool calls it made to be run.
    ToolUse,
    /// The reply hit the `max_tokens` limit.
    MaxTokens,
    /// A stop sequence was produced.
    StopSequence,
    /// The provider's content filter stopped the reply.
    ContentFilter,
    /// The provider refused to answer.
    Refusal,
    /// A reason this crate does not know, as the provider named it.
    Other(String),
}

/// One event of a streamed reply.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// More text of the reply.
    TextDelta(String),
    /// A complete tool call (its arguments fully received and parsed).
    ToolCall(ToolCall),
    /// Token counts for the whole call (sent once, before [`StreamEvent::Finish`], when the
    /// provider reports them).
    Usage(Usage),
    /// The reply is complete. Always the last event of a successful stream.
    Finish(StopReason),
}

/// A stream of reply events. It ends after [`StreamEvent::Finish`] or after the first error.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// A complete reply, as [`collect_reply`] assembles it from a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The whole text.
    pub text: String,
    /// The tool calls, in the order the model made them.
    pub tool_calls: Vec<ToolCall>,
    /// Token counts (zero when the provider reported none).
    pub usage: Usage,
    /// Why the model stopped.
    pub stop_reason: StopReason,
}

impl Reply {
    /// This reply as an assistant message, to append to the conversation.
    pub fn to_message(&self) -> ChatMessage {
        ChatMessage::Assistant { content: self.text.clone(), tool_calls: self.tool_calls.clone() }
    }
}

/// An AI provider: turns a request into a stream of reply events.
///
/// Object-safe; the server holds providers as `Arc<dyn Provider>`.
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// The provider's short name: `anthropic`, `openai` or `demo`.
    fn name(&self) -> &'static str;

    /// Whether a call without a key is refused before anything is sent. The demo provider
    /// needs none; an OpenAI-compatible local server (Ollama) may not either.
    fn requires_key(&self) -> bool;

    /// Starts one model call and returns its event stream.
    ///
    /// Errors that happen before the reply starts (bad key, rate limit after the allowed
    /// retries, unreachable host) are returned here; errors after that arrive in the stream.
    /// `key` is used for this call only and never stored.
    async fn stream(&self, request: &ChatRequest, key: Option<&SecretString>) -> Result<EventStream, ProviderError>;

    /// Makes one call and waits for the complete reply.
    async fn complete(&self, request: &ChatRequest, key: Option<&SecretString>) -> Result<Reply, ProviderError> {
        let stream = self.stream(request, key).await?;
        collect_reply(stream).await
    }
}

/// Which provider an operator configured, with its settings.
#[derive(Debug, Clone)]
pub enum ProviderConfig {
    /// Anthropic's Messages API.
    Anthropic(anthropic::AnthropicSettings),
    /// OpenAI's Chat Completions API or an OpenAI-compatible server.
    OpenAi(openai::OpenAiSettings),
    /// The offline demo provider.
    Demo,
}

impl ProviderConfig {
    /// Builds the provider, ready to be shared by the server.
    pub fn build(self) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(match self {
            ProviderConfig::Anthropic(settings) => Arc::new(anthropic::AnthropicProvider::new(settings)?),
            ProviderConfig::OpenAi(settings) => Arc::new(openai::OpenAiProvider::new(settings)?),
            ProviderConfig::Demo => Arc::new(demo::DemoProvider::new()),
        })
    }
}

/// Reads a stream to its end and assembles the [`Reply`].
///
/// Fails with the stream's first error, or with [`ProviderError::Truncated`] when the stream
/// ends without a [`StreamEvent::Finish`].
pub async fn collect_reply(mut stream: EventStream) -> Result<Reply, ProviderError> {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut usage = Usage::default();
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::TextDelta(delta) => text.push_str(&delta),
            StreamEvent::ToolCall(call) => tool_calls.push(call),
            StreamEvent::Usage(u) => usage = u,
            StreamEvent::Finish(stop_reason) => return Ok(Reply { text, tool_calls, usage, stop_reason }),
        }
    }
    Err(ProviderError::Truncated)
}

/// Rough token estimate used for budgets: one token per four characters, rounded up.
///
/// Real tokenizers differ by model (English prose averages about four characters a token;
/// code and non-Latin scripts use more tokens). The estimate only decides how much history
/// to send; the provider's own counts in [`Usage`] are what quotas charge.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_provider_builds_as_a_shared_trait_object() {
        let providers: Vec<Arc<dyn Provider>> = vec![
            ProviderConfig::Anthropic(anthropic::AnthropicSettings::default()).build().expect("anthropic"),
            ProviderConfig::OpenAi(openai::OpenAiSettings::default()).build().expect("openai"),
            ProviderConfig::Demo.build().expect("demo"),
        ];
        let names: Vec<_> = providers.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["anthropic", "openai", "demo"]);
        assert!(providers[0].requires_key() && providers[1].requires_key());
        assert!(!providers[2].requires_key());
        // A remote provider without a key refuses before sending anything.
        let request = ChatRequest::default();
        assert_eq!(providers[0].complete(&request, None).await, Err(ProviderError::MissingKey));
    }

    #[test]
    fn zero_timeouts_are_refused() {
        let mut settings = openai::OpenAiSettings::default();
        settings.http.idle_timeout = std::time::Duration::ZERO;
        assert!(matches!(ProviderConfig::OpenAi(settings).build(), Err(ProviderError::Config { .. })));
    }
}
