//! One conformance suite, run against every backend: SQLite always, PostgreSQL when
//! `CLAWDEN_TEST_POSTGRES_URL` is set (and always under CI).

#![allow(clippy::unwrap_used)]

use clawden_core::{Outcome, Principal, SessionId, Tier, UserId};
use clawden_crypto::{KeyedHasher, TokenHash};
use clawden_store::testing::TestDb;
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
