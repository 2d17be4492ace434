//! One chat turn, from the user's message to the stored reply.
//!
//! [`Runtime::accept`] stores the user's message and counts it against the caller's daily
//! quota in one transaction, before any provider is called — an accepted message is never
//! lost. [`Runtime::respond`] then runs the provider call in a task of its own and streams
//! [`TurnEvent`]s; the task finishes and stores the reply even when the client goes away.

use crate::context::{build_request, ContextInput, ContextSettings, WorkspaceFile};
use crate::provider::{ChatMessage, Provider, ProviderError, StreamEvent, Usage};
use crate::workspace::WorkspacePath;
use clawden_core::{Clock, Principal, Tier, UnixMillis, UserId};
use clawden_store::{Conversation, DailyUsage, Store, StoreError, StoredMessage};
use futures::StreamExt;
use secrecy::SecretString;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Daily limits per tier.
#[derive(Debug, Clone)]
pub struct Quotas {
    /// Messages a day on the base tier.
    pub base_messages_per_day: i64,
    /// Messages a day on the invite tier.
    pub invite_messages_per_day: i64,
    /// Tool calls a day on the base tier (no tools: zero).
    pub base_tool_calls_per_day: i64,
    /// Tool calls a day on the invite tier.
    pub invite_tool_calls_per_day: i64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            base_messages_per_day: 50,
            invite_messages_per_day: 1000,
            base_tool_calls_per_day: 0,
            invite_tool_calls_per_day: 500,
        }
    }
}

impl Quotas {
    /// Messages a day for a tier.
    pub fn messages(&self, tier: Tier) -> i64 {
        match tier {
            Tier::Base => self.base_messages_per_day,
            Tier::Invite => self.invite_messages_per_day,
        }
    }

    /// Tool calls a day for a tier.
    pub fn tool_calls(&self, tier: Tier) -> i64 {
        match tier {
            Tier::Base => self.base_tool_calls_per_day,
            Tier::Invite => self.invite_tool_calls_per_day,
        }
    }
}

/// How turns run.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// The provider's model name.
    pub model: String,
    /// The most tokens a reply may have.
    pub max_tokens: u32,
    /// How many stored messages are read to build the context (then trimmed to the budget).
    pub history_messages: i64,
    /// Context budget and skill inlining.
    pub context: ContextSettings,
    /// Daily limits.
    pub quotas: Quotas,
    /// The longest user message, in characters.
    pub max_message_chars: usize,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            model: "demo".into(),
            max_tokens: 4096,
            history_messages: 200,
            context: ContextSettings::default(),
            quotas: Quotas::default(),
            max_message_chars: 32_000,
        }
    }
}

/// Why a turn could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// The conversation is not the caller's (or does not exist).
    #[error("no such conversation")]
    NotFound,
    /// Empty, too long, or not text.
    #[error("{0}")]
    BadMessage(String),
    /// Today's message quota is spent; try again after `retry_after_secs`.
    #[error("today's message quota is spent")]
    QuotaExceeded {
        /// Seconds until the quota resets (next UTC midnight).
        retry_after_secs: u64,
    },
    /// The provider failed (its message is safe to show).
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for TurnError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound | StoreError::Forbidden => TurnError::NotFound,
            other => TurnError::Store(other),
        }
    }
}

/// What a running turn reports.
#[derive(Debug, Clone)]
pub enum TurnEvent {
    /// More reply text.
    Delta(String),
    /// The reply is complete and stored.
    Finished {
        /// The stored assistant message.
        reply: StoredMessage,
        /// Its text.
        text: String,
        /// Tokens counted by the provider.
        usage: Usage,
    },
    /// The provider failed; the user's message stays, without a reply.
    Failed {
        /// Stable error code.
        code: &'static str,
        /// Message safe to show.
        message: String,
    },
}

/// The UTC day of a time, as stored in the usage table (`2026-11-25`).
pub fn utc_day(millis: UnixMillis) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::from_unix_timestamp(millis.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "1970-01-01".into())
}

