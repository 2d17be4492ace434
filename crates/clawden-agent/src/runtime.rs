//! One chat turn, from the user's message to the stored reply.
//!
//! [`Runtime::accept`] stores the user's message and counts it against the caller's daily
//! quota in one transaction, before any provider is called — an accepted message is never
//! lost. [`Runtime::respond`] then runs the provider call in a task of its own and streams
//! [`TurnEvent`]s; the task finishes and stores the reply even when the client goes away.

use crate::approvals::ApprovalHub;
use crate::context::{build_request, ContextInput, ContextSettings, WorkspaceFile};
use crate::lock;
use crate::provider::{ChatMessage, Provider, ProviderError, StreamEvent, ToolCall, Usage};
use crate::tools::policy::{call_digest, ToolPolicy, Verdict};
use crate::tools::{ToolContext, ToolExecutor, ToolName, ToolOutput};
use crate::workspace::WorkspacePath;
use clawden_core::{Clock, InstanceId, Outcome, Principal, Tier, UnixMillis, UserId};
use clawden_store::{
    Approval, ApprovalStatus, AuditChain, AuditEvent, Conversation, DailyUsage, Store, StoreError, StoredMessage,
};
use futures::StreamExt;
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
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
    /// Limits of the agent loop.
    pub tools: ToolLimits,
}

/// Limits that stop a runaway agent loop.
#[derive(Debug, Clone)]
pub struct ToolLimits {
    /// The most tool calls in one turn (default 25).
    pub max_calls_per_turn: usize,
    /// The longest a turn may run, tool calls and approvals included (default 10 min).
    pub turn_timeout: Duration,
    /// The most provider tokens (read and written) one turn may use (default 400 000).
    pub max_tokens_per_turn: u64,
    /// The same call (tool and arguments) is run at most this many times in one turn
    /// (default 3); the next one is refused as a loop.
    pub max_repeats: usize,
    /// A tool result is cut to this many characters before it is stored and sent back.
    pub max_result_chars: usize,
}

