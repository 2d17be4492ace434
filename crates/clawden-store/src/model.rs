//! Rows as the rest of clawden sees them.

use clawden_core::{InstanceId, Outcome, Role, SessionId, Tier, UnixMillis, UserId};
use clawden_crypto::TokenHash;
use serde::Serialize;

/// A user account (never carries the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Normalised (trimmed, lowercase) email.
    pub email: String,
    /// Tier.
    pub tier: Tier,
    /// May use the platform admin area.
    pub platform_admin: bool,
    /// A disabled account cannot sign in.
    pub disabled: bool,
    /// When created.
    pub created_at: UnixMillis,
}

/// What login needs: the account and its password hash.
#[derive(Clone)]
pub struct LoginRecord {
    /// The account.
    pub user: User,
    /// PHC (argon2) or bcrypt hash.
    pub password_hash: String,
    /// Locked by an anomaly rule until then.
    pub locked_until: Option<UnixMillis>,
}

impl std::fmt::Debug for LoginRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRecord").field("user", &self.user).finish_non_exhaustive()
    }
}

/// A new account.
#[derive(Clone)]
pub struct NewUser {
    /// Email as typed; the store normalises it.
    pub email: String,
    /// Already hashed password.
    pub password_hash: String,
    /// Tier.
    pub tier: Tier,
    /// Platform admin flag.
    pub platform_admin: bool,
    /// Name of the personal instance.
    pub instance_name: String,
    /// Creation time.
    pub now: UnixMillis,
    /// An invite code (keyed hash) to spend in the same transaction; the account then
    /// starts on the invite tier. Creation fails with `InvalidInvite` if it is not valid.
    pub invite: Option<TokenHash>,
    /// Keyed hash of the personal instance's first gateway token.
    pub gateway_token: TokenHash,
    /// The personal instance's starting workspace files (path, text).
    pub initial_files: Vec<(String, String)>,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser").field("email", &self.email).field("tier", &self.tier).finish_non_exhaustive()
    }
}

/// An agent instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// Id.
    pub id: InstanceId,
    /// Display name.
    pub name: String,
    /// When created.
    pub created_at: UnixMillis,
}

/// A user's place in an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    /// The instance.
    pub id: InstanceId,
    /// Its name.
    pub name: String,
    /// The user's role there.
    pub role: Role,
}

/// A browser session (the token itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// Id.
    pub id: SessionId,
    /// Whose.
    pub user_id: UserId,
    /// Started.
    pub created_at: UnixMillis,
    /// Last request.
    pub last_seen_at: UnixMillis,
    /// Absolute expiry.
    pub expires_at: UnixMillis,
    /// Client address at sign-in.
    pub ip: Option<String>,
    /// Browser at sign-in (truncated).
    pub user_agent: Option<String>,
}

/// A session to create.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Whose.
    pub user_id: UserId,
    /// Keyed hash of the token.
    pub token_hash: TokenHash,
    /// Now.
    pub now: UnixMillis,
    /// Absolute expiry.
    pub expires_at: UnixMillis,
    /// Client address.
    pub ip: Option<String>,
    /// Browser.
    pub user_agent: Option<String>,
}

/// An invite to create.
#[derive(Debug, Clone)]
pub struct NewInvite {
    /// Keyed hash of the code.
    pub code_hash: TokenHash,
    /// How many redemptions it allows.
    pub uses: i64,
    /// When it stops working.
    pub expires_at: Option<UnixMillis>,
    /// Now.
    pub now: UnixMillis,
}

/// Which hash chain an audit record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditChain {
    /// Account events: logins, sessions, keys, 2FA.
    Account(UserId),
    /// Everything done in an instance.
    Instance(InstanceId),
    /// Events tied to no account (a failed login for an unknown email, operator actions).
    System,
}

impl AuditChain {
    /// The stored chain name.
    pub fn key(&self) -> String {
        match self {
            AuditChain::Account(u) => format!("account:{u}"),
            AuditChain::Instance(i) => format!("instance:{i}"),
            AuditChain::System => "system".to_owned(),
        }
    }
}

/// An action to record: who, what, target, when, from where, and the outcome.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// The chain it goes into.
    pub chain: AuditChain,
    /// The acting user (none for the server or an anonymous attempt).
    pub actor: Option<UserId>,
    /// The instance concerned, if any.
    pub instance: Option<InstanceId>,
    /// Dotted action name, e.g. `auth.login`.
    pub action: String,
    /// What it acted on, e.g. `session:<id>` (never a secret).
    pub target: String,
    /// Success or failure.
    pub outcome: Outcome,
    /// Client address.
    pub ip: Option<String>,
    /// When.
    pub at: UnixMillis,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Position in its chain.
    pub seq: i64,
    /// The chain.
    pub chain: String,
    /// When.
    pub at: UnixMillis,
    /// Actor user id, if any.
    pub actor: Option<String>,
    /// Instance, if any.
    pub instance_id: Option<String>,
    /// Action name.
    pub action: String,
    /// Target.
    pub target: String,
    /// Outcome.
    pub outcome: String,
    /// Client address.
    pub ip: Option<String>,
}

/// Normalises an email for storage and lookup.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// Id.
    pub id: clawden_core::ApiKeyId,
    /// Whose.
    #[serde(skip)]
    pub user_id: UserId,
    /// The owner's label.
    pub name: String,
    /// The first characters, to recognise it.
    pub prefix: String,
    /// Created.
    pub created_at: UnixMillis,
    /// Last authenticated request.
    pub last_used_at: Option<UnixMillis>,
}

