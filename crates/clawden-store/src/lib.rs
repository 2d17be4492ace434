//! Persistence for clawden behind one [`Store`] trait, implemented over SQLite (the embedded
//! default) and PostgreSQL by [`SqlStore`]. Every method that reads or writes user data takes
//! the caller's [`Principal`] and scopes its query by it; there is no "find by id" without an
//! owner outside the explicitly `System` lookups that authentication needs.
//!
//! Data keys live in a [`KeyStore`] kept apart from the data (its own SQLite file, or its own
//! PostgreSQL schema), so that a backup of the data alone holds no usable key.

mod data;
mod error;
pub mod keyring;
pub mod keystore;
pub mod model;
mod sql;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use data::{AuditCursor, DataStore};
pub use error::StoreError;
pub use keyring::Keyring;
pub use keystore::KeyStore;
pub use model::*;
pub use sql::{Backend, ChainBreak, SqlStore};

use async_trait::async_trait;
use clawden_core::{ApiKeyId, ConversationId, InstanceId, Principal, Role, SessionId, UnixMillis, UserId};
use clawden_crypto::TokenHash;
use secrecy::SecretString;

/// Result of store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// Accounts and their instances.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user, their personal instance (they own it) and records `audit`, in one
    /// transaction. Only `Principal::System` may call it. Fails with
    /// [`StoreError::EmailTaken`] when the (normalised) email exists.
    async fn create_user(&self, by: &Principal, new: NewUser, audit: AuditEvent) -> StoreResult<(User, Instance)>;

    /// The stored password hash and account for an email, for login. System only.
    async fn login_lookup(&self, by: &Principal, email: &str) -> StoreResult<Option<LoginRecord>>;

    /// A user by id: the user themselves, or the system.
    async fn user(&self, by: &Principal, id: UserId) -> StoreResult<Option<User>>;

    /// A user by email. System only (operators' CLI and invitations).
    async fn user_by_email(&self, by: &Principal, email: &str) -> StoreResult<Option<User>>;

    /// Replaces a user's password hash; the user themselves or the system. When
    /// `end_sessions` is set, every session of the user except `keep` ends in the same
    /// transaction. Records `audit` (if given) in the same transaction.
    async fn set_password_hash(
        &self,
        by: &Principal,
        user: UserId,
        hash: &str,
        end_sessions: Option<Option<SessionId>>,
        audit: Option<AuditEvent>,
    ) -> StoreResult<()>;

    /// The instances the principal's user belongs to, with their role in each.
    async fn memberships(&self, by: &Principal) -> StoreResult<Vec<Membership>>;

    /// The principal's role in an instance, if they are a member.
    async fn role_in(&self, by: &Principal, instance: InstanceId) -> StoreResult<Option<Role>>;

    /// Deletes a user and everything they own (their sessions, keys, credentials, 2FA, and the
    /// instances where they are the only owner), then destroys their data key and those
    /// instances' keys: every sealed value of theirs, here and in every backup, stops opening.
    /// The user themselves or the system. Returns the instances deleted with them.
    async fn delete_user(&self, by: &Principal, user: UserId, audit: AuditEvent) -> StoreResult<Vec<InstanceId>>;

    /// Sets a user's tier. System only (invite redemption checks the code first).
    async fn set_tier(
        &self,
        by: &Principal,
        user: UserId,
        tier: clawden_core::Tier,
        audit: AuditEvent,
    ) -> StoreResult<()>;
}

/// Browser sessions.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session for `new.user_id`; system only (login), with its audit record.
    async fn create_session(&self, by: &Principal, new: NewSession, audit: AuditEvent) -> StoreResult<Session>;

    /// The live session and its user for a token hash; system only (authentication).
    /// Expired sessions are not returned.
    async fn session_by_token(
        &self,
        by: &Principal,
        hash: &TokenHash,
        now: UnixMillis,
    ) -> StoreResult<Option<(Session, User)>>;

    /// Marks a session as used now and pushes its idle expiry; system only.
    async fn touch_session(&self, by: &Principal, id: SessionId, now: UnixMillis) -> StoreResult<()>;

    /// The principal's own live sessions.
    async fn sessions(&self, by: &Principal, now: UnixMillis) -> StoreResult<Vec<Session>>;

    /// Ends one of the principal's own sessions. `Ok(false)` when there is no such session
    /// of theirs (including another user's session id).
    async fn revoke_session(&self, by: &Principal, id: SessionId, audit: AuditEvent) -> StoreResult<bool>;

    /// Deletes sessions past their expiry; system only. Returns how many.
    async fn purge_expired_sessions(&self, by: &Principal, now: UnixMillis) -> StoreResult<u64>;
}

