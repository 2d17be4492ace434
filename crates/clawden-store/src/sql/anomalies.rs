//! The anomaly rules' reads (bursts in the audit log) and actions (locks, notices).

use super::audit::insert_audit;
use super::{get_i64, get_str, require_system, require_user, SqlStore};
use crate::{AnomalyStore, AuditEvent, Notice, StoreError, StoreResult};
use async_trait::async_trait;
use clawden_core::{InstanceId, Principal, UnixMillis, UserId};
use sqlx::{Any, Transaction};

async fn insert_notice(
    tx: &mut Transaction<'static, Any>,
    user: &str,
    kind: &str,
    message: &str,
    now: UnixMillis,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO notices (id, user_id, kind, message, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(user)
        .bind(kind)
        .bind(message)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl AnomalyStore for SqlStore {
    async fn failed_login_bursts(&self, by: &Principal, since: UnixMillis, threshold: i64) -> StoreResult<Vec<UserId>> {
        require_system(by)?;
        let chains: Vec<String> = sqlx::query_scalar(
            "SELECT chain FROM audit_log WHERE action = 'auth.login' AND outcome = 'failure' AND at >= $1
             AND chain LIKE 'account:%' GROUP BY chain HAVING COUNT(*) >= $2",
        )
        .bind(since)
        .bind(threshold)
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        Ok(chains.iter().filter_map(|c| c.strip_prefix("account:")?.parse().ok()).collect())
    }

    async fn egress_refusal_bursts(
        &self,
        by: &Principal,
        since: UnixMillis,
        threshold: i64,
    ) -> StoreResult<Vec<InstanceId>> {
        require_system(by)?;
        let chains: Vec<String> = sqlx::query_scalar(
            "SELECT chain FROM audit_log WHERE action = 'egress.refused' AND at >= $1
             AND chain LIKE 'instance:%' GROUP BY chain HAVING COUNT(*) >= $2",
        )
        .bind(since)
        .bind(threshold)
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        Ok(chains.iter().filter_map(|c| c.strip_prefix("instance:")?.parse().ok()).collect())
    }

    async fn acted_since(&self, by: &Principal, chain: &str, action: &str, since: UnixMillis) -> StoreResult<bool> {
        require_system(by)?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE chain = $1 AND action = $2 AND at >= $3")
            .bind(chain)
            .bind(action)
            .bind(since)
            .fetch_one(&mut *self.conn(by).await?)
            .await?;
        Ok(n > 0)
    }

    async fn lock_account(
        &self,
        by: &Principal,
        user: UserId,
        until: UnixMillis,
        notice: &str,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        require_system(by)?;
        let mut tx = self.begin(by).await?;
        let done = sqlx::query("UPDATE users SET locked_until = $1 WHERE id = $2")
            .bind(until)
            .bind(user.to_string())
            .execute(&mut *tx.tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user.to_string()).execute(&mut *tx.tx).await?;
        insert_notice(&mut tx.tx, &user.to_string(), &audit.action, notice, audit.at).await?;
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await
    }

    async fn notify_owners(
        &self,
        by: &Principal,
        instance: InstanceId,
        kind: &str,
        notice: &str,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        require_system(by)?;
        let mut tx = self.begin(by).await?;
        let owners: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM members WHERE instance_id = $1 AND role = 'owner'")
                .bind(instance.to_string())
                .fetch_all(&mut *tx.tx)
                .await?;
        for owner in owners {
            insert_notice(&mut tx.tx, &owner, kind, notice, audit.at).await?;
        }
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await
    }

    async fn notices(&self, by: &Principal, limit: i64) -> StoreResult<Vec<Notice>> {
        let user = require_user(by)?;
        let rows = sqlx::query(
            "SELECT kind, message, created_at FROM notices WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2",
        )
        .bind(user.to_string())
        .bind(limit)
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Notice {
                    kind: get_str(r, "kind")?,
                    message: get_str(r, "message")?,
                    created_at: get_i64(r, "created_at")?,
                })
            })
            .collect()
    }
}
