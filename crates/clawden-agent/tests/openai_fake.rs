//! The OpenAI-compatible client against a local fake speaking the Chat Completions chunk format.

mod common;

use std::time::{Duration, Instant};

use clawden_agent::provider::openai::{OpenAiProvider, OpenAiSettings};
use clawden_agent::provider::{
    BaseUrl, ChatMessage, ChatRequest, Provider, ProviderError, StopReason, StreamEvent, ToolDefinition,
};
use common::{fast_http, key, openai_frames, serve, tiny_chunks, Scripted};
use futures::StreamExt;
use serde_json::json;

fn provider(base: &str) -> OpenAiProvider {
    let mut settings = OpenAiSettings::new(BaseUrl::parse(base).expect("loopback base"));
    settings.require_key = true;
    settings.http = fast_http();
    OpenAiProvider::new(settings).expect("client builds")
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "gpt-test".into(),
        system: "You are Pinchy.".into(),
        messages: vec![ChatMessage::user("hello")],
        tools: vec![ToolDefinition {
            name: "exec".into(),
            description: "Run a shell command".into(),
            input_schema: json!({"type": "object", "properties": {"command": {"type": "string"}}}),
        }],
        max_tokens: 256,
        agent_name: Some("Pinchy".into()),
    }
}

fn chunk(delta: serde_json::Value, finish: Option<&str>) -> serde_json::Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test",
           "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
           "usage": null})
}

fn usage_chunk() -> serde_json::Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test",
           "choices": [], "usage": {"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40}})
}

fn text_reply(crlf: bool) -> String {
    openai_frames(
        &[
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "Hello from "}), None),
            chunk(json!({"content": "Pinchy \u{1f99e} caf\u{e9}"}), None),
            chunk(json!({}), Some("stop")),
            usage_chunk(),
        ],
        crlf,
    )
}

#[tokio::test]
async fn openai_plain_text_reply_in_tiny_chunks() {
    let fake = serve(vec![Scripted::Stream(tiny_chunks(&text_reply(false)))]).await;
    let reply = provider(&fake.base).complete(&request(), Some(&key("sk-test-openai"))).await.expect("reply");
    assert_eq!(reply.text, "Hello from Pinchy \u{1f99e} caf\u{e9}");
    assert_eq!(reply.stop_reason, StopReason::EndTurn);
    assert_eq!(reply.usage.input_tokens, 31);
    assert_eq!(reply.usage.output_tokens, 9);

    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.headers["authorization"], "Bearer sk-test-openai");
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["stream_options"]["include_usage"], true);
    assert_eq!(sent.body["messages"][0]["role"], "system");
    assert_eq!(sent.body["messages"][0]["content"], "You are Pinchy.");
    assert_eq!(sent.body["messages"][1]["content"], "hello");
    assert_eq!(sent.body["tools"][0]["type"], "function");
    assert_eq!(sent.body["tools"][0]["function"]["name"], "exec");
}

#[tokio::test]
async fn openai_crlf_stream_split_at_every_byte() {
    let body = text_reply(true);
    let pieces = body.as_bytes().iter().map(|b| vec![*b]).collect();
    let fake = serve(vec![Scripted::Stream(pieces)]).await;
    let reply = provider(&fake.base).complete(&request(), Some(&key("k"))).await.expect("reply");
    assert_eq!(reply.text, "Hello from Pinchy \u{1f99e} caf\u{e9}");
}

#[tokio::test]
async fn openai_tool_calls_keyed_by_index_with_arguments_in_pieces() {
    let call = |index: u64, id: Option<&str>, name: Option<&str>, args: &str| {
        let mut function = json!({"arguments": args});
        if let Some(name) = name {
            function["name"] = json!(name);
        }
        let mut piece = json!({"index": index, "function": function});
        if let Some(id) = id {
            piece["id"] = json!(id);
            piece["type"] = json!("function");
        }
        chunk(json!({"tool_calls": [piece]}), None)
    };
    let body = openai_frames(
        &[
            chunk(json!({"role": "assistant", "content": null}), None),
            call(0, Some("call_a"), Some("exec"), ""),
            call(0, None, None, "{\"comm"),
            call(1, Some("call_b"), Some("exec"), "{\"command\":"),
            call(0, None, None, "and\": \"ls\"}"),
            call(1, None, None, " \"pwd\"}"),
            chunk(json!({}), Some("tool_calls")),
            usage_chunk(),
        ],
        false,
    );
    let fake = serve(vec![Scripted::Stream(tiny_chunks(&body))]).await;
    let reply = provider(&fake.base).complete(&request(), Some(&key("k"))).await.expect("reply");
    assert_eq!(reply.stop_reason, StopReason::ToolUse);
    assert_eq!(reply.text, "");
    assert_eq!(reply.tool_calls.len(), 2);
    assert_eq!(reply.tool_calls[0].id, "call_a");
    assert_eq!(reply.tool_calls[0].arguments, json!({"command": "ls"}));
    assert_eq!(reply.tool_calls[1].id, "call_b");
    assert_eq!(reply.tool_calls[1].arguments, json!({"command": "pwd"}));
}