impl Default for ToolLimits {
    fn default() -> Self {
        ToolLimits {
            max_calls_per_turn: 25,
            turn_timeout: Duration::from_secs(600),
            max_tokens_per_turn: 400_000,
            max_repeats: 3,
            max_result_chars: 32_000,
        }
    }
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
            tools: ToolLimits::default(),
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
    /// An owner or admin stopped the turn.
    #[error("the turn was stopped by an owner or admin of the instance")]
    Stopped,
    /// The turn ran longer than the limit.
    #[error("the turn took longer than {0} s and was stopped")]
    TimedOut(u64),
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
    /// The model asked for a tool call (shown before it runs or waits).
    ToolCall(ToolCall),
    /// A call waits for an owner's or admin's approval.
    ApprovalRequired(Approval),
    /// A tool call finished (or was refused); what the model is told.
    ToolResult {
        /// The call it answers.
        call_id: String,
        /// The tool's name.
        tool: String,
        /// What the model sees.
        content: String,
        /// Whether it reports a failure.
        is_error: bool,
    },
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
    executor: Option<Arc<dyn ToolExecutor>>,
    approvals: Option<Arc<ApprovalHub>>,
    running: StdMutex<HashMap<InstanceId, Vec<(u64, tokio::task::AbortHandle)>>>,
    next_turn: std::sync::atomic::AtomicU64,
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
        Self {
            store,
            provider,
            platform_key,
            clock,
            settings,
            executor: None,
            approvals: None,
            running: StdMutex::new(HashMap::new()),
            next_turn: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Gives the runtime its tools: `executor` runs sandbox tools (none when this server has
    /// no sandbox: only `memory_write` is then offered), `approvals` decides elevated calls
    /// (without it they are refused).
    pub fn with_tools(mut self, executor: Option<Arc<dyn ToolExecutor>>, approvals: Option<Arc<ApprovalHub>>) -> Self {
        self.executor = executor;
        self.approvals = approvals;
        self
    }

    /// The approval hub, when tools are wired.
    pub fn approvals(&self) -> Option<&Arc<ApprovalHub>> {
        self.approvals.as_ref()
    }

    /// The instance's tool policy (the defaults when none is stored, no tools when the stored
    /// one cannot be read).
    pub async fn policy_of(&self, instance: InstanceId) -> Result<ToolPolicy, TurnError> {
        let stored = self.store.tool_policy(&Principal::System, instance).await?;
        Ok(ToolPolicy::from_stored(stored.as_deref()).unwrap_or_else(|err| {
            // Stored by this code after validation; unreadable means a newer format. No tools
            // rather than the defaults, which may allow more than the stored policy did.
            tracing::error!(error = %err, %instance, "unreadable tool policy; offering no tools");
            ToolPolicy::closed()
        }))
    }

    /// Stops every running turn of `instance` and kills the processes of its sandboxes.
    /// Returns how many turns were stopped.
    pub async fn stop_instance(&self, instance: InstanceId) -> usize {
        let turns = lock(&self.running).remove(&instance).unwrap_or_default();
        for (_, handle) in &turns {
            handle.abort();
        }
        if let Some(executor) = &self.executor {
            executor.stop_instance(instance).await;
        }
        turns.len()
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

    /// Starts the turn for the conversation's latest message in a task of its own and
    /// returns its events. `client_context` is text an OpenAI-compatible client sent as
    /// system messages (placed below the agent's own prompt). The turn runs to its end (or
    /// its time limit, or an owner's stop) even when the receiver is dropped.
    pub fn respond(
        self: &Arc<Self>,
        caller: UserId,
        conversation: Conversation,
        client_context: Vec<String>,
    ) -> mpsc::Receiver<TurnEvent> {
        let (tx, rx) = mpsc::channel(64);
        let runtime = Arc::clone(self);
        let instance = conversation.instance_id;
        let inner_tx = tx.clone();
        let worker = Arc::clone(self);
        // The turn starts only once it is registered, so a stop can never miss it.
        let (go, registered) = tokio::sync::oneshot::channel::<()>();
        let mut inner = tokio::spawn(async move {
            if registered.await.is_err() {
                return Err(TurnError::Stopped);
            }
            worker.run(caller, &conversation, &client_context, &inner_tx).await
        });
        let turn = self.next_turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.running).entry(instance).or_default().push((turn, inner.abort_handle()));
        let _ = go.send(());
        let limit = self.settings.tools.turn_timeout;
        tokio::spawn(async move {
            let result = match tokio::time::timeout(limit, &mut inner).await {
                Ok(Ok(result)) => result,
                Ok(Err(join)) if join.is_cancelled() => Err(TurnError::Stopped),
                Ok(Err(_)) => Err(TurnError::Store(StoreError::Corrupt("the turn failed unexpectedly".into()))),
                Err(_) => {
                    inner.abort();
                    Err(TurnError::TimedOut(limit.as_secs()))
                }
            };
            if let Some(turns) = lock(&runtime.running).get_mut(&instance) {
                turns.retain(|(id, _)| *id != turn);
            }
            let event = match result {
                Ok(done) => done,
                Err(err) => {
                    let (code, message) = match &err {
                        TurnError::Provider(p) => (p.code(), p.to_string()),
                        TurnError::Store(e) => {
                            tracing::error!(error = %e, "turn failed in the store");
                            ("internal", "something went wrong on our side".to_owned())
                        }
                        TurnError::Stopped => ("stopped", err.to_string()),
                        TurnError::TimedOut(_) => ("turn_timeout", err.to_string()),
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
        let instance = conversation.instance_id;
        let files: Vec<WorkspaceFile> = self
            .store
            .read_files(&Principal::System, instance)
            .await?
            .into_iter()
            .filter_map(|(path, content)| WorkspacePath::parse(&path).ok().map(|path| WorkspaceFile { path, content }))
            .collect();
        let mut history: Vec<ChatMessage> = self
            .store
            .messages(&principal, conversation.id, self.settings.history_messages)
            .await?
            .iter()
            .filter_map(|m| decode_message(&m.body))
            .collect();
        let tier = self.tier_of(instance).await?;
        // `MEMORY.md` is shared by the instance and goes into every member's prompt: only the
        // conversations of those who may change the workspace (owners, admins) may write it.
        let configures = tier != Tier::Base
            && self.store.role_in(&principal, instance).await?.is_some_and(|role| role.can_configure());
        // The caller's own key for this provider (BYOK), else the platform's.
        let own = self.store.use_credential(&Principal::System, caller, self.provider.name()).await?;
        let key = own.as_ref().or(self.platform_key.as_ref());
        let limits = &self.settings.tools;
        let mut loop_state = LoopState::default();
        // Each round is one provider call. Every tool call counts against the per-turn limit,
        // refused ones too, and the tools close when it is reached, so the rounds are bounded.
        for _round in 0..=limits.max_calls_per_turn + 1 {
            // Read each round: a policy tightened while the turn runs applies to its next calls.
            let policy = if tier == Tier::Base { ToolPolicy::default() } else { self.policy_of(instance).await? };
            let offered: Vec<ToolName> = policy
                .offered(tier)
                .into_iter()
                .filter(|t| !t.needs_sandbox() || self.executor.is_some())
                .filter(|t| *t != ToolName::MemoryWrite || configures)
                .collect();
            let definitions: Vec<_> =
                if loop_state.tools_closed { Vec::new() } else { offered.iter().map(|t| t.definition()).collect() };
            let ctx = ToolContext { instance, member: caller, egress_allow: policy.egress_allow.clone() };
            let tools_now = &definitions[..];
            let request = build_request(
                ContextInput {
                    files: &files,
                    history: &history,
                    client_context,
                    tools: tools_now,
                    model: &self.settings.model,
                    max_tokens: self.settings.max_tokens,
                },
                &self.settings.context,
            );
            let mut stream = self.provider.stream(&request, key).await?;
            let mut text = String::new();
            let mut usage = Usage::default();
            let mut calls: Vec<ToolCall> = Vec::new();
            while let Some(event) = stream.next().await {
                match event? {
                    StreamEvent::TextDelta(delta) => {
                        text.push_str(&delta);
                        let _ = tx.send(TurnEvent::Delta(delta)).await;
                    }
                    StreamEvent::Usage(u) => usage = u,
                    StreamEvent::ToolCall(call) => calls.push(call),
                    StreamEvent::Finish(_) => break,
                }
            }
            // Counts come from the provider: add without overflow whatever it reports.
            loop_state.tokens =
                loop_state.tokens.saturating_add(usage.input_tokens).saturating_add(usage.output_tokens);
            loop_state.usage.input_tokens = loop_state.usage.input_tokens.saturating_add(usage.input_tokens);
            loop_state.usage.output_tokens = loop_state.usage.output_tokens.saturating_add(usage.output_tokens);
            let now = self.clock.now_millis();
            let counted = DailyUsage {
                messages: 0,
                input_tokens: i64::try_from(usage.input_tokens).unwrap_or(i64::MAX),
                output_tokens: i64::try_from(usage.output_tokens).unwrap_or(i64::MAX),
                tool_calls: 0,
            };
            let over_budget = loop_state.tokens > limits.max_tokens_per_turn;
            if calls.is_empty() || over_budget || loop_state.tools_closed {
                if over_budget && !calls.is_empty() {
                    text.push_str(&format!(
                        "\n\n[clawden stopped this turn: it used more than {} tokens]",
                        limits.max_tokens_per_turn
                    ));
                } else if !calls.is_empty() {
                    // Asked to answer without tools, the model called one anyway.
                    text.push_str("\n\n[clawden stopped this turn: the agent kept calling tools after its limit]");
                }
                let body = encode_message(&ChatMessage::assistant(text.clone()));
                let reply = self
                    .store
                    .append_reply(&Principal::System, caller, conversation.id, &body, &utc_day(now), counted, now)
                    .await?;
                return Ok(TurnEvent::Finished { reply, text, usage: loop_state.usage });
            }
            let assistant = ChatMessage::Assistant { content: text.clone(), tool_calls: calls.clone() };
            self.store
                .append_reply(
                    &Principal::System,
                    caller,
                    conversation.id,
                    &encode_message(&assistant),
                    &utc_day(now),
                    counted,
                    now,
                )
                .await?;
            history.push(assistant);
            for call in calls {
                let _ = tx.send(TurnEvent::ToolCall(call.clone())).await;
                let output =
                    self.tool_call(&ctx, conversation, tier, &policy, &offered, &call, &mut loop_state, tx).await;
                let content = cut_chars(&output.content, limits.max_result_chars);
                let result = ChatMessage::ToolResult {
                    call_id: call.id.clone(),
                    content: content.clone(),
                    is_error: output.is_error,
                };
                self.store
                    .append_server_message(
                        &Principal::System,
                        caller,
                        conversation.id,
                        "tool",
                        &encode_message(&result),
                        self.clock.now_millis(),
                    )
                    .await?;
                let _ = tx
                    .send(TurnEvent::ToolResult {
                        call_id: call.id.clone(),
                        tool: call.name.clone(),
                        content,
                        is_error: output.is_error,
                    })
                    .await;
                history.push(result);
            }
            if offered.is_empty() {
                // Nothing could run (the base tier, say): one more round, without tools, to
                // answer; a model that calls a tool again then ends the turn.
                loop_state.tools_closed = true;
            }
        }
        // Unreachable in practice: the tools close once the call limit is reached, and the
        // round after that ends the turn. Still, never loop without end.
        let now = self.clock.now_millis();
        let text = "[clawden stopped this turn: too many rounds of tool calls]".to_owned();
        let body = encode_message(&ChatMessage::assistant(text.clone()));
        let reply = self
            .store
            .append_reply(&Principal::System, caller, conversation.id, &body, &utc_day(now), DailyUsage::default(), now)
            .await?;
        Ok(TurnEvent::Finished { reply, text, usage: loop_state.usage })
    }

    /// Decides and runs one tool call; every refusal is a result the model reads.
    #[allow(clippy::too_many_arguments)]
    async fn tool_call(
        &self,
        ctx: &ToolContext,
        conversation: &Conversation,
        tier: Tier,
        policy: &ToolPolicy,
        offered: &[ToolName],
        call: &ToolCall,
        state: &mut LoopState,
        tx: &mpsc::Sender<TurnEvent>,
    ) -> ToolOutput {
        let limits = &self.settings.tools;
        if state.tools_closed {
            return ToolOutput::error("no more tool calls in this turn; answer with what you have");
        }
        // Every call counts, refused ones too: a model that keeps calling what it may not use
        // still reaches the limits.
        state.calls += 1;
        if state.calls > limits.max_calls_per_turn {
            state.tools_closed = true;
            return ToolOutput::error(format!(
                "refused: the limit of {} tool calls in one turn is reached; answer with what you have",
                limits.max_calls_per_turn
            ));
        }
        let digest = call_digest(&call.name, &call.arguments);
        let seen = state.repeats.entry(digest.clone()).or_insert(0);
        *seen += 1;
        if *seen > limits.max_repeats {
            state.tools_closed = true;
            return ToolOutput::error(format!(
                "refused: this exact call was already made {} times in this turn (a loop); answer with what you have",
                limits.max_repeats
            ));
        }
        let verdict = policy.check(tier, &call.name, &call.arguments);
        if let Verdict::Refused(why) = verdict {
            return ToolOutput::error(format!("refused: {why}"));
        }
        let Some(tool) = ToolName::parse(&call.name).filter(|t| offered.contains(t)) else {
            return ToolOutput::error(if call.name == ToolName::MemoryWrite.as_str() {
                "refused: only the conversations of the instance's owners and admins may change MEMORY.md".to_owned()
            } else {
                format!("refused: the tool {} is not available on this server (it needs a sandbox)", call.name)
            });
        };
        if verdict == Verdict::NeedsApproval {
            let Some(hub) = &self.approvals else {
                return ToolOutput::error("refused: this call needs an approval and approvals are not available");
            };
            let pending =
                match hub.request(ctx.instance, conversation.id, ctx.member, &call.name, &call.arguments).await {
                    Ok(pending) => pending,
                    Err(err) => {
                        tracing::error!(error = %err, "could not create an approval");
                        return ToolOutput::error("refused: the approval could not be recorded");
                    }
                };
            let approval = pending.approval.clone();
            let _ = tx.send(TurnEvent::ApprovalRequired(approval.clone())).await;
            match pending.decision().await {
                ApprovalStatus::Allowed => {
                    // The decision binds this exact call; check the binding once more.
                    if approval.digest != digest {
                        return ToolOutput::error("refused: the approval does not match this call");
                    }
                }
                ApprovalStatus::Denied => return ToolOutput::error("denied: an owner or admin denied this call"),
                ApprovalStatus::Expired | ApprovalStatus::Pending => {
                    return ToolOutput::error(format!(
                        "denied: nobody approved this call within {} s",
                        hub.settings().timeout.as_secs()
                    ))
                }
            }
        }
        let now = self.clock.now_millis();
        let limit = self.settings.quotas.tool_calls(tier);
        match self.store.count_tool_call(&Principal::System, ctx.member, &utc_day(now), limit).await {
            Ok(()) => {}
            Err(StoreError::QuotaExceeded) => {
                state.tools_closed = true;
                return ToolOutput::error(format!("refused: today's quota of {limit} tool calls is spent"));
            }
            Err(err) => {
                tracing::error!(error = %err, "could not count a tool call");
                return ToolOutput::error("refused: the tool call could not be counted");
            }
        }
        let output = match tool {
            ToolName::MemoryWrite => self.memory_write(ctx.instance, &call.arguments).await,
            sandboxed => match &self.executor {
                Some(executor) => executor.run(ctx, sandboxed, &call.arguments).await,
                None => ToolOutput::error("the sandbox is not available on this server"),
            },
        };
        let event = AuditEvent {
            chain: AuditChain::Instance(ctx.instance),
            actor: Some(ctx.member),
            instance: Some(ctx.instance),
            action: "tool.run".into(),
            target: format!("tool:{tool}"),
            outcome: if output.is_error { Outcome::Failure } else { Outcome::Success },
            ip: None,
            at: self.clock.now_millis(),
        };
        if let Err(err) = self.store.record(event).await {
            tracing::error!(error = %err, "could not record a tool call");
        }
        output
    }

    /// `memory_write`: appends to or replaces `MEMORY.md`, under the same rules as the files
    /// API. The only workspace file the agent may change.
    async fn memory_write(&self, instance: InstanceId, arguments: &serde_json::Value) -> ToolOutput {
        let Some(content) = arguments.get("content").and_then(|c| c.as_str()) else {
            return ToolOutput::error("the content argument is missing");
        };
        let replace = match arguments.get("mode").and_then(|m| m.as_str()) {
            None | Some("append") => false,
            Some("replace") => true,
            Some(other) => return ToolOutput::error(format!("mode must be append or replace, not {other:?}")),
        };
        let path = WorkspacePath::Memory;
        debug_assert!(path.agent_may_write());
        let current = if replace {
            String::new()
        } else {
            match self.store.read_file(&Principal::System, instance, &path.to_string()).await {
                Ok(text) => text.unwrap_or_default(),
                Err(err) => {
                    tracing::error!(error = %err, "could not read MEMORY.md");
                    return ToolOutput::error("MEMORY.md could not be read");
                }
            }
        };
        let mut next = current;
        if !next.is_empty() && !next.ends_with('\n') {
            next.push('\n');
        }
        next.push_str(content);
        if let Err(err) = crate::workspace::validate_file(&path, next.as_bytes()) {
            return ToolOutput::error(format!("MEMORY.md not changed: {err}"));
        }
        let total = i64::try_from(crate::workspace::MAX_TOTAL_CHARS).unwrap_or(i64::MAX);
        match self
            .store
            .write_file(&Principal::System, instance, &path.to_string(), &next, total, self.clock.now_millis(), None)
            .await
        {
            Ok(()) => ToolOutput::ok(format!("MEMORY.md now holds {} characters", next.chars().count())),
            Err(StoreError::LimitReached(_)) => ToolOutput::error("MEMORY.md not changed: the workspace is full"),
            Err(err) => {
                tracing::error!(error = %err, "could not write MEMORY.md");
                ToolOutput::error("MEMORY.md could not be written")
            }
        }
    }
}

/// What one turn's loop has used so far.
#[derive(Debug, Default)]
struct LoopState {
    calls: usize,
    tokens: u64,
    usage: Usage,
    repeats: HashMap<String, usize>,
    /// Set when a limit is reached: no tools are offered or run any more this turn.
    tools_closed: bool,
}

/// `text` cut to `max` characters, with a note when cut.
fn cut_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}\n[cut at {max} characters]", &text[..at]),
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
