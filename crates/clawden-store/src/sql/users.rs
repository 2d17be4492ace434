//! Accounts, their personal instances and memberships.

use super::audit::insert_audit;
use super::{get_i64, get_parsed, get_str, is_unique_violation, require_system, SqlStore};
use crate::{
    normalize_email, AuditEvent, Instance, LoginRecord, Membership, NewUser, StoreError, StoreResult, User, UserStore,
};
use async_trait::async_trait;
use clawden_core::{InstanceId, Principal, Role, SessionId, Tier, UserId};
use sqlx::any::AnyRow;

const USER_COLUMNS: &str = "id, email, tier, platform_admin, disabled, created_at";

pub(crate) fn user_from_row(row: &AnyRow) -> StoreResult<User> {
    Ok(User {
        id: get_parsed(row, "id")?,
        email: get_str(row, "email")?,
        tier: get_parsed(row, "tier")?,
        platform_admin: get_i64(row, "platform_admin")? != 0,
        disabled: get_i64(row, "disabled")? != 0,
        created_at: get_i64(row, "created_at")?,
    })
}

/// The user itself, or the system, may read a user row.
fn may_read_user(by: &Principal, id: UserId) -> bool {
    by.is_system() || by.user_id() == Some(id)
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, by: &Principal, new: NewUser, audit: AuditEvent) -> StoreResult<(User, Instance)> {
        require_system(by)?;
        let mut tier = new.tier;
        let mut tx = self.begin(by).await?;
        if let Some(invite) = &new.invite {
            if !super::invites::spend(&mut tx.tx, invite, new.now).await? {
                return Err(StoreError::InvalidInvite);
            }
            tier = Tier::Invite;
        }
        let user = User {
            id: UserId::new(),
            email: normalize_email(&new.email),
            tier,
            platform_admin: new.platform_admin,
            disabled: false,
            created_at: new.now,
        };
        let instance = Instance { id: InstanceId::new(), name: new.instance_name.clone(), created_at: new.now };
        let mut files = Vec::with_capacity(new.initial_files.len());
        for (path, text) in &new.initial_files {
            let owner = crate::KeyOwner::Instance(instance.id);
            let sealed = self.seal(owner, "agent_files", "content", path, text.as_bytes(), new.now).await?;
            files.push((path, sealed, i64::try_from(text.chars().count()).unwrap_or(i64::MAX)));
        }
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, password_hash, tier, platform_admin, disabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 0, $6, $6)",
        )
        .bind(user.id.to_string())
        .bind(&user.email)
        .bind(&new.password_hash)
        .bind(user.tier.as_str())
        .bind(i64::from(user.platform_admin))
        .bind(new.now)
        .execute(&mut *tx.tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(StoreError::EmailTaken),
            other => other?,
        };
        sqlx::query("INSERT INTO instances (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(instance.id.to_string())
            .bind(&instance.name)
            .bind(new.now)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query("INSERT INTO members (instance_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)")
            .bind(instance.id.to_string())
            .bind(user.id.to_string())
            .bind(new.now)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query("INSERT INTO gateway_tokens (id, instance_id, token_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(instance.id.to_string())
            .bind(new.gateway_token.0.to_vec())
            .bind(new.now)
            .execute(&mut *tx.tx)
            .await?;
        for (path, sealed, chars) in files {
            sqlx::query(
                "INSERT INTO agent_files (instance_id, path, content, chars, updated_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(instance.id.to_string())
            .bind(path)
            .bind(sealed)
            .bind(chars)
            .bind(new.now)
            .execute(&mut *tx.tx)
            .await?;
        }
        let mut audit = audit;
        if audit.actor.is_none() && matches!(audit.chain, crate::AuditChain::System) {
            audit.chain = crate::AuditChain::Account(user.id);
        }
        audit.target = format!("user:{}", user.id);
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await?;
        Ok((user, instance))
    }

    async fn login_lookup(&self, by: &Principal, email: &str) -> StoreResult<Option<LoginRecord>> {
        require_system(by)?;
        let row =
            sqlx::query(&format!("SELECT {USER_COLUMNS}, password_hash, locked_until FROM users WHERE email = $1"))
                .bind(normalize_email(email))
                .fetch_optional(&mut *self.conn(by).await?)
                .await?;
        row.map(|row| {
            Ok(LoginRecord {
                user: user_from_row(&row)?,
                password_hash: get_str(&row, "password_hash")?,
                locked_until: sqlx::Row::try_get::<Option<i64>, _>(&row, "locked_until")?,
            })
        })
        .transpose()
    }

    async fn user(&self, by: &Principal, id: UserId) -> StoreResult<Option<User>> {
        if !may_read_user(by, id) {
            return Ok(None);
        }
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&mut *self.conn(by).await?)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_email(&self, by: &Principal, email: &str) -> StoreResult<Option<User>> {
        require_system(by)?;
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
            .bind(normalize_email(email))
            .fetch_optional(&mut *self.conn(by).await?)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn set_password_hash(
        &self,
        by: &Principal,
        user: UserId,
        hash: &str,
        end_sessions: Option<Option<SessionId>>,
        audit: Option<AuditEvent>,
    ) -> StoreResult<()> {
        if !may_read_user(by, user) {
            return Err(StoreError::Forbidden);
        }
        let mut tx = self.begin(by).await?;
        let done = sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(hash)
            .bind(audit.as_ref().map_or(0, |a| a.at))
            .bind(user.to_string())
            .execute(&mut *tx.tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        if let Some(keep) = end_sessions {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
                .bind(user.to_string())
                .bind(keep.map(|s| s.to_string()).unwrap_or_default())
                .execute(&mut *tx.tx)
                .await?;
        }
        if let Some(audit) = audit {
            insert_audit(&mut tx.tx, &audit).await?;
        }
        tx.commit().await
    }

    async fn memberships(&self, by: &Principal) -> StoreResult<Vec<Membership>> {
        let Some(user) = by.user_id() else { return Ok(Vec::new()) };
        let rows = sqlx::query(
            "SELECT i.id, i.name, m.role FROM members m JOIN instances i ON i.id = m.instance_id
             WHERE m.user_id = $1 ORDER BY i.created_at, i.id",
        )
        .bind(user.to_string())
        .fetch_all(&mut *self.conn(by).await?)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Membership {
                    id: get_parsed(row, "id")?,
                    name: get_str(row, "name")?,
                    role: get_parsed::<Role>(row, "role")?,
                })
            })
            .collect()
    }

    async fn role_in(&self, by: &Principal, instance: InstanceId) -> StoreResult<Option<Role>> {
        let Some(user) = by.user_id() else { return Ok(None) };
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM members WHERE instance_id = $1 AND user_id = $2")
                .bind(instance.to_string())
                .bind(user.to_string())
                .fetch_optional(&mut *self.conn(by).await?)
                .await?;
        role.map(|r| r.parse::<Role>().map_err(StoreError::corrupt)).transpose()
    }

    async fn delete_user(&self, by: &Principal, user: UserId, audit: AuditEvent) -> StoreResult<Vec<InstanceId>> {
        if !may_read_user(by, user) {
            return Err(StoreError::Forbidden);
        }
        let mut tx = self.begin(by).await?;
        // Instances where this user is the only owner go with them.
        let sole: Vec<String> = sqlx::query_scalar(
            "SELECT m.instance_id FROM members m WHERE m.user_id = $1 AND m.role = 'owner'
             AND NOT EXISTS (SELECT 1 FROM members o WHERE o.instance_id = m.instance_id
                             AND o.role = 'owner' AND o.user_id <> $1)",
        )
        .bind(user.to_string())
        .fetch_all(&mut *tx.tx)
        .await?;
        for instance in &sole {
            sqlx::query("DELETE FROM instances WHERE id = $1").bind(instance).execute(&mut *tx.tx).await?;
        }
        let done = sqlx::query("DELETE FROM users WHERE id = $1").bind(user.to_string()).execute(&mut *tx.tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        // The account's own chain goes with it (records about it in instances' chains keep
        // only its opaque id); so do the chains of the instances deleted with it.
        let mut chains = vec![format!("account:{user}")];
        chains.extend(sole.iter().map(|i| format!("instance:{i}")));
        // Row-level security lets a user remove audit rows only of instances they still belong
        // to; their membership is gone by now and account rows belong to no instance. The
        // caller was authorised above, so the rest of the transaction acts as the server.
        if self.backend == super::Backend::Postgres {
            super::set_principal(&mut tx.tx, &Principal::System, true).await?;
        }
        for chain in &chains {
            sqlx::query("DELETE FROM audit_log WHERE chain = $1").bind(chain).execute(&mut *tx.tx).await?;
            sqlx::query("DELETE FROM audit_sequences WHERE chain = $1").bind(chain).execute(&mut *tx.tx).await?;
        }
        // The deletion itself is recorded where it outlives the account.
        let mut audit = audit;
        audit.chain = crate::AuditChain::System;
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await?;
        for chain in &chains {
            self.keyring.key_store().drop_audit_head(chain).await?;
        }
        // Crypto-shredding: with the keys gone, the rows in every older backup stay sealed.
        self.keyring.destroy(crate::KeyOwner::User(user)).await?;
        let mut deleted = Vec::with_capacity(sole.len());
        for instance in sole {
            if let Ok(id) = instance.parse::<InstanceId>() {
                self.keyring.destroy(crate::KeyOwner::Instance(id)).await?;
                deleted.push(id);
            }
        }
        Ok(deleted)
    }

    async fn set_tier(&self, by: &Principal, user: UserId, tier: Tier, audit: AuditEvent) -> StoreResult<()> {
        require_system(by)?;
        let mut tx = self.begin(by).await?;
        let done = sqlx::query("UPDATE users SET tier = $1, updated_at = $2 WHERE id = $3")
            .bind(tier.as_str())
            .bind(audit.at)
            .bind(user.to_string())
            .execute(&mut *tx.tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await
    }
}
