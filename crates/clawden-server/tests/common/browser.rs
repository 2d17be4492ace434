//! Headless Chromium driven through chromedriver, for the browser tests of clawden-server (as
//! `common::browser`) and of clawden (`tests/browser_agent_tools.rs` includes this file by
//! path, so it uses nothing else from `common`).
//!
//! Without Chromium a test says it is skipped — except under `CI=true`, where it fails.
//! Screenshots go to `$CLAWDEN_TEST_ARTIFACTS` (default: a temp dir) — test artifacts, never
//! committed.

#![allow(dead_code, clippy::unwrap_used)]

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long [`wait_for`] waits for an element.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running chromedriver, killed on drop.
pub struct Driver {
    child: Child,
    pub url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver on a free loopback port, or `None` (skipped) when Chromium is missing.
/// Panics under CI when it is missing.
pub async fn start_driver() -> Option<Driver> {
    let found = Path::new("/usr/bin/chromedriver").exists() && Path::new("/usr/bin/chromium").exists();
    if !found {
        if clawden_store::testing::under_ci() {
            panic!("chromium and chromedriver are missing, and CI=true forbids skipping browser tests");
        }
        eprintln!("SKIPPED: browser test (install Debian's chromium and chromium-driver)");
        return None;
    }
    // The driver speaks plain HTTP on loopback; rustls still wants a provider chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
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

/// The capabilities of a headless Chromium with its profile in `profile`, a window 1200 wide
/// and `height` high, and — if given — downloads saved to `downloads` without asking.
pub fn capabilities(
    profile: &Path,
    height: u32,
    downloads: Option<&Path>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut options = serde_json::json!({
        "binary": "/usr/bin/chromium",
        "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
            format!("--window-size=1200,{height}"), format!("--user-data-dir={}", profile.display()),
        ]
    });
    if let Some(downloads) = downloads {
        options["prefs"] = serde_json::json!({
            "download.default_directory": downloads.display().to_string(),
            "download.prompt_for_download": false,
        });
    }
    let caps = serde_json::json!({ "goog:chromeOptions": options });
    caps.as_object().cloned().unwrap_or_default()
}

/// A browser session on `driver` (see [`capabilities`]).
pub async fn browser(driver: &Driver, profile: &Path, height: u32, downloads: Option<&Path>) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    ClientBuilder::rustls()
        .expect("tls roots")
        .capabilities(capabilities(profile, height, downloads))
        .connect(&driver.url)
        .await
        .expect("connect to chromedriver")
}

/// Where screenshots go: test artifacts, never committed.
pub fn artifact_dir() -> PathBuf {
    let dir = std::env::var_os("CLAWDEN_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("clawden-test-artifacts"));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Saves a screenshot of the page as `name` in the [`artifact_dir`].
pub async fn screenshot(c: &Client, name: &str) {
    let shot = c.screenshot().await.unwrap();
    std::fs::write(artifact_dir().join(name), shot).unwrap();
}

/// Waits (bounded at [`WAIT`]) for an element matching `css`.
pub async fn wait_for(c: &Client, css: &str) -> Element {
    wait_for_within(c, css, WAIT).await
}

/// Polls for an element matching `css` for at most `timeout`: while a form post navigates, the
/// driver can answer a lookup with a transient error instead of "not found yet".
pub async fn wait_for_within(c: &Client, css: &str, timeout: Duration) -> Element {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(el) = c.find(Locator::Css(css)).await {
            return el;
        }
        if Instant::now() > deadline {
            panic!("no {css}; at {:?}: {}", c.current_url().await, c.source().await.unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn type_into(c: &Client, css: &str, text: &str) {
    c.find(Locator::Css(css)).await.unwrap().send_keys(text).await.unwrap();
}

pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

/// Clicks the submit button of the form posting to `action`.
pub async fn submit(c: &Client, action: &str) {
    click(c, &format!("form[action='{action}'] button[type=submit]")).await;
}
