//! The security page's HTML forms: same rules and audit as the JSON API, errors shown on the
//! page with the right status, secrets shown once and never cached.

#![allow(clippy::unwrap_used)]

mod common;

use clawden_core::Clock;
use common::{TestApp, PASSWORD};
use serde_json::Value;

/// The text of the element with `id`.
fn text_of(html: &str, id: &str) -> String {
    let at = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in {html}"));
    let start = at + html[at..].find('>').unwrap() + 1;
    let end = start + html[start..].find('<').unwrap();
    html[start..end].to_owned()
}

async fn post_form(app: &TestApp, client: &reqwest::Client, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    client.post(app.at(path)).form(fields).send().await.unwrap()
}

fn no_store(res: &reqwest::Response) -> bool {
    res.headers().get("cache-control").is_some_and(|v| v == "no-store")
}

#[tokio::test]
async fn security_page_is_for_signed_in_browsers_only() {
    let app = TestApp::spawn().await;
    let res = app.client().get(app.at("/account/security")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login");

    let browser = app.client();
    let me = app.signup(&browser, "keys@example.com").await;
    let csrf = me["csrf_token"].as_str().unwrap();
    let res = post_form(&app, &browser, "/account/security/keys", &[("csrf_token", csrf), ("name", "cli")]).await;
    let key = text_of(&res.text().await.unwrap(), "new-key");
    // An API key is not a browser session: it gets the sign-in page, not the forms.
    let program = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = program.get(app.at("/account/security")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let res =
        program.post(app.at("/account/security/keys")).bearer_auth(&key).form(&[("name", "x")]).send().await.unwrap();
    assert_eq!(res.status(), 303, "a bearer credential cannot make API keys through the page");
    // A form without the CSRF token is refused before it does anything.
    let res = post_form(&app, &browser, "/account/security/keys", &[("name", "forged")]).await;
    assert_eq!(res.status(), 403);
    let page = browser.get(app.at("/account/security")).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("forged"));
    app.stop().await;
}

#[tokio::test]
async fn api_key_and_credential_forms_follow_the_api_rules() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    let me = app.signup(&browser, "forms@example.com").await;
    let csrf = me["csrf_token"].as_str().unwrap();

    let res = post_form(&app, &browser, "/account/security/keys", &[("csrf_token", csrf), ("name", "  ")]).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("give a name of 1 to 100 printable characters"));

    let res = post_form(&app, &browser, "/account/security/keys", &[("csrf_token", csrf), ("name", "deploy")]).await;
    assert_eq!(res.status(), 201);
    assert!(no_store(&res), "a page showing a key is never cached");
    let key = text_of(&res.text().await.unwrap(), "new-key");
    assert!(key.starts_with("cd_"));
    let listed: Value = browser.get(app.at("/api/v1/api-keys")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed[0]["name"], "deploy");
    let page = browser.get(app.at("/account/security")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("deploy") && !page.contains(&key));

    let secret = "sk-proj-form-posted-value-9x2K";
    let res = post_form(
        &app,
        &browser,
        "/account/security/credentials",
        &[("csrf_token", csrf), ("name", "Not A Name"), ("value", secret)],
    )
    .await;
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(html.contains("credential names are 1 to 64"), "{html}");
    assert!(html.contains("value=\"Not A Name\""), "the name is kept");
    assert!(!html.contains(secret), "the value is never echoed");

    let res = post_form(
        &app,
        &browser,
        "/account/security/credentials",
        &[("csrf_token", csrf), ("name", "openai"), ("value", secret)],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/account/security?done=credential_saved");
    let page =
        browser.get(app.at("/account/security?done=credential_saved")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Credential saved.") && page.contains("…9x2K") && !page.contains(secret));

    let res = post_form(&app, &browser, "/account/security/credentials/openai/delete", &[("csrf_token", csrf)]).await;
    assert_eq!(res.status(), 303);
    let res = post_form(&app, &browser, "/account/security/credentials/openai/delete", &[("csrf_token", csrf)]).await;
    assert_eq!(res.status(), 404, "deleting it twice says it is gone");
    let listed: Value = browser.get(app.at("/api/v1/credentials")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed, serde_json::json!([]));

    let id = browser.get(app.at("/api/v1/api-keys")).send().await.unwrap().json::<Value>().await.unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = post_form(&app, &browser, &format!("/account/security/keys/{id}/delete"), &[("csrf_token", csrf)]).await;
    assert_eq!(res.status(), 303);
    let res = reqwest::Client::new().get(app.at("/api/v1/credentials")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), 401, "a deleted key no longer works");
    app.stop().await;
}