/// Invite codes that upgrade an account to the invite-enabled tier.
#[async_trait]
pub trait InviteStore: Send + Sync {
    /// Stores a new invite (its code only as a keyed hash); system only.
    async fn create_invite(&self, by: &Principal, new: NewInvite, audit: AuditEvent) -> StoreResult<()>;

    /// Spends one use of the invite with this code hash, if it is valid now, and upgrades
    /// the principal's user to the invite tier, in one transaction. `Ok(false)` when the
    /// code is unknown, spent or expired.
    async fn redeem_invite(
        &self,
        by: &Principal,
        hash: &TokenHash,
        now: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<bool>;
}

/// The audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Records an event in its own transaction (used for failed attempts, where nothing else
    /// is written).
    async fn record(&self, event: AuditEvent) -> StoreResult<()>;

    /// The principal's own actions, newest first.
    async fn own_audit(
        &self,
        by: &Principal,
        before_seq_at: Option<UnixMillis>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>>;

    /// Everything recorded in an instance's chain, newest first. Owners and admins only.
    async fn instance_audit(
        &self,
        by: &Principal,
        instance: InstanceId,
        before: Option<UnixMillis>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>>;
}

/// API keys and stored credentials (BYOK provider keys, channel tokens).
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Stores a new API key of the principal's user (only its keyed hash).
    async fn create_api_key(&self, by: &Principal, new: NewApiKey, audit: AuditEvent) -> StoreResult<ApiKey>;

    /// The principal's own API keys.
    async fn api_keys(&self, by: &Principal) -> StoreResult<Vec<ApiKey>>;

    /// Deletes one of the principal's own API keys; `Ok(false)` if it is not theirs.
    async fn delete_api_key(&self, by: &Principal, id: ApiKeyId, audit: AuditEvent) -> StoreResult<bool>;

    /// The key and its user for a key hash; system only (authentication).
    async fn api_key_by_hash(&self, by: &Principal, hash: &TokenHash) -> StoreResult<Option<(ApiKey, User)>>;

    /// Records that a key was used now; system only.
    async fn touch_api_key(&self, by: &Principal, id: ApiKeyId, now: UnixMillis) -> StoreResult<()>;

    /// Sets (creates or replaces) one of the principal's credentials, sealed under their key.
    async fn put_credential(
        &self,
        by: &Principal,
        name: &str,
        value: &SecretString,
        now: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<()>;

    /// The principal's credentials, by name with their last four characters.
    async fn credentials(&self, by: &Principal) -> StoreResult<Vec<CredentialInfo>>;

    /// Deletes one of the principal's credentials.
    async fn delete_credential(&self, by: &Principal, name: &str, audit: AuditEvent) -> StoreResult<bool>;

    /// Opens `user`'s credential `name` for immediate use by the server (a provider call).
    /// System only: no route hands a credential back to a client.
    async fn use_credential(&self, by: &Principal, user: UserId, name: &str) -> StoreResult<Option<SecretString>>;
}

/// Two-factor authentication.
#[async_trait]
pub trait TotpStore: Send + Sync {
    /// Stores a new, not yet enabled, TOTP secret for the principal (replacing a pending one).
    /// Fails with `Forbidden` when 2FA is already enabled.
    async fn totp_begin(&self, by: &Principal, secret: &[u8], now: UnixMillis) -> StoreResult<()>;

    /// Whether `user` has two-factor sign-in on, without opening the secret: the user
    /// themselves, or the system.
    async fn totp_enabled(&self, by: &Principal, user: UserId) -> StoreResult<bool>;

    /// The TOTP state of `user`: the user themselves, or the system (sign-in).
    async fn totp_state(&self, by: &Principal, user: UserId) -> StoreResult<Option<TotpState>>;

    /// Enables 2FA after a valid code at `step`, replacing the recovery codes.
    async fn totp_enable(
        &self,
        by: &Principal,
        step: i64,
        recovery: &[TokenHash],
        audit: AuditEvent,
    ) -> StoreResult<bool>;

    /// Accepts a code's time step only if it is later than every step accepted before (so a
    /// code cannot be replayed); system only. Atomic under concurrency.
    async fn totp_accept_step(&self, by: &Principal, user: UserId, step: i64) -> StoreResult<bool>;

    /// Spends an unused recovery code; system only.
    async fn use_recovery_code(
        &self,
        by: &Principal,
        user: UserId,
        hash: &TokenHash,
        now: UnixMillis,
    ) -> StoreResult<bool>;

    /// Turns 2FA off and deletes the secret and recovery codes.
    async fn totp_disable(&self, by: &Principal, audit: AuditEvent) -> StoreResult<()>;
}

/// Gateway tokens: one current per instance, the previous one valid until its retirement.
#[async_trait]
pub trait GatewayStore: Send + Sync {
    /// Makes `hash` the instance's current token; the previous current token keeps working
    /// until `overlap_until`, older ones stop now. Owner (checked by role) or system.
    async fn rotate_gateway_token(
        &self,
        by: &Principal,
        instance: InstanceId,
        hash: &TokenHash,
        now: UnixMillis,
        overlap_until: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<()>;

    /// The instance and its owner for a live token; system only (authentication).
    async fn gateway_token_by_hash(
        &self,
        by: &Principal,
        hash: &TokenHash,
        now: UnixMillis,
    ) -> StoreResult<Option<(InstanceId, User)>>;

    /// Instances whose current token was made before `made_before` (due for rotation);
    /// system only.
    async fn gateway_tokens_due(
        &self,
        by: &Principal,
        made_before: UnixMillis,
        limit: i64,
    ) -> StoreResult<Vec<InstanceId>>;
}

/// Agent workspace files, conversations, messages and usage.
#[async_trait]
#[allow(clippy::too_many_arguments)]
pub trait AgentStore: Send + Sync {
    /// The instance's tier: its owner's tier. Any member, or the system.
    async fn instance_tier(&self, by: &Principal, instance: InstanceId) -> StoreResult<Option<clawden_core::Tier>>;

    /// The instance's first owner; system only (operator tools).
    async fn instance_owner(&self, by: &Principal, instance: InstanceId) -> StoreResult<Option<User>>;

    /// The instance's workspace files (paths and sizes). Any member, or the system.
    async fn list_files(&self, by: &Principal, instance: InstanceId) -> StoreResult<Vec<FileInfo>>;

    /// One workspace file's text. Any member, or the system.
    async fn read_file(&self, by: &Principal, instance: InstanceId, path: &str) -> StoreResult<Option<String>>;

    /// Every workspace file with its text. Any member, or the system (building a prompt).
    async fn read_files(&self, by: &Principal, instance: InstanceId) -> StoreResult<Vec<(String, String)>>;

    /// Writes a workspace file, sealed under the instance's key. Owners and admins only, or
    /// the system (default files, the agent's memory tool). `max_total_chars` bounds the
    /// whole workspace after the write, checked in the same transaction.
    async fn write_file(
        &self,
        by: &Principal,
        instance: InstanceId,
        path: &str,
        content: &str,
        max_total_chars: i64,
        now: UnixMillis,
        audit: Option<AuditEvent>,
    ) -> StoreResult<()>;

    /// Deletes a workspace file. Owners and admins only.
    async fn delete_file(
        &self,
        by: &Principal,
        instance: InstanceId,
        path: &str,
        audit: AuditEvent,
    ) -> StoreResult<bool>;

    /// Starts a conversation of the principal's user with an instance they are a member of.
    /// Fails with `LimitReached` past `max_conversations`.
    async fn create_conversation(
        &self,
        by: &Principal,
        instance: InstanceId,
        title: &str,
        max_conversations: i64,
        now: UnixMillis,
    ) -> StoreResult<Conversation>;

    /// The principal's own conversations, newest first.
    async fn conversations(&self, by: &Principal) -> StoreResult<Vec<Conversation>>;

    /// One of the principal's own conversations (`None` for anyone else's).
    async fn conversation(&self, by: &Principal, id: ConversationId) -> StoreResult<Option<Conversation>>;

    /// Deletes one of the principal's conversations, or all of them (`None`).
    async fn delete_conversations(
        &self,
        by: &Principal,
        id: Option<ConversationId>,
        audit: AuditEvent,
    ) -> StoreResult<u64>;

    /// The last `limit` messages of one of the principal's conversations, oldest first.
    async fn messages(&self, by: &Principal, id: ConversationId, limit: i64) -> StoreResult<Vec<StoredMessage>>;

    /// Stores the user's message and counts it against today's quota, in one transaction:
    /// either both happen or neither. Fails with `QuotaExceeded` when `day`'s count has
    /// reached `limit`. The conversation must be the principal's.
    async fn append_user_message(
        &self,
        by: &Principal,
        id: ConversationId,
        body: &str,
        day: &str,
        limit: i64,
        now: UnixMillis,
    ) -> StoreResult<StoredMessage>;

    /// Stores a message written by the server (a reply, a tool result) in `user`'s
    /// conversation; system only.
    async fn append_server_message(
        &self,
        by: &Principal,
        user: UserId,
        id: ConversationId,
        role: &str,
        body: &str,
        now: UnixMillis,
    ) -> StoreResult<StoredMessage>;

    /// Stores the assistant's reply in `user`'s conversation and adds `usage` to their `day`,
    /// in one transaction (what [`Self::append_server_message`] then [`Self::add_usage`] do,
    /// with one commit); system only.
    async fn append_reply(
        &self,
        by: &Principal,
        user: UserId,
        id: ConversationId,
        body: &str,
        day: &str,
        usage: DailyUsage,
        now: UnixMillis,
    ) -> StoreResult<StoredMessage>;

    /// Adds token and tool-call counts to `user`'s day; system only.
    async fn add_usage(&self, by: &Principal, user: UserId, day: &str, usage: DailyUsage) -> StoreResult<()>;

    /// The principal's counters for `day`.
    async fn usage(&self, by: &Principal, day: &str) -> StoreResult<DailyUsage>;
}

/// Instance membership: invitations, roles, removal, transfer, deletion. The rules (admins
/// cannot touch owners, only owners grant `owner`, the last owner cannot leave or be demoted)
/// are enforced here, inside the transaction that changes the row.
#[async_trait]
#[allow(clippy::too_many_arguments)]
pub trait MemberStore: Send + Sync {
    /// The instance's members. Owners and admins only.
    async fn members(&self, by: &Principal, instance: InstanceId) -> StoreResult<Vec<MemberInfo>>;

    /// Invites `email` with `role` (replacing a pending invitation for the same email).
    /// Owners and admins; only owners may offer `owner`. Nothing tells the caller whether the
    /// email has an account.
    async fn invite(
        &self,
        by: &Principal,
        instance: InstanceId,
        email: &str,
        role: Role,
        now: UnixMillis,
        expires_at: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<()>;

    /// The principal's pending invitations (by their email).
    async fn invitations(&self, by: &Principal, now: UnixMillis) -> StoreResult<Vec<Invitation>>;

    /// Accepts (`true`) or declines one of the principal's invitations.
    async fn answer_invitation(
        &self,
        by: &Principal,
        id: &str,
        accept: bool,
        now: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<bool>;

    /// Changes a member's role, by the rules.
    async fn set_role(
        &self,
        by: &Principal,
        instance: InstanceId,
        user: UserId,
        role: Role,
        audit: AuditEvent,
    ) -> StoreResult<()>;

    /// Removes a member (or the principal leaves), by the rules.
    async fn remove_member(
        &self,
        by: &Principal,
        instance: InstanceId,
        user: UserId,
        audit: AuditEvent,
    ) -> StoreResult<()>;

    /// Deletes an instance with its files, conversations, tokens and its audit chain, then
    /// destroys its data key. Owners only.
    async fn delete_instance(&self, by: &Principal, instance: InstanceId, audit: AuditEvent) -> StoreResult<()>;
}

/// The platform admin's view. System only: the server calls it for verified platform admins.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Every user, oldest first.
    async fn all_users(&self, by: &Principal, limit: i64, offset: i64) -> StoreResult<Vec<User>>;

    /// Sets a user's tier and/or disabled flag; disabling ends their sessions. Logged.
    async fn admin_update_user(
        &self,
        by: &Principal,
        user: UserId,
        tier: Option<clawden_core::Tier>,
        disabled: Option<bool>,
        log: AdminLogEntry,
    ) -> StoreResult<bool>;

    /// Appends to the admin log.
    async fn admin_log(&self, by: &Principal, entry: AdminLogEntry) -> StoreResult<()>;

    /// The admin log, newest first.
    async fn admin_log_entries(&self, by: &Principal, limit: i64) -> StoreResult<Vec<AdminLogEntry>>;
}

/// What the anomaly rules read and do. System only.
#[async_trait]
pub trait AnomalyStore: Send + Sync {
    /// Accounts with at least `threshold` failed sign-ins since `since`.
    async fn failed_login_bursts(&self, by: &Principal, since: UnixMillis, threshold: i64) -> StoreResult<Vec<UserId>>;

    /// Instances with at least `threshold` refused egress connections since `since`.
    async fn egress_refusal_bursts(
        &self,
        by: &Principal,
        since: UnixMillis,
        threshold: i64,
    ) -> StoreResult<Vec<InstanceId>>;

    /// Whether `action` was recorded in `chain` since `since` (a rule already acted).
    async fn acted_since(&self, by: &Principal, chain: &str, action: &str, since: UnixMillis) -> StoreResult<bool>;

    /// Locks an account until `until` (sign-in refused, sessions ended), with a notice and
    /// the audit record of the rule that did it, in one transaction.
    async fn lock_account(
        &self,
        by: &Principal,
        user: UserId,
        until: UnixMillis,
        notice: &str,
        audit: AuditEvent,
    ) -> StoreResult<()>;

    /// Leaves a notice for each owner of `instance`, with the audit record, in one transaction.
    async fn notify_owners(
        &self,
        by: &Principal,
        instance: InstanceId,
        kind: &str,
        notice: &str,
        audit: AuditEvent,
    ) -> StoreResult<()>;

    /// The principal's notices, newest first.
    async fn notices(&self, by: &Principal, limit: i64) -> StoreResult<Vec<Notice>>;
}

/// Tool policies, the daily tool-call quota and approvals of elevated tool calls.
#[async_trait]
pub trait ToolStore {
    /// The instance's tool policy as stored (JSON text), `None` when it has the defaults. Any
    /// member, or the system.
    async fn tool_policy(&self, by: &Principal, instance: InstanceId) -> StoreResult<Option<String>>;

    /// The stored policy with its version (which every write increments), for a
    /// read-modify-write with [`ToolStore::replace_tool_policy`]. Any member, or the system.
    async fn tool_policy_versioned(&self, by: &Principal, instance: InstanceId) -> StoreResult<Option<(String, i64)>>;

    /// Stores the policy (JSON text, sealed under the instance's key) with its audit record,
    /// only if its version is still `expected` (0: none stored yet); `false` when someone
    /// changed it meanwhile. Owners and admins, or the system.
    async fn replace_tool_policy(
        &self,
        by: &Principal,
        instance: InstanceId,
        body: &str,
        expected: i64,
        now: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<bool>;

    /// Counts one tool call against `user`'s `day`, refusing with `QuotaExceeded` once
    /// `limit` calls were counted; system only. Atomic: parallel turns cannot overrun it.
    async fn count_tool_call(&self, by: &Principal, user: UserId, day: &str, limit: i64) -> StoreResult<()>;

    /// Stores a new pending approval and its audit record; system only.
    async fn create_approval(&self, by: &Principal, approval: &NewApproval, audit: AuditEvent) -> StoreResult<()>;

    /// One approval: owners and admins of its instance, or the system.
    async fn approval(&self, by: &Principal, id: clawden_core::ApprovalId) -> StoreResult<Option<Approval>>;

    /// Pending, unexpired approvals of the instances where the principal is an owner or admin
    /// (or of `instance` only), oldest first.
    async fn pending_approvals(
        &self,
        by: &Principal,
        instance: Option<InstanceId>,
        now: UnixMillis,
    ) -> StoreResult<Vec<Approval>>;

    /// An owner's or admin's decision (`Allowed` or `Denied`), taken only while the approval is
    /// pending and unexpired — in the same statement, so two deciders cannot both win. Fails
    /// with `NotFound` for someone who may not see it and `Conflict` when it was already
    /// decided or expired.
    async fn decide_approval(
        &self,
        by: &Principal,
        id: clawden_core::ApprovalId,
        status: ApprovalStatus,
        always: bool,
        now: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<Approval>;

    /// Marks a still-pending approval expired (nobody decided in time); system only. `false`
    /// when it was decided meanwhile.
    async fn expire_approval(&self, by: &Principal, id: clawden_core::ApprovalId, now: UnixMillis)
        -> StoreResult<bool>;

    /// Expires every pending approval (at start: no turn waits for them any more); system only.
    async fn expire_all_pending(&self, by: &Principal, now: UnixMillis) -> StoreResult<u64>;
}

/// Everything clawden persists.
#[async_trait]
pub trait Store:
    UserStore
    + SessionStore
    + InviteStore
    + AuditStore
    + SecretStore
    + TotpStore
    + GatewayStore
    + AgentStore
    + MemberStore
    + AdminStore
    + AnomalyStore
    + ToolStore
    + DataStore
    + std::fmt::Debug
{
    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;
}

pub use keyring::{KeyOwner, MasterKeySource};
pub use sql::sqlite_url;
