//! Tool policies, the daily tool-call quota, and approvals of elevated tool calls.
//!
//! Policies and approval arguments are sealed under the instance's key: a policy holds the
//! commands approved for good and the domains the agent may reach, and a tool call's
//! arguments may hold anything the model wrote. Approvals are seen and decided only by the
//! instance's owners and admins; the decision is taken in one conditional statement, so it
//! lands only while the approval is pending and unexpired.

use super::audit::insert_audit;
use super::{get_i64, get_parsed, get_str, require_system, SqlStore};
use crate::{Approval, ApprovalStatus, AuditEvent, KeyOwner, NewApproval, StoreError, StoreResult, ToolStore};
use async_trait::async_trait;
use clawden_core::{ApprovalId, InstanceId, Principal, UnixMillis, UserId};
use sqlx::any::AnyRow;
use sqlx::Row;

const APPROVAL_COLUMNS: &str = "a.id, a.instance_id, a.conversation_id, a.user_id, a.tool, a.arguments, a.digest, \
     a.status, a.always, a.created_at, a.expires_at, a.decided_at, a.decided_by";

/// Rows the principal may see: the system sees all; a user, those of instances where they are
/// an owner or admin.
const DECIDER: &str = "EXISTS (SELECT 1 FROM members m WHERE m.instance_id = a.instance_id \
     AND m.user_id = $2 AND m.role IN ('owner', 'admin'))";

impl SqlStore {
    async fn approval_from_row(&self, row: &AnyRow) -> StoreResult<Approval> {
        let id: String = get_str(row, "id")?;
        let instance_id: InstanceId = get_parsed(row, "instance_id")?;
        let sealed: Vec<u8> = row.try_get("arguments")?;
        let arguments = self.open(KeyOwner::Instance(instance_id), "approvals", "arguments", &id, &sealed).await?;
        let decided_by: Option<String> = row.try_get("decided_by")?;
        Ok(Approval {
            id: id.parse().map_err(|e| StoreError::corrupt(format!("approval id: {e}")))?,
            instance_id,
            conversation_id: get_parsed(row, "conversation_id")?,
            user_id: get_parsed(row, "user_id")?,
            tool: get_str(row, "tool")?,
            arguments: String::from_utf8(arguments.to_vec())
                .map_err(|_| StoreError::corrupt("approval arguments are not UTF-8"))?,
            digest: get_str(row, "digest")?,
            status: get_str(row, "status")?.parse().map_err(StoreError::corrupt)?,
            always: get_i64(row, "always")? != 0,
            created_at: get_i64(row, "created_at")?,
            expires_at: get_i64(row, "expires_at")?,
            decided_at: row.try_get::<Option<i64>, _>("decided_at")?,
            decided_by: decided_by
                .map(|u| u.parse::<UserId>().map_err(|e| StoreError::corrupt(format!("decided_by: {e}"))))
                .transpose()?,
        })
    }

    async fn approvals_from_rows(&self, rows: &[AnyRow]) -> StoreResult<Vec<Approval>> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.approval_from_row(row).await?);
        }
        Ok(out)
    }

    fn viewer(by: &Principal) -> StoreResult<String> {
        match by {
            Principal::System => Ok(String::new()),
            other => other.user_id().map(|u| u.to_string()).ok_or(StoreError::Forbidden),
        }
    }
}

#[async_trait]
impl ToolStore for SqlStore {
    async fn tool_policy(&self, by: &Principal, instance: InstanceId) -> StoreResult<Option<String>> {
        Ok(self.tool_policy_versioned(by, instance).await?.map(|(body, _)| body))
    }

    async fn tool_policy_versioned(&self, by: &Principal, instance: InstanceId) -> StoreResult<Option<(String, i64)>> {
        self.require_member(by, instance).await?;
        let row = sqlx::query("SELECT body, version FROM tool_policies WHERE instance_id = $1")
            .bind(instance.to_string())
            .fetch_optional(&mut *self.conn(by).await?)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Vec<u8> = row.try_get("body")?;
        let plain =
            self.open(KeyOwner::Instance(instance), "tool_policies", "body", &instance.to_string(), &sealed).await?;
        let body = String::from_utf8(plain.to_vec()).map_err(|_| StoreError::corrupt("policy is not UTF-8"))?;
        Ok(Some((body, get_i64(&row, "version")?)))
    }

