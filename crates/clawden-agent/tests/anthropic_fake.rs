//! The Anthropic client against a local fake that speaks the Messages API stream format.

mod common;

use std::time::{Duration, Instant};

use clawden_agent::provider::anthropic::{AnthropicProvider, AnthropicSettings};
use clawden_agent::provider::{
    collect_reply, BaseUrl, ChatMessage, ChatRequest, Provider, ProviderError, StopReason, StreamEvent, ToolDefinition,
};
use common::{anthropic_frames, fast_http, key, serve, tiny_chunks, Scripted};
use futures::StreamExt;
use serde_json::json;

fn provider(base: &str) -> AnthropicProvider {
    let mut settings = AnthropicSettings::new(BaseUrl::parse(base).expect("loopback base"));
    settings.http = fast_http();
    AnthropicProvider::new(settings).expect("client builds")
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "claude-test".into(),
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

fn message_start(input_tokens: u64) -> serde_json::Value {
    json!({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [],
        "model": "claude-test", "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "cache_read_input_tokens": 5, "output_tokens": 1}}})
}

fn text_reply_frames() -> String {
    anthropic_frames(&[
        message_start(20),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "ping"}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello, I'm "}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Pinchy \u{1f99e} \u{2014} caf\u{e9}!"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 12}}),
        json!({"type": "message_stop"}),
    ])
}

#[tokio::test]
async fn anthropic_plain_text_reply_in_tiny_chunks() {
    let fake = serve(vec![Scripted::Stream(tiny_chunks(&text_reply_frames()))]).await;
    let reply = provider(&fake.base).complete(&request(), Some(&key("sk-ant-test-key"))).await.expect("reply");
    assert_eq!(reply.text, "Hello, I'm Pinchy \u{1f99e} \u{2014} caf\u{e9}!");
    assert_eq!(reply.stop_reason, StopReason::EndTurn);
    assert_eq!(reply.usage.input_tokens, 25, "input plus cached input");
    assert_eq!(reply.usage.output_tokens, 12);
    assert!(reply.tool_calls.is_empty());

    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.headers["x-api-key"], "sk-ant-test-key");
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert!(sent.headers.get("authorization").is_none());
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["model"], "claude-test");
    assert_eq!(sent.body["system"], "You are Pinchy.");
    assert_eq!(sent.body["max_tokens"], 256);
    assert_eq!(sent.body["messages"][0]["content"][0]["text"], "hello");
    assert_eq!(sent.body["tools"][0]["name"], "exec");
    assert_eq!(sent.body["tools"][0]["input_schema"]["properties"]["command"]["type"], "string");
}

#[tokio::test]
async fn anthropic_sse_split_at_every_byte_with_crlf() {
    let body = text_reply_frames().replace('\n', "\r\n");
    let pieces = body.as_bytes().iter().map(|b| vec![*b]).collect();
    let fake = serve(vec![Scripted::Stream(pieces)]).await;
    let reply = provider(&fake.base).complete(&request(), Some(&key("k"))).await.expect("reply");
    assert_eq!(reply.text, "Hello, I'm Pinchy \u{1f99e} \u{2014} caf\u{e9}!");
}

#[tokio::test]
async fn anthropic_tool_call_arguments_split_over_several_chunks() {
    let frames = anthropic_frames(&[
        message_start(30),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me look."}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_01", "name": "exec", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"comm"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "and\": \"ls -la /work"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "space\"}"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 40}}),
        json!({"type": "message_stop"}),
    ]);
    let fake = serve(vec![Scripted::Stream(tiny_chunks(&frames))]).await;
    let reply = provider(&fake.base).complete(&request(), Some(&key("k"))).await.expect("reply");
    assert_eq!(reply.text, "Let me look.");
    assert_eq!(reply.stop_reason, StopReason::ToolUse);
    assert_eq!(reply.tool_calls.len(), 1);
    assert_eq!(reply.tool_calls[0].id, "toolu_01");
    assert_eq!(reply.tool_calls[0].name, "exec");
    assert_eq!(reply.tool_calls[0].arguments, json!({"command": "ls -la /workspace"}));
}

#[tokio::test]
async fn anthropic_mid_stream_error_event_ends_the_stream_after_the_text_so_far() {
    let frames = anthropic_frames(&[
        message_start(10),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Partial"}}),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ]);
    let fake = serve(vec![Scripted::Stream(tiny_chunks(&frames))]).await;
    let mut stream = provider(&fake.base).stream(&request(), Some(&key("k"))).await.expect("stream starts");
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event);
    }
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], Ok(StreamEvent::TextDelta("Partial".to_owned())));
    let error = events[1].clone().expect_err("an error");
    assert_eq!(error.to_string(), "provider error: overloaded");
    assert_eq!(fake.requests().len(), 1, "no retry once the stream started");
}

