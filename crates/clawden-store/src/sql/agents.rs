//! Workspace files, conversations, messages and daily usage.
//!
//! Files are sealed under the instance's key (they belong to the instance and survive an
//! ownership change); titles and messages under their author's key. Conversations are read
//! only by their author — not even the instance owner reads another member's chats.

use super::audit::insert_audit;
use super::{get_i64, get_parsed, get_str, require_system, require_user, Backend, SqlStore};
use crate::{
    AgentStore, AuditEvent, Conversation, DailyUsage, FileInfo, KeyOwner, StoreError, StoreResult, StoredMessage,
    UserStore,
};
use async_trait::async_trait;
use clawden_core::{ConversationId, InstanceId, Principal, Tier, UnixMillis, UserId};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

impl SqlStore {
    pub(super) async fn require_member(&self, by: &Principal, instance: InstanceId) -> StoreResult<()> {
        if by.is_system() || self.role_in(by, instance).await?.is_some() {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    pub(super) async fn require_configurer(&self, by: &Principal, instance: InstanceId) -> StoreResult<()> {
        if by.is_system() {
            return Ok(());
        }
        match self.role_in(by, instance).await? {
            Some(role) if role.can_configure() => Ok(()),
            Some(_) => Err(StoreError::Forbidden),
            None => Err(StoreError::NotFound),
        }
    }

    /// On PostgreSQL, locks a row for the rest of the transaction so concurrent writers of
    /// the same instance or conversation queue instead of racing (SQLite has one writer).
    pub(super) async fn lock_row(&self, tx: &mut Transaction<'static, Any>, table: &str, id: &str) -> StoreResult<()> {
        if self.backend == Backend::Postgres {
            sqlx::query(&format!("SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE")).bind(id).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The row of one of `user`'s conversations, only while they are still a member of its
    /// instance (someone removed from an instance no longer reaches its conversations). One
    /// query for both checks.
    async fn conversation_row(&self, user: UserId, id: ConversationId) -> StoreResult<Option<AnyRow>> {
        Ok(sqlx::query(
            "SELECT c.id, c.instance_id, c.title, c.created_at, c.updated_at FROM conversations c
             JOIN members m ON m.instance_id = c.instance_id AND m.user_id = c.user_id
             WHERE c.id = $1 AND c.user_id = $2",
        )
        .bind(id.to_string())
        .bind(user.to_string())
        .fetch_optional(&mut *self.conn(&Principal::User { user }).await?)
        .await?)
    }

    async fn conversation_from_row(&self, user: UserId, row: &AnyRow) -> StoreResult<Conversation> {
        let id: String = get_str(row, "id")?;
        let sealed: Vec<u8> = row.try_get("title")?;
        let title = self.open(KeyOwner::User(user), "conversations", "title", &id, &sealed).await?;
        Ok(Conversation {
            id: id.parse().map_err(|e| StoreError::corrupt(format!("conversation id: {e}")))?,
            instance_id: get_parsed(row, "instance_id")?,
            title: String::from_utf8(title.to_vec()).map_err(|_| StoreError::corrupt("title is not UTF-8"))?,
            created_at: get_i64(row, "created_at")?,
            updated_at: get_i64(row, "updated_at")?,
        })
    }

    /// A new message id and the body sealed for that row under `user`'s key. Done before the
    /// write transaction starts, so the writer lock is not held while sealing.
    async fn seal_message(&self, user: UserId, body: &str, now: UnixMillis) -> StoreResult<(String, Vec<u8>)> {
        let message_id = uuid::Uuid::now_v7().to_string();
        let sealed = self.seal(KeyOwner::User(user), "messages", "content", &message_id, body.as_bytes(), now).await?;
        Ok((message_id, sealed))
    }

    /// Inside a write transaction, marks `user`'s conversation as updated at `now`; `false` if
    /// there is no such conversation of theirs (or, with `member_only`, they are no longer a
    /// member of its instance). One statement is the ownership check, the touch, and on
    /// PostgreSQL the row lock that queues concurrent writers of the same conversation, so the
    /// next `seq` cannot be taken twice.
    async fn touch_conversation(
        &self,
        tx: &mut Transaction<'static, Any>,
        user: UserId,
        id: ConversationId,
        member_only: bool,
        now: UnixMillis,
    ) -> StoreResult<bool> {
        let sql = if member_only {
            "UPDATE conversations SET updated_at = $1 WHERE id = $2 AND user_id = $3
             AND EXISTS (SELECT 1 FROM members m
                         WHERE m.instance_id = conversations.instance_id AND m.user_id = conversations.user_id)"
        } else {
            "UPDATE conversations SET updated_at = $1 WHERE id = $2 AND user_id = $3"
        };
        let done = sqlx::query(sql).bind(now).bind(id.to_string()).bind(user.to_string()).execute(&mut **tx).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Inserts a sealed message as the conversation's next `seq`. Call after
    /// [`Self::touch_conversation`] in the same transaction.
    async fn insert_message(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: ConversationId,
        role: &str,
        (message_id, sealed): (String, Vec<u8>),
        body: &str,
        now: UnixMillis,
    ) -> StoreResult<StoredMessage> {
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO messages (id, conversation_id, seq, role, content, created_at)
             SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, $5 FROM messages WHERE conversation_id = $2
             RETURNING seq",
        )
        .bind(&message_id)
        .bind(id.to_string())
        .bind(role)
        .bind(sealed)
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
        Ok(StoredMessage { id: message_id, seq, role: role.to_owned(), body: body.to_owned(), created_at: now })
    }

    /// Adds `usage` to `user`'s counters for `day`, inside a write transaction.
    async fn add_usage_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        user: UserId,
        day: &str,
        usage: DailyUsage,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO usage_daily (user_id, day, messages, input_tokens, output_tokens, tool_calls) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id, day) DO UPDATE SET
               messages = usage_daily.messages + excluded.messages,
               input_tokens = usage_daily.input_tokens + excluded.input_tokens,
               output_tokens = usage_daily.output_tokens + excluded.output_tokens,
               tool_calls = usage_daily.tool_calls + excluded.tool_calls",
        )
        .bind(user.to_string())
        .bind(day)
        .bind(usage.messages)
        .bind(usage.input_tokens)
        .bind(usage.output_tokens)
        .bind(usage.tool_calls)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

#[async_trait]
#[allow(clippy::too_many_arguments)]
impl AgentStore for SqlStore {
    async fn instance_tier(&self, by: &Principal, instance: InstanceId) -> StoreResult<Option<Tier>> {
        self.require_member(by, instance).await?;
        let tier: Option<String> = sqlx::query_scalar(
            "SELECT u.tier FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.instance_id = $1 AND m.role = 'owner' ORDER BY m.created_at LIMIT 1",
        )
        .bind(instance.to_string())
        .fetch_optional(&mut *self.conn(by).await?)
        .await?;
        tier.map(|t| t.parse::<Tier>().map_err(StoreError::corrupt)).transpose()
    }

    async fn instance_owner(&self, by: &Principal, instance: InstanceId) -> StoreResult<Option<crate::User>> {
        require_system(by)?;
        let row = sqlx::query(
            "SELECT u.id, u.email, u.tier, u.platform_admin, u.disabled, u.created_at FROM members m
             JOIN users u ON u.id = m.user_id WHERE m.instance_id = $1 AND m.role = 'owner'
             ORDER BY m.created_at LIMIT 1",
        )
        .bind(instance.to_string())
        .fetch_optional(&mut *self.conn(by).await?)
        .await?;
        row.as_ref().map(super::users::user_from_row).transpose()
    }

    async fn list_files(&self, by: &Principal, instance: InstanceId) -> StoreResult<Vec<FileInfo>> {
        self.require_member(by, instance).await?;
        let rows = sqlx::query("SELECT path, chars, updated_at FROM agent_files WHERE instance_id = $1 ORDER BY path")
            .bind(instance.to_string())
            .fetch_all(&mut *self.conn(by).await?)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(FileInfo {
                    path: get_str(r, "path")?,
                    size: get_i64(r, "chars")?,
                    updated_at: get_i64(r, "updated_at")?,
                })
            })
            .collect()
    }

    async fn read_file(&self, by: &Principal, instance: InstanceId, path: &str) -> StoreResult<Option<String>> {
        self.require_member(by, instance).await?;
        let sealed: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT content FROM agent_files WHERE instance_id = $1 AND path = $2")
                .bind(instance.to_string())
                .bind(path)
                .fetch_optional(&mut *self.conn(by).await?)
                .await?;
        let Some(sealed) = sealed else { return Ok(None) };
        let plain = self.open(KeyOwner::Instance(instance), "agent_files", "content", path, &sealed).await?;
        Ok(Some(String::from_utf8(plain.to_vec()).map_err(|_| StoreError::corrupt("file is not UTF-8"))?))
    }

    async fn read_files(&self, by: &Principal, instance: InstanceId) -> StoreResult<Vec<(String, String)>> {
        self.require_member(by, instance).await?;
        let rows = sqlx::query("SELECT path, content FROM agent_files WHERE instance_id = $1 ORDER BY path")
            .bind(instance.to_string())
            .fetch_all(&mut *self.conn(by).await?)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let path = get_str(&row, "path")?;
            let sealed: Vec<u8> = row.try_get("content")?;
            let plain = self.open(KeyOwner::Instance(instance), "agent_files", "content", &path, &sealed).await?;
            out.push((path, String::from_utf8(plain.to_vec()).map_err(|_| StoreError::corrupt("file is not UTF-8"))?));
        }
        Ok(out)
    }

