//! `sandbox_available()`, shared by the tests and benches that need real sandboxes (each
//! includes this file with `#[path]`).

/// Skips when this machine cannot sandbox — except under `CI=true`, where that is a failure.
pub fn sandbox_available() -> bool {
    let caps = clawden_sandbox::probe();
    let config = clawden_sandbox::BackendConfig::new(env!("CARGO_BIN_EXE_clawden"), "/nonexistent");
    let missing = caps.missing(&config);
    if caps.running_as_root && caps.quota_volumes && missing.is_empty() {
        return true;
    }
    let reason = format!("sandbox unavailable (root: {}, missing: {missing:?})", caps.running_as_root);
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and this test cannot run here: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}
