//! Who may do what: members, roles, invitations, the platform admin area, and the permission
//! matrix over every instance and admin route.

#![allow(clippy::unwrap_used)]

mod common;

use common::{error_code, TestApp};
use serde_json::{json, Value};

struct Person {
    client: reqwest::Client,
    csrf: String,
    id: String,
}

async fn person(app: &TestApp, email: &str) -> Person {
    let client = app.client();
    let me = app.signup(&client, email).await;
    Person { csrf: me["csrf_token"].as_str().unwrap().to_owned(), id: me["id"].as_str().unwrap().to_owned(), client }
}

async fn call(app: &TestApp, p: Option<&Person>, method: &str, path: &str, body: Option<Value>) -> reqwest::Response {
    let client = p.map(|p| p.client.clone()).unwrap_or_else(|| app.client());
    let mut req = client.request(method.parse().unwrap(), app.at(path));
    if let Some(p) = p {
        req = req.header("x-csrf-token", &p.csrf);
    }
    if let Some(body) = body {
        req = if path.contains("/files/") {
            req.header("content-type", "text/markdown").body(body.as_str().unwrap_or("").to_owned())
        } else {
            req.json(&body)
        };
    }
    req.send().await.unwrap()
}

/// The owner's instance with an admin and a user who accepted their invitations.
async fn team(app: &TestApp) -> (String, Person, Person, Person) {
    let owner = person(app, "owner@example.com").await;
    let me: Value = owner.client.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let admin = person(app, "admin@example.com").await;
    let user = person(app, "user@example.com").await;
    for (who, role) in [(&admin, "admin"), (&user, "user")] {
        let email = if role == "admin" { "admin@example.com" } else { "user@example.com" };
        let res = call(
            app,
            Some(&owner),
            "POST",
            &format!("/api/v1/instances/{instance}/members"),
            Some(json!({"email": email, "role": role})),
        )
        .await;
        assert_eq!(res.status(), 202);
        let pending: Vec<Value> =
            who.client.get(app.at("/api/v1/invitations")).send().await.unwrap().json().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0]["role"], role);
        let id = pending[0]["id"].as_str().unwrap();
        assert_eq!(call(app, Some(who), "POST", &format!("/api/v1/invitations/{id}/accept"), None).await.status(), 204);
    }
    (instance, owner, admin, user)
}

#[tokio::test]
async fn invite_answer_does_not_reveal_accounts() {
    let app = TestApp::spawn().await;
    let owner = person(&app, "owner@example.com").await;
    person(&app, "exists@example.com").await;
    let me: Value = owner.client.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let mut answers = Vec::new();
    for email in ["exists@example.com", "nobody-here@example.com"] {
        let res = call(
            &app,
            Some(&owner),
            "POST",
            &format!("/api/v1/instances/{instance}/members"),
            Some(json!({"email": email, "role": "user"})),
        )
        .await;
        answers.push((res.status().as_u16(), res.text().await.unwrap()));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 202);
    // Someone who signs up later with the invited email finds the invitation waiting.
    let late = person(&app, "nobody-here@example.com").await;
    let pending: Vec<Value> =
        late.client.get(app.at("/api/v1/invitations")).send().await.unwrap().json().await.unwrap();
    assert_eq!(pending.len(), 1);
    let id = pending[0]["id"].as_str().unwrap();
    assert_eq!(call(&app, Some(&late), "POST", &format!("/api/v1/invitations/{id}/decline"), None).await.status(), 204);
    let me: Value = late.client.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["instances"].as_array().unwrap().len(), 1, "declining joins nothing");
    app.stop().await;
}