#[tokio::test]
async fn openai_error_chunk_mid_stream_ends_the_stream() {
    let body = format!(
        "data: {}\n\ndata: {}\n\n",
        chunk(json!({"content": "Partial"}), None),
        json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "code": null}})
    );
    let fake = serve(vec![Scripted::Stream(tiny_chunks(&body))]).await;
    let mut stream = provider(&fake.base).stream(&request(), Some(&key("k"))).await.expect("starts");
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event);
    }
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], Ok(StreamEvent::TextDelta("Partial".into())));
    let error = events[1].clone().expect_err("error");
    assert_eq!(error.to_string(), "provider error: internal error");
}

#[tokio::test]
async fn openai_429_with_retry_after_is_retried_then_succeeds() {
    let fake = serve(vec![
        Scripted::Status {
            status: 429,
            headers: vec![("retry-after", "1".to_owned())],
            body: r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#
                .to_owned(),
        },
        Scripted::Stream(tiny_chunks(&text_reply(false))),
    ])
    .await;
    let started = Instant::now();
    let reply = provider(&fake.base).complete(&request(), Some(&key("k"))).await.expect("second attempt");
    assert!(reply.text.starts_with("Hello"));
    assert_eq!(fake.requests().len(), 2);
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn openai_retry_after_ms_is_honoured() {
    let fake = serve(vec![
        Scripted::Status {
            status: 503,
            headers: vec![("retry-after-ms", "200".to_owned())],
            body: r#"{"error":{"message":"busy","type":"server_error"}}"#.to_owned(),
        },
        Scripted::Stream(tiny_chunks(&text_reply(false))),
    ])
    .await;
    let started = Instant::now();
    provider(&fake.base).complete(&request(), Some(&key("k"))).await.expect("second attempt");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn openai_401_is_a_clean_error() {
    let fake = serve(vec![Scripted::Status {
        status: 401,
        headers: vec![],
        body: r#"{"error":{"message":"Incorrect API key provided: sk-wrong. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#.to_owned(),
    }])
    .await;
    let error = provider(&fake.base).complete(&request(), Some(&key("sk-wrong"))).await.expect_err("unauthorized");
    assert_eq!(error, ProviderError::Unauthorized);
    assert_eq!(error.to_string(), "the AI provider rejected the API key");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn openai_compatible_local_server_needs_no_key_and_accepts_v1_base() {
    let fake = serve(vec![Scripted::Stream(tiny_chunks(&text_reply(false)))]).await;
    let mut settings = OpenAiSettings::new(BaseUrl::parse(&format!("{}/v1", fake.base)).expect("loopback"));
    settings.http = fast_http();
    assert!(!settings.require_key, "loopback servers may need no key");
    let provider = OpenAiProvider::new(settings).expect("builds");
    let reply = provider.complete(&request(), None).await.expect("reply");
    assert!(reply.text.starts_with("Hello"));
    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert!(sent.headers.get("authorization").is_none());
}

#[tokio::test]
async fn openai_stream_closed_after_finish_without_done_still_completes() {
    let body =
        format!("data: {}\n\ndata: {}\n\n", chunk(json!({"content": "ok"}), None), chunk(json!({}), Some("length")));
    let fake = serve(vec![Scripted::Stream(tiny_chunks(&body))]).await;
    let reply = provider(&fake.base).complete(&request(), Some(&key("k"))).await.expect("complete");
    assert_eq!(reply.stop_reason, StopReason::MaxTokens);
    assert_eq!(reply.text, "ok");
}
