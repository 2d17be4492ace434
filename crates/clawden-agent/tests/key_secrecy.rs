//! A planted provider key never shows up in an error's `Display` or `Debug`, nor in a log line,
//! even when the provider echoes it back in every kind of error.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use clawden_agent::provider::anthropic::{AnthropicProvider, AnthropicSettings};
use clawden_agent::provider::openai::{OpenAiProvider, OpenAiSettings};
use clawden_agent::provider::{collect_reply, BaseUrl, ChatMessage, ChatRequest, Provider, ProviderError};
use common::{fast_http, key, serve, tiny_chunks, Scripted};
use serde_json::json;

const PLANTED: &str = "sk-PLANTED-9f8e7d6c5b4a3210zyxw";

/// Every 8-character piece of the key; none may appear anywhere.
fn fragments() -> Vec<String> {
    let chars: Vec<char> = PLANTED.chars().collect();
    chars.windows(8).map(|w| w.iter().collect()).collect()
}

fn assert_clean(what: &str, text: &str) {
    for fragment in fragments() {
        assert!(!text.contains(&fragment), "{what} leaks `{fragment}` of the key: {text}");
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn echo(status: u16, body: serde_json::Value) -> Scripted {
    Scripted::Status { status, headers: vec![("retry-after", "120".to_owned())], body: body.to_string() }
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        system: "s".into(),
        messages: vec![ChatMessage::user("hi")],
        max_tokens: 16,
        ..ChatRequest::default()
    }
}

/// Everything a provider might send back that mentions the key.
fn anthropic_scripts() -> Vec<Scripted> {
    let said = format!("bad key {PLANTED} (ends in {})", &PLANTED[PLANTED.len() - 8..]);
    let error = |kind: &str| json!({"type": "error", "error": {"type": kind, "message": said}});
    let mid_stream = |kind: &str| {
        Scripted::Stream(tiny_chunks(&format!(
            "event: message_start\ndata: {}\n\nevent: error\ndata: {}\n\n",
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 1}}}),
            error(kind)
        )))
    };
    vec![
        echo(401, error("authentication_error")),
        echo(400, error("invalid_request_error")),
        echo(403, error("permission_error")),
        echo(404, error("not_found_error")),
        echo(413, error("request_too_large")),
        echo(429, error("rate_limit_error")),
        echo(500, error("api_error")),
        echo(502, json!({"message": said})),
        echo(418, error("teapot_error")),
        mid_stream("invalid_request_error"),
        mid_stream("something_new"),
        mid_stream("overloaded_error"),
    ]
}

fn openai_scripts() -> Vec<Scripted> {
    let said = format!("Incorrect API key provided: {PLANTED}.");
    let error = |kind: &str| json!({"error": {"message": said, "type": kind, "code": kind}});
    let mid_stream = |body: serde_json::Value| {
        Scripted::Stream(tiny_chunks(&format!(
            "data: {}\n\ndata: {body}\n\n",
            json!({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": null}]})
        )))
    };
    vec![
        echo(401, error("invalid_request_error")),
        echo(400, error("invalid_request_error")),
        echo(422, json!({"error": said})),
        echo(429, error("rate_limit_exceeded")),
        echo(500, error("server_error")),
        echo(503, json!({"error": said})),
        echo(409, json!({"detail": said})),
        mid_stream(error("invalid_request_error")),
        mid_stream(error("weird")),
        mid_stream(json!({"error": said})),
    ]
}

async fn errors_from(provider: &dyn Provider, calls: usize) -> Vec<ProviderError> {
    let key = key(PLANTED);
    let mut errors = Vec::new();
    for _ in 0..calls {
        let outcome = match provider.stream(&request(), Some(&key)).await {
            Ok(stream) => collect_reply(stream).await.map(|_| ()),
            Err(error) => Err(error),
        };
        errors.push(outcome.expect_err("every scripted answer is an error"));
    }
    errors
}

#[tokio::test]
async fn provider_key_never_appears_in_errors_or_logs() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut no_retry = fast_http();
    no_retry.retry.max_retries = 0;

    let scripts = anthropic_scripts();
    let calls = scripts.len();
    let fake = serve(scripts).await;
    let mut settings = AnthropicSettings::new(BaseUrl::parse(&fake.base).expect("loopback"));
    settings.http = no_retry.clone();
    let anthropic = AnthropicProvider::new(settings).expect("builds");
    let mut errors = errors_from(&anthropic, calls).await;
    assert_eq!(fake.requests().len(), calls);
    assert_eq!(errors[0], ProviderError::Unauthorized);

    let scripts = openai_scripts();
    let calls = scripts.len();
    let fake = serve(scripts).await;
    let mut settings = OpenAiSettings::new(BaseUrl::parse(&fake.base).expect("loopback"));
    settings.http = no_retry;
    let openai = OpenAiProvider::new(settings).expect("builds");
    errors.extend(errors_from(&openai, calls).await);

    // A key that cannot be a header value is refused without echoing it.
    let broken = key(&format!("{PLANTED}\n"));
    errors.push(openai.complete(&request(), Some(&broken)).await.expect_err("malformed key"));

    assert!(errors.len() > 20);
    for error in &errors {
        assert_clean("Display", &error.to_string());
        assert_clean("Debug", &format!("{error:?}"));
    }
    // The errors still say something useful.
    assert!(errors.iter().any(|e| e.to_string().starts_with("the AI provider rejected the request: ")));
    assert!(errors.contains(&ProviderError::MalformedKey));

    assert_clean("provider Debug", &format!("{anthropic:?} {openai:?}"));
    assert_clean("key Debug", &format!("{:?}", key(PLANTED)));

    let logs = String::from_utf8(logs.0.lock().expect("not poisoned").clone()).expect("utf-8");
    assert!(logs.contains("provider call refused"), "logging was captured");
    assert_clean("logs", &logs);
}