#[tokio::test]
async fn admin_cannot_remove_owner() {
    let app = TestApp::spawn().await;
    let (instance, owner, admin, user) = team(&app).await;
    let base = format!("/api/v1/instances/{instance}/members");
    let res = call(&app, Some(&admin), "DELETE", &format!("{base}/{}", owner.id), None).await;
    assert_eq!(error_code(res).await, (403, "forbidden".into()));
    let res = call(&app, Some(&admin), "PATCH", &format!("{base}/{}", owner.id), Some(json!({"role": "user"}))).await;
    assert_eq!(res.status(), 403, "nor demote one");
    // An admin may manage users; a user may manage nobody.
    assert_eq!(
        call(&app, Some(&admin), "PATCH", &format!("{base}/{}", user.id), Some(json!({"role": "admin"})))
            .await
            .status(),
        204
    );
    assert_eq!(
        call(&app, Some(&admin), "PATCH", &format!("{base}/{}", user.id), Some(json!({"role": "user"}))).await.status(),
        204
    );
    assert_eq!(call(&app, Some(&user), "GET", &base, None).await.status(), 403);
    let members: Vec<Value> = owner.client.get(app.at(&base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(members.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn admin_cannot_grant_owner() {
    let app = TestApp::spawn().await;
    let (instance, owner, admin, user) = team(&app).await;
    let base = format!("/api/v1/instances/{instance}/members");
    let res = call(&app, Some(&admin), "PATCH", &format!("{base}/{}", user.id), Some(json!({"role": "owner"}))).await;
    assert_eq!(error_code(res).await, (403, "forbidden".into()));
    let res = call(&app, Some(&admin), "POST", &base, Some(json!({"email": "x@example.com", "role": "owner"}))).await;
    assert_eq!(res.status(), 403, "nor invite an owner");
    // The owner can.
    assert_eq!(
        call(&app, Some(&owner), "PATCH", &format!("{base}/{}", user.id), Some(json!({"role": "owner"})))
            .await
            .status(),
        204
    );
    app.stop().await;
}

#[tokio::test]
async fn last_owner_cannot_leave() {
    let app = TestApp::spawn().await;
    let (instance, owner, admin, user) = team(&app).await;
    let base = format!("/api/v1/instances/{instance}/members");
    let res = call(&app, Some(&owner), "DELETE", &format!("{base}/{}", owner.id), None).await;
    assert_eq!(error_code(res).await, (409, "conflict".into()));
    let res = call(&app, Some(&owner), "PATCH", &format!("{base}/{}", owner.id), Some(json!({"role": "admin"}))).await;
    assert_eq!(res.status(), 409, "the last owner cannot be demoted");
    // Transfer: make the admin an owner, then step down and leave.
    assert_eq!(
        call(&app, Some(&owner), "PATCH", &format!("{base}/{}", admin.id), Some(json!({"role": "owner"})))
            .await
            .status(),
        204
    );
    assert_eq!(
        call(&app, Some(&owner), "PATCH", &format!("{base}/{}", owner.id), Some(json!({"role": "user"})))
            .await
            .status(),
        204
    );
    assert_eq!(call(&app, Some(&owner), "DELETE", &format!("{base}/{}", owner.id), None).await.status(), 204);
    // A user leaves freely.
    assert_eq!(call(&app, Some(&user), "DELETE", &format!("{base}/{}", user.id), None).await.status(), 204);
    let res = call(&app, Some(&user), "GET", &format!("/api/v1/instances/{instance}"), None).await;
    assert_eq!(res.status(), 404, "gone means gone");
    // The new owner deletes the instance.
    assert_eq!(call(&app, Some(&admin), "DELETE", &format!("/api/v1/instances/{instance}"), None).await.status(), 204);
    assert_eq!(call(&app, Some(&admin), "GET", &format!("/api/v1/instances/{instance}"), None).await.status(), 404);
    let id: clawden_core::InstanceId = instance.parse().unwrap();
    assert!(
        app.state.keyring.existing_dek(clawden_store::KeyOwner::Instance(id)).await.unwrap().is_none(),
        "its key is destroyed"
    );
    app.stop().await;
}

#[tokio::test]
async fn admin_routes_are_404_for_non_admins() {
    let app = TestApp::spawn().await;
    let plain = person(&app, "plain@example.com").await;
    let boss = person(&app, "boss@example.com").await;
    let pool = app.raw_pool().await;
    sqlx::query("UPDATE users SET platform_admin = 1 WHERE id = $1").bind(&boss.id).execute(&pool).await.unwrap();
    let routes = [
        ("GET", "/api/v1/admin/users".to_owned(), None),
        ("PATCH", format!("/api/v1/admin/users/{}", plain.id), Some(json!({"tier": "invite"}))),
        ("POST", "/api/v1/admin/invites".to_owned(), Some(json!({"uses": 2}))),
        ("GET", "/api/v1/admin/log".to_owned(), None),
        ("GET", "/api/v1/admin/config".to_owned(), None),
    ];
    let unknown = error_code(app.client().get(app.at("/api/v1/admin/nothing")).send().await.unwrap()).await;
    for (method, path, body) in &routes {
        for who in [None, Some(&plain)] {
            let res = call(&app, who, method, path, body.clone()).await;
            assert_eq!(error_code(res).await, unknown, "{method} {path} looks like no route at all");
        }
    }
    for (method, path, body) in &routes {
        let status = call(&app, Some(&boss), method, path, body.clone()).await.status().as_u16();
        assert!((200..300).contains(&status), "{method} {path}: {status}");
    }
    let me: Value = plain.client.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["tier"], "invite", "the platform admin set the tier");
    let log: Vec<Value> = boss.client.get(app.at("/api/v1/admin/log")).send().await.unwrap().json().await.unwrap();
    assert!(log.iter().any(|e| e["action"] == "admin.user.update"));
    assert!(log.iter().any(|e| e["action"] == "admin.invite.create"));
    // Disabling ends the user's sessions.
    let res =
        call(&app, Some(&boss), "PATCH", &format!("/api/v1/admin/users/{}", plain.id), Some(json!({"disabled": true})))
            .await;
    assert_eq!(res.status(), 204);
    assert_eq!(plain.client.get(app.at("/api/v1/me")).send().await.unwrap().status(), 401);
    app.stop().await;
}

#[test]
fn tier_check_lives_in_one_place() {
    // Whether an instance has tools and a sandbox is decided by its tier in exactly one
    // function (`Runtime::tier_of`, the instance owner's tier); no other server or agent code
    // reads a user's tier to decide it.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut offenders = Vec::new();
    for dir in ["clawden-server/src", "clawden-agent/src"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for (n, line) in text.lines().enumerate() {
                    if line.contains("instance_tier(") && !path.ends_with("runtime.rs") {
                        offenders.push(format!("{}:{}", path.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(offenders.is_empty(), "instance tier read outside Runtime::tier_of: {offenders:?}");
}

/// Every instance-scoped and admin route, for owner, admin, user, a member of another
/// instance, a platform admin who is not a member, and no authentication: the exact status.
#[tokio::test]
async fn permission_matrix() {
    let app = TestApp::spawn().await;
    let (instance, owner, admin, user) = team(&app).await;
    let outsider = person(&app, "outsider@example.com").await;
    let boss = person(&app, "boss@example.com").await;
    let pool = app.raw_pool().await;
    sqlx::query("UPDATE users SET platform_admin = 1 WHERE id = $1").bind(&boss.id).execute(&pool).await.unwrap();
    let i = &instance;
    let uid = &user.id;
    // (method, path, body, [owner, admin, user, outsider, platform admin, anonymous])
    let rows: Vec<(&str, String, Option<Value>, [u16; 6])> = vec![
        ("GET", format!("/api/v1/instances/{i}"), None, [200, 200, 200, 404, 404, 401]),
        ("GET", format!("/api/v1/instances/{i}/files"), None, [200, 200, 200, 404, 404, 401]),
        ("GET", format!("/api/v1/instances/{i}/files/SOUL.md"), None, [200, 200, 200, 404, 404, 401]),
        (
            "PUT",
            format!("/api/v1/instances/{i}/files/MEMORY.md"),
            Some(json!("# memory")),
            [204, 204, 403, 404, 404, 401],
        ),
        ("GET", format!("/api/v1/instances/{i}/members"), None, [200, 200, 403, 404, 404, 401]),
        (
            "POST",
            format!("/api/v1/instances/{i}/members"),
            Some(json!({"email": "n@example.com", "role": "user"})),
            [202, 202, 403, 404, 404, 401],
        ),
        (
            "PATCH",
            format!("/api/v1/instances/{i}/members/{uid}"),
            Some(json!({"role": "user"})),
            [204, 204, 403, 404, 404, 401],
        ),
        ("POST", format!("/api/v1/instances/{i}/gateway-token/rotate"), None, [200, 404, 404, 404, 404, 401]),
        ("GET", "/api/v1/me".to_owned(), None, [200, 200, 200, 200, 200, 401]),
        ("GET", "/api/v1/instances".to_owned(), None, [200, 200, 200, 200, 200, 401]),
        ("GET", "/api/v1/conversations".to_owned(), None, [200, 200, 200, 200, 200, 401]),
        ("GET", "/api/v1/usage".to_owned(), None, [200, 200, 200, 200, 200, 401]),
        ("GET", "/api/v1/credentials".to_owned(), None, [200, 200, 200, 200, 200, 401]),
        ("GET", "/api/v1/api-keys".to_owned(), None, [200, 200, 200, 200, 200, 401]),
        ("GET", "/api/v1/sessions".to_owned(), None, [200, 200, 200, 200, 200, 401]),
        ("GET", "/api/v1/invitations".to_owned(), None, [200, 200, 200, 200, 200, 401]),
        ("GET", "/v1/models".to_owned(), None, [200, 200, 200, 200, 200, 401]),
        ("POST", "/api/v1/conversations".to_owned(), Some(json!({"instance_id": i})), [201, 201, 201, 404, 404, 401]),
        ("GET", "/api/v1/audit".to_owned(), None, [200, 200, 200, 200, 200, 401]),
        ("GET", format!("/api/v1/audit?instance_id={i}"), None, [200, 200, 403, 404, 404, 401]),
        ("GET", format!("/api/v1/instances/{i}/policy"), None, [200, 200, 200, 404, 404, 401]),
        ("PUT", format!("/api/v1/instances/{i}/policy"), Some(json!({})), [200, 200, 403, 404, 404, 401]),
        ("POST", format!("/api/v1/instances/{i}/stop"), None, [200, 200, 403, 404, 404, 401]),
        ("GET", "/api/v1/approvals".to_owned(), None, [200, 200, 200, 200, 200, 401]),
        (
            "POST",
            format!("/api/v1/approvals/{}", clawden_core::ApprovalId::new()),
            Some(json!({"decision": "allow"})),
            [404, 404, 404, 404, 404, 401],
        ),
        ("GET", "/api/v1/admin/users".to_owned(), None, [404, 404, 404, 404, 200, 404]),
        ("GET", "/api/v1/admin/config".to_owned(), None, [404, 404, 404, 404, 200, 404]),
        ("GET", "/api/v1/admin/log".to_owned(), None, [404, 404, 404, 404, 200, 404]),
    ];
    let people = [Some(&owner), Some(&admin), Some(&user), Some(&outsider), Some(&boss), None];
    let mut failures = Vec::new();
    for (method, path, body, expected) in &rows {
        for (n, (who, want)) in people.iter().zip(expected).enumerate() {
            let res = call(&app, *who, method, path, body.clone()).await;
            let status = res.status().as_u16();
            let text = res.text().await.unwrap_or_default();
            if status != *want {
                let names = ["owner", "admin", "user", "outsider", "platform admin", "anonymous"];
                failures.push(format!("{method} {path} as {}: {status}, want {want}", names[n]));
            }
            if !(200..300).contains(&status) {
                assert!(
                    !text.contains("owner@example.com") && !text.contains("SOUL"),
                    "no foreign data in refusals: {text}"
                );
            }
        }
    }
    // Deleting the instance: only its owner.
    for who in [&admin, &user, &outsider, &boss] {
        let status = call(&app, Some(who), "DELETE", &format!("/api/v1/instances/{i}"), None).await.status().as_u16();
        assert!(status == 403 || status == 404, "{status}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
    app.stop().await;
}

#[tokio::test]
async fn team_pages_work_as_plain_forms() {
    let app = TestApp::spawn().await;
    let owner = person(&app, "owner@example.com").await;
    let me: Value = owner.client.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let guest = person(&app, "guest@example.com").await;
    // The owner invites through the members page.
    let page =
        owner.client.get(app.at(&format!("/agent/{instance}/members"))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("owner@example.com") && page.contains("Invite someone"));
    let res = owner
        .client
        .post(app.at(&format!("/agent/{instance}/members")))
        .form(&[("csrf_token", owner.csrf.as_str()), ("email", "guest@example.com"), ("role", "user")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    // The guest accepts on the invitations page.
    let page = guest.client.get(app.at("/account/invitations")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("as <strong>user</strong>"), "{page}");
    let pending: Vec<Value> =
        guest.client.get(app.at("/api/v1/invitations")).send().await.unwrap().json().await.unwrap();
    let id = pending[0]["id"].as_str().unwrap();
    let res = guest
        .client
        .post(app.at(&format!("/account/invitations/{id}/accept")))
        .form(&[("csrf_token", guest.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    // A user-role member cannot see the members page; a bad invite code is refused clearly.
    assert_eq!(guest.client.get(app.at(&format!("/agent/{instance}/members"))).send().await.unwrap().status(), 403);
    let res = guest
        .client
        .post(app.at("/account/redeem"))
        .form(&[("csrf_token", guest.csrf.as_str()), ("code", "cdi_wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("not valid"));
    // The admin page does not exist for them.
    assert_eq!(guest.client.get(app.at("/admin")).send().await.unwrap().status(), 404);
    // A platform admin makes a code on the admin page; the guest redeems it.
    let pool = app.raw_pool().await;
    sqlx::query("UPDATE users SET platform_admin = 1 WHERE id = $1").bind(&owner.id).execute(&pool).await.unwrap();
    let page = owner
        .client
        .post(app.at("/admin/invites"))
        .form(&[("csrf_token", owner.csrf.as_str()), ("uses", "1")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let code = page.split("id=\"invite-code\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert!(code.starts_with("cdi_"));
    let res = guest
        .client
        .post(app.at("/account/redeem"))
        .form(&[("csrf_token", guest.csrf.as_str()), ("code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let me: Value = guest.client.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["tier"], "invite");
    let admin_page = owner.client.get(app.at("/admin")).send().await.unwrap().text().await.unwrap();
    assert!(admin_page.contains("guest@example.com") && admin_page.contains("admin.invite.create"));
    app.stop().await;
}

#[tokio::test]
async fn audit_viewer_shows_own_actions_and_the_instance_to_its_admins() {
    let app = TestApp::spawn().await;
    let (instance, owner, admin, user) = team(&app).await;
    let res = call(
        &app,
        Some(&owner),
        "PUT",
        &format!("/api/v1/instances/{instance}/files/MEMORY.md"),
        Some(json!("remember")),
    )
    .await;
    assert_eq!(res.status(), 204);
    let own: Vec<Value> = user.client.get(app.at("/api/v1/audit")).send().await.unwrap().json().await.unwrap();
    assert!(own.iter().any(|r| r["action"] == "auth.signup" || r["action"] == "auth.login"));
    assert!(own.iter().all(|r| r["actor"].as_str().is_none_or(|a| a == user.id)), "only the user's own actions");
    let whole: Vec<Value> = admin
        .client
        .get(app.at(&format!("/api/v1/audit?instance_id={instance}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = whole.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert!(
        actions.contains(&"file.write") && actions.contains(&"member.invite") && actions.contains(&"invitation.accept"),
        "{actions:?}"
    );
    let seqs: Vec<i64> = whole.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first: {seqs:?}");
    let bad = user.client.get(app.at("/api/v1/audit?limit=abc")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn login_burst_locks_and_notifies() {
    let app = TestApp::spawn_with(clawden_store::testing::TestDb::sqlite(), |s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let owner = person(&app, "target@example.com").await;
    let login = |ip: &str, password: &str| {
        let client = app.client();
        let url = app.at("/api/v1/auth/login");
        let (ip, password) = (ip.to_owned(), password.to_owned());
        async move {
            client
                .post(url)
                .header("x-forwarded-for", ip)
                .json(&json!({"email": "target@example.com", "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    // The owner signed in from a known address before.
    assert_eq!(login("203.0.113.5", common::PASSWORD).await.status(), 200);
    // Ten failures from ten addresses.
    for i in 0..10 {
        assert_eq!(login(&format!("198.51.100.{i}"), "wrong-password-9").await.status(), 401);
    }
    assert_eq!(clawden_server::anomaly::run_rules(&app.state).await.unwrap(), 1);
    assert_eq!(clawden_server::anomaly::run_rules(&app.state).await.unwrap(), 0, "once per window");
    // Sessions ended; sign-in from a new address is paused, even with the right password…
    assert_eq!(owner.client.get(app.at("/api/v1/me")).send().await.unwrap().status(), 401);
    let res = login("192.0.2.77", common::PASSWORD).await;
    assert!(res.headers().get("retry-after").is_some());
    assert_eq!(error_code(res).await, (403, "account_locked".into()));
    // …a wrong password from there looks like any other wrong password…
    assert_eq!(login("192.0.2.78", "wrong-password-9").await.status(), 401);
    // …and the owner's known address still works, and shows the notice.
    let known = login("203.0.113.5", common::PASSWORD).await;
    assert_eq!(known.status(), 200);
    let client = app.client();
    let res = client
        .post(app.at("/api/v1/auth/login"))
        .header("x-forwarded-for", "203.0.113.5")
        .json(&json!({"email": "target@example.com", "password": common::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let notices: Vec<Value> = client.get(app.at("/api/v1/notices")).send().await.unwrap().json().await.unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0]["kind"], "anomaly.login_burst");
    let page = client.get(app.at("/account")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("failed sign-ins"), "the dashboard shows the notice");
    let audit = client.get(app.at("/account/audit")).send().await.unwrap().text().await.unwrap();
    assert!(audit.contains("auth.login"));
    // The lock ends with time.
    app.clock.advance_secs(901);
    assert_eq!(login("192.0.2.79", common::PASSWORD).await.status(), 200);
    app.stop().await;
}

/// A bearer credential is something the agent might reach: with one, the tool policy can
/// only be tightened; letting the agent do more takes a browser session.
#[tokio::test]
async fn bearer_credential_cannot_widen_the_tool_policy() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let me = app.signup(&client, "owner@example.com").await;
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let key: Value = client
        .post(app.at("/api/v1/api-keys"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "script"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    let url = app.at(&format!("/api/v1/instances/{instance}/policy"));
    let bearer = |body: Value| reqwest::Client::new().put(&url).bearer_auth(&key).json(&body).send();
    // Tightening: fine.
    assert_eq!(bearer(json!({"deny": ["exec"]})).await.unwrap().status(), 200);
    // Widening in any way: refused, and nothing changes.
    for wider in [
        json!({}),
        json!({"deny": ["exec"], "elevated": []}),
        json!({"deny": ["exec"], "profile": "full"}),
        json!({"deny": ["exec"], "egress_allow": ["example.com"]}),
        json!({"deny": ["exec"], "always_allow": [["ls"]]}),
    ] {
        let res = bearer(wider.clone()).await.unwrap();
        assert_eq!(res.status(), 403, "{wider}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "session_required");
    }
    let policy: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(policy["deny"], json!(["exec"]));
    // The browser session may widen.
    let res = client.put(&url).header("x-csrf-token", &csrf).json(&json!({"elevated": []})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;
}
