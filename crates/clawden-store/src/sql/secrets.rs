//! API keys (keyed hashes only) and stored credentials (sealed under the user's key).

use super::audit::insert_audit;
use super::users::user_from_row;
use super::{get_i64, get_parsed, get_str, require_system, require_user, SqlStore};
use crate::{ApiKey, AuditEvent, CredentialInfo, KeyOwner, NewApiKey, SecretStore, StoreError, StoreResult, User};
use async_trait::async_trait;
use clawden_core::{ApiKeyId, Principal, UnixMillis, UserId};
use clawden_crypto::TokenHash;
use secrecy::{ExposeSecret, SecretString};
use sqlx::any::AnyRow;
use sqlx::Row;

fn api_key_from_row(row: &AnyRow) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: get_parsed(row, "k_id")?,
        user_id: get_parsed(row, "k_user_id")?,
        name: get_str(row, "k_name")?,
        prefix: get_str(row, "k_prefix")?,
        created_at: get_i64(row, "k_created_at")?,
        last_used_at: row.try_get::<Option<i64>, _>("k_last_used_at")?,
    })
}

const KEY_COLUMNS: &str = "k.id AS k_id, k.user_id AS k_user_id, k.name AS k_name, k.prefix AS k_prefix, \
                           k.created_at AS k_created_at, k.last_used_at AS k_last_used_at";

fn last4(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

#[async_trait]
impl SecretStore for SqlStore {
    async fn create_api_key(&self, by: &Principal, new: NewApiKey, audit: AuditEvent) -> StoreResult<ApiKey> {
        let user = require_user(by)?;
        let key = ApiKey {
            id: ApiKeyId::new(),
            user_id: user,
            name: new.name,
            prefix: new.prefix,
            created_at: new.now,
            last_used_at: None,
        };
        let mut tx = self.begin(by).await?;
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.id.to_string())
        .bind(user.to_string())
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(new.key_hash.0.to_vec())
        .bind(new.now)
        .execute(&mut *tx.tx)
        .await?;
        let mut audit = audit;
        audit.target = format!("api_key:{}", key.id);
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn api_keys(&self, by: &Principal) -> StoreResult<Vec<ApiKey>> {
        let user = require_user(by)?;
        let rows =
            sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.user_id = $1 ORDER BY k.created_at"))
                .bind(user.to_string())
                .fetch_all(&mut *self.conn(by).await?)
                .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn delete_api_key(&self, by: &Principal, id: ApiKeyId, audit: AuditEvent) -> StoreResult<bool> {
        let user = require_user(by)?;
        let mut tx = self.begin(by).await?;
        let done = sqlx::query("DELETE FROM api_keys WHERE id = $1 AND user_id = $2")
            .bind(id.to_string())
            .bind(user.to_string())
            .execute(&mut *tx.tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let mut audit = audit;
        audit.target = format!("api_key:{id}");
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn api_key_by_hash(&self, by: &Principal, hash: &TokenHash) -> StoreResult<Option<(ApiKey, User)>> {
        require_system(by)?;
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS}, u.id, u.email, u.tier, u.platform_admin, u.disabled, u.created_at
             FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = $1"
        ))
        .bind(hash.0.to_vec())
        .fetch_optional(&mut *self.conn(by).await?)
        .await?;
        row.map(|row| Ok((api_key_from_row(&row)?, user_from_row(&row)?))).transpose()
    }

    async fn touch_api_key(&self, by: &Principal, id: ApiKeyId, now: UnixMillis) -> StoreResult<()> {
        require_system(by)?;
        let mut tx = self.begin(by).await?;
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id.to_string())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    async fn put_credential(
        &self,
        by: &Principal,
        name: &str,
        value: &SecretString,
        now: UnixMillis,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let user = require_user(by)?;
        let sealed = self
            .seal(KeyOwner::User(user), "credentials", "value", name, value.expose_secret().as_bytes(), now)
            .await?;
        let mut tx = self.begin(by).await?;
        sqlx::query(
            "INSERT INTO credentials (user_id, name, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(user.to_string())
        .bind(name)
        .bind(sealed)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        let mut audit = audit;
        audit.target = format!("credential:{name}");
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await
    }

    async fn credentials(&self, by: &Principal) -> StoreResult<Vec<CredentialInfo>> {
        let user = require_user(by)?;
        let rows = sqlx::query("SELECT name, value, updated_at FROM credentials WHERE user_id = $1 ORDER BY name")
            .bind(user.to_string())
            .fetch_all(&mut *self.conn(by).await?)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let name = get_str(&row, "name")?;
            let sealed: Vec<u8> = row.try_get("value")?;
            let plain = self.open(KeyOwner::User(user), "credentials", "value", &name, &sealed).await?;
            let text = std::str::from_utf8(&plain).map_err(|_| StoreError::corrupt("credential is not UTF-8"))?;
            out.push(CredentialInfo { last4: last4(text), name, updated_at: get_i64(&row, "updated_at")? });
        }
        Ok(out)
    }

    async fn delete_credential(&self, by: &Principal, name: &str, audit: AuditEvent) -> StoreResult<bool> {
        let user = require_user(by)?;
        let mut tx = self.begin(by).await?;
        let done = sqlx::query("DELETE FROM credentials WHERE user_id = $1 AND name = $2")
            .bind(user.to_string())
            .bind(name)
            .execute(&mut *tx.tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let mut audit = audit;
        audit.target = format!("credential:{name}");
        insert_audit(&mut tx.tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn use_credential(&self, by: &Principal, user: UserId, name: &str) -> StoreResult<Option<SecretString>> {
        require_system(by)?;
        let row = sqlx::query("SELECT value FROM credentials WHERE user_id = $1 AND name = $2")
            .bind(user.to_string())
            .bind(name)
            .fetch_optional(&mut *self.conn(by).await?)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Vec<u8> = row.try_get("value")?;
        let plain = self.open(KeyOwner::User(user), "credentials", "value", name, &sealed).await?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| StoreError::corrupt("credential is not UTF-8"))?;
        Ok(Some(SecretString::from(text)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn last4_handles_short_and_unicode_values() {
        assert_eq!(super::last4("sk-abcdef1234"), "1234");
        assert_eq!(super::last4("ab"), "ab");
        assert_eq!(super::last4("ключ-äöüß"), "äöüß");
    }
}
