//! Building the agent runtime from the settings, and the per-user limits on chatting that
//! live in the server: bursts per minute, replies streaming at once, WebSockets open at once.

use crate::error::ApiError;
use crate::limits::WindowCounter;
use crate::settings::Settings;
use axum::http::StatusCode;
use clawden_agent::provider::anthropic::AnthropicSettings;
use clawden_agent::provider::openai::OpenAiSettings;
use clawden_agent::provider::{BaseUrl, Provider, ProviderConfig};
use clawden_agent::runtime::{Quotas, RuntimeSettings, ToolLimits, TurnError};
use clawden_core::{Clock, UserId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The provider the settings name, and the platform key for it.
pub fn build_provider(settings: &Settings) -> Result<(Arc<dyn Provider>, Option<secrecy::SecretString>), String> {
    let parse = |url: &str| BaseUrl::parse(url).map_err(|e| e.to_string());
    let config = match settings.provider_name() {
        "anthropic" => {
            let base = parse(settings.anthropic_base_url.as_deref().unwrap_or("https://api.anthropic.com"))?;
            (ProviderConfig::Anthropic(AnthropicSettings::new(base)), settings.anthropic_api_key.clone())
        }
        "openai" => {
            let base = parse(settings.openai_base_url.as_deref().unwrap_or("https://api.openai.com"))?;
            (ProviderConfig::OpenAi(OpenAiSettings::new(base)), settings.openai_api_key.clone())
        }
        _ => (ProviderConfig::Demo, None),
    };
    let provider = config.0.build().map_err(|e| e.to_string())?;
    Ok((provider, config.1))
}

/// The runtime's settings from the server's.
pub fn runtime_settings(settings: &Settings) -> RuntimeSettings {
    RuntimeSettings {
        model: settings.model_name(),
        max_tokens: settings.chat.max_reply_tokens,
        max_message_chars: settings.chat.max_message_chars,
        quotas: Quotas {
            base_messages_per_day: settings.chat.base_messages_per_day,
            invite_messages_per_day: settings.chat.invite_messages_per_day,
            base_tool_calls_per_day: 0,
            invite_tool_calls_per_day: settings.chat.invite_tool_calls_per_day,
        },
        tools: ToolLimits {
            max_calls_per_turn: settings.tools.max_calls_per_turn,
            turn_timeout: settings.tools.turn_timeout,
            max_tokens_per_turn: settings.tools.max_tokens_per_turn,
            max_repeats: settings.tools.max_repeats,
            max_result_chars: settings.tools.max_result_chars,
        },
        ..RuntimeSettings::default()
    }
}

/// Maps a turn error to the API's error shape.
pub fn turn_error(err: TurnError) -> ApiError {
    match err {
        TurnError::NotFound => ApiError::not_found(),
        TurnError::BadMessage(m) => ApiError::bad_request("invalid_message", m),
        TurnError::QuotaExceeded { retry_after_secs } => {
            let mut e =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", "today's message quota is spent");
            e.set_retry_after(retry_after_secs);
            e
        }
        TurnError::Provider(p) => ApiError::new(StatusCode::BAD_GATEWAY, p.code(), p.to_string()),
        TurnError::Store(e) => ApiError::internal(e),
        TurnError::Stopped => {
            ApiError::new(StatusCode::CONFLICT, "stopped", "the turn was stopped by an owner or admin")
        }
        TurnError::TimedOut(secs) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "turn_timeout",
            format!("the turn took longer than {secs} s and was stopped"),
        ),
    }
}

/// Counts something a user holds open, up to a cap; the slot frees itself when dropped.
#[derive(Debug, Default)]
pub struct Slots {
    held: Mutex<HashMap<UserId, usize>>,
}

/// One held slot.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    user: UserId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.user);
            }
        }
    }
}

impl Slots {
    /// Takes a slot for `user` if fewer than `cap` are held.
    pub fn take(self: &Arc<Self>, user: UserId, cap: usize) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(user).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot { slots: Arc::clone(self), user })
    }
}

/// The server-side chat limits.
#[derive(Debug)]
pub struct ChatLimits {
    clock: Arc<dyn Clock>,
    per_minute: WindowCounter,
    /// Replies streaming now, per user.
    pub streams: Arc<Slots>,
    /// WebSockets open now, per user.
    pub sockets: Arc<Slots>,
    /// Replies of turns that finished in the background (after a 202), for the user's
    /// WebSockets.
    pub background: tokio::sync::broadcast::Sender<BackgroundReply>,
}

/// A reply that landed after its request had already been answered.
#[derive(Debug, Clone)]
pub struct BackgroundReply {
    /// Whose conversation.
    pub user: UserId,
    /// The conversation.
    pub conversation: clawden_core::ConversationId,
    /// The stored reply, or the failure.
    pub outcome: Result<clawden_store::StoredMessage, (&'static str, String)>,
}

/// Reads a turn's remaining events in the background and announces its end on the user's
/// WebSockets. The turn keeps its streaming slot until it ends, so background turns count
/// against the same per-user cap as open streams.
pub fn finish_in_background(
    limits: &Arc<ChatLimits>,
    user: UserId,
    conversation: clawden_core::ConversationId,
    mut events: tokio::sync::mpsc::Receiver<clawden_agent::runtime::TurnEvent>,
    slot: Slot,
) {
    let feed = limits.background.clone();
    tokio::spawn(async move {
        let _slot = slot;
        use clawden_agent::runtime::TurnEvent;
        while let Some(event) = events.recv().await {
            let outcome = match event {
                TurnEvent::Finished { reply, .. } => Ok(reply),
                TurnEvent::Failed { code, message } => Err((code, message)),
                _ => continue,
            };
            let _ = feed.send(BackgroundReply { user, conversation, outcome });
            break;
        }
    });
}

impl ChatLimits {
    /// Limits from the settings.
    pub fn new(settings: &Settings, clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            per_minute: WindowCounter::new(settings.chat.messages_per_minute, 60_000),
            streams: Arc::default(),
            sockets: Arc::default(),
            background: tokio::sync::broadcast::channel(256).0,
        }
    }

    /// Counts one message against the per-minute burst limit.
    pub fn burst(&self, user: UserId) -> Result<(), ApiError> {
        self.per_minute.hit(&user.to_string(), self.clock.now_millis()).map_err(|wait| {
            let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many messages; slow down");
            e.set_retry_after(wait);
            e
        })
    }

    /// Takes a streaming slot.
    pub fn stream_slot(&self, user: UserId, cap: usize) -> Result<Slot, ApiError> {
        self.streams.take(user, cap).ok_or_else(|| {
            let mut e =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", "too many replies in progress");
            e.set_retry_after(1);
            e
        })
    }
}
