//! Invite codes, stored as keyed hashes with a use count and an expiry.

use super::audit::insert_audit;
use super::{require_system, require_user, SqlStore};
use crate::{AuditEvent, InviteStore, NewInvite, StoreResult};
use async_trait::async_trait;
use clawden_core::{Principal, Tier, UnixMillis};
use clawden_crypto::TokenHash;
use sqlx::{Any, Transaction};

/// Spends one use of a valid invite inside `tx`; false when none is valid.
pub(crate) async fn spend(tx: &mut Transaction<'static, Any>, hash: &TokenHash, now: UnixMillis) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE invites SET uses_left = uses_left - 1
         WHERE code_hash = $1 AND uses_left > 0 AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(hash.0.to_vec())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl InviteStore for SqlStore {
    async fn create_invite(&self, by: &Principal, new: NewInvite, audit: AuditEvent) -> StoreResult<()> {
        require_system(by)?;
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.begin(by).await?;
        sqlx::query(
            "INSERT INTO invites (id, code_hash, uses_left, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(new.code_hash.0.to_vec())
        .bind(new.uses)
        .bind(new.expires_at)
        .bind(new.now)
        .execute(&mut *tx.tx)
        .await?;
        let mut audit = audit;
        audit.target = format!("invite:{id}");
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await
    }

    async fn redeem_invite(
        &self,
        by: &Principal,
        hash: &TokenHash,
        now: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<bool> {
        let user = require_user(by)?;
        let mut tx = self.begin(by).await?;
        if !spend(&mut tx.tx, hash, now).await? {
            return Ok(false);
        }
        sqlx::query("UPDATE users SET tier = $1, updated_at = $2 WHERE id = $3")
            .bind(Tier::Invite.as_str())
            .bind(now)
            .bind(user.to_string())
            .execute(&mut *tx.tx)
            .await?;
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }
}
