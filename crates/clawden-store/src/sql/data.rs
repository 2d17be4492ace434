//! [`DataStore`]: paged reads for export, usage history, and the all-or-nothing workspace
//! write an import needs.

use super::audit::insert_audit;
use super::{get_i64, get_str, require_user, SqlStore};
use crate::{
    AuditCursor, AuditEvent, AuditRecord, DailyUsage, DataStore, KeyOwner, StoreError, StoreResult, StoredMessage,
};
use async_trait::async_trait;
use clawden_core::{ConversationId, InstanceId, Principal, UnixMillis};
use sqlx::Row;

#[async_trait]
#[allow(clippy::too_many_arguments)]
impl DataStore for SqlStore {
    async fn usage_between(
        &self,
        by: &Principal,
        from_day: &str,
        to_day: &str,
    ) -> StoreResult<Vec<(String, DailyUsage)>> {
        let user = require_user(by)?;
        // Days are `YYYY-MM-DD`, so text order is date order on both backends.
        let rows = sqlx::query(
            "SELECT day, messages, input_tokens, output_tokens, tool_calls FROM usage_daily
             WHERE user_id = $1 AND day >= $2 AND day <= $3 ORDER BY day",
        )
        .bind(user.to_string())
        .bind(from_day)
        .bind(to_day)
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    get_str(row, "day")?,
                    DailyUsage {
                        messages: get_i64(row, "messages")?,
                        input_tokens: get_i64(row, "input_tokens")?,
                        output_tokens: get_i64(row, "output_tokens")?,
                        tool_calls: get_i64(row, "tool_calls")?,
                    },
                ))
            })
            .collect()
    }

    async fn messages_after(
        &self,
        by: &Principal,
        id: ConversationId,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<StoredMessage>> {
        let user = require_user(by)?;
        // Ownership and the page in one query: no row at all means not the caller's.
        let rows = sqlx::query(
            "SELECT m.id, m.seq, m.role, m.content, m.created_at FROM conversations c
             LEFT JOIN messages m ON m.conversation_id = c.id AND m.seq > $3
             WHERE c.id = $1 AND c.user_id = $2 ORDER BY m.seq LIMIT $4",
        )
        .bind(id.to_string())
        .bind(user.to_string())
        .bind(after_seq)
        .bind(limit.clamp(1, 1000))
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound);
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
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

    async fn own_audit_after(
        &self,
        by: &Principal,
        after: Option<&AuditCursor>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let user = require_user(by)?;
        let (at, chain, seq) = match after {
            Some(c) => (c.at, c.chain.clone(), c.seq),
            None => (i64::MIN, String::new(), i64::MIN),
        };
        let rows = sqlx::query(
            "SELECT seq, chain, at, actor_user_id, instance_id, action, target, outcome, ip FROM audit_log
             WHERE actor_user_id = $1
               AND (at > $2 OR (at = $2 AND (chain > $3 OR (chain = $3 AND seq > $4))))
             ORDER BY at, chain, seq LIMIT $5",
        )
        .bind(user.to_string())
        .bind(at)
        .bind(chain)
        .bind(seq)
        .bind(i64::from(limit.clamp(1, 500)))
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        rows.iter().map(super::audit::record_from_row).collect()
    }

    async fn write_files(
        &self,
        by: &Principal,
        instance: InstanceId,
        files: &[(String, String)],
        replace: bool,
        max_total_chars: i64,
        now: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        self.require_configurer(by, instance).await?;
        // Sealed before the transaction starts, so the writer lock is not held while sealing.
        let mut sealed = Vec::with_capacity(files.len());
        for (path, text) in files {
            let blob =
                self.seal(KeyOwner::Instance(instance), "agent_files", "content", path, text.as_bytes(), now).await?;
            sealed.push((path, i64::try_from(text.chars().count()).unwrap_or(i64::MAX), blob));
        }
        let id = instance.to_string();
        let mut tx = self.begin(by).await?;
        self.lock_row(&mut tx.tx, "instances", &id).await?;
        if replace {
            sqlx::query("DELETE FROM agent_files WHERE instance_id = $1").bind(&id).execute(&mut *tx.tx).await?;
        }
        for (path, chars, blob) in sealed {
            sqlx::query(
                "INSERT INTO agent_files (instance_id, path, content, chars, updated_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (instance_id, path) DO UPDATE
                 SET content = excluded.content, chars = excluded.chars, updated_at = excluded.updated_at",
            )
            .bind(&id)
            .bind(path)
            .bind(blob)
            .bind(chars)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        }
        let total: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(chars), 0) AS BIGINT) FROM agent_files WHERE instance_id = $1",
        )
        .bind(&id)
        .fetch_one(&mut *tx.tx)
        .await?;
        if total > max_total_chars {
            // Dropping the transaction rolls every write back.
            return Err(StoreError::LimitReached("workspace size"));
        }
        let mut audit = audit;
        audit.target = format!("files:{}", files.len());
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await
    }
}
