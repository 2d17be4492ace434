//! Gateway tokens: keyed hashes, one current per instance plus the previous one for an
//! overlap window after each rotation.

use super::audit::insert_audit;
use super::users::user_from_row;
use super::{get_parsed, require_system, SqlStore};
use crate::{AuditEvent, GatewayStore, StoreError, StoreResult, User};
use async_trait::async_trait;
use clawden_core::{InstanceId, Principal, Role, UnixMillis};
use clawden_crypto::TokenHash;

#[async_trait]
impl GatewayStore for SqlStore {
    async fn rotate_gateway_token(
        &self,
        by: &Principal,
        instance: InstanceId,
        hash: &TokenHash,
        now: UnixMillis,
        overlap_until: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        if !by.is_system() {
            let user = by.user_id().ok_or(StoreError::Forbidden)?;
            let role: Option<String> =
                sqlx::query_scalar("SELECT role FROM members WHERE instance_id = $1 AND user_id = $2")
                    .bind(instance.to_string())
                    .bind(user.to_string())
                    .fetch_optional(&mut *self.conn(by).await?)
                    .await?;
            if role.as_deref() != Some(Role::Owner.as_str()) {
                return Err(StoreError::Forbidden);
            }
        }
        let mut tx = self.begin(by).await?;
        // Tokens already retiring stop now; the current one retires after the overlap.
        sqlx::query("DELETE FROM gateway_tokens WHERE instance_id = $1 AND retires_at IS NOT NULL")
            .bind(instance.to_string())
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query("UPDATE gateway_tokens SET retires_at = $1 WHERE instance_id = $2 AND retires_at IS NULL")
            .bind(overlap_until)
            .bind(instance.to_string())
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query("INSERT INTO gateway_tokens (id, instance_id, token_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(instance.to_string())
            .bind(hash.0.to_vec())
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await
    }

    async fn gateway_token_by_hash(
        &self,
        by: &Principal,
        hash: &TokenHash,
        now: UnixMillis,
    ) -> StoreResult<Option<(InstanceId, User)>> {
        require_system(by)?;
        let row = sqlx::query(
            "SELECT g.instance_id, u.id, u.email, u.tier, u.platform_admin, u.disabled, u.created_at
             FROM gateway_tokens g
             JOIN members m ON m.instance_id = g.instance_id AND m.role = 'owner'
             JOIN users u ON u.id = m.user_id
             WHERE g.token_hash = $1 AND (g.retires_at IS NULL OR g.retires_at > $2)
             ORDER BY m.created_at LIMIT 1",
        )
        .bind(hash.0.to_vec())
        .bind(now)
        .fetch_optional(&mut *self.conn(by).await?)
        .await?;
        row.map(|row| Ok((get_parsed(&row, "instance_id")?, user_from_row(&row)?))).transpose()
    }

    async fn gateway_tokens_due(
        &self,
        by: &Principal,
        made_before: UnixMillis,
        limit: i64,
    ) -> StoreResult<Vec<InstanceId>> {
        require_system(by)?;
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT instance_id FROM gateway_tokens WHERE retires_at IS NULL AND created_at < $1
             ORDER BY created_at LIMIT $2",
        )
        .bind(made_before)
        .bind(limit)
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        rows.iter().map(|id| id.parse().map_err(|e| StoreError::corrupt(format!("instance id: {e}")))).collect()
    }
}
