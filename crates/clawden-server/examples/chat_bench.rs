//! Benchmark (not a test): what clawden adds to a chat turn. A local fake provider speaking
//! OpenAI's streaming format answers at once; the same request is timed straight to it and
//! through clawden's `/v1/chat/completions` (API key auth, conversation stored and sealed,
//! quota counted, workspace prompt built, reply stored), at concurrency 1 and 32. Loopback
//! only; every run is bounded in count.
//!
//! Run: `cargo run --release -p clawden-server --example chat_bench`

#![allow(clippy::unwrap_used)]

use axum::response::IntoResponse;
use clawden_server::{Server, Settings};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn fake_provider() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|body: axum::Json<Value>| async move {
            let last = body.0["messages"].as_array().and_then(|m| m.last()).and_then(|m| m["content"].as_str()).unwrap_or("").to_owned();
            let chunks = [
                json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "echo: "}, "finish_reason": null}]}),
                json!({"choices": [{"index": 0, "delta": {"content": last}, "finish_reason": "stop"}]}),
                json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}),
            ];
            let mut text = String::new();
            for c in chunks {
                text.push_str(&format!("data: {c}\n\n"));
            }
            text.push_str("data: [DONE]\n\n");
            ([(axum::http::header::CONTENT_TYPE, "text/event-stream")], text).into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Runs `total` requests with `concurrency` in flight; returns sorted latencies and wall time.
async fn run(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: &Value,
    total: usize,
    concurrency: usize,
) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, key, body, next) =
            (client.clone(), url.to_owned(), key.map(str::to_owned), body.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut times = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < total {
                let t = Instant::now();
                let mut req = client.post(&url).json(&body);
                if let Some(k) = &key {
                    req = req.bearer_auth(k);
                }
                let res = req.send().await.unwrap();
                assert!(res.status().is_success(), "{}", res.status());
                let _ = res.bytes().await.unwrap();
                times.push(t.elapsed());
            }
            times
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort();
    (all, started.elapsed())
}

#[tokio::main]
async fn main() {
    let provider = fake_provider().await;
    let data = tempfile::tempdir().unwrap();
    let settings = Settings {
        data_dir: data.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        provider: Some("openai".into()),
        openai_base_url: Some(provider.clone()),
        openai_api_key: Some("sk-bench-platform-key-0000".to_owned().into()),
        model: Some("bench".into()),
        ..Settings::default()
    };
    let mut settings = settings;
    settings.chat.base_messages_per_day = 10_000_000;
    settings.chat.messages_per_minute = 10_000_000;
    settings.chat.concurrent_streams_per_user = 1024;
    settings.chat.conversations_per_user = 10_000_000;
    let listener = std::net::TcpListener::bind(settings.listen).unwrap();
    let server = Server::build(settings, listener).await.unwrap();
    let base = server.url();
    tokio::spawn(async move { server.run(std::future::pending()).await.unwrap() });

    let client = reqwest::Client::builder().cookie_store(true).pool_max_idle_per_host(64).build().unwrap();
    let me: Value = client
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&json!({"email": "bench@example.com", "password": "violet-kettle-sings"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key: Value = client
        .post(format!("{base}/api/v1/api-keys"))
        .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
        .json(&json!({"name": "bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    let sdk = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let body = json!({"model": "clawden", "messages": [{"role": "user", "content": "benchmark message"}]});
    let direct_body = json!({"model": "bench", "stream": true, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "benchmark message"}]});
    // Warm up both paths.
    run(&sdk, &format!("{provider}/v1/chat/completions"), None, &direct_body, 50, 4).await;
    run(&sdk, &format!("{base}/v1/chat/completions"), Some(&key), &body, 50, 4).await;

    println!("{:<34} {:>10} {:>10} {:>12}", "path (N requests, concurrency)", "p50 ms", "p99 ms", "req/s");
    for (total, concurrency) in [(1000usize, 1usize), (3000, 32)] {
        let (d, dw) =
            run(&sdk, &format!("{provider}/v1/chat/completions"), None, &direct_body, total, concurrency).await;
        let (c, cw) = run(&sdk, &format!("{base}/v1/chat/completions"), Some(&key), &body, total, concurrency).await;
        println!(
            "{:<34} {:>10.3} {:>10.3} {:>12.0}",
            format!("direct to provider ({total}, c={concurrency})"),
            percentile(&d, 0.5),
            percentile(&d, 0.99),
            total as f64 / dw.as_secs_f64()
        );
        println!(
            "{:<34} {:>10.3} {:>10.3} {:>12.0}",
            format!("through clawden ({total}, c={concurrency})"),
            percentile(&c, 0.5),
            percentile(&c, 0.99),
            total as f64 / cw.as_secs_f64()
        );
        println!(
            "{:<34} {:>10.3} {:>10.3}",
            "added by clawden",
            percentile(&c, 0.5) - percentile(&d, 0.5),
            percentile(&c, 0.99) - percentile(&d, 0.99)
        );
    }
}
