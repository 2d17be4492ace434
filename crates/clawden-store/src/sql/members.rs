//! Members, invitations, instance deletion, and the platform admin's tables.

use super::audit::insert_audit;
use super::users::user_from_row;
use super::{get_i64, get_opt_str, get_parsed, get_str, require_system, require_user, Backend, SqlStore};
use crate::{
    normalize_email, AdminLogEntry, AdminStore, AuditEvent, Invitation, MemberInfo, MemberStore, StoreError,
    StoreResult, User,
};
use async_trait::async_trait;
use clawden_core::{InstanceId, Principal, Role, Tier, UnixMillis, UserId};
use sqlx::{Any, Transaction};

impl SqlStore {
    /// A user's role in an instance, read inside `tx` (and, on PostgreSQL, with the instance
    /// row locked, so two concurrent changes cannot both remove "the other" last owner).
    async fn role_locked(
        &self,
        tx: &mut Transaction<'static, Any>,
        instance: InstanceId,
        user: UserId,
    ) -> StoreResult<Option<Role>> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT 1 FROM instances WHERE id = $1 FOR UPDATE")
                .bind(instance.to_string())
                .execute(&mut **tx)
                .await?;
        }
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM members WHERE instance_id = $1 AND user_id = $2")
                .bind(instance.to_string())
                .bind(user.to_string())
                .fetch_optional(&mut **tx)
                .await?;
        role.map(|r| r.parse::<Role>().map_err(StoreError::corrupt)).transpose()
    }

    async fn owner_count(&self, tx: &mut Transaction<'static, Any>, instance: InstanceId) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE instance_id = $1 AND role = 'owner'")
            .bind(instance.to_string())
            .fetch_one(&mut **tx)
            .await?)
    }
}

/// The caller must be an owner or admin: `NotFound` for non-members, `Forbidden` for users.
fn require_configurer(role: Option<Role>) -> StoreResult<Role> {
    match role {
        Some(r) if r.can_configure() => Ok(r),
        Some(_) => Err(StoreError::Forbidden),
        None => Err(StoreError::NotFound),
    }
}

