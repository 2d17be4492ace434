//! Bad input gets a clear 4xx JSON error, never a 500 or a panic; every answer carries the
//! security headers; the OpenAPI document lists every route.

#![allow(clippy::unwrap_used)]

mod common;

use common::{error_code, TestApp};
use proptest::prelude::*;
use serde_json::{json, Value};

#[tokio::test]
async fn oversized_body_is_413_json() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(2 * 1024 * 1024);
    let res = app
        .client()
        .post(app.at("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(format!("{{\"email\":\"{big}\",\"password\":\"p\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (413, "payload_too_large".into()));
    app.stop().await;
}

#[tokio::test]
async fn malformed_json_and_wrong_types_are_4xx_json() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let send = |body: &'static str, ct: &'static str| {
        client.post(app.at("/api/v1/auth/signup")).header("content-type", ct).body(body).send()
    };
    assert_eq!(error_code(send("{bad", "application/json").await.unwrap()).await, (400, "invalid_json".into()));
    assert_eq!(
        error_code(send("{\"email\": 5}", "application/json").await.unwrap()).await,
        (422, "invalid_fields".into())
    );
    assert_eq!(error_code(send("email=a", "text/plain").await.unwrap()).await, (415, "unsupported_media_type".into()));
    app.stop().await;
}

#[tokio::test]
async fn unknown_route_and_wrong_method_are_json() {
    let app = TestApp::spawn().await;
    let res = app.client().get(app.at("/api/v1/nothing-here")).send().await.unwrap();
    assert_eq!(error_code(res).await, (404, "not_found".into()));
    let res = app.client().delete(app.at("/api/v1/me")).send().await.unwrap();
    assert_eq!(error_code(res).await, (405, "method_not_allowed".into()));
    let res = app.client().delete(app.at("/api/v1/sessions/not-a-uuid")).send().await.unwrap();
    assert_eq!(res.status(), 401, "authentication is checked before the path");
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_security_headers() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/login", "/signup", "/api/v1/me", "/nope", "/static/app.css"] {
        let res = app.client().get(app.at(path)).send().await.unwrap();
        let h = res.headers();
        let csp = h.get("content-security-policy").unwrap_or_else(|| panic!("CSP on {path}")).to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{path}");
        assert!(csp.contains("img-src 'self' data:"), "{path}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        assert!(!csp.contains("unsafe-inline"), "{path}");
        assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff", "{path}");
        // `same-origin`, not `no-referrer`: under `no-referrer` browsers send `Origin: null` on every
        // form post, which the cross-site check must refuse.
        assert_eq!(h.get("referrer-policy").unwrap(), "same-origin", "{path}");
        assert!(h.get("strict-transport-security").is_none(), "no HSTS over plain HTTP");
    }
    app.stop().await;
}

#[tokio::test]
async fn pages_have_no_inline_script() {
    let app = TestApp::spawn().await;
    for path in ["/login", "/signup"] {
        let html = app.client().get(app.at(path)).send().await.unwrap().text().await.unwrap();
        assert!(!html.contains("<script"), "{path}");
        assert!(!html.contains("style="), "{path}");
        assert!(!html.contains("http://") && !html.contains("https://"), "no external resources on {path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn readiness_and_openapi() {
    let app = TestApp::spawn().await;
    let ready: Value = app.client().get(app.at("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    let doc: Value = app.client().get(app.at("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/api/v1/openapi.json", "get"),
        ("/api/v1/auth/signup", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/auth/password", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/sessions", "get"),
        ("/api/v1/sessions/{id}", "delete"),
        ("/api/v1/invites/redeem", "post"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is documented");
    }
    app.stop().await;
}

#[tokio::test]
async fn data_dir_and_key_file_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn().await;
    let dir = &app.state.settings.data_dir;
    assert_eq!(std::fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(dir.join("master.key")).unwrap().permissions().mode() & 0o777, 0o600);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bodies_never_break_the_auth_routes() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let me = app.signup(&client, "fuzz@example.com").await;
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();
    let routes = [
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
        "/api/v1/auth/password",
        "/api/v1/invites/redeem",
        "/login",
        "/signup",
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 96, ..ProptestConfig::default() });
    let strategy = (
        0..routes.len(),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512).prop_map(|b| b),
            "\\PC{0,300}".prop_map(|s| s.into_bytes()),
            (any::<Option<String>>(), any::<Option<String>>(), any::<Option<i64>>()).prop_map(|(e, p, n)| {
                json!({"email": e, "password": p, "current_password": n, "new_password": p, "code": e, "invite_code": n})
                    .to_string()
                    .into_bytes()
            }),
        ],
        prop_oneof![Just("application/json"), Just("application/x-www-form-urlencoded"), Just("text/plain")],
    );
    let rt = tokio::runtime::Handle::current();
    let seen = std::sync::Mutex::new(Vec::new());
    runner
        .run(&strategy, |(route, body, ct)| {
            let status = tokio::task::block_in_place(|| {
                rt.block_on(async {
                    client
                        .post(app.at(routes[route]))
                        .header("content-type", ct)
                        .header("x-csrf-token", &csrf)
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap()
                        .status()
                })
            });
            seen.lock().unwrap().push(status.as_u16());
            prop_assert!(status.as_u16() < 500, "{} {} -> {}", routes[route], ct, status);
            Ok(())
        })
        .unwrap();
    // Still signed in and serving after the barrage.
    assert_eq!(client.get(app.at("/api/v1/me")).send().await.unwrap().status(), 200);
    assert_eq!(seen.lock().unwrap().len(), 96);
    app.stop().await;
}