    async fn replace_tool_policy(
        &self,
        by: &Principal,
        instance: InstanceId,
        body: &str,
        expected: i64,
        now: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<bool> {
        self.require_configurer(by, instance).await?;
        let sealed = self
            .seal(KeyOwner::Instance(instance), "tool_policies", "body", &instance.to_string(), body.as_bytes(), now)
            .await?;
        let mut tx = self.begin(by).await?;
        let done = if expected == 0 {
            sqlx::query(
                "INSERT INTO tool_policies (instance_id, body, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (instance_id) DO NOTHING",
            )
            .bind(instance.to_string())
            .bind(sealed)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?
        } else {
            sqlx::query(
                "UPDATE tool_policies SET body = $2, updated_at = $3, version = version + 1
                 WHERE instance_id = $1 AND version = $4",
            )
            .bind(instance.to_string())
            .bind(sealed)
            .bind(now)
            .bind(expected)
            .execute(&mut *tx.tx)
            .await?
        };
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn count_tool_call(&self, by: &Principal, user: UserId, day: &str, limit: i64) -> StoreResult<()> {
        require_system(by)?;
        if limit <= 0 {
            return Err(StoreError::QuotaExceeded);
        }
        let mut tx = self.begin(by).await?;
        let counted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO usage_daily (user_id, day, tool_calls) VALUES ($1, $2, 1)
             ON CONFLICT (user_id, day) DO UPDATE SET tool_calls = usage_daily.tool_calls + 1
             WHERE usage_daily.tool_calls < $3
             RETURNING tool_calls",
        )
        .bind(user.to_string())
        .bind(day)
        .bind(limit)
        .fetch_optional(&mut *tx.tx)
        .await?;
        if counted.is_none() {
            return Err(StoreError::QuotaExceeded);
        }
        tx.commit().await
    }

    async fn create_approval(&self, by: &Principal, approval: &NewApproval, audit: AuditEvent) -> StoreResult<()> {
        require_system(by)?;
        let id = approval.id.to_string();
        let sealed = self
            .seal(
                KeyOwner::Instance(approval.instance_id),
                "approvals",
                "arguments",
                &id,
                approval.arguments.as_bytes(),
                approval.created_at,
            )
            .await?;
        let mut tx = self.begin(by).await?;
        sqlx::query(
            "INSERT INTO approvals (id, instance_id, conversation_id, user_id, tool, arguments, digest, status,
                                    always, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $9)",
        )
        .bind(&id)
        .bind(approval.instance_id.to_string())
        .bind(approval.conversation_id.to_string())
        .bind(approval.user_id.to_string())
        .bind(&approval.tool)
        .bind(sealed)
        .bind(&approval.digest)
        .bind(approval.created_at)
        .bind(approval.expires_at)
        .execute(&mut *tx.tx)
        .await?;
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await
    }

    async fn approval(&self, by: &Principal, id: ApprovalId) -> StoreResult<Option<Approval>> {
        let viewer = Self::viewer(by)?;
        let sql = if by.is_system() {
            format!("SELECT {APPROVAL_COLUMNS} FROM approvals a WHERE a.id = $1 AND $2 = ''")
        } else {
            format!("SELECT {APPROVAL_COLUMNS} FROM approvals a WHERE a.id = $1 AND {DECIDER}")
        };
        let row =
            sqlx::query(&sql).bind(id.to_string()).bind(viewer).fetch_optional(&mut *self.conn(by).await?).await?;
        match row {
            Some(row) => Ok(Some(self.approval_from_row(&row).await?)),
            None => Ok(None),
        }
    }

    async fn pending_approvals(
        &self,
        by: &Principal,
        instance: Option<InstanceId>,
        now: UnixMillis,
    ) -> StoreResult<Vec<Approval>> {
        let viewer = Self::viewer(by)?;
        let who = if by.is_system() { "$2 = ''" } else { DECIDER };
        let sql = format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals a
             WHERE a.status = 'pending' AND a.expires_at > $1 AND {who}
               AND ($3 = '' OR a.instance_id = $3)
             ORDER BY a.created_at, a.id LIMIT 500"
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(viewer)
            .bind(instance.map(|i| i.to_string()).unwrap_or_default())
            .fetch_all(&mut *self.conn(by).await?)
            .await?;
        self.approvals_from_rows(&rows).await
    }

    async fn decide_approval(
        &self,
        by: &Principal,
        id: ApprovalId,
        status: ApprovalStatus,
        always: bool,
        now: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<Approval> {
        let user = by.user_id().ok_or(StoreError::Forbidden)?;
        if !matches!(status, ApprovalStatus::Allowed | ApprovalStatus::Denied) {
            return Err(StoreError::Conflict("a decision is allow or deny"));
        }
        // Visibility first, so someone who may not decide learns nothing about the state. The
        // update below checks the decider's role again, inside the write.
        let visible: Option<String> =
            sqlx::query_scalar(&format!("SELECT a.status FROM approvals a WHERE a.id = $1 AND {DECIDER}"))
                .bind(id.to_string())
                .bind(user.to_string())
                .fetch_optional(&mut *self.conn(by).await?)
                .await?;
        if visible.is_none() {
            return Err(StoreError::NotFound);
        }
        // The write comes first in the transaction: on SQLite a transaction that reads before
        // it writes can fail to upgrade its lock.
        let mut tx = self.begin(by).await?;
        let done = sqlx::query(
            "UPDATE approvals SET status = $3, always = $4, decided_at = $5, decided_by = $2
             WHERE id = $1 AND status = 'pending' AND expires_at > $5
               AND EXISTS (SELECT 1 FROM members m WHERE m.instance_id = approvals.instance_id
                           AND m.user_id = $2 AND m.role IN ('owner', 'admin'))",
        )
        .bind(id.to_string())
        .bind(user.to_string())
        .bind(status.as_str())
        .bind(i64::from(always))
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("this approval was already decided or has expired"));
        }
        let row = sqlx::query(&format!("SELECT {APPROVAL_COLUMNS} FROM approvals a WHERE a.id = $1"))
            .bind(id.to_string())
            .fetch_one(&mut *tx.tx)
            .await?;
        let mut audit = audit;
        audit.instance = Some(get_parsed(&row, "instance_id")?);
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await?;
        self.approval_from_row(&row).await
    }

    async fn expire_approval(&self, by: &Principal, id: ApprovalId, now: UnixMillis) -> StoreResult<bool> {
        require_system(by)?;
        let mut tx = self.begin(by).await?;
        let done = sqlx::query(
            "UPDATE approvals SET status = 'expired', decided_at = $2 WHERE id = $1 AND status = 'pending'",
        )
        .bind(id.to_string())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn expire_all_pending(&self, by: &Principal, now: UnixMillis) -> StoreResult<u64> {
        require_system(by)?;
        let mut tx = self.begin(by).await?;
        let done = sqlx::query("UPDATE approvals SET status = 'expired', decided_at = $1 WHERE status = 'pending'")
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
