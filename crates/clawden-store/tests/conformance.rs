//! One conformance suite, run against every backend: SQLite always, PostgreSQL when
//! `CLAWDEN_TEST_POSTGRES_URL` is set (and always under CI).

#![allow(clippy::unwrap_used)]

use clawden_core::{Outcome, Principal, SessionId, Tier, UserId};
use clawden_crypto::{KeyedHasher, TokenHash};
use clawden_store::testing::TestDb;
use clawden_store::Backend;
use clawden_store::*;
use std::sync::Arc;

fn audit(action: &str, chain: AuditChain, actor: Option<UserId>) -> AuditEvent {
    AuditEvent {
        chain,
        actor,
        instance: None,
        action: action.into(),
        target: String::new(),
        outcome: Outcome::Success,
        ip: Some("127.0.0.1".into()),
        at: 1_000,
    }
}

fn new_user(email: &str) -> NewUser {
    NewUser {
        email: email.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        tier: Tier::Base,
        platform_admin: false,
        instance_name: "My agent".into(),
        now: 1_000,
        invite: None,
        gateway_token: KeyedHasher::new([7; 32]).hash("gateway", &format!("first-{email}")),
        initial_files: vec![("SOUL.md".into(), "be kind".into())],
    }
}

async fn make_user(store: &SqlStore, email: &str) -> (User, Instance) {
    store
        .create_user(&Principal::System, new_user(email), audit("auth.signup", AuditChain::System, None))
        .await
        .unwrap()
}

fn hash(n: u8) -> TokenHash {
    KeyedHasher::new([9; 32]).hash("session", &format!("token-{n}"))
}

async fn make_session(store: &SqlStore, user: UserId, n: u8, expires_at: i64) -> Session {
    store
        .create_session(
            &Principal::System,
            NewSession {
                user_id: user,
                token_hash: hash(n),
                now: 1_000,
                expires_at,
                ip: None,
                user_agent: Some("t".into()),
            },
            audit("auth.login", AuditChain::Account(user), Some(user)),
        )
        .await
        .unwrap()
}

fn me(user: &User) -> Principal {
    Principal::User { user: user.id }
}