/// Seconds from `millis` to the next UTC midnight (at least 1).
pub fn secs_until_next_utc_day(millis: UnixMillis) -> u64 {
    let day_ms = 86_400_000;
    let rest = day_ms - millis.rem_euclid(day_ms);
    u64::try_from(rest.div_euclid(1000).max(1)).unwrap_or(1)
}

/// Runs chat turns.
#[derive(Debug)]
pub struct Runtime {
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    platform_key: Option<SecretString>,
    clock: Arc<dyn Clock>,
    settings: RuntimeSettings,
}

/// The stored form of a message: the provider message as JSON.
pub fn encode_message(message: &ChatMessage) -> String {
    // Serialising a plain enum of strings and JSON values cannot fail.
    serde_json::to_string(message).unwrap_or_default()
}

/// Reads a stored message back; `None` for a body this version does not understand.
pub fn decode_message(body: &str) -> Option<ChatMessage> {
    serde_json::from_str(body).ok()
}

impl Runtime {
    /// A runtime over a store and a provider. `platform_key` is used when the caller has no
    /// key of their own stored for the provider.
    pub fn new(
        store: Arc<dyn Store>,
        provider: Arc<dyn Provider>,
        platform_key: Option<SecretString>,
        clock: Arc<dyn Clock>,
        settings: RuntimeSettings,
    ) -> Self {
        Self { store, provider, platform_key, clock, settings }
    }

    /// The settings.
    pub fn settings(&self) -> &RuntimeSettings {
        &self.settings
    }

