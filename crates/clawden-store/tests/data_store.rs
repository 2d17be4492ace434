//! [`DataStore`] on every backend: paged reads in order and scoped to their owner, usage over a
//! range of days, and workspace imports that write every file or none.

#![allow(clippy::unwrap_used)]

use clawden_core::{Outcome, Principal, Role, Tier, UserId};
use clawden_crypto::KeyedHasher;
use clawden_store::testing::TestDb;
use clawden_store::*;

fn audit(action: &str, chain: AuditChain, actor: Option<UserId>, at: i64) -> AuditEvent {
    AuditEvent {
        chain,
        actor,
        instance: None,
        action: action.into(),
        target: String::new(),
        outcome: Outcome::Success,
        ip: None,
        at,
    }
}

async fn make_user(store: &SqlStore, email: &str) -> (User, Instance) {
    let new = NewUser {
        email: email.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        tier: Tier::Base,
        platform_admin: false,
        instance_name: "My agent".into(),
        now: 1_000,
        invite: None,
        gateway_token: KeyedHasher::new([7; 32]).hash("gateway", &format!("first-{email}")),
        initial_files: vec![("SOUL.md".into(), "be kind".into()), ("MEMORY.md".into(), "remember".into())],
    };
    store.create_user(&Principal::System, new, audit("auth.signup", AuditChain::System, None, 1_000)).await.unwrap()
}

#[tokio::test]
async fn messages_and_audit_page_in_order_and_only_for_their_owner() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (alice, instance) = make_user(&store, "alice@example.com").await;
        let (bob, _) = make_user(&store, "bob@example.com").await;
        let me = Principal::User { user: alice.id };
        let c = store.create_conversation(&me, instance.id, "long", 10, 2_000).await.unwrap();
        for i in 0..25 {
            store.append_user_message(&me, c.id, &format!("m{i}"), "2026-01-01", 1_000, 2_000 + i).await.unwrap();
        }
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = store.messages_after(&me, c.id, after, 10).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            seen.extend(page.into_iter().map(|m| m.body));
        }
        assert_eq!(seen, (0..25).map(|i| format!("m{i}")).collect::<Vec<_>>(), "{:?}", db.backend);
        let other = Principal::User { user: bob.id };
        assert!(matches!(store.messages_after(&other, c.id, 0, 10).await, Err(StoreError::NotFound)));

        // Audit records with equal times still page without loss or repetition.
        for i in 0..7 {
            store.record(audit(&format!("a{i}"), AuditChain::Account(alice.id), Some(alice.id), 5_000)).await.unwrap();
        }
        store.record(audit("bob.did", AuditChain::Account(bob.id), Some(bob.id), 5_000)).await.unwrap();
        let mut actions = Vec::new();
        let mut cursor: Option<AuditCursor> = None;
        loop {
            let page = store.own_audit_after(&me, cursor.as_ref(), 3).await.unwrap();
            let Some(last) = page.last() else { break };
            cursor = Some(AuditCursor::after(last));
            actions.extend(page.into_iter().map(|r| r.action));
        }
        assert_eq!(actions, (0..7).map(|i| format!("a{i}")).collect::<Vec<_>>(), "{:?}", db.backend);
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn usage_between_reads_a_range_of_own_days() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (alice, _) = make_user(&store, "alice@example.com").await;
        let (bob, _) = make_user(&store, "bob@example.com").await;
        for (user, day, n) in [
            (alice.id, "2026-01-01", 1),
            (alice.id, "2026-01-03", 3),
            (alice.id, "2026-02-01", 9),
            (bob.id, "2026-01-02", 5),
        ] {
            let usage = DailyUsage { messages: n, input_tokens: n * 10, output_tokens: n, tool_calls: 0 };
            store.add_usage(&Principal::System, user, day, usage).await.unwrap();
        }
        let me = Principal::User { user: alice.id };
        let days = store.usage_between(&me, "2026-01-01", "2026-01-31").await.unwrap();
        let shown: Vec<(String, i64)> = days.into_iter().map(|(d, u)| (d, u.messages)).collect();
        assert_eq!(shown, vec![("2026-01-01".into(), 1), ("2026-01-03".into(), 3)], "{:?}", db.backend);
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn importing_files_writes_all_or_nothing() {
    for db in TestDb::all().await {
        let (store, _) = db.open().await;
        let (alice, instance) = make_user(&store, "alice@example.com").await;
        let owner = Principal::Member { user: alice.id, instance: instance.id, role: Role::Owner };
        let ev = || audit("workspace.import", AuditChain::Instance(instance.id), Some(alice.id), 3_000);
        let files =
            |pairs: &[(&str, &str)]| pairs.iter().map(|(p, t)| ((*p).to_owned(), (*t).to_owned())).collect::<Vec<_>>();

        // Merge: the archive's files are written, others kept.
        store
            .write_files(
                &owner,
                instance.id,
                &files(&[("SOUL.md", "new soul"), ("USER.md", "Ada")]),
                false,
                100,
                3_000,
                ev(),
            )
            .await
            .unwrap();
        let read: Vec<(String, String)> = store.read_files(&owner, instance.id).await.unwrap();
        assert_eq!(read, files(&[("MEMORY.md", "remember"), ("SOUL.md", "new soul"), ("USER.md", "Ada")]));

        // Over the total: nothing at all changes.
        let big = "x".repeat(90);
        let err = store
            .write_files(
                &owner,
                instance.id,
                &files(&[("SOUL.md", "changed"), ("AGENTS.md", &big)]),
                false,
                100,
                3_000,
                ev(),
            )
            .await;
        assert!(matches!(err, Err(StoreError::LimitReached(_))), "{err:?}");
        assert_eq!(store.read_files(&owner, instance.id).await.unwrap(), read, "{:?}", db.backend);

        // Replace: exactly the archive's files remain.
        store.write_files(&owner, instance.id, &files(&[("AGENTS.md", &big)]), true, 100, 3_000, ev()).await.unwrap();
        assert_eq!(store.read_files(&owner, instance.id).await.unwrap(), files(&[("AGENTS.md", &big)]));

        // Members with the `user` role, and strangers, write nothing.
        let (bob, _) = make_user(&store, "bob@example.com").await;
        let as_user = Principal::Member { user: bob.id, instance: instance.id, role: Role::Owner };
        let err =
            store.write_files(&as_user, instance.id, &files(&[("SOUL.md", "mine")]), true, 100, 3_000, ev()).await;
        assert!(matches!(err, Err(StoreError::NotFound)), "a stranger claiming a role: {err:?}");
        assert_eq!(store.read_files(&owner, instance.id).await.unwrap(), files(&[("AGENTS.md", &big)]));
        store.close().await;
        db.cleanup().await;
    }
}
