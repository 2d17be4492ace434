//! TOTP secrets (sealed under the user's key), the last accepted time step, recovery codes.

use super::audit::insert_audit;
use super::{require_system, require_user, SqlStore};
use crate::{AuditEvent, KeyOwner, StoreError, StoreResult, TotpState, TotpStore};
use async_trait::async_trait;
use clawden_core::{Principal, UnixMillis, UserId};
use clawden_crypto::TokenHash;
use sqlx::Row;

#[async_trait]
impl TotpStore for SqlStore {
    async fn totp_begin(&self, by: &Principal, secret: &[u8], now: UnixMillis) -> StoreResult<()> {
        let user = require_user(by)?;
        let sealed = self.seal(KeyOwner::User(user), "totp", "secret", &user.to_string(), secret, now).await?;
        let mut tx = self.begin(by).await?;
        let done = sqlx::query(
            "INSERT INTO totp (user_id, secret, enabled, last_step, created_at) VALUES ($1, $2, 0, 0, $3)
             ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at
             WHERE totp.enabled = 0",
        )
        .bind(user.to_string())
        .bind(sealed)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Forbidden);
        }
        tx.commit().await
    }

    async fn totp_enabled(&self, by: &Principal, user: UserId) -> StoreResult<bool> {
        if !(by.is_system() || by.user_id() == Some(user)) {
            return Err(StoreError::Forbidden);
        }
        let enabled: Option<i64> = sqlx::query_scalar("SELECT enabled FROM totp WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_optional(&mut *self.conn(by).await?)
            .await?;
        Ok(enabled.is_some_and(|e| e != 0))
    }

    async fn totp_state(&self, by: &Principal, user: UserId) -> StoreResult<Option<TotpState>> {
        if !(by.is_system() || by.user_id() == Some(user)) {
            return Err(StoreError::Forbidden);
        }
        let row = sqlx::query("SELECT secret, enabled, last_step FROM totp WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_optional(&mut *self.conn(by).await?)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Vec<u8> = row.try_get("secret")?;
        let secret = self.open(KeyOwner::User(user), "totp", "secret", &user.to_string(), &sealed).await?;
        Ok(Some(TotpState {
            secret,
            enabled: row.try_get::<i64, _>("enabled")? != 0,
            last_step: row.try_get("last_step")?,
        }))
    }

    async fn totp_enable(
        &self,
        by: &Principal,
        step: i64,
        recovery: &[TokenHash],
        audit: AuditEvent,
    ) -> StoreResult<bool> {
        let user = require_user(by)?;
        let mut tx = self.begin(by).await?;
        let done = sqlx::query(
            "UPDATE totp SET enabled = 1, last_step = $1 WHERE user_id = $2 AND enabled = 0 AND last_step < $1",
        )
        .bind(step)
        .bind(user.to_string())
        .execute(&mut *tx.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user.to_string())
            .execute(&mut *tx.tx)
            .await?;
        for hash in recovery {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(user.to_string())
                .bind(hash.0.to_vec())
                .execute(&mut *tx.tx)
                .await?;
        }
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn totp_accept_step(&self, by: &Principal, user: UserId, step: i64) -> StoreResult<bool> {
        require_system(by)?;
        let mut tx = self.begin(by).await?;
        let done = sqlx::query("UPDATE totp SET last_step = $1 WHERE user_id = $2 AND enabled = 1 AND last_step < $1")
            .bind(step)
            .bind(user.to_string())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn use_recovery_code(
        &self,
        by: &Principal,
        user: UserId,
        hash: &TokenHash,
        now: UnixMillis,
    ) -> StoreResult<bool> {
        require_system(by)?;
        let mut tx = self.begin(by).await?;
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(user.to_string())
        .bind(hash.0.to_vec())
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn totp_disable(&self, by: &Principal, audit: AuditEvent) -> StoreResult<()> {
        let user = require_user(by)?;
        let mut tx = self.begin(by).await?;
        sqlx::query("DELETE FROM totp WHERE user_id = $1").bind(user.to_string()).execute(&mut *tx.tx).await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user.to_string())
            .execute(&mut *tx.tx)
            .await?;
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await
    }
}
