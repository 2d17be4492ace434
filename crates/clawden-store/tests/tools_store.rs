//! Tool policies, approvals and the tool-call quota, on every backend: SQLite always,
//! PostgreSQL when `CLAWDEN_TEST_POSTGRES_URL` is set (and always under CI).

#![allow(clippy::unwrap_used)]

use clawden_core::{ApprovalId, ConversationId, InstanceId, Outcome, Principal, Tier, UserId};
use clawden_crypto::KeyedHasher;
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
        ip: None,
        at: 1_000,
    }
}

async fn make_user(store: &SqlStore, email: &str) -> (User, Instance) {
    let new = NewUser {
        email: email.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        tier: Tier::Invite,
        platform_admin: false,
        instance_name: "My agent".into(),
        now: 1_000,
        invite: None,
        gateway_token: KeyedHasher::new([7; 32]).hash("gateway", &format!("first-{email}")),
        initial_files: vec![],
    };
    store.create_user(&Principal::System, new, audit("auth.signup", AuditChain::System, None)).await.unwrap()
}

fn me(user: &User) -> Principal {
    Principal::User { user: user.id }
}

fn new_approval(instance: InstanceId, conversation: ConversationId, user: UserId, command: &str) -> NewApproval {
    NewApproval {
        id: ApprovalId::new(),
        instance_id: instance,
        conversation_id: conversation,
        user_id: user,
        tool: "exec".into(),
        arguments: serde_json::json!({"command": command}).to_string(),
        digest: format!("digest-of-{command}"),
        created_at: 1_000,
        expires_at: 10_000,
    }
}