#[tokio::test]
async fn signup_creates_user_and_owned_personal_instance() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (user, instance) = make_user(&store, "  Alice@Example.COM ").await;
        assert_eq!(user.email, "alice@example.com", "{:?}", db.backend);
        let memberships = store.memberships(&me(&user)).await.unwrap();
        assert_eq!(memberships.len(), 1);
        assert_eq!(memberships[0].id, instance.id);
        assert_eq!(memberships[0].role, clawden_core::Role::Owner);
        let login = store.login_lookup(&Principal::System, "ALICE@example.com").await.unwrap().unwrap();
        assert_eq!(login.user, user);
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn duplicate_email_is_refused_case_insensitively() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        make_user(&store, "bob@example.com").await;
        let err = store
            .create_user(
                &Principal::System,
                new_user("BOB@example.com"),
                audit("auth.signup", AuditChain::System, None),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::EmailTaken), "{:?}: {err:?}", db.backend);
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn system_only_calls_refuse_users() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (user, _) = make_user(&store, "carol@example.com").await;
        let p = me(&user);
        assert!(matches!(store.login_lookup(&p, "carol@example.com").await, Err(StoreError::Forbidden)));
        assert!(matches!(store.user_by_email(&p, "carol@example.com").await, Err(StoreError::Forbidden)));
        assert!(matches!(store.session_by_token(&p, &hash(1), 0).await, Err(StoreError::Forbidden)));
        assert!(matches!(
            store.create_user(&p, new_user("x@example.com"), audit("a", AuditChain::System, None)).await,
            Err(StoreError::Forbidden)
        ));
        assert!(matches!(
            store.set_tier(&p, user.id, Tier::Invite, audit("a", AuditChain::System, None)).await,
            Err(StoreError::Forbidden)
        ));
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn user_cannot_read_another_user() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, _) = make_user(&store, "a@example.com").await;
        let (b, _) = make_user(&store, "b@example.com").await;
        assert_eq!(store.user(&me(&a), b.id).await.unwrap(), None);
        assert_eq!(store.user(&me(&a), a.id).await.unwrap().unwrap().id, a.id);
        assert!(matches!(store.set_password_hash(&me(&a), b.id, "x", None, None).await, Err(StoreError::Forbidden)));
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn user_cannot_see_or_revoke_another_users_sessions() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, _) = make_user(&store, "a@example.com").await;
        let (b, _) = make_user(&store, "b@example.com").await;
        let sa = make_session(&store, a.id, 1, 10_000).await;
        let sb = make_session(&store, b.id, 2, 10_000).await;
        let seen: Vec<SessionId> = store.sessions(&me(&a), 2_000).await.unwrap().iter().map(|s| s.id).collect();
        assert_eq!(seen, vec![sa.id], "{:?}", db.backend);
        let revoked =
            store.revoke_session(&me(&a), sb.id, audit("session.revoke", AuditChain::Account(a.id), Some(a.id))).await;
        assert!(!revoked.unwrap());
        assert!(store.session_by_token(&Principal::System, &hash(2), 2_000).await.unwrap().is_some());
        assert!(store
            .revoke_session(&me(&a), sa.id, audit("session.revoke", AuditChain::Account(a.id), Some(a.id)))
            .await
            .unwrap());
        assert!(store.session_by_token(&Principal::System, &hash(1), 2_000).await.unwrap().is_none());
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn expired_session_is_not_returned_and_is_purged() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, _) = make_user(&store, "a@example.com").await;
        make_session(&store, a.id, 1, 5_000).await;
        assert!(store.session_by_token(&Principal::System, &hash(1), 4_999).await.unwrap().is_some());
        assert!(store.session_by_token(&Principal::System, &hash(1), 5_000).await.unwrap().is_none());
        assert_eq!(store.purge_expired_sessions(&Principal::System, 5_000).await.unwrap(), 1);
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn password_change_can_end_other_sessions() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, _) = make_user(&store, "a@example.com").await;
        let keep = make_session(&store, a.id, 1, 10_000).await;
        make_session(&store, a.id, 2, 10_000).await;
        make_session(&store, a.id, 3, 10_000).await;
        store
            .set_password_hash(
                &me(&a),
                a.id,
                "newhash",
                Some(Some(keep.id)),
                Some(audit("auth.password", AuditChain::Account(a.id), Some(a.id))),
            )
            .await
            .unwrap();
        let left: Vec<SessionId> = store.sessions(&me(&a), 2_000).await.unwrap().iter().map(|s| s.id).collect();
        assert_eq!(left, vec![keep.id]);
        let login = store.login_lookup(&Principal::System, "a@example.com").await.unwrap().unwrap();
        assert_eq!(login.password_hash, "newhash");
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn invites_are_spent_once_and_expire() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, _) = make_user(&store, "a@example.com").await;
        let (b, _) = make_user(&store, "b@example.com").await;
        let code = KeyedHasher::new([3; 32]).hash("invite", "code-1");
        let late = KeyedHasher::new([3; 32]).hash("invite", "code-2");
        let sys = AuditChain::System;
        store
            .create_invite(
                &Principal::System,
                NewInvite { code_hash: code.clone(), uses: 1, expires_at: None, now: 0 },
                audit("invite.create", sys, None),
            )
            .await
            .unwrap();
        store
            .create_invite(
                &Principal::System,
                NewInvite { code_hash: late.clone(), uses: 5, expires_at: Some(1_500), now: 0 },
                audit("invite.create", sys, None),
            )
            .await
            .unwrap();
        assert!(store
            .redeem_invite(&me(&a), &code, 1_000, audit("invite.redeem", AuditChain::Account(a.id), Some(a.id)))
            .await
            .unwrap());
        assert!(!store
            .redeem_invite(&me(&b), &code, 1_000, audit("invite.redeem", AuditChain::Account(b.id), Some(b.id)))
            .await
            .unwrap());
        assert!(!store
            .redeem_invite(&me(&b), &late, 2_000, audit("invite.redeem", AuditChain::Account(b.id), Some(b.id)))
            .await
            .unwrap());
        assert_eq!(store.user(&me(&a), a.id).await.unwrap().unwrap().tier, Tier::Invite);
        assert_eq!(store.user(&me(&b), b.id).await.unwrap().unwrap().tier, Tier::Base);
        // Invite-only signup spends the code in the same transaction as the account.
        let mut with_code = new_user("c@example.com");
        with_code.invite = Some(late.clone());
        let (c, _) = store.create_user(&Principal::System, with_code, audit("auth.signup", sys, None)).await.unwrap();
        assert_eq!(c.tier, Tier::Invite);
        let mut spent = new_user("d@example.com");
        spent.invite = Some(code);
        assert!(matches!(
            store.create_user(&Principal::System, spent, audit("auth.signup", sys, None)).await,
            Err(StoreError::InvalidInvite)
        ));
        assert!(
            store.login_lookup(&Principal::System, "d@example.com").await.unwrap().is_none(),
            "no account without a valid invite"
        );
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn audit_sequences_are_gapless_under_concurrency() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, _) = make_user(&store, "a@example.com").await;
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                store.record(audit("auth.login", AuditChain::Account(a.id), Some(a.id))).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let own = store.own_audit(&me(&a), None, 500).await.unwrap();
        let mut seqs: Vec<i64> = own.iter().filter(|r| r.chain == format!("account:{}", a.id)).map(|r| r.seq).collect();
        seqs.sort();
        // Seq 1 is the signup record (no actor yet); the 40 concurrent records follow without gaps.
        assert_eq!(seqs, (2..=41).collect::<Vec<_>>(), "{:?}", db.backend);
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn own_audit_shows_only_own_actions() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, _) = make_user(&store, "a@example.com").await;
        let (b, _) = make_user(&store, "b@example.com").await;
        store.record(audit("auth.login", AuditChain::Account(a.id), Some(a.id))).await.unwrap();
        store.record(audit("auth.login", AuditChain::Account(b.id), Some(b.id))).await.unwrap();
        let own = store.own_audit(&me(&a), None, 100).await.unwrap();
        assert!(!own.is_empty());
        assert!(own.iter().all(|r| r.actor.as_deref() == Some(a.id.to_string().as_str())));
        assert!(store.own_audit(&Principal::System, None, 10).await.is_err());
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn data_keys_are_created_once_destroyed_and_rewrapped() {
    for db in TestDb::all().await {
        let (store, keyring) = db.open().await;
        let (a, _) = make_user(&store, "a@example.com").await;
        let owner = KeyOwner::User(a.id);
        let k1 = keyring.dek(owner, 0).await.unwrap();
        let k2 = keyring.dek(owner, 0).await.unwrap();
        assert_eq!(k1.key(), k2.key());
        assert!(keyring.destroy(owner).await.unwrap());
        assert!(keyring.existing_dek(owner).await.unwrap().is_none());
        store.close().await;
        db.cleanup().await;
    }
}