#[async_trait]
#[allow(clippy::too_many_arguments)]
impl MemberStore for SqlStore {
    async fn members(&self, by: &Principal, instance: InstanceId) -> StoreResult<Vec<MemberInfo>> {
        let me = require_user(by)?;
        // Listing needs the other members' emails, which row security hides from a user; the
        // store checks the caller's role itself and reads as the system.
        let mut tx = self.begin(&Principal::System).await?;
        require_configurer(self.role_locked(&mut tx.tx, instance, me).await?)?;
        let rows = sqlx::query(
            "SELECT m.user_id, u.email, m.role, m.created_at FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.instance_id = $1 ORDER BY m.created_at, u.email",
        )
        .bind(instance.to_string())
        .fetch_all(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(MemberInfo {
                    user_id: get_parsed(r, "user_id")?,
                    email: get_str(r, "email")?,
                    role: get_parsed(r, "role")?,
                    joined_at: get_i64(r, "created_at")?,
                })
            })
            .collect()
    }

    async fn invite(
        &self,
        by: &Principal,
        instance: InstanceId,
        email: &str,
        role: Role,
        now: UnixMillis,
        expires_at: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let me = require_user(by)?;
        let mut tx = self.begin(by).await?;
        let mine = require_configurer(self.role_locked(&mut tx.tx, instance, me).await?)?;
        if role == Role::Owner && mine != Role::Owner {
            return Err(StoreError::Forbidden);
        }
        sqlx::query(
            "INSERT INTO invitations (id, instance_id, email, role, invited_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (instance_id, email) DO UPDATE
             SET role = excluded.role, invited_by = excluded.invited_by, created_at = excluded.created_at,
                 expires_at = excluded.expires_at",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(instance.to_string())
        .bind(normalize_email(email))
        .bind(role.as_str())
        .bind(me.to_string())
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx.tx)
        .await?;
        let mut audit = audit;
        // The invitee is named by a keyed-free placeholder: the chain records that an
        // invitation was sent, not to which address (the row itself holds it).
        audit.target = format!("instance:{instance} role:{}", role.as_str());
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await
    }

    async fn invitations(&self, by: &Principal, now: UnixMillis) -> StoreResult<Vec<Invitation>> {
        let me = require_user(by)?;
        let rows = sqlx::query(
            "SELECT v.id, v.instance_id, i.name, v.role, v.created_at, v.expires_at
             FROM invitations v JOIN instances i ON i.id = v.instance_id
             JOIN users u ON u.email = v.email
             WHERE u.id = $1 AND v.expires_at > $2 ORDER BY v.created_at",
        )
        .bind(me.to_string())
        .bind(now)
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Invitation {
                    id: get_str(r, "id")?,
                    instance_id: get_parsed(r, "instance_id")?,
                    instance_name: get_str(r, "name")?,
                    role: get_parsed(r, "role")?,
                    created_at: get_i64(r, "created_at")?,
                    expires_at: get_i64(r, "expires_at")?,
                })
            })
            .collect()
    }

    async fn answer_invitation(
        &self,
        by: &Principal,
        id: &str,
        accept: bool,
        now: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<bool> {
        let me = require_user(by)?;
        let mut tx = self.begin(by).await?;
        let row = sqlx::query(
            "SELECT v.instance_id, v.role FROM invitations v JOIN users u ON u.email = v.email
             WHERE v.id = $1 AND u.id = $2 AND v.expires_at > $3",
        )
        .bind(id)
        .bind(me.to_string())
        .bind(now)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let instance: InstanceId = get_parsed(&row, "instance_id")?;
        let role = get_str(&row, "role")?;
        sqlx::query("DELETE FROM invitations WHERE id = $1").bind(id).execute(&mut *tx.tx).await?;
        if accept {
            sqlx::query(
                "INSERT INTO members (instance_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (instance_id, user_id) DO NOTHING",
            )
            .bind(instance.to_string())
            .bind(me.to_string())
            .bind(&role)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        }
        let mut audit = audit;
        audit.instance = Some(instance);
        audit.chain = crate::AuditChain::Instance(instance);
        audit.target = format!("user:{me} role:{role}");
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn set_role(
        &self,
        by: &Principal,
        instance: InstanceId,
        user: UserId,
        role: Role,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let me = require_user(by)?;
        let mut tx = self.begin(by).await?;
        let mine = require_configurer(self.role_locked(&mut tx.tx, instance, me).await?)?;
        let theirs = self.role_locked(&mut tx.tx, instance, user).await?.ok_or(StoreError::NotFound)?;
        if mine == Role::Admin && (theirs == Role::Owner || role == Role::Owner) {
            return Err(StoreError::Forbidden);
        }
        if theirs == Role::Owner && role != Role::Owner && self.owner_count(&mut tx.tx, instance).await? <= 1 {
            return Err(StoreError::Conflict("the last owner cannot be demoted; make someone else an owner first"));
        }
        sqlx::query("UPDATE members SET role = $1 WHERE instance_id = $2 AND user_id = $3")
            .bind(role.as_str())
            .bind(instance.to_string())
            .bind(user.to_string())
            .execute(&mut *tx.tx)
            .await?;
        let mut audit = audit;
        audit.target = format!("user:{user} role:{}", role.as_str());
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await
    }

    async fn remove_member(
        &self,
        by: &Principal,
        instance: InstanceId,
        user: UserId,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let me = require_user(by)?;
        let mut tx = self.begin(by).await?;
        let mine = self.role_locked(&mut tx.tx, instance, me).await?.ok_or(StoreError::NotFound)?;
        let theirs = self.role_locked(&mut tx.tx, instance, user).await?.ok_or(StoreError::NotFound)?;
        if me != user {
            let mine = require_configurer(Some(mine))?;
            if mine == Role::Admin && theirs == Role::Owner {
                return Err(StoreError::Forbidden);
            }
        }
        if theirs == Role::Owner && self.owner_count(&mut tx.tx, instance).await? <= 1 {
            return Err(StoreError::Conflict("the last owner cannot leave; transfer ownership or delete the instance"));
        }
        sqlx::query("DELETE FROM members WHERE instance_id = $1 AND user_id = $2")
            .bind(instance.to_string())
            .bind(user.to_string())
            .execute(&mut *tx.tx)
            .await?;
        let mut audit = audit;
        audit.target = format!("user:{user}");
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await
    }

    async fn delete_instance(&self, by: &Principal, instance: InstanceId, audit: AuditEvent) -> StoreResult<()> {
        let me = require_user(by)?;
        let mut tx = self.begin(by).await?;
        match self.role_locked(&mut tx.tx, instance, me).await? {
            Some(Role::Owner) => {}
            Some(_) => return Err(StoreError::Forbidden),
            None => return Err(StoreError::NotFound),
        }
        let chain = format!("instance:{instance}");
        sqlx::query("DELETE FROM instances WHERE id = $1").bind(instance.to_string()).execute(&mut *tx.tx).await?;
        sqlx::query("DELETE FROM audit_log WHERE chain = $1").bind(&chain).execute(&mut *tx.tx).await?;
        sqlx::query("DELETE FROM audit_sequences WHERE chain = $1").bind(&chain).execute(&mut *tx.tx).await?;
        // The deletion itself is recorded on the owner's account chain.
        let mut audit = audit;
        audit.chain = crate::AuditChain::Account(me);
        audit.instance = None;
        audit.target = chain;
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await?;
        self.keyring.key_store().drop_audit_head(&format!("instance:{instance}")).await?;
        self.keyring.destroy(crate::KeyOwner::Instance(instance)).await?;
        Ok(())
    }
}

#[async_trait]
impl AdminStore for SqlStore {
    async fn all_users(&self, by: &Principal, limit: i64, offset: i64) -> StoreResult<Vec<User>> {
        require_system(by)?;
        let rows = sqlx::query(
            "SELECT id, email, tier, platform_admin, disabled, created_at FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn admin_update_user(
        &self,
        by: &Principal,
        user: UserId,
        tier: Option<Tier>,
        disabled: Option<bool>,
        log: AdminLogEntry,
    ) -> StoreResult<bool> {
        require_system(by)?;
        let mut tx = self.begin(by).await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
            .bind(user.to_string())
            .fetch_optional(&mut *tx.tx)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        if let Some(tier) = tier {
            sqlx::query("UPDATE users SET tier = $1 WHERE id = $2")
                .bind(tier.as_str())
                .bind(user.to_string())
                .execute(&mut *tx.tx)
                .await?;
        }
        if let Some(disabled) = disabled {
            sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
                .bind(i64::from(disabled))
                .bind(user.to_string())
                .execute(&mut *tx.tx)
                .await?;
            if disabled {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                    .bind(user.to_string())
                    .execute(&mut *tx.tx)
                    .await?;
            }
        }
        insert_admin_log(&mut tx.tx, &log).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn admin_log(&self, by: &Principal, entry: AdminLogEntry) -> StoreResult<()> {
        require_system(by)?;
        let mut tx = self.begin(by).await?;
        insert_admin_log(&mut tx.tx, &entry).await?;
        tx.commit().await
    }

    async fn admin_log_entries(&self, by: &Principal, limit: i64) -> StoreResult<Vec<AdminLogEntry>> {
        require_system(by)?;
        let rows = sqlx::query(
            "SELECT at, actor_user_id, action, target, outcome, ip FROM admin_log ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AdminLogEntry {
                    at: get_i64(r, "at")?,
                    actor: get_opt_str(r, "actor_user_id")?,
                    action: get_str(r, "action")?,
                    target: get_str(r, "target")?,
                    outcome: get_str(r, "outcome")?,
                    ip: get_opt_str(r, "ip")?,
                })
            })
            .collect()
    }
}

async fn insert_admin_log(tx: &mut Transaction<'static, Any>, e: &AdminLogEntry) -> StoreResult<()> {
    sqlx::query("INSERT INTO admin_log (id, at, actor_user_id, action, target, outcome, ip) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(e.at)
        .bind(e.actor.clone())
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.outcome)
        .bind(e.ip.clone())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