    async fn write_file(
        &self,
        by: &Principal,
        instance: InstanceId,
        path: &str,
        content: &str,
        max_total_chars: i64,
        now: UnixMillis,
        audit: Option<AuditEvent>,
    ) -> StoreResult<()> {
        self.require_configurer(by, instance).await?;
        let chars = i64::try_from(content.chars().count()).unwrap_or(i64::MAX);
        let sealed =
            self.seal(KeyOwner::Instance(instance), "agent_files", "content", path, content.as_bytes(), now).await?;
        let mut tx = self.begin(by).await?;
        self.lock_row(&mut tx.tx, "instances", &instance.to_string()).await?;
        let others: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(chars), 0) AS BIGINT) FROM agent_files WHERE instance_id = $1 AND path <> $2",
        )
        .bind(instance.to_string())
        .bind(path)
        .fetch_one(&mut *tx.tx)
        .await?;
        if others.saturating_add(chars) > max_total_chars {
            return Err(StoreError::LimitReached("workspace size"));
        }
        sqlx::query(
            "INSERT INTO agent_files (instance_id, path, content, chars, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (instance_id, path) DO UPDATE
             SET content = excluded.content, chars = excluded.chars, updated_at = excluded.updated_at",
        )
        .bind(instance.to_string())
        .bind(path)
        .bind(sealed)
        .bind(chars)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        if let Some(mut audit) = audit {
            audit.target = format!("file:{path}");
            insert_audit(&mut tx.tx, &audit).await?;
        }
        tx.commit().await
    }

    async fn delete_file(
        &self,
        by: &Principal,
        instance: InstanceId,
        path: &str,
        audit: AuditEvent,
    ) -> StoreResult<bool> {
        self.require_configurer(by, instance).await?;
        let mut tx = self.begin(by).await?;
        let done = sqlx::query("DELETE FROM agent_files WHERE instance_id = $1 AND path = $2")
            .bind(instance.to_string())
            .bind(path)
            .execute(&mut *tx.tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let mut audit = audit;
        audit.target = format!("file:{path}");
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_conversation(
        &self,
        by: &Principal,
        instance: InstanceId,
        title: &str,
        max_conversations: i64,
        now: UnixMillis,
    ) -> StoreResult<Conversation> {
        let user = require_user(by)?;
        let id = ConversationId::new();
        let sealed =
            self.seal(KeyOwner::User(user), "conversations", "title", &id.to_string(), title.as_bytes(), now).await?;
        let mut tx = self.begin(by).await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
                .bind(user.to_string())
                .execute(&mut *tx.tx)
                .await?;
        }
        // Membership and the cap in one round trip. The count stops at the cap, so a user far
        // past it (after the cap was lowered) costs no more than one at it.
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM members WHERE instance_id = $1 AND user_id = $2) AS member,
                    (SELECT COUNT(*) FROM (SELECT 1 FROM conversations WHERE user_id = $2 LIMIT $3) AS capped) AS n",
        )
        .bind(instance.to_string())
        .bind(user.to_string())
        .bind(max_conversations.max(0))
        .fetch_one(&mut *tx.tx)
        .await?;
        if get_i64(&row, "member")? == 0 {
            return Err(StoreError::NotFound);
        }
        if get_i64(&row, "n")? >= max_conversations {
            return Err(StoreError::LimitReached("conversations"));
        }
        sqlx::query(
            "INSERT INTO conversations (id, user_id, instance_id, title, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(id.to_string())
        .bind(user.to_string())
        .bind(instance.to_string())
        .bind(sealed)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(Conversation { id, instance_id: instance, title: title.to_owned(), created_at: now, updated_at: now })
    }

    async fn conversations(&self, by: &Principal) -> StoreResult<Vec<Conversation>> {
        let user = require_user(by)?;
        let rows = sqlx::query(
            "SELECT c.id, c.instance_id, c.title, c.created_at, c.updated_at FROM conversations c
             JOIN members m ON m.instance_id = c.instance_id AND m.user_id = c.user_id
             WHERE c.user_id = $1 ORDER BY c.updated_at DESC, c.id DESC",
        )
        .bind(user.to_string())
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.conversation_from_row(user, row).await?);
        }
        Ok(out)
    }

    async fn conversation(&self, by: &Principal, id: ConversationId) -> StoreResult<Option<Conversation>> {
        let user = require_user(by)?;
        match self.conversation_row(user, id).await? {
            Some(row) => Ok(Some(self.conversation_from_row(user, &row).await?)),
            None => Ok(None),
        }
    }

    async fn delete_conversations(
        &self,
        by: &Principal,
        id: Option<ConversationId>,
        audit: AuditEvent,
    ) -> StoreResult<u64> {
        let user = require_user(by)?;
        let mut tx = self.begin(by).await?;
        let done = match id {
            Some(id) => {
                sqlx::query("DELETE FROM conversations WHERE id = $1 AND user_id = $2")
                    .bind(id.to_string())
                    .bind(user.to_string())
                    .execute(&mut *tx.tx)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM conversations WHERE user_id = $1")
                    .bind(user.to_string())
                    .execute(&mut *tx.tx)
                    .await?
            }
        };
        if done.rows_affected() == 0 && id.is_some() {
            return Ok(0);
        }
        let mut audit = audit;
        audit.target = id.map_or_else(|| "conversations:all".to_owned(), |id| format!("conversation:{id}"));
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn messages(&self, by: &Principal, id: ConversationId, limit: i64) -> StoreResult<Vec<StoredMessage>> {
        let user = require_user(by)?;
        if limit <= 0 {
            return match self.conversation(by, id).await? {
                Some(_) => Ok(Vec::new()),
                None => Err(StoreError::NotFound),
            };
        }
        // The ownership and membership check and the read in one round trip: no row at all
        // means no such conversation of the caller's; one row without a message id means an
        // empty one.
        let rows = sqlx::query(
            "SELECT m.id, m.seq, m.role, m.content, m.created_at FROM conversations c
             JOIN members mb ON mb.instance_id = c.instance_id AND mb.user_id = c.user_id
             LEFT JOIN messages m ON m.conversation_id = c.id
             WHERE c.id = $1 AND c.user_id = $2 ORDER BY m.seq DESC LIMIT $3",
        )
        .bind(id.to_string())
        .bind(user.to_string())
        .bind(limit)
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound);
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in rows.iter().rev() {
            let Some(message_id) = row.try_get::<Option<String>, _>("id")? else { continue };
            let sealed: Vec<u8> = row.try_get("content")?;
            let plain = self.open(KeyOwner::User(user), "messages", "content", &message_id, &sealed).await?;
            out.push(StoredMessage {
                id: message_id,
                seq: get_i64(row, "seq")?,
                role: get_str(row, "role")?,
                body: String::from_utf8(plain.to_vec()).map_err(|_| StoreError::corrupt("message is not UTF-8"))?,
                created_at: get_i64(row, "created_at")?,
            });
        }
        Ok(out)
    }

    async fn append_user_message(
        &self,
        by: &Principal,
        id: ConversationId,
        body: &str,
        day: &str,
        limit: i64,
        now: UnixMillis,
    ) -> StoreResult<StoredMessage> {
        let user = require_user(by)?;
        let sealed = self.seal_message(user, body, now).await?;
        let mut tx = self.begin(by).await?;
        if !self.touch_conversation(&mut tx.tx, user, id, true, now).await? {
            return Err(StoreError::NotFound);
        }
        if limit <= 0 {
            return Err(StoreError::QuotaExceeded);
        }
        let counted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO usage_daily (user_id, day, messages) VALUES ($1, $2, 1)
             ON CONFLICT (user_id, day) DO UPDATE SET messages = usage_daily.messages + 1
             WHERE usage_daily.messages < $3
             RETURNING messages",
        )
        .bind(user.to_string())
        .bind(day)
        .bind(limit)
        .fetch_optional(&mut *tx.tx)
        .await?;
        if counted.is_none() {
            return Err(StoreError::QuotaExceeded);
        }
        let message = self.insert_message(&mut tx.tx, id, "user", sealed, body, now).await?;
        tx.commit().await?;
        Ok(message)
    }

    async fn append_server_message(
        &self,
        by: &Principal,
        user: UserId,
        id: ConversationId,
        role: &str,
        body: &str,
        now: UnixMillis,
    ) -> StoreResult<StoredMessage> {
        require_system(by)?;
        let sealed = self.seal_message(user, body, now).await?;
        let mut tx = self.begin(by).await?;
        if !self.touch_conversation(&mut tx.tx, user, id, false, now).await? {
            return Err(StoreError::NotFound);
        }
        let message = self.insert_message(&mut tx.tx, id, role, sealed, body, now).await?;
        tx.commit().await?;
        Ok(message)
    }

    async fn append_reply(
        &self,
        by: &Principal,
        user: UserId,
        id: ConversationId,
        body: &str,
        day: &str,
        usage: DailyUsage,
        now: UnixMillis,
    ) -> StoreResult<StoredMessage> {
        require_system(by)?;
        let sealed = self.seal_message(user, body, now).await?;
        let mut tx = self.begin(by).await?;
        if !self.touch_conversation(&mut tx.tx, user, id, false, now).await? {
            return Err(StoreError::NotFound);
        }
        let message = self.insert_message(&mut tx.tx, id, "assistant", sealed, body, now).await?;
        self.add_usage_in(&mut tx.tx, user, day, usage).await?;
        tx.commit().await?;
        Ok(message)
    }

    async fn add_usage(&self, by: &Principal, user: UserId, day: &str, usage: DailyUsage) -> StoreResult<()> {
        require_system(by)?;
        let mut tx = self.begin(by).await?;
        self.add_usage_in(&mut tx.tx, user, day, usage).await?;
        tx.commit().await
    }

    async fn usage(&self, by: &Principal, day: &str) -> StoreResult<DailyUsage> {
        let user = require_user(by)?;
        let row = sqlx::query(
            "SELECT messages, input_tokens, output_tokens, tool_calls FROM usage_daily WHERE user_id = $1 AND day = $2",
        )
        .bind(user.to_string())
        .bind(day)
        .fetch_optional(&mut *self.conn(by).await?)
        .await?;
        let Some(row) = row else { return Ok(DailyUsage::default()) };
        Ok(DailyUsage {
            messages: get_i64(&row, "messages")?,
            input_tokens: get_i64(&row, "input_tokens")?,
            output_tokens: get_i64(&row, "output_tokens")?,
            tool_calls: get_i64(&row, "tool_calls")?,
        })
    }
}
