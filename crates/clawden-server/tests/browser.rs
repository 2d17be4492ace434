//! The dashboard in a real browser: headless Chromium driven through chromedriver.
//! Without Chromium the test says it is skipped — except under `CI=true`, where it fails.

#![allow(clippy::unwrap_used)]

mod common;

use common::{TestApp, PASSWORD};
use fantoccini::{ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Option<Driver> {
    let found =
        std::path::Path::new("/usr/bin/chromedriver").exists() && std::path::Path::new("/usr/bin/chromium").exists();
    if !found {
        if clawden_store::testing::under_ci() {
            panic!("chromium and chromedriver are missing, and CI=true forbids skipping browser tests");
        }
        eprintln!("skipped: browser test (install Debian's chromium and chromium-driver)");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
    // Bounded wait for chromedriver to answer its status endpoint.
    for _ in 0..100 {
        if reqwest::get(format!("{}/status", driver.url)).await.is_ok() {
            return Some(driver);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not start within 5 s");
}

fn capabilities(profile: &std::path::Path) -> serde_json::Map<String, serde_json::Value> {
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                "--window-size=1200,900", format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    caps.as_object().cloned().unwrap_or_default()
}

/// Where screenshots go: test artifacts, never committed.
pub fn artifact_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("CLAWDEN_TEST_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("clawden-test-artifacts"));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_up_signs_out_and_signs_in() {
    let Some(driver) = start_driver().await else { return };
    // The driver speaks plain HTTP on loopback; rustls still wants a provider chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let app = TestApp::spawn().await;
    let profile = tempfile::tempdir().unwrap();
    let c = ClientBuilder::rustls()
        .expect("tls roots")
        .capabilities(capabilities(profile.path()))
        .connect(&driver.url)
        .await
        .expect("connect to chromedriver");

    c.goto(&app.at("/signup")).await.unwrap();
    c.find(Locator::Css("#email")).await.unwrap().send_keys("browser@example.com").await.unwrap();
    c.find(Locator::Css("#password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    c.find(Locator::Css("form[action='/signup'] button[type=submit]")).await.unwrap().click().await.unwrap();
    if c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#me-email")).await.is_err() {
        panic!(
            "no account page after sign-up; at {:?}: {}",
            c.current_url().await,
            c.source().await.unwrap_or_default()
        );
    }
    assert_eq!(c.current_url().await.unwrap().path(), "/account");
    let email = c.find(Locator::Css("#me-email")).await.unwrap().text().await.unwrap();
    assert_eq!(email, "browser@example.com");
    let shot = c.screenshot().await.unwrap();
    std::fs::write(artifact_dir().join("account.png"), shot).unwrap();

    c.find(Locator::Css("form[action='/logout'] button")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("form[action='/login']")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    c.goto(&app.at("/account")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login", "signed out: the account page sends to sign-in");

    c.find(Locator::Css("#email")).await.unwrap().send_keys("browser@example.com").await.unwrap();
    c.find(Locator::Css("#password")).await.unwrap().send_keys("not-the-password").await.unwrap();
    c.find(Locator::Css("form[action='/login'] button[type=submit]")).await.unwrap().click().await.unwrap();
    let alert = c.wait().for_element(Locator::Css("p.error")).await.unwrap().text().await.unwrap();
    assert!(alert.contains("wrong email or password"), "{alert}");
    let shot = c.screenshot().await.unwrap();
    std::fs::write(artifact_dir().join("login-error.png"), shot).unwrap();

    c.find(Locator::Css("#password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    c.find(Locator::Css("form[action='/login'] button[type=submit]")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("#me-email")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/account");
    // Two devices listed? No: signing out ended the first session, so one remains.
    let rows = c.find_all(Locator::Css("main table")).await.unwrap();
    assert_eq!(rows.len(), 2);
    c.close().await.unwrap();
    app.stop().await;
    drop(driver);
}
