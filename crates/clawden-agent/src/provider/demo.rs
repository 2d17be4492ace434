//! The `demo` provider: offline, deterministic, needs no key, and **not an AI**.
//!
//! It lets `clawden serve` work on a fresh machine without any provider account. Every reply
//! starts with [`DEMO_LABEL`] so nobody mistakes it for a model. What it does, by the last
//! message of the request:
//!
//! - a user message: greets as the agent (its name from [`ChatRequest::agent_name`], which
//!   the context builder reads from `IDENTITY.md`) and echoes the message back;
//! - a user message starting with `!` while an `exec` tool is offered: asks for an `exec` tool
//!   call whose `command` is the rest of the line (`!ls -la` → `exec {"command": "ls -la"}`),
//!   so tools can be tried without a key; without an `exec` tool it says tools are not
//!   available;
//! - tool results: reports them back as text.
//!
//! Token usage is the [`estimate_tokens`] of what it read and wrote.

use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::json;

use super::{
    estimate_tokens, ChatMessage, ChatRequest, EventStream, Provider, ProviderError, StopReason, StreamEvent, ToolCall,
    Usage,
};

/// The label every demo reply starts with.
pub const DEMO_LABEL: &str = "[demo provider \u{2014} not an AI]";

/// The name used when the agent has none.
const UNNAMED_AGENT: &str = "your clawden agent";

/// The offline demo provider.
#[derive(Debug, Default, Clone, Copy)]
pub struct DemoProvider;

impl DemoProvider {
    /// The demo provider.
    pub fn new() -> Self {
        Self
    }

    /// The events of the reply to `request` (deterministic).
    pub fn reply_events(&self, request: &ChatRequest) -> Vec<StreamEvent> {
        let name = request.agent_name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or(UNNAMED_AGENT);
        let offers_exec = request.tools.iter().any(|t| t.name == "exec");
        let mut events = Vec::new();
        let (text, stop) = match request.messages.last() {
            Some(ChatMessage::User { content }) => match content.trim_start().strip_prefix('!') {
                Some(command) if offers_exec && !command.trim().is_empty() => {
                    events.push(StreamEvent::ToolCall(ToolCall {
                        id: format!("demo_call_{}", request.messages.len()),
                        name: "exec".to_owned(),
                        arguments: json!({"command": command.trim()}),
                    }));
                    (format!("{DEMO_LABEL} Running `{}` with the exec tool.", command.trim()), StopReason::ToolUse)
                }
                Some(_) if offers_exec => (
                    format!("{DEMO_LABEL} Type a command after `!` to run it with the exec tool."),
                    StopReason::EndTurn,
                ),
                Some(_) => (
                    format!(
                        "{DEMO_LABEL} I'm {name}. Messages starting with `!` run a command with \
                         the exec tool, but no exec tool is available to this agent."
                    ),
                    StopReason::EndTurn,
                ),
                None => (
                    format!(
                        "{DEMO_LABEL} Hi, I'm {name}. You said: {content}\n\nThis reply comes \
                         from clawden's offline demo provider; configure an AI provider key for \
                         real answers."
                    ),
                    StopReason::EndTurn,
                ),
            },
            Some(ChatMessage::ToolResult { content, is_error, .. }) => {
                let outcome = if *is_error { "failed" } else { "returned" };
                (format!("{DEMO_LABEL} The tool {outcome}:\n\n```\n{content}\n```"), StopReason::EndTurn)
            }
            Some(ChatMessage::Assistant { .. }) | None => {
                (format!("{DEMO_LABEL} Hi, I'm {name}. Say something and I will echo it."), StopReason::EndTurn)
            }
        };
        let input_chars: usize =
            request.system.chars().count() + request.messages.iter().map(ChatMessage::char_len).sum::<usize>();
        let usage =
            Usage { input_tokens: input_chars.div_ceil(4) as u64, output_tokens: estimate_tokens(&text) as u64 };
        // Text first (split in a few pieces so streaming is visible), then any tool call.
        let mut out: Vec<StreamEvent> = split_words(&text).into_iter().map(StreamEvent::TextDelta).collect();
        out.append(&mut events);
        out.push(StreamEvent::Usage(usage));
        out.push(StreamEvent::Finish(stop));
        out
    }
}

/// Splits text into pieces of a few words, keeping every character.
fn split_words(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut words = 0;
    for c in text.chars() {
        current.push(c);
        if c == ' ' {
            words += 1;
            if words == 4 {
                pieces.push(std::mem::take(&mut current));
                words = 0;
            }
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

#[async_trait]
impl Provider for DemoProvider {
    fn name(&self) -> &'static str {
        "demo"
    }

    fn requires_key(&self) -> bool {
        false
    }

    async fn stream(&self, request: &ChatRequest, _key: Option<&SecretString>) -> Result<EventStream, ProviderError> {
        let events = self.reply_events(request);
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{collect_reply, ToolDefinition};

    fn exec_tool() -> ToolDefinition {
        ToolDefinition {
            name: "exec".into(),
            description: "run a shell command".into(),
            input_schema: json!({"type": "object"}),
        }
    }

    fn request(messages: Vec<ChatMessage>, tools: Vec<ToolDefinition>) -> ChatRequest {
        ChatRequest {
            model: "demo".into(),
            messages,
            tools,
            max_tokens: 100,
            agent_name: Some("Pinchy".into()),
            ..ChatRequest::default()
        }
    }

    #[tokio::test]
    async fn demo_answers_with_the_agent_name_and_echoes() {
        let reply = DemoProvider
            .complete(&request(vec![ChatMessage::user("hello there")], vec![]), None)
            .await
            .expect("demo never fails");
        assert!(reply.text.starts_with(DEMO_LABEL));
        assert!(reply.text.contains("I'm Pinchy"));
        assert!(reply.text.contains("You said: hello there"));
        assert_eq!(reply.stop_reason, StopReason::EndTurn);
        assert!(reply.usage.output_tokens > 0);
    }

    #[tokio::test]
    async fn demo_bang_becomes_exec_tool_call_only_when_exec_is_offered() {
        let with_tool = request(vec![ChatMessage::user("!ls -la /workspace")], vec![exec_tool()]);
        let reply = DemoProvider.complete(&with_tool, None).await.expect("ok");
        assert_eq!(reply.stop_reason, StopReason::ToolUse);
        assert_eq!(reply.tool_calls.len(), 1);
        assert_eq!(reply.tool_calls[0].name, "exec");
        assert_eq!(reply.tool_calls[0].arguments["command"], "ls -la /workspace");

        let without = request(vec![ChatMessage::user("!ls")], vec![]);
        let reply = DemoProvider.complete(&without, None).await.expect("ok");
        assert!(reply.tool_calls.is_empty());
        assert!(reply.text.contains("no exec tool"));
    }

    #[tokio::test]
    async fn demo_reports_tool_results_and_is_deterministic() {
        let messages = vec![
            ChatMessage::user("!echo hi"),
            ChatMessage::Assistant {
                content: String::new(),
                tool_calls: vec![ToolCall {
                    id: "demo_call_1".into(),
                    name: "exec".into(),
                    arguments: json!({"command": "echo hi"}),
                }],
            },
            ChatMessage::tool_result("demo_call_1", "hi\n"),
        ];
        let req = request(messages, vec![exec_tool()]);
        let a = collect_reply(DemoProvider.stream(&req, None).await.expect("ok")).await.expect("ok");
        let b = DemoProvider.complete(&req, None).await.expect("ok");
        assert_eq!(a, b);
        assert!(a.text.contains("The tool returned"));
        assert!(a.text.contains("hi\n"));
    }
}
