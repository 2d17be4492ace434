//! Browser sessions: only a keyed hash of each token is stored.

use super::audit::insert_audit;
use super::users::user_from_row;
use super::{get_i64, get_opt_str, get_parsed, require_system, require_user, SqlStore};
use crate::{AuditEvent, NewSession, Session, SessionStore, StoreResult, User};
use async_trait::async_trait;
use clawden_core::{Principal, SessionId, UnixMillis};
use clawden_crypto::TokenHash;
use sqlx::any::AnyRow;

fn session_from_row(row: &AnyRow) -> StoreResult<Session> {
    Ok(Session {
        id: get_parsed(row, "id")?,
        user_id: get_parsed(row, "user_id")?,
        created_at: get_i64(row, "created_at")?,
        last_seen_at: get_i64(row, "last_seen_at")?,
        expires_at: get_i64(row, "expires_at")?,
        ip: get_opt_str(row, "ip")?,
        user_agent: get_opt_str(row, "user_agent")?,
    })
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn create_session(&self, by: &Principal, new: NewSession, audit: AuditEvent) -> StoreResult<Session> {
        require_system(by)?;
        let session = Session {
            id: SessionId::new(),
            user_id: new.user_id,
            created_at: new.now,
            last_seen_at: new.now,
            expires_at: new.expires_at,
            ip: new.ip,
            user_agent: new.user_agent.map(|ua| ua.chars().take(200).collect()),
        };
        let mut tx = self.begin(by).await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, token_hash, created_at, last_seen_at, expires_at, ip, user_agent)
             VALUES ($1, $2, $3, $4, $4, $5, $6, $7)",
        )
        .bind(session.id.to_string())
        .bind(session.user_id.to_string())
        .bind(new.token_hash.0.to_vec())
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(session.ip.clone())
        .bind(session.user_agent.clone())
        .execute(&mut *tx.tx)
        .await?;
        let mut audit = audit;
        audit.target = format!("session:{}", session.id);
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await?;
        Ok(session)
    }

    async fn session_by_token(
        &self,
        by: &Principal,
        hash: &TokenHash,
        now: UnixMillis,
    ) -> StoreResult<Option<(Session, User)>> {
        require_system(by)?;
        let row = sqlx::query(
            "SELECT s.id AS s_id, s.user_id, s.created_at AS s_created_at, s.last_seen_at, s.expires_at, s.ip, s.user_agent,
                    u.id, u.email, u.tier, u.platform_admin, u.disabled, u.created_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(hash.0.to_vec())
        .bind(now)
        .fetch_optional(&mut *self.conn(by).await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let session = Session {
            id: get_parsed(&row, "s_id")?,
            user_id: get_parsed(&row, "user_id")?,
            created_at: get_i64(&row, "s_created_at")?,
            last_seen_at: get_i64(&row, "last_seen_at")?,
            expires_at: get_i64(&row, "expires_at")?,
            ip: get_opt_str(&row, "ip")?,
            user_agent: get_opt_str(&row, "user_agent")?,
        };
        Ok(Some((session, user_from_row(&row)?)))
    }

    async fn touch_session(&self, by: &Principal, id: SessionId, now: UnixMillis) -> StoreResult<()> {
        require_system(by)?;
        let mut tx = self.begin(by).await?;
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id.to_string())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    async fn sessions(&self, by: &Principal, now: UnixMillis) -> StoreResult<Vec<Session>> {
        let user = require_user(by)?;
        let rows = sqlx::query(
            "SELECT id, user_id, created_at, last_seen_at, expires_at, ip, user_agent FROM sessions
             WHERE user_id = $1 AND expires_at > $2 ORDER BY last_seen_at DESC",
        )
        .bind(user.to_string())
        .bind(now)
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn revoke_session(&self, by: &Principal, id: SessionId, audit: AuditEvent) -> StoreResult<bool> {
        let user = require_user(by)?;
        let mut tx = self.begin(by).await?;
        let done = sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2")
            .bind(id.to_string())
            .bind(user.to_string())
            .execute(&mut *tx.tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let mut audit = audit;
        audit.target = format!("session:{id}");
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn purge_expired_sessions(&self, by: &Principal, now: UnixMillis) -> StoreResult<u64> {
        require_system(by)?;
        let mut tx = self.begin(by).await?;
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(now).execute(&mut *tx.tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
