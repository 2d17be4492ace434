//! What a user's data rights need from the store: reading everything of theirs in pages (an
//! export streams it rather than holding it), usage over a range of days, and writing a whole
//! set of workspace files at once (an import changes all of them or none).

use crate::{AuditEvent, AuditRecord, DailyUsage, StoreResult, StoredMessage};
use async_trait::async_trait;
use clawden_core::{ConversationId, InstanceId, Principal, UnixMillis};

/// Where a page of the principal's own audit records starts: after this record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    /// The record's time.
    pub at: UnixMillis,
    /// Its chain.
    pub chain: String,
    /// Its position in the chain.
    pub seq: i64,
}

impl AuditCursor {
    /// The cursor just after `record`.
    pub fn after(record: &AuditRecord) -> Self {
        Self { at: record.at, chain: record.chain.clone(), seq: record.seq }
    }
}

/// Export, import and usage history.
#[async_trait]
#[allow(clippy::too_many_arguments)]
pub trait DataStore: Send + Sync {
    /// The principal's daily counters for the UTC days `from_day..=to_day` (`YYYY-MM-DD`),
    /// oldest first. Days without a row (nothing used) are left out.
    async fn usage_between(
        &self,
        by: &Principal,
        from_day: &str,
        to_day: &str,
    ) -> StoreResult<Vec<(String, DailyUsage)>>;

    /// Up to `limit` messages of one of the principal's own conversations with a `seq` after
    /// `after_seq`, oldest first. `NotFound` when the conversation is not theirs.
    async fn messages_after(
        &self,
        by: &Principal,
        id: ConversationId,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<StoredMessage>>;

    /// Up to `limit` of the principal's own audit records (what they did), oldest first,
    /// starting after `after`.
    async fn own_audit_after(
        &self,
        by: &Principal,
        after: Option<&AuditCursor>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>>;

    /// Writes `files` (path, text; paths already validated) into an instance's workspace in
    /// one transaction, sealed under the instance's key: either every file is written or
    /// none. With `replace`, files of the workspace that are not in `files` are deleted in
    /// the same transaction. `LimitReached` when the workspace would then exceed
    /// `max_total_chars`. Owners and admins only. Records `audit` (target set to the count).
    async fn write_files(
        &self,
        by: &Principal,
        instance: InstanceId,
        files: &[(String, String)],
        replace: bool,
        max_total_chars: i64,
        now: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<()>;
}