/// A connection with the database's own login, outside the store (and its row security).
async fn raw(db: &TestDb) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&db.url).await.unwrap()
}

fn secret(s: &str) -> secrecy::SecretString {
    secrecy::SecretString::from(s.to_owned())
}

#[tokio::test]
async fn credentials_are_sealed_listed_by_last4_and_scoped() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, _) = make_user(&store, "a@example.com").await;
        let (b, _) = make_user(&store, "b@example.com").await;
        let ev = || audit("credential.put", AuditChain::Account(a.id), Some(a.id));
        store.put_credential(&me(&a), "anthropic", &secret("sk-ant-PLANTED-9876"), 5, ev()).await.unwrap();
        store.put_credential(&me(&a), "anthropic", &secret("sk-ant-REPLACED-4321"), 6, ev()).await.unwrap();
        let listed = store.credentials(&me(&a)).await.unwrap();
        assert_eq!(listed, vec![CredentialInfo { name: "anthropic".into(), last4: "4321".into(), updated_at: 6 }]);
        assert!(store.credentials(&me(&b)).await.unwrap().is_empty(), "{:?}", db.backend);
        assert!(matches!(store.use_credential(&me(&a), a.id, "anthropic").await, Err(StoreError::Forbidden)));
        use secrecy::ExposeSecret;
        let used = store.use_credential(&Principal::System, a.id, "anthropic").await.unwrap().unwrap();
        assert_eq!(used.expose_secret(), "sk-ant-REPLACED-4321");
        let raw_pool = raw(&db).await;
        let raw: Vec<u8> = sqlx::query_scalar("SELECT value FROM credentials").fetch_one(&raw_pool).await.unwrap();
        assert!(!raw.windows(8).any(|w| w == b"REPLACED"), "stored sealed");
        assert!(!store.delete_credential(&me(&b), "anthropic", audit("x", AuditChain::System, None)).await.unwrap());
        assert!(store.delete_credential(&me(&a), "anthropic", ev()).await.unwrap());
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn ciphertext_moved_to_another_row_does_not_open() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, _) = make_user(&store, "a@example.com").await;
        let (b, _) = make_user(&store, "b@example.com").await;
        store
            .put_credential(&me(&a), "openai", &secret("sk-a-secret-value"), 5, audit("p", AuditChain::System, None))
            .await
            .unwrap();
        store
            .put_credential(&me(&a), "telegram", &secret("tg-a-other-value"), 5, audit("p", AuditChain::System, None))
            .await
            .unwrap();
        store
            .put_credential(&me(&b), "openai", &secret("sk-b-own-value"), 5, audit("p", AuditChain::System, None))
            .await
            .unwrap();
        // Copy A's sealed value into B's row, and into A's other row (as someone with raw
        // access to the database would).
        let raw_pool = raw(&db).await;
        let sealed: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM credentials WHERE user_id = $1 AND name = 'openai'")
                .bind(a.id.to_string())
                .fetch_one(&raw_pool)
                .await
                .unwrap();
        for (user, name) in [(b.id, "openai"), (a.id, "telegram")] {
            sqlx::query("UPDATE credentials SET value = $1 WHERE user_id = $2 AND name = $3")
                .bind(sealed.clone())
                .bind(user.to_string())
                .bind(name)
                .execute(&raw_pool)
                .await
                .unwrap();
        }
        assert!(store.use_credential(&Principal::System, b.id, "openai").await.is_err(), "{:?}", db.backend);
        assert!(store.use_credential(&Principal::System, a.id, "telegram").await.is_err());
        assert!(store.use_credential(&Principal::System, a.id, "openai").await.unwrap().is_some());
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn key_rotation_keeps_every_value_readable() {
    use clawden_crypto::MasterKeys;
    for db in TestDb::all().await {
        let key_file = db.dir.path().join("master.key");
        let master = MasterKeys::load_or_create(&key_file).unwrap();
        let (store, keyring) = db.open_with(master, MasterKeySource::File(key_file.clone())).await;
        let mut users = Vec::new();
        for i in 0..5 {
            let (u, _) = make_user(&store, &format!("u{i}@example.com")).await;
            store
                .put_credential(
                    &me(&u),
                    "openai",
                    &secret(&format!("value-{i}")),
                    5,
                    audit("p", AuditChain::System, None),
                )
                .await
                .unwrap();
            users.push(u);
        }
        // Rotate: new version in the file (the running keyring notices), re-wrap in batches.
        let mut master = MasterKeys::load_or_create(&key_file).unwrap();
        master.add_version();
        master.save(&key_file).unwrap();
        let mut rewrapped = 0;
        loop {
            let n = keyring.rewrap_batch(2).await.unwrap();
            if n == 0 {
                break;
            }
            rewrapped += n;
        }
        assert_eq!(rewrapped, 11, "5 user keys, 5 instance keys (their files) and the pepper");
        assert_eq!(keyring.key_store().count_by_version().await.unwrap(), vec![(2, 11)]);
        master.retire_old();
        master.save(&key_file).unwrap();
        store.close().await;
        // A fresh process with only version 2 reads everything.
        let (store, keyring2) =
            db.open_with(MasterKeys::load_or_create(&key_file).unwrap(), MasterKeySource::File(key_file.clone())).await;
        assert!(keyring2.hasher().hash("x", "y").ct_eq(&keyring.hasher().hash("x", "y")), "same pepper");
        use secrecy::ExposeSecret;
        for (i, u) in users.iter().enumerate() {
            let v = store.use_credential(&Principal::System, u.id, "openai").await.unwrap().unwrap();
            assert_eq!(v.expose_secret(), format!("value-{i}"), "{:?}", db.backend);
        }
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn deleted_users_backup_rows_do_not_open() {
    for db in TestDb::all().await {
        let key_file = db.dir.path().join("master.key");
        let master = clawden_crypto::MasterKeys::load_or_create(&key_file).unwrap();
        let (store, keyring) = db.open_with(master.clone(), MasterKeySource::File(key_file.clone())).await;
        let (gone, _) = make_user(&store, "gone@example.com").await;
        let (stays, _) = make_user(&store, "stays@example.com").await;
        for u in [&gone, &stays] {
            store
                .put_credential(&me(u), "openai", &secret("sk-backup-test"), 5, audit("p", AuditChain::System, None))
                .await
                .unwrap();
            store.totp_begin(&me(u), b"01234567890123456789", 5).await.unwrap();
        }
        // Back up the data (not the key store), then delete the account.
        let backup_url = backup(&db, &store, &keyring).await;
        // (PostgreSQL copies need every connection closed: open again.)
        let (store, _) = db.open_with(master.clone(), MasterKeySource::File(key_file.clone())).await;
        store
            .delete_user(&me(&gone), gone.id, audit("account.delete", AuditChain::Account(gone.id), Some(gone.id)))
            .await
            .unwrap();
        assert!(store.user(&Principal::System, gone.id).await.unwrap().is_none());
        store.close().await;
        // Restore the backup beside the current key store: the deleted user's rows are back,
        // but their key is not, so nothing of theirs opens; everyone else is fine.
        let keys = KeyStore::connect(&db.keys_url).await.unwrap();
        let keyring = Arc::new(Keyring::open(master, MasterKeySource::File(key_file), keys, 0).await.unwrap());
        let restored = SqlStore::connect(&backup_url, keyring).await.unwrap();
        assert!(restored.user(&Principal::System, gone.id).await.unwrap().is_some(), "the rows are in the backup");
        assert!(matches!(
            restored.use_credential(&Principal::System, gone.id, "openai").await,
            Err(StoreError::KeyDestroyed)
        ));
        assert!(matches!(restored.totp_state(&Principal::System, gone.id).await, Err(StoreError::KeyDestroyed)));
        assert!(
            restored.use_credential(&Principal::System, stays.id, "openai").await.unwrap().is_some(),
            "{:?}",
            db.backend
        );
        restored.close().await;
        drop_backup(&db, &backup_url).await;
        db.cleanup().await;
    }
}

/// A copy of the data database as a backup would hold it.
async fn backup(db: &TestDb, store: &SqlStore, keyring: &Keyring) -> String {
    match db.backend {
        Backend::Sqlite => {
            let path = db.dir.path().join("backup.db");
            sqlx::query(&format!("VACUUM INTO '{}'", path.display())).execute(store.pool()).await.unwrap();
            store.close().await;
            keyring.key_store().close().await;
            clawden_store::sqlite_url(&path)
        }
        Backend::Postgres => {
            let name = format!("clawden_b_{}", uuid::Uuid::new_v4().simple());
            let source = db.url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
            store.close().await;
            keyring.key_store().close().await;
            let admin = clawden_store::testing::postgres_url().unwrap();
            let pool = sqlx::AnyPool::connect(&admin).await.unwrap();
            // A closed pool's server sessions can take a moment to end: retry, bounded.
            let mut created = false;
            for _ in 0..50 {
                if sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {source}")).execute(&pool).await.is_ok() {
                    created = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert!(created, "copying the database as a backup");
            pool.close().await;
            clawden_store::testing::replace_db_name(&db.url, &name)
        }
    }
}

async fn drop_backup(db: &TestDb, url: &str) {
    if db.backend == Backend::Postgres {
        let name = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
        let admin = clawden_store::testing::postgres_url().unwrap();
        let pool = sqlx::AnyPool::connect(&admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

#[tokio::test]
async fn totp_steps_are_accepted_once_and_in_order() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, _) = make_user(&store, "a@example.com").await;
        store.totp_begin(&me(&a), b"01234567890123456789", 5).await.unwrap();
        let state = store.totp_state(&me(&a), a.id).await.unwrap().unwrap();
        assert!(!state.enabled);
        assert_eq!(state.secret.as_slice(), b"01234567890123456789");
        let codes = vec![hash(50), hash(51)];
        assert!(store
            .totp_enable(&me(&a), 100, &codes, audit("auth.totp.enable", AuditChain::Account(a.id), Some(a.id)))
            .await
            .unwrap());
        assert!(matches!(store.totp_begin(&me(&a), b"another-secret-bytes", 6).await, Err(StoreError::Forbidden)));
        assert!(!store.totp_accept_step(&Principal::System, a.id, 100).await.unwrap(), "the enabling step is spent");
        assert!(store.totp_accept_step(&Principal::System, a.id, 101).await.unwrap());
        assert!(!store.totp_accept_step(&Principal::System, a.id, 101).await.unwrap(), "replay refused");
        assert!(!store.totp_accept_step(&Principal::System, a.id, 99).await.unwrap(), "older refused");
        assert!(store.use_recovery_code(&Principal::System, a.id, &hash(50), 7).await.unwrap());
        assert!(!store.use_recovery_code(&Principal::System, a.id, &hash(50), 8).await.unwrap(), "single use");
        assert!(store.totp_state(&Principal::User { user: UserId::new() }, a.id).await.is_err());
        store.totp_disable(&me(&a), audit("auth.totp.disable", AuditChain::Account(a.id), Some(a.id))).await.unwrap();
        assert!(store.totp_state(&me(&a), a.id).await.unwrap().is_none());
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn gateway_tokens_overlap_once_and_only_owners_rotate() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, inst) = make_user(&store, "a@example.com").await;
        let (b, _) = make_user(&store, "b@example.com").await;
        let first = KeyedHasher::new([7; 32]).hash("gateway", "first-a@example.com");
        assert!(store.gateway_token_by_hash(&Principal::System, &first, 2_000).await.unwrap().is_some());
        let ev = || audit("gateway_token.rotate", AuditChain::Instance(inst.id), Some(a.id));
        assert!(matches!(
            store.rotate_gateway_token(&me(&b), inst.id, &hash(1), 2_000, 3_000, ev()).await,
            Err(StoreError::Forbidden)
        ));
        store.rotate_gateway_token(&me(&a), inst.id, &hash(1), 2_000, 3_000, ev()).await.unwrap();
        let (found, owner) = store.gateway_token_by_hash(&Principal::System, &first, 2_999).await.unwrap().unwrap();
        assert_eq!((found, owner.id), (inst.id, a.id));
        assert!(
            store.gateway_token_by_hash(&Principal::System, &first, 3_000).await.unwrap().is_none(),
            "overlap over"
        );
        // A second rotation inside the window ends the oldest token at once.
        store.rotate_gateway_token(&me(&a), inst.id, &hash(2), 2_100, 3_100, ev()).await.unwrap();
        assert!(store.gateway_token_by_hash(&Principal::System, &first, 2_100).await.unwrap().is_none());
        assert!(store.gateway_token_by_hash(&Principal::System, &hash(1), 2_100).await.unwrap().is_some());
        assert!(store.gateway_token_by_hash(&Principal::System, &hash(2), 9_999).await.unwrap().is_some());
        let due = store.gateway_tokens_due(&Principal::System, 2_050, 10).await.unwrap();
        assert!(!due.contains(&inst.id) && due.len() == 1, "only b's first token is older: {due:?}");
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn api_keys_are_scoped_to_their_owner() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, _) = make_user(&store, "a@example.com").await;
        let (b, _) = make_user(&store, "b@example.com").await;
        let key = store
            .create_api_key(
                &me(&a),
                NewApiKey { name: "laptop".into(), prefix: "cd_abc".into(), key_hash: hash(9), now: 1 },
                audit("api_key.create", AuditChain::Account(a.id), Some(a.id)),
            )
            .await
            .unwrap();
        assert_eq!(store.api_keys(&me(&a)).await.unwrap().len(), 1);
        assert!(store.api_keys(&me(&b)).await.unwrap().is_empty());
        assert!(!store.delete_api_key(&me(&b), key.id, audit("x", AuditChain::System, None)).await.unwrap());
        let (found, user) = store.api_key_by_hash(&Principal::System, &hash(9)).await.unwrap().unwrap();
        assert_eq!((found.id, user.id), (key.id, a.id));
        assert!(store.api_key_by_hash(&me(&a), &hash(9)).await.is_err());
        store.touch_api_key(&Principal::System, key.id, 77).await.unwrap();
        assert_eq!(store.api_keys(&me(&a)).await.unwrap()[0].last_used_at, Some(77));
        assert!(store.delete_api_key(&me(&a), key.id, audit("x", AuditChain::System, None)).await.unwrap());
        assert!(store.api_key_by_hash(&Principal::System, &hash(9)).await.unwrap().is_none());
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn rls_hides_other_users_rows_from_raw_sql() {
    // PostgreSQL only: on SQLite the store's principal scoping (the rest of this suite) is the
    // guard; on PostgreSQL the database enforces the same rules by itself.
    let Some(url) = clawden_store::testing::postgres_url() else { return };
    let db = TestDb::postgres(&url).await;
    let (store, _) = db.open().await;
    let (a, a_instance) = make_user(&store, "a@example.com").await;
    let (b, _) = make_user(&store, "b@example.com").await;
    for u in [&a, &b] {
        store
            .put_credential(
                &me(u),
                "openai",
                &secret("sk-rls-test"),
                5,
                audit("p", AuditChain::Account(u.id), Some(u.id)),
            )
            .await
            .unwrap();
        make_session(&store, u.id, if u.id == a.id { 1 } else { 2 }, 10_000).await;
    }
    let conv = store.create_conversation(&me(&b), b_instance(&store, &b).await, "b's", 100, 5).await.unwrap();
    store
        .append_user_message(&me(&b), conv.id, "{\"role\":\"user\",\"content\":\"b only\"}", "d", 10, 6)
        .await
        .unwrap();
    // The application works as a role that is neither superuser nor BYPASSRLS.
    let who: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(store.pool()).await.unwrap();
    assert_eq!(who, "clawden_app");
    let bypass: bool = sqlx::query_scalar("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(!bypass);
    // A hand-written SELECT * as the app role, acting for A, sees only A's rows.
    let raw = raw(&db).await;
    let mut conn = raw.acquire().await.unwrap();
    sqlx::query("SET ROLE clawden_app").execute(&mut *conn).await.unwrap();
    let count = |table: &'static str| format!("SELECT COUNT(*) FROM {table}");
    for table in
        ["users", "credentials", "sessions", "conversations", "messages", "admin_log", "agent_files", "members"]
    {
        let n: i64 = sqlx::query_scalar(&count(table)).fetch_one(&mut *conn).await.unwrap();
        assert_eq!(n, 0, "{table}: nothing without a principal");
    }
    sqlx::query("SELECT set_config('clawden.user_id', $1, false)")
        .bind(a.id.to_string())
        .execute(&mut *conn)
        .await
        .unwrap();
    let users: Vec<String> = sqlx::query_scalar("SELECT id FROM users").fetch_all(&mut *conn).await.unwrap();
    assert_eq!(users, vec![a.id.to_string()]);
    let owners: Vec<String> =
        sqlx::query_scalar("SELECT user_id FROM credentials").fetch_all(&mut *conn).await.unwrap();
    assert_eq!(owners, vec![a.id.to_string()]);
    let sessions: Vec<String> = sqlx::query_scalar("SELECT user_id FROM sessions").fetch_all(&mut *conn).await.unwrap();
    assert_eq!(sessions, vec![a.id.to_string()]);
    for table in ["conversations", "messages", "admin_log"] {
        let n: i64 = sqlx::query_scalar(&count(table)).fetch_one(&mut *conn).await.unwrap();
        assert_eq!(n, 0, "{table}: none of B's rows");
    }
    let files: Vec<String> =
        sqlx::query_scalar("SELECT instance_id FROM agent_files").fetch_all(&mut *conn).await.unwrap();
    assert!(files.iter().all(|i| *i == a_instance.id.to_string()) && !files.is_empty());
    // Writes are held to the same rules: A cannot touch B's rows.
    let changed = sqlx::query("UPDATE credentials SET value = 'x' WHERE user_id = $1")
        .bind(b.id.to_string())
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(changed.rows_affected(), 0);
    let forged = sqlx::query("INSERT INTO sessions (id, user_id, token_hash, created_at, last_seen_at, expires_at) VALUES ('s', $1, 'h', 0, 0, 99)")
        .bind(b.id.to_string())
        .execute(&mut *conn)
        .await;
    assert!(forged.is_err(), "a session for B cannot be planted while acting for A");
    sqlx::query("RESET ROLE").execute(&mut *conn).await.unwrap();
    drop(conn);
    raw.close().await;
    store.close().await;
    db.cleanup().await;
}

async fn b_instance(store: &SqlStore, b: &User) -> clawden_core::InstanceId {
    store.memberships(&me(b)).await.unwrap()[0].id
}

/// A chain of five records on A's account, chained.
async fn chained(store: &SqlStore) -> (User, String) {
    let (a, _) = make_user(store, "chain@example.com").await;
    for i in 0..4 {
        store.record(audit(&format!("test.{i}"), AuditChain::Account(a.id), Some(a.id))).await.unwrap();
    }
    assert!(store.chain_audit(0).await.unwrap() >= 5);
    assert_eq!(store.verify_audit(None, 0).await.unwrap(), None, "an intact log verifies");
    (a.clone(), format!("account:{}", a.id))
}

#[tokio::test]
async fn editing_an_audit_row_is_detected_by_verify() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (_, chain) = chained(&store).await;
        let raw_pool = raw(&db).await;
        sqlx::query("UPDATE audit_log SET outcome = 'failure' WHERE chain = $1 AND seq = 3")
            .bind(&chain)
            .execute(&raw_pool)
            .await
            .unwrap();
        let broken = store.verify_audit(None, 0).await.unwrap().expect("detected");
        assert_eq!((broken.chain.as_str(), broken.seq), (chain.as_str(), 3), "{:?}", db.backend);
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn deleting_the_last_record_is_detected() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (_, chain) = chained(&store).await;
        let raw_pool = raw(&db).await;
        sqlx::query("DELETE FROM audit_log WHERE chain = $1 AND seq = 5")
            .bind(&chain)
            .execute(&raw_pool)
            .await
            .unwrap();
        let broken = store.verify_audit(Some(&chain), 0).await.unwrap().expect("detected");
        assert_eq!(broken.seq, 5, "{:?}", db.backend);
        assert!(broken.reason.contains("cut"), "{}", broken.reason);
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn deleting_or_reordering_a_middle_record_is_detected() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (_, chain) = chained(&store).await;
        let raw_pool = raw(&db).await;
        // Swap the contents of records 2 and 3 (a reordering that keeps the numbers).
        sqlx::query("UPDATE audit_log SET action = CASE seq WHEN 2 THEN 'test.1' ELSE 'test.0' END WHERE chain = $1 AND seq IN (2, 3)")
            .bind(&chain)
            .execute(&raw_pool)
            .await
            .unwrap();
        assert_eq!(store.verify_audit(None, 0).await.unwrap().expect("reorder detected").seq, 2);
        sqlx::query("DELETE FROM audit_log WHERE chain = $1 AND seq = 4")
            .bind(&chain)
            .execute(&raw_pool)
            .await
            .unwrap();
        let broken = store.verify_audit(None, 0).await.unwrap().expect("detected");
        assert!(broken.seq <= 4, "{broken:?}");
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn retention_cut_keeps_chain_verifiable() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, _) = make_user(&store, "old@example.com").await;
        let chain = format!("account:{}", a.id);
        for (i, at) in [100, 200, 300, 5_000, 6_000].into_iter().enumerate() {
            let mut ev = audit(&format!("test.{i}"), AuditChain::Account(a.id), Some(a.id));
            ev.at = at;
            store.record(ev).await.unwrap();
        }
        // The signup record (at 1 000) and the three at 100–300 are older than the cut.
        let removed = store.apply_audit_retention(2_000, 0).await.unwrap();
        assert_eq!(removed, 4, "{:?}", db.backend);
        assert_eq!(store.verify_audit(Some(&chain), 0).await.unwrap(), None, "still verifies after the cut");
        // Conversations are not the audit log's to remove.
        let conv = store
            .create_conversation(&me(&a), store.memberships(&me(&a)).await.unwrap()[0].id, "kept", 10, 1)
            .await
            .unwrap();
        store.apply_audit_retention(i64::MAX, 0).await.unwrap();
        assert!(store.conversation(&me(&a), conv.id).await.unwrap().is_some());
        // Tampering after the cut is still caught.
        store.record(audit("test.new", AuditChain::Account(a.id), Some(a.id))).await.unwrap();
        store.record(audit("test.newer", AuditChain::Account(a.id), Some(a.id))).await.unwrap();
        store.chain_audit(0).await.unwrap();
        assert_eq!(store.verify_audit(Some(&chain), 0).await.unwrap(), None);
        let raw_pool = raw(&db).await;
        sqlx::query("UPDATE audit_log SET target = 'forged' WHERE chain = $1 AND action = 'test.new'")
            .bind(&chain)
            .execute(&raw_pool)
            .await
            .unwrap();
        assert!(store.verify_audit(Some(&chain), 0).await.unwrap().is_some());
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn reply_and_its_usage_are_stored_together_in_the_users_own_conversation() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, inst) = make_user(&store, "a@example.com").await;
        let (b, _) = make_user(&store, "b@example.com").await;
        let chat = store.create_conversation(&me(&a), inst.id, "hello", 10, 1_000).await.unwrap();
        let asked = store.append_user_message(&me(&a), chat.id, "{\"q\":1}", "2026-01-01", 5, 1_001).await.unwrap();
        let used = DailyUsage { messages: 0, input_tokens: 11, output_tokens: 7, tool_calls: 0 };
        let reply = store
            .append_reply(&Principal::System, a.id, chat.id, "{\"a\":\"planted-reply\"}", "2026-01-01", used, 1_002)
            .await
            .unwrap();
        assert_eq!((asked.seq, reply.seq, reply.role.as_str()), (1, 2, "assistant"));
        let stored = store.messages(&me(&a), chat.id, 50).await.unwrap();
        assert_eq!(
            stored.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            ["{\"q\":1}", "{\"a\":\"planted-reply\"}"]
        );
        assert_eq!(
            store.usage(&me(&a), "2026-01-01").await.unwrap(),
            DailyUsage { messages: 1, input_tokens: 11, output_tokens: 7, tool_calls: 0 }
        );
        assert_eq!(store.conversation(&me(&a), chat.id).await.unwrap().unwrap().updated_at, 1_002);
        // Sealed at rest like every other message.
        let raw_pool = raw(&db).await;
        let raw: Vec<Vec<u8>> = sqlx::query_scalar("SELECT content FROM messages").fetch_all(&raw_pool).await.unwrap();
        assert!(raw.iter().all(|c| !c.windows(13).any(|w| w == b"planted-reply")));
        // Only the system writes replies, and only into the named user's conversation.
        assert!(matches!(
            store.append_reply(&me(&a), a.id, chat.id, "{}", "2026-01-01", used, 1_003).await,
            Err(StoreError::Forbidden)
        ));
        assert!(matches!(
            store.append_reply(&Principal::System, b.id, chat.id, "{}", "2026-01-01", used, 1_003).await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(store.usage(&me(&b), "2026-01-01").await.unwrap(), DailyUsage::default());
        assert_eq!(store.messages(&me(&a), chat.id, 50).await.unwrap().len(), 2);
        assert!(matches!(store.messages(&me(&b), chat.id, 50).await, Err(StoreError::NotFound)));
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn messages_need_an_own_conversation_and_a_current_membership() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, inst) = make_user(&store, "a@example.com").await;
        let (b, _) = make_user(&store, "b@example.com").await;
        let chat = store.create_conversation(&me(&a), inst.id, "t", 10, 1_000).await.unwrap();
        assert!(store.messages(&me(&a), chat.id, 50).await.unwrap().is_empty());
        assert!(store.messages(&me(&a), chat.id, 0).await.unwrap().is_empty());
        assert!(matches!(store.messages(&me(&b), chat.id, 0).await, Err(StoreError::NotFound)));
        // Someone else's conversation is not found, even with no quota left.
        assert!(matches!(
            store.append_user_message(&me(&b), chat.id, "x", "2026-01-01", 0, 1_001).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(store.create_conversation(&me(&b), inst.id, "t", 10, 1_000).await, Err(StoreError::NotFound)));
        // The quota is counted with the message, and a refused message leaves no trace.
        store.append_user_message(&me(&a), chat.id, "one", "2026-01-01", 1, 1_001).await.unwrap();
        assert!(matches!(
            store.append_user_message(&me(&a), chat.id, "two", "2026-01-01", 1, 1_002).await,
            Err(StoreError::QuotaExceeded)
        ));
        assert_eq!(store.messages(&me(&a), chat.id, 50).await.unwrap().len(), 1);
        assert_eq!(store.usage(&me(&a), "2026-01-01").await.unwrap().messages, 1);
        assert_eq!(store.conversation(&me(&a), chat.id).await.unwrap().unwrap().updated_at, 1_001);
        // The cap counts the user's conversations.
        assert!(matches!(
            store.create_conversation(&me(&a), inst.id, "t", 1, 1_000).await,
            Err(StoreError::LimitReached(_))
        ));
        // Removed from the instance: its conversations are out of reach.
        sqlx::query("DELETE FROM members WHERE user_id = $1")
            .bind(a.id.to_string())
            .execute(&raw(&db).await)
            .await
            .unwrap();
        assert!(store.conversation(&me(&a), chat.id).await.unwrap().is_none());
        assert!(matches!(store.messages(&me(&a), chat.id, 50).await, Err(StoreError::NotFound)));
        assert!(matches!(
            store.append_user_message(&me(&a), chat.id, "three", "2026-01-02", 5, 1_003).await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(store.usage(&me(&a), "2026-01-02").await.unwrap(), DailyUsage::default());
        assert!(matches!(store.create_conversation(&me(&a), inst.id, "t", 10, 1_000).await, Err(StoreError::NotFound)));
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn concurrent_writers_of_one_conversation_get_distinct_seqs() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (a, inst) = make_user(&store, "a@example.com").await;
        let chat = store.create_conversation(&me(&a), inst.id, "t", 10, 1_000).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..12 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let used = DailyUsage { input_tokens: 1, ..DailyUsage::default() };
                if i % 2 == 0 {
                    store.append_reply(&Principal::System, a.id, chat.id, "{}", "2026-01-01", used, 2_000).await
                } else {
                    store.append_server_message(&Principal::System, a.id, chat.id, "assistant", "{}", 2_000).await
                }
                .unwrap()
                .seq
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=12).collect::<Vec<i64>>());
        assert_eq!(store.usage(&me(&a), "2026-01-01").await.unwrap().input_tokens, 6);
        store.close().await;
        db.cleanup().await;
    }
}
