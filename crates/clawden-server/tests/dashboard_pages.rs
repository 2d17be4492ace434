//! Every dashboard page a signed-in user reaches renders, shares the navigation (with Admin only
//! for platform admins), labels every input, and carries the CSRF token in every form that
//! posts — so the pages work as plain HTML forms without JavaScript.

#![allow(clippy::unwrap_used)]

mod common;

use common::TestApp;

const PAGES: [&str; 12] = [
    "/chat",
    "/agent",
    "/agent/approvals",
    "/usage",
    "/settings",
    "/settings/data",
    "/settings/data/clear",
    "/account",
    "/account/security",
    "/account/audit",
    "/account/invitations",
    "/admin",
];

/// The controls of a page that need a label: every input that is not hidden, every select and
/// textarea. Returns their ids (a control without an id cannot be labelled and fails).
fn controls(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for tag in ["<input", "<select", "<textarea"] {
        for (at, _) in html.match_indices(tag) {
            let end = html[at..].find('>').map_or(html.len(), |e| at + e);
            let element = &html[at..end];
            if element.contains("type=\"hidden\"") {
                continue;
            }
            let id = element
                .split("id=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("a control without an id: {element}"));
            out.push(id.to_owned());
        }
    }
    out
}

#[tokio::test]
async fn every_page_renders_with_labels_csrf_and_the_right_navigation() {
    let app = TestApp::spawn().await;
    let plain = app.client();
    let plain_me = app.signup(&plain, "plain@example.com").await;
    let boss = app.client();
    let me = app.signup(&boss, "boss@example.com").await;
    let pool = app.raw_pool().await;
    sqlx::query("UPDATE users SET platform_admin = 1 WHERE id = $1")
        .bind(me["id"].as_str().unwrap())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    for (who, client, admin, me) in [("plain", &plain, false, &plain_me), ("boss", &boss, true, &me)] {
        let instance = me["instances"][0]["id"].as_str().unwrap();
        let own = [
            format!("/agent/{instance}/files"),
            format!("/agent/{instance}/files/SOUL.md"),
            format!("/agent/{instance}/members"),
            format!("/agent/{instance}/policy"),
            format!("/agent/{instance}/approvals"),
            format!("/agent/{instance}/stop"),
        ];
        for path in PAGES.iter().copied().chain(own.iter().map(String::as_str)) {
            let res = client.get(app.at(path)).send().await.unwrap();
            if path == "/admin" && !admin {
                assert_eq!(res.status(), 404, "the admin area does not exist for {who}");
                continue;
            }
            assert_eq!(res.status(), 200, "{who} {path}");
            let html = res.text().await.unwrap();
            assert!(html.contains("<nav aria-label=\"Main\">"), "{path}");
            for section in ["/chat", "/agent", "/usage", "/settings"] {
                assert!(html.contains(&format!("href=\"{section}\"")), "{path} links to {section}");
            }
            assert_eq!(html.contains("href=\"/admin\""), admin, "{who} {path}: Admin in the navigation");
            assert!(!html.contains("<script>"), "{path}: no inline script");
            for id in controls(&html) {
                assert!(html.contains(&format!("for=\"{id}\"")), "{path}: #{id} has no label");
            }
            for (at, _) in html.match_indices("<form method=\"post\"") {
                let end = html[at..].find("</form>").map_or(html.len(), |e| at + e);
                assert!(html[at..end].contains("name=\"csrf_token\""), "{path}: a form without the CSRF field");
            }
            if path.starts_with("/settings") || path.starts_with("/account") {
                assert!(html.contains("<nav class=\"sub\" aria-label=\"Settings\">"), "{path}: settings navigation");
            }
        }
    }
    app.stop().await;
}