#[tokio::test]
async fn anthropic_429_with_retry_after_is_retried_then_succeeds() {
    let fake = serve(vec![
        Scripted::Status {
            status: 429,
            headers: vec![("retry-after", "1".to_owned())],
            body: r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#.to_owned(),
        },
        Scripted::Stream(tiny_chunks(&text_reply_frames())),
    ])
    .await;
    let started = Instant::now();
    let reply = provider(&fake.base).complete(&request(), Some(&key("k"))).await.expect("second attempt succeeds");
    assert!(reply.text.starts_with("Hello"));
    assert_eq!(fake.requests().len(), 2, "one retry");
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After honoured");
}

#[tokio::test]
async fn anthropic_retry_after_longer_than_allowed_is_not_waited_for() {
    let fake = serve(vec![Scripted::Status {
        status: 429,
        headers: vec![("retry-after", "120".to_owned())],
        body: r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#.to_owned(),
    }])
    .await;
    let error = provider(&fake.base).complete(&request(), Some(&key("k"))).await.expect_err("rate limited");
    assert_eq!(error, ProviderError::RateLimited { retry_after: Some(Duration::from_secs(120)) });
    assert_eq!(error.to_string(), "rate limited by the provider");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn anthropic_overloaded_529_is_retried_a_bounded_number_of_times() {
    let fake = serve(vec![Scripted::Status {
        status: 529,
        headers: vec![],
        body: r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.to_owned(),
    }])
    .await;
    let error = provider(&fake.base).complete(&request(), Some(&key("k"))).await.expect_err("still overloaded");
    assert_eq!(error.to_string(), "provider error: overloaded");
    assert_eq!(fake.requests().len(), 3, "first attempt and two retries");
}

#[tokio::test]
async fn anthropic_401_is_a_clean_error_and_not_retried() {
    let fake = serve(vec![Scripted::Status {
        status: 401,
        headers: vec![],
        body: r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#.to_owned(),
    }])
    .await;
    let error = provider(&fake.base).complete(&request(), Some(&key("sk-ant-wrong"))).await.expect_err("unauthorized");
    assert_eq!(error, ProviderError::Unauthorized);
    assert_eq!(error.to_string(), "the AI provider rejected the API key");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn anthropic_without_a_key_sends_nothing() {
    let fake = serve(vec![Scripted::Stream(tiny_chunks(&text_reply_frames()))]).await;
    let error = provider(&fake.base).complete(&request(), None).await.expect_err("no key");
    assert_eq!(error, ProviderError::MissingKey);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn anthropic_stream_cut_before_message_stop_is_truncated() {
    let frames = anthropic_frames(&[
        message_start(10),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Half"}}),
    ]);
    let fake = serve(vec![Scripted::Stream(tiny_chunks(&frames))]).await;
    let stream = provider(&fake.base).stream(&request(), Some(&key("k"))).await.expect("starts");
    assert_eq!(collect_reply(stream).await, Err(ProviderError::Truncated));
}

#[tokio::test]
async fn anthropic_silent_stream_hits_the_idle_timeout() {
    let frames = anthropic_frames(&[message_start(10)]);
    let fake = serve(vec![Scripted::StreamThenStall(tiny_chunks(&frames))]).await;
    let mut settings = AnthropicSettings::new(BaseUrl::parse(&fake.base).expect("loopback"));
    settings.http = fast_http();
    settings.http.idle_timeout = Duration::from_millis(300);
    let provider = AnthropicProvider::new(settings).expect("builds");
    let started = Instant::now();
    let error = provider.complete(&request(), Some(&key("k"))).await.expect_err("times out");
    assert_eq!(error, ProviderError::Timeout);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn remote_plain_http_base_url_is_refused() {
    let error = BaseUrl::parse("http://api.anthropic.com").expect_err("refused");
    assert!(matches!(error, ProviderError::Config { .. }));
}

#[tokio::test]
async fn redirects_are_never_followed_so_the_key_stays_with_the_configured_host() {
    let elsewhere = serve(vec![Scripted::Stream(tiny_chunks(&text_reply_frames()))]).await;
    let fake = serve(vec![Scripted::Status {
        status: 307,
        headers: vec![("location", format!("{}/v1/messages", elsewhere.base))],
        body: String::new(),
    }])
    .await;
    let error = provider(&fake.base).complete(&request(), Some(&key("k"))).await.expect_err("redirect refused");
    assert_eq!(error.to_string(), "provider error: HTTP 307");
    assert!(elsewhere.requests().is_empty());
}

#[tokio::test]
async fn anthropic_overloaded_error_before_any_event_is_retried() {
    let overloaded = anthropic_frames(&[
        message_start(10),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ]);
    let fake =
        serve(vec![Scripted::Stream(tiny_chunks(&overloaded)), Scripted::Stream(tiny_chunks(&text_reply_frames()))])
            .await;
    let reply = provider(&fake.base).complete(&request(), Some(&key("k"))).await.expect("retried and succeeded");
    assert!(reply.text.starts_with("Hello"));
    assert_eq!(fake.requests().len(), 2);
}