/// An API key to store.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// Label.
    pub name: String,
    /// Display prefix.
    pub prefix: String,
    /// Keyed hash of the key.
    pub key_hash: TokenHash,
    /// Now.
    pub now: UnixMillis,
}

/// A stored credential as listed: its name and last four characters only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialInfo {
    /// `anthropic`, `openai`, or a channel name.
    pub name: String,
    /// The value's last four characters.
    pub last4: String,
    /// When set.
    pub updated_at: UnixMillis,
}

/// A user's TOTP state.
pub struct TotpState {
    /// The shared secret (raw bytes).
    pub secret: zeroize::Zeroizing<Vec<u8>>,
    /// Whether sign-in requires a code.
    pub enabled: bool,
    /// The last time step accepted (codes at or before it are refused).
    pub last_step: i64,
}

impl std::fmt::Debug for TotpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpState")
            .field("enabled", &self.enabled)
            .field("last_step", &self.last_step)
            .finish_non_exhaustive()
    }
}

/// A workspace file as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    /// Its path in the workspace (`SOUL.md`, `skills/x/SKILL.md`).
    pub path: String,
    /// Its size in characters.
    pub size: i64,
    /// Last change.
    pub updated_at: UnixMillis,
}

/// A conversation as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conversation {
    /// Id.
    pub id: clawden_core::ConversationId,
    /// The agent it is with.
    pub instance_id: InstanceId,
    /// Its title.
    pub title: String,
    /// Started.
    pub created_at: UnixMillis,
    /// Last message.
    pub updated_at: UnixMillis,
}

/// A stored message. `body` is the JSON of the agent crate's message type; the store only
/// seals and orders it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredMessage {
    /// Id.
    pub id: String,
    /// Position in its conversation.
    pub seq: i64,
    /// `user`, `assistant` or `tool`.
    pub role: String,
    /// The message, as JSON text.
    pub body: String,
    /// When.
    pub created_at: UnixMillis,
}

/// A user's counters for one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct DailyUsage {
    /// Messages sent.
    pub messages: i64,
    /// Tokens read by the provider.
    pub input_tokens: i64,
    /// Tokens written by the provider.
    pub output_tokens: i64,
    /// Tool calls run.
    pub tool_calls: i64,
}

/// A member of an instance, as its owners and admins see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberInfo {
    /// The user.
    pub user_id: UserId,
    /// Their email.
    pub email: String,
    /// Their role.
    pub role: clawden_core::Role,
    /// When they joined.
    pub joined_at: UnixMillis,
}

/// A pending invitation, as its invitee sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invitation {
    /// Id.
    pub id: String,
    /// The instance.
    pub instance_id: InstanceId,
    /// Its name.
    pub instance_name: String,
    /// The role offered.
    pub role: clawden_core::Role,
    /// When sent.
    pub created_at: UnixMillis,
    /// When it lapses.
    pub expires_at: UnixMillis,
}

/// A platform admin log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminLogEntry {
    /// When.
    pub at: UnixMillis,
    /// The acting platform admin (none for the operator's command line).
    pub actor: Option<String>,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// From where.
    pub ip: Option<String>,
}

/// Something the platform tells a user (an anomaly rule acted on their account or instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// What kind (`anomaly.login_burst`, …).
    pub kind: String,
    /// For humans.
    pub message: String,
    /// When.
    pub created_at: UnixMillis,
}

/// Where an approval of an elevated tool call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for an owner or admin.
    Pending,
    /// Allowed: the call it names may run, once.
    Allowed,
    /// Denied by an owner or admin.
    Denied,
    /// Nobody decided in time (or the server restarted): treated as denied.
    Expired,
}

impl ApprovalStatus {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Allowed => "allowed",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
        }
    }
}

impl std::str::FromStr for ApprovalStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => ApprovalStatus::Pending,
            "allowed" => ApprovalStatus::Allowed,
            "denied" => ApprovalStatus::Denied,
            "expired" => ApprovalStatus::Expired,
            other => return Err(format!("unknown approval status {other:?}")),
        })
    }
}

/// An elevated tool call waiting for (or given) a human decision. It names one exact call:
/// the tool and its arguments, bound by `digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// Its id.
    pub id: clawden_core::ApprovalId,
    /// The instance whose agent asked.
    pub instance_id: InstanceId,
    /// The conversation of the turn that waits.
    pub conversation_id: clawden_core::ConversationId,
    /// The member whose turn it is.
    pub user_id: UserId,
    /// The tool's name.
    pub tool: String,
    /// The exact arguments, as JSON text.
    pub arguments: String,
    /// SHA-256 (hex) of the tool name and canonical arguments: what the decision binds to.
    pub digest: String,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// Whether the decider also stored this exact command in the policy for good.
    pub always: bool,
    /// When it was asked.
    pub created_at: UnixMillis,
    /// When an undecided approval counts as denied.
    pub expires_at: UnixMillis,
    /// When it was decided.
    pub decided_at: Option<UnixMillis>,
    /// Who decided.
    pub decided_by: Option<UserId>,
}

/// A new approval, as the agent loop asks for it.
#[derive(Debug, Clone)]
pub struct NewApproval {
    /// Its id.
    pub id: clawden_core::ApprovalId,
    /// The instance.
    pub instance_id: InstanceId,
    /// The conversation.
    pub conversation_id: clawden_core::ConversationId,
    /// The member whose turn it is.
    pub user_id: UserId,
    /// The tool.
    pub tool: String,
    /// The arguments as JSON text.
    pub arguments: String,
    /// The binding digest.
    pub digest: String,
    /// Asked at.
    pub created_at: UnixMillis,
    /// Counts as denied after.
    pub expires_at: UnixMillis,
}
