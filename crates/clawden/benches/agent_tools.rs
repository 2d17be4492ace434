//! Benchmark (not a test): what the agent loop adds to a tool call. A real server with real
//! sandboxes and a local fake provider (loopback only), with the instance's policy letting
//! `exec` run without an approval. Printed side by side, p50 and p99 of:
//!
//! - the provider alone: one direct streaming call to the fake provider (reference);
//! - `exec true` straight through the server's sandbox manager (reference);
//! - a chat turn without tools;
//! - a chat turn in which the model calls `exec true` once (two provider rounds).
//!
//! The loop's own cost per tool call is the last minus the others: the policy check, the
//! daily quota count, the stored call and result (sealed), the audit record.
//!
//! `cargo bench -p clawden --bench agent_tools` (or `bench/tools.sh`).

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/agent.rs"]
mod agent_support;

use agent_support::*;
use clawden_core::Tier;
use clawden_sandbox::{EgressPolicy, ExecRequest, SandboxKey};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ROUNDS: usize = 200;

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    (at(0.50), at(0.99))
}

async fn measure<F, Fut>(mut f: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..10 {
        f().await;
    }
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed());
    }
    percentiles(samples)
}

fn main() {
    if !sandbox_available() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let app = App::start(|s| {
            s.chat.invite_messages_per_day = 1_000_000;
            s.chat.invite_tool_calls_per_day = 1_000_000;
            s.chat.conversations_per_user = 100_000;
            s.chat.messages_per_minute = 1_000_000;
            s.sandbox.idle_timeout = Duration::from_secs(600);
        })
        .await;
        let alice = app.user("bench@example.com", Tier::Invite).await;
        app.set_policy(&alice, json!({"elevated": []})).await;
        let me: Value = alice.client.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
        let key = SandboxKey {
            instance: alice.instance.parse().unwrap(),
            member: me["id"].as_str().unwrap().parse().unwrap(),
        };
        let provider_url = format!("{}/v1/chat/completions", app.provider_url());
        let direct = reqwest::Client::new();
        let provider = measure(|| {
            let (direct, url) = (direct.clone(), provider_url.clone());
            async move {
                let body = json!({"model": "gpt-test", "stream": true,
                    "messages": [{"role": "user", "content": "{\"calls\": []}"}]});
                let text = direct.post(url).json(&body).send().await.unwrap().text().await.unwrap();
                assert!(text.contains("[DONE]"));
            }
        })
        .await;
        let manager = app.state.sandbox.clone().unwrap();
        let exec = measure(|| {
            let manager = manager.clone();
            async move {
                let process = manager.exec(&key, EgressPolicy::default(), ExecRequest::new(["true"])).await.unwrap();
                assert!(process.wait().await.unwrap().success());
            }
        })
        .await;
        let turn = |calls: Value| {
            let (app, alice) = (&app, &alice);
            async move {
                let conv = app.conversation(alice).await;
                let started = Instant::now();
                let res = app.send(alice, &conv, calls).await;
                let elapsed = started.elapsed();
                assert_eq!(res.status(), 200);
                elapsed
            }
        };
        let mut plain = Vec::new();
        let mut with_tool = Vec::new();
        for i in 0..ROUNDS + 10 {
            let a = turn(json!([])).await;
            let b = turn(json!([{"name": "exec", "arguments": {"command": "true"}}])).await;
            if i >= 10 {
                plain.push(a);
                with_tool.push(b);
            }
        }
        let plain = percentiles(plain);
        let with_tool = percentiles(with_tool);
        println!("agent loop, {ROUNDS} rounds each (ms)            p50      p99");
        println!("provider alone (direct call, reference)     {:8.2} {:8.2}", provider.0, provider.1);
        println!("exec `true` via the sandbox manager (ref.)  {:8.2} {:8.2}", exec.0, exec.1);
        println!("chat turn, no tools                         {:8.2} {:8.2}", plain.0, plain.1);
        println!("chat turn, one exec tool call               {:8.2} {:8.2}", with_tool.0, with_tool.1);
        println!(
            "loop overhead of one tool call (p50): {:.2} ms  (turn with tool - turn without - exec - one provider round)",
            with_tool.0 - plain.0 - exec.0 - provider.0
        );
        app.stop().await;
    });
}