#[tokio::test]
async fn policies_are_sealed_read_by_members_and_written_by_configurers() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (alice, instance) = make_user(&store, "alice@example.com").await;
        let (mallory, _) = make_user(&store, "mallory@example.com").await;
        assert_eq!(store.tool_policy(&me(&alice), instance.id).await.unwrap(), None);
        let body = r#"{"egress_allow":["secret-partner.example.org"]}"#;
        assert!(store
            .replace_tool_policy(
                &me(&alice),
                instance.id,
                body,
                0,
                2_000,
                audit("policy.update", AuditChain::Instance(instance.id), Some(alice.id)),
            )
            .await
            .unwrap());
        assert_eq!(store.tool_policy(&me(&alice), instance.id).await.unwrap().as_deref(), Some(body));
        assert_eq!(store.tool_policy(&Principal::System, instance.id).await.unwrap().as_deref(), Some(body));
        // A stranger neither reads nor writes it.
        assert!(matches!(store.tool_policy(&me(&mallory), instance.id).await, Err(StoreError::NotFound)));
        let write = store
            .replace_tool_policy(
                &me(&mallory),
                instance.id,
                "{}",
                0,
                3_000,
                audit("policy.update", AuditChain::Instance(instance.id), Some(mallory.id)),
            )
            .await;
        assert!(matches!(write, Err(StoreError::NotFound)), "{write:?}");
        // At rest it is ciphertext.
        sqlx::any::install_default_drivers();
        let raw = sqlx::AnyPool::connect(&db.url).await.unwrap();
        let stored: Vec<u8> = sqlx::query_scalar("SELECT body FROM tool_policies").fetch_one(&raw).await.unwrap();
        assert!(!String::from_utf8_lossy(&stored).contains("secret-partner"), "{:?}", db.backend);
        raw.close().await;
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn approvals_are_decided_once_by_owners_only_and_expire() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (alice, instance) = make_user(&store, "alice@example.com").await;
        let (mallory, _) = make_user(&store, "mallory@example.com").await;
        let conv = store.create_conversation(&me(&alice), instance.id, "t", 10, 1_000).await.unwrap();
        let a = new_approval(instance.id, conv.id, alice.id, "echo a");
        let ev = || audit("approval.request", AuditChain::Instance(instance.id), Some(alice.id));
        // Only the system creates approvals.
        assert!(matches!(store.create_approval(&me(&alice), &a, ev()).await, Err(StoreError::Forbidden)));
        store.create_approval(&Principal::System, &a, ev()).await.unwrap();
        let listed = store.pending_approvals(&me(&alice), None, 2_000).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].arguments, r#"{"command":"echo a"}"#);
        assert_eq!(listed[0].status, ApprovalStatus::Pending);
        assert!(store.pending_approvals(&me(&mallory), None, 2_000).await.unwrap().is_empty());
        assert!(store.pending_approvals(&me(&alice), Some(InstanceId::new()), 2_000).await.unwrap().is_empty());
        assert_eq!(store.approval(&me(&mallory), a.id).await.unwrap(), None);
        // A stranger cannot decide (and learns nothing); the owner can, once.
        let decide = |by: Principal, status| {
            let store = store.clone();
            async move {
                store
                    .decide_approval(
                        &by,
                        a.id,
                        status,
                        false,
                        3_000,
                        audit("approval.allow", AuditChain::Instance(instance.id), None),
                    )
                    .await
            }
        };
        assert!(matches!(decide(me(&mallory), ApprovalStatus::Allowed).await, Err(StoreError::NotFound)));
        let decided = decide(me(&alice), ApprovalStatus::Allowed).await.unwrap();
        assert_eq!(decided.status, ApprovalStatus::Allowed);
        assert_eq!(decided.decided_by, Some(alice.id));
        assert!(matches!(decide(me(&alice), ApprovalStatus::Denied).await, Err(StoreError::Conflict(_))));
        assert!(!store.expire_approval(&Principal::System, a.id, 4_000).await.unwrap());
        assert!(store.pending_approvals(&me(&alice), None, 4_000).await.unwrap().is_empty());
        // Past its expiry nobody can allow it.
        let b = new_approval(instance.id, conv.id, alice.id, "echo b");
        store.create_approval(&Principal::System, &b, ev()).await.unwrap();
        let late = store
            .decide_approval(
                &me(&alice),
                b.id,
                ApprovalStatus::Allowed,
                false,
                10_001,
                audit("approval.allow", AuditChain::Instance(instance.id), None),
            )
            .await;
        assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
        assert!(store.pending_approvals(&me(&alice), None, 10_001).await.unwrap().is_empty());
        // A restart expires whatever is still pending.
        let c = new_approval(instance.id, conv.id, alice.id, "echo c");
        store.create_approval(&Principal::System, &c, ev()).await.unwrap();
        assert_eq!(store.expire_all_pending(&Principal::System, 5_000).await.unwrap(), 2);
        assert_eq!(store.approval(&Principal::System, c.id).await.unwrap().unwrap().status, ApprovalStatus::Expired);
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn concurrent_decisions_have_one_winner() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (alice, instance) = make_user(&store, "alice@example.com").await;
        let conv = store.create_conversation(&me(&alice), instance.id, "t", 10, 1_000).await.unwrap();
        let a = new_approval(instance.id, conv.id, alice.id, "echo race");
        store
            .create_approval(&Principal::System, &a, audit("approval.request", AuditChain::Instance(instance.id), None))
            .await
            .unwrap();
        let store = Arc::new(store);
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            let by = me(&alice);
            tasks.push(tokio::spawn(async move {
                let status = if i % 2 == 0 { ApprovalStatus::Allowed } else { ApprovalStatus::Denied };
                store
                    .decide_approval(
                        &by,
                        a.id,
                        status,
                        false,
                        2_000,
                        audit("approval.decide", AuditChain::Instance(instance.id), None),
                    )
                    .await
            }));
        }
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => wins += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(wins, 1, "{:?}", db.backend);
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn the_daily_tool_call_quota_holds_under_parallel_calls() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (alice, _) = make_user(&store, "alice@example.com").await;
        assert!(matches!(
            store.count_tool_call(&me(&alice), alice.id, "2026-11-25", 5).await,
            Err(StoreError::Forbidden)
        ));
        let store = Arc::new(store);
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.count_tool_call(&Principal::System, alice.id, "2026-11-25", 5).await
            }));
        }
        let mut counted = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => counted += 1,
                Err(StoreError::QuotaExceeded) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(counted, 5, "{:?}", db.backend);
        assert_eq!(store.usage(&me(&alice), "2026-11-25").await.unwrap().tool_calls, 5);
        // Another day starts afresh.
        store.count_tool_call(&Principal::System, alice.id, "2026-11-26", 5).await.unwrap();
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn rls_hides_other_instances_policies_and_approvals() {
    let Some(url) = clawden_store::testing::postgres_url() else { return };
    let db = TestDb::postgres(&url).await;
    let (store, _) = db.open().await;
    let (alice, instance) = make_user(&store, "alice@example.com").await;
    let (mallory, _) = make_user(&store, "mallory@example.com").await;
    let conv = store.create_conversation(&me(&alice), instance.id, "t", 10, 1_000).await.unwrap();
    assert!(store
        .replace_tool_policy(
            &me(&alice),
            instance.id,
            "{}",
            0,
            2_000,
            audit("policy.update", AuditChain::Instance(instance.id), None),
        )
        .await
        .unwrap());
    store
        .create_approval(
            &Principal::System,
            &new_approval(instance.id, conv.id, alice.id, "echo rls"),
            audit("approval.request", AuditChain::Instance(instance.id), None),
        )
        .await
        .unwrap();
    // Bob joins Alice's instance with the role `user`.
    let (bob, _) = make_user(&store, "bob@example.com").await;
    store
        .invite(
            &me(&alice),
            instance.id,
            "bob@example.com",
            clawden_core::Role::User,
            1_000,
            100_000,
            audit("member.invite", AuditChain::Instance(instance.id), Some(alice.id)),
        )
        .await
        .unwrap();
    let invitation = store.invitations(&me(&bob), 1_000).await.unwrap().remove(0);
    assert!(store
        .answer_invitation(
            &me(&bob),
            &invitation.id,
            true,
            1_000,
            audit("member.accept", AuditChain::Instance(instance.id), Some(bob.id))
        )
        .await
        .unwrap());
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let mut conn = raw.acquire().await.unwrap();
    sqlx::query("SET ROLE clawden_app").execute(&mut *conn).await.unwrap();
    // As Bob: the policy is readable, not writable; approvals are neither.
    sqlx::query("SELECT set_config('clawden.user_id', $1, false)")
        .bind(bob.id.to_string())
        .execute(&mut *conn)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tool_policies").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(n, 1, "a member reads the policy");
    let changed = sqlx::query("UPDATE tool_policies SET updated_at = 0").execute(&mut *conn).await.unwrap();
    assert_eq!(changed.rows_affected(), 0, "a user member cannot write the policy");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM approvals").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(n, 0, "a user member sees no approvals");
    let changed = sqlx::query("UPDATE approvals SET status = 'allowed'").execute(&mut *conn).await.unwrap();
    assert_eq!(changed.rows_affected(), 0, "a user member decides nothing");
    sqlx::query("SELECT set_config('clawden.user_id', $1, false)")
        .bind(mallory.id.to_string())
        .execute(&mut *conn)
        .await
        .unwrap();
    for table in ["tool_policies", "approvals"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut *conn).await.unwrap();
        assert_eq!(n, 0, "{table}: none of another instance's rows");
        let changed = sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *conn).await.unwrap();
        assert_eq!(changed.rows_affected(), 0, "{table}");
    }
    sqlx::query("SELECT set_config('clawden.user_id', $1, false)")
        .bind(alice.id.to_string())
        .execute(&mut *conn)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM approvals").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(n, 1);
    drop(conn);
    raw.close().await;
    store.close().await;
    db.cleanup().await;
}
