//! A scripted fake provider: a local axum server on 127.0.0.1, port 0, that answers each
//! request with the next scripted response (the last one repeats) and records what it got.

#![allow(dead_code)] // each test file uses a different part of this helper

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Router;
use secrecy::SecretString;

/// One scripted answer.
#[derive(Clone)]
pub enum Scripted {
    /// 200 `text/event-stream`, the body written in the given pieces, a short pause between
    /// pieces so they reach the client as separate reads.
    Stream(Vec<Vec<u8>>),
    /// 200 `text/event-stream`: the pieces, then the connection stays open without data.
    StreamThenStall(Vec<Vec<u8>>),
    /// A plain response.
    Status {
        /// The status code.
        status: u16,
        /// Extra headers.
        headers: Vec<(&'static str, String)>,
        /// A JSON body.
        body: String,
    },
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

/// A running fake.
pub struct Fake {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Every request, in order.
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Fake {
    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("not poisoned").clone()
    }
}

/// Splits `body` into pieces of 1, 2, 3, 5 and 7 bytes in turn, so frames, lines, `\r\n`
/// pairs and multi-byte characters are cut at every kind of place.
pub fn tiny_chunks(body: &str) -> Vec<Vec<u8>> {
    let bytes = body.as_bytes();
    let sizes = [1usize, 2, 3, 5, 7];
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let end = (at + sizes[i % sizes.len()]).min(bytes.len());
        out.push(bytes[at..end].to_vec());
        at = end;
        i += 1;
    }
    out
}

/// SSE frames `event: NAME` + `data: JSON`, separated by blank lines, with `\n` endings.
pub fn anthropic_frames(events: &[serde_json::Value]) -> String {
    events
        .iter()
        .map(|e| {
            let name = e["type"].as_str().unwrap_or("message");
            format!("event: {name}\ndata: {e}\n\n")
        })
        .collect()
}

/// SSE `data:` frames for OpenAI chunks, then `data: [DONE]`; `\r\n` endings when asked.
pub fn openai_frames(chunks: &[serde_json::Value], crlf: bool) -> String {
    let nl = if crlf { "\r\n" } else { "\n" };
    let mut out: String = chunks.iter().map(|c| format!("data: {c}{nl}{nl}")).collect();
    out.push_str(&format!("data: [DONE]{nl}{nl}"));
    out
}

pub async fn serve(script: Vec<Scripted>) -> Fake {
    let received = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(script));
    let app = Router::new().fallback({
        let received = received.clone();
        move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let received = received.clone();
            let script = script.clone();
            async move {
                let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let index = {
                    let mut r = received.lock().expect("not poisoned");
                    r.push(Received { path: uri.path().to_owned(), headers, body });
                    r.len() - 1
                };
                let answer = {
                    let s = script.lock().expect("not poisoned");
                    s.get(index).or(s.last()).cloned()
                };
                respond(answer)
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Fake { base: format!("http://{addr}"), received }
}

fn respond(answer: Option<Scripted>) -> Response {
    let sse = |pieces: Vec<Vec<u8>>, stall: bool| {
        let stream = futures::stream::unfold((pieces.into_iter(), stall), |(mut pieces, stall)| async move {
            match pieces.next() {
                Some(piece) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Some((Ok::<_, Infallible>(Bytes::from(piece)), (pieces, stall)))
                }
                None if stall => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    None
                }
                None => None,
            }
        });
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .expect("valid response")
    };
    match answer {
        Some(Scripted::Stream(pieces)) => sse(pieces, false),
        Some(Scripted::StreamThenStall(pieces)) => sse(pieces, true),
        Some(Scripted::Status { status, headers, body }) => {
            let mut builder = Response::builder().status(status).header("content-type", "application/json");
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
            builder.body(Body::from(body)).expect("valid response")
        }
        None => Response::builder().status(500).body(Body::empty()).expect("valid response"),
    }
}

/// Fast settings for tests: short timeouts and backoff.
pub fn fast_http() -> clawden_agent::provider::HttpSettings {
    clawden_agent::provider::HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(2),
        retry: clawden_agent::provider::RetrySettings {
            max_retries: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(2),
        },
    }
}

pub fn key(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}
