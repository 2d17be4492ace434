//! Audit records: written in the transaction of the action they describe, or alone for
//! failed attempts.

use super::{get_i64, get_opt_str, get_str, require_user, SqlStore};
use crate::{AuditEvent, AuditRecord, AuditStore, StoreResult};
use async_trait::async_trait;
use clawden_core::{Principal, UnixMillis};
use sqlx::{Any, Transaction};

/// Appends `event` to its chain inside `tx`.
pub(crate) async fn insert_audit(tx: &mut Transaction<'static, Any>, event: &AuditEvent) -> StoreResult<i64> {
    let chain = event.chain.key();
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO audit_sequences (chain, last_seq) VALUES ($1, 1)
         ON CONFLICT (chain) DO UPDATE SET last_seq = audit_sequences.last_seq + 1
         RETURNING last_seq",
    )
    .bind(&chain)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO audit_log (id, chain, seq, at, actor_user_id, instance_id, action, target, outcome, ip)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&chain)
    .bind(seq)
    .bind(event.at)
    .bind(event.actor.map(|u| u.to_string()))
    .bind(event.instance.map(|i| i.to_string()))
    .bind(&event.action)
    .bind(&event.target)
    .bind(event.outcome.as_str())
    .bind(event.ip.clone())
    .execute(&mut **tx)
    .await?;
    Ok(seq)
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn record(&self, event: AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin(&Principal::System).await?;
        insert_audit(&mut tx.tx, &event).await?;
        tx.commit().await
    }

    async fn own_audit(&self, by: &Principal, before: Option<UnixMillis>, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let user = require_user(by)?;
        let rows = sqlx::query(
            "SELECT seq, chain, at, actor_user_id, instance_id, action, target, outcome, ip FROM audit_log
             WHERE actor_user_id = $1 AND at < $2 ORDER BY at DESC, seq DESC LIMIT $3",
        )
        .bind(user.to_string())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit.min(500)))
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn instance_audit(
        &self,
        by: &Principal,
        instance: clawden_core::InstanceId,
        before: Option<UnixMillis>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let user = require_user(by)?;
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM members WHERE instance_id = $1 AND user_id = $2")
                .bind(instance.to_string())
                .bind(user.to_string())
                .fetch_optional(&mut *self.conn(by).await?)
                .await?;
        match role.as_deref() {
            Some("owner") | Some("admin") => {}
            Some(_) => return Err(crate::StoreError::Forbidden),
            None => return Err(crate::StoreError::NotFound),
        }
        let rows = sqlx::query(
            "SELECT seq, chain, at, actor_user_id, instance_id, action, target, outcome, ip FROM audit_log
             WHERE chain = $1 AND at < $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(format!("instance:{instance}"))
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit.min(500)))
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        rows.iter().map(record_from_row).collect()
    }
}

pub(super) fn record_from_row(row: &sqlx::any::AnyRow) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        seq: get_i64(row, "seq")?,
        chain: get_str(row, "chain")?,
        at: get_i64(row, "at")?,
        actor: get_opt_str(row, "actor_user_id")?,
        instance_id: get_opt_str(row, "instance_id")?,
        action: get_str(row, "action")?,
        target: get_str(row, "target")?,
        outcome: get_str(row, "outcome")?,
        ip: get_opt_str(row, "ip")?,
    })
}
