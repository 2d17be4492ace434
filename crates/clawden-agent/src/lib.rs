//! The agent runtime of clawden.
//!
//! This crate holds the agent's parts:
//!
//! - [`provider`]: one streaming [`provider::Provider`] trait and clients of the real wire
//!   protocols of Anthropic's Messages API, OpenAI's Chat Completions (and every
//!   OpenAI-compatible server such as Ollama, vLLM or llama.cpp), plus the offline `demo`
//!   provider that needs no key.
//! - [`context`]: pure functions that turn an instance's workspace files and its recent
//!   conversation into the request a provider receives.
//! - [`runtime`]: one chat turn: the user's message stored and counted, the context built
//!   from the store, the provider streamed, the reply stored.
//! - [`workspace`]: the rules for the OpenClaw workspace files (which paths exist, size caps,
//!   UTF-8, `SKILL.md` frontmatter, default contents, which files the agent may never rewrite).

pub mod approvals;
pub mod context;
pub mod provider;
pub mod runtime;
pub mod tools;
pub mod workspace;

/// Locks a mutex of plain data. A panic while it was held leaves the data behind as it was;
/// carry on with it rather than poisoning every later caller.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