    /// The provider's name.
    pub fn provider_name(&self) -> &'static str {
        self.provider.name()
    }

    /// The tier that decides an instance's limits, tools and sandbox: its owner's tier. The
    /// one place this is decided.
    pub async fn tier_of(&self, instance: clawden_core::InstanceId) -> Result<Tier, TurnError> {
        Ok(self.store.instance_tier(&Principal::System, instance).await?.unwrap_or(Tier::Base))
    }

    /// Checks and stores the user's message, counting it against today's quota. Nothing is
    /// sent anywhere before this returns.
    pub async fn accept(
        &self,
        caller: UserId,
        conversation: &Conversation,
        content: &str,
    ) -> Result<StoredMessage, TurnError> {
        let content = content.trim_end();
        if content.trim().is_empty() {
            return Err(TurnError::BadMessage("the message is empty".into()));
        }
        let chars = content.chars().count();
        if chars > self.settings.max_message_chars {
            return Err(TurnError::BadMessage(format!(
                "the message has {chars} characters; at most {} are accepted",
                self.settings.max_message_chars
            )));
        }
        let tier = self.tier_of(conversation.instance_id).await?;
        let now = self.clock.now_millis();
        let body = encode_message(&ChatMessage::user(content));
        let principal = Principal::User { user: caller };
        match self
            .store
            .append_user_message(
                &principal,
                conversation.id,
                &body,
                &utc_day(now),
                self.settings.quotas.messages(tier),
                now,
            )
            .await
        {
            Ok(message) => Ok(message),
            Err(StoreError::QuotaExceeded) => {
                Err(TurnError::QuotaExceeded { retry_after_secs: secs_until_next_utc_day(now) })
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Stores a message of the client's own transcript (OpenAI-compatible calls carry their
    /// history) without counting it: only the new message is charged.
    pub async fn record_transcript(
        &self,
        caller: UserId,
        conversation: &Conversation,
        message: &ChatMessage,
    ) -> Result<(), TurnError> {
        let role = match message {
            ChatMessage::User { .. } => "user",
            ChatMessage::Assistant { .. } => "assistant",
            ChatMessage::ToolResult { .. } => return Ok(()),
        };
        let now = self.clock.now_millis();
        self.store
            .append_server_message(&Principal::System, caller, conversation.id, role, &encode_message(message), now)
            .await?;
        Ok(())
    }

    /// Starts the provider call for the conversation's latest message in a task of its own
    /// and returns its events. `client_context` is text an OpenAI-compatible client sent as
    /// system messages (placed below the agent's own prompt).
    pub fn respond(
        self: &Arc<Self>,
        caller: UserId,
        conversation: Conversation,
        client_context: Vec<String>,
    ) -> mpsc::Receiver<TurnEvent> {
        let (tx, rx) = mpsc::channel(64);
        let runtime = Arc::clone(self);
        tokio::spawn(async move {
            let event = match runtime.run(caller, &conversation, &client_context, &tx).await {
                Ok(done) => done,
                Err(err) => {
                    let (code, message) = match &err {
                        TurnError::Provider(p) => (p.code(), p.to_string()),
                        TurnError::Store(e) => {
                            tracing::error!(error = %e, "turn failed in the store");
                            ("internal", "something went wrong on our side".to_owned())
                        }
                        other => ("turn_failed", other.to_string()),
                    };
                    TurnEvent::Failed { code, message }
                }
            };
            // The client may have left; the reply is stored either way.
            let _ = tx.send(event).await;
        });
        rx
    }

    async fn run(
        &self,
        caller: UserId,
        conversation: &Conversation,
        client_context: &[String],
        tx: &mpsc::Sender<TurnEvent>,
    ) -> Result<TurnEvent, TurnError> {
        let principal = Principal::User { user: caller };
        let files: Vec<WorkspaceFile> = self
            .store
            .read_files(&Principal::System, conversation.instance_id)
            .await?
            .into_iter()
            .filter_map(|(path, content)| WorkspacePath::parse(&path).ok().map(|path| WorkspaceFile { path, content }))
            .collect();
        let history: Vec<ChatMessage> = self
            .store
            .messages(&principal, conversation.id, self.settings.history_messages)
            .await?
            .iter()
            .filter_map(|m| decode_message(&m.body))
            .collect();
        let request = build_request(
            ContextInput {
                files: &files,
                history: &history,
                client_context,
                tools: &[],
                model: &self.settings.model,
                max_tokens: self.settings.max_tokens,
            },
            &self.settings.context,
        );
        // The caller's own key for this provider (BYOK), else the platform's.
        let own = self.store.use_credential(&Principal::System, caller, self.provider.name()).await?;
        let key = own.as_ref().or(self.platform_key.as_ref());
        let mut stream = self.provider.stream(&request, key).await?;
        let mut text = String::new();
        let mut usage = Usage::default();
        while let Some(event) = stream.next().await {
            match event? {
                StreamEvent::TextDelta(delta) => {
                    text.push_str(&delta);
                    let _ = tx.send(TurnEvent::Delta(delta)).await;
                }
                StreamEvent::Usage(u) => usage = u,
                StreamEvent::ToolCall(_) => {
                    // Tools are not offered on this path; a model that calls one anyway gets
                    // nothing run.
                }
                StreamEvent::Finish(_) => break,
            }
        }
        let now = self.clock.now_millis();
        let body = encode_message(&ChatMessage::assistant(text.clone()));
        let counted = DailyUsage {
            messages: 0,
            input_tokens: i64::try_from(usage.input_tokens).unwrap_or(i64::MAX),
            output_tokens: i64::try_from(usage.output_tokens).unwrap_or(i64::MAX),
            tool_calls: 0,
        };
        // The reply and its token counts in one write transaction.
        let reply = self
            .store
            .append_reply(&Principal::System, caller, conversation.id, &body, &utc_day(now), counted, now)
            .await?;
        Ok(TurnEvent::Finished { reply, text, usage })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_resets() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(1_764_093_600_000), "2025-11-25");
        assert_eq!(secs_until_next_utc_day(86_400_000 - 1_500), 1);
        assert_eq!(secs_until_next_utc_day(0), 86_400);
    }

    #[test]
    fn messages_round_trip_through_storage() {
        let m = ChatMessage::assistant("hello");
        assert_eq!(decode_message(&encode_message(&m)), Some(m));
        assert_eq!(decode_message("{not json"), None);
    }
}