#[tokio::test]
async fn two_factor_is_set_up_and_turned_off_through_the_page() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    let me = app.signup(&browser, "totp-form@example.com").await;
    let csrf = me["csrf_token"].as_str().unwrap();

    let res = post_form(&app, &browser, "/account/security/totp/setup", &[("csrf_token", csrf)]).await;
    assert_eq!(res.status(), 200);
    assert!(no_store(&res));
    let html = res.text().await.unwrap();
    assert!(html.contains("<svg") && !html.contains("<?xml"), "the QR code is inline SVG");
    assert!(!html.contains("<script") && !html.contains("style="), "the CSP forbids inline script and style");
    let shown = text_of(&html, "totp-secret");
    let secret = data_encoding::BASE32_NOPAD.decode(shown.replace(' ', "").as_bytes()).unwrap();
    let step = clawden_server::totp::step_of(app.clock.now_secs());
    let code = clawden_server::totp::code_for_step(&secret, step).unwrap();

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let res =
        post_form(&app, &browser, "/account/security/totp/enable", &[("csrf_token", csrf), ("code", wrong)]).await;
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert_eq!(text_of(&html, "totp-secret"), shown, "the same secret, so the app already set up still works");
    assert!(html.contains("that code is not valid"));

    let spaced = format!("{} {}", &code[..3], &code[3..]);
    let res =
        post_form(&app, &browser, "/account/security/totp/enable", &[("csrf_token", csrf), ("code", &spaced)]).await;
    assert_eq!(res.status(), 200);
    assert!(no_store(&res));
    let html = res.text().await.unwrap();
    assert_eq!(html.matches("<li><code>").count(), 10, "ten recovery codes");
    let me: Value = browser.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["totp_enabled"], true);

    // Turning it off needs the password and a fresh code; a wrong password is a 403 on the page.
    app.clock.advance_secs(30);
    let next = clawden_server::totp::code_for_step(&secret, step + 1).unwrap();
    let res = post_form(
        &app,
        &browser,
        "/account/security/totp/disable",
        &[("csrf_token", csrf), ("password", "not-my-password-at-all"), ("code", &next)],
    )
    .await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("wrong password or code"));
    app.clock.advance_secs(30);
    let next = clawden_server::totp::code_for_step(&secret, step + 2).unwrap();
    let res = post_form(
        &app,
        &browser,
        "/account/security/totp/disable",
        &[("csrf_token", csrf), ("password", PASSWORD), ("code", &next)],
    )
    .await;
    assert_eq!(res.status(), 303);
    let me: Value = browser.get(app.at("/api/v1/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["totp_enabled"], false);
    app.stop().await;
}

#[tokio::test]
async fn password_form_checks_the_current_password() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    let me = app.signup(&browser, "pw-form@example.com").await;
    let csrf = me["csrf_token"].as_str().unwrap();
    let new = "amber-lantern-drifts-north";
    let res = post_form(
        &app,
        &browser,
        "/account/security/password",
        &[("csrf_token", csrf), ("current_password", "wrong-wrong-wrong"), ("new_password", new)],
    )
    .await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("the current password is wrong"));
    let res = post_form(
        &app,
        &browser,
        "/account/security/password",
        &[("csrf_token", csrf), ("current_password", PASSWORD), ("new_password", new)],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(app.login(&app.client(), "pw-form@example.com", new).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn gateway_token_rotates_from_the_page_for_owners_only() {
    let app = TestApp::spawn().await;
    let owner = app.client();
    let me = app.signup(&owner, "gw-owner@example.com").await;
    let csrf = me["csrf_token"].as_str().unwrap();
    let instance = me["instances"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/account/security/instances/{instance}/gateway-token");
    let res = post_form(&app, &owner, &path, &[("csrf_token", csrf)]).await;
    assert_eq!(res.status(), 200);
    assert!(no_store(&res));
    let token = text_of(&res.text().await.unwrap(), "gateway-token");
    assert!(token.starts_with("cdg_"));
    let res = reqwest::Client::new().get(app.at("/v1/models")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);

    let stranger = app.client();
    let them = app.signup(&stranger, "gw-stranger@example.com").await;
    let res = post_form(&app, &stranger, &path, &[("csrf_token", them["csrf_token"].as_str().unwrap())]).await;
    assert_eq!(res.status(), 404, "someone else's instance is not there at all");
    assert!(!res.text().await.unwrap().contains("cdg_"));
    app.stop().await;
}
