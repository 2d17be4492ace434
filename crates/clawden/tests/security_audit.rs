//! `clawden security-audit`: findings with severities and fixes, exit 2 on a critical one.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn clawden(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clawden"));
    cmd.arg("--data-dir")
        .arg(data)
        .env_remove("CLAWDEN_DATABASE_URL")
        .env_remove("CLAWDEN_TRUSTED_PROXIES")
        .env_remove("CLAWDEN_LISTEN")
        .env_remove("CLAWDEN_SIGNUP")
        .env_remove("CLAWDEN_ANTHROPIC_API_KEY")
        .env_remove("CLAWDEN_OPENAI_API_KEY")
        .env("CLAWDEN_LOG", "warn");
    cmd
}

/// A data dir as the server leaves it after its first start (master key, databases).
fn initialised_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = clawden(dir.path()).args(["admin", "create-invite"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("master.key").is_file());
    dir
}

fn audit_json(mut cmd: Command) -> (Output, serde_json::Value) {
    let out = cmd.output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out, doc)
}

fn findings(doc: &serde_json::Value) -> &Vec<serde_json::Value> {
    doc["findings"].as_array().unwrap()
}

fn has(doc: &serde_json::Value, id: &str, severity: &str) -> bool {
    findings(doc).iter().any(|f| f["id"] == id && f["severity"] == severity)
}

#[test]
fn a_world_readable_master_key_is_critical_and_exits_non_zero() {
    let dir = initialised_data_dir();
    let key = dir.path().join("master.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = clawden(dir.path()).arg("security-audit").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CRITICAL") && text.contains("master_key.permissions"), "{text}");
    assert!(text.contains(&format!("chmod 600 {}", key.display())), "the fix is given: {text}");
}

#[test]
fn json_output_lists_findings_with_severity_id_message_and_hint() {
    let dir = initialised_data_dir();
    let mut cmd = clawden(dir.path());
    cmd.args(["security-audit", "--json"]);
    let (out, doc) = audit_json(cmd);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!findings(&doc).is_empty(), "at least the key-in-data-dir note: {doc}");
    for f in findings(&doc) {
        assert!(["critical", "warning", "info"].contains(&f["severity"].as_str().unwrap()), "{f}");
        for field in ["id", "message", "hint"] {
            assert!(!f[field].as_str().unwrap().is_empty(), "{field} in {f}");
        }
    }
    assert_eq!(doc["critical"], 0);
}

#[test]
fn a_clean_default_data_dir_has_no_critical_finding() {
    let dir = initialised_data_dir();
    let mut cmd = clawden(dir.path());
    cmd.args(["security-audit", "--json"]);
    let (out, doc) = audit_json(cmd);
    assert_eq!(out.status.code(), Some(0));
    assert!(!findings(&doc).iter().any(|f| f["severity"] == "critical"), "{doc}");
    // Nor does a data dir that does not exist yet: nothing is created by the audit.
    let fresh = tempfile::tempdir().unwrap();
    let missing = fresh.path().join("not-yet");
    let out = clawden(&missing).arg("security-audit").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!missing.exists(), "the audit only reads");
}

#[test]
fn plain_http_on_a_public_address_and_a_catch_all_proxy_are_critical() {
    let dir = initialised_data_dir();
    let mut cmd = clawden(dir.path());
    cmd.args(["security-audit", "--json", "--listen", "0.0.0.0:8787", "--insecure-http"]);
    let (out, doc) = audit_json(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(has(&doc, "listen.plain_http", "critical"), "{doc}");
    assert!(has(&doc, "signup.open_public", "warning"), "{doc}");

    let mut cmd = clawden(dir.path());
    cmd.args(["security-audit", "--json"]).env("CLAWDEN_TRUSTED_PROXIES", "[\"0.0.0.0/0\"]");
    let (out, doc) = audit_json(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(has(&doc, "trusted_proxies.too_wide", "critical"), "{doc}");
}

#[test]
fn a_platform_key_is_reported_with_its_quotas() {
    let dir = initialised_data_dir();
    let mut cmd = clawden(dir.path());
    cmd.args(["security-audit", "--json"]).env("CLAWDEN_OPENAI_API_KEY", "sk-audit-test-0000");
    let (out, doc) = audit_json(cmd);
    assert_eq!(out.status.code(), Some(0));
    let f = findings(&doc).iter().find(|f| f["id"] == "provider.platform_key").unwrap();
    assert!(f["message"].as_str().unwrap().contains("50 messages a day"), "{f}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("sk-audit-test"), "the key is never printed");
}
