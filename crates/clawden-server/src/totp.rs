//! TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps, one step of clock skew either way) and
//! recovery codes. A code is accepted only for a time step later than the last one accepted,
//! so a code seen by someone else cannot be replayed.

use crate::error::ApiError;
use crate::state::AppState;
use clawden_core::{Principal, UserId};
use clawden_crypto::token::ct_str_eq;
use clawden_crypto::TokenHash;
use data_encoding::BASE32_NOPAD;
use totp_rs::{Algorithm, TOTP};

const STEP_SECS: i64 = 30;
/// Hash domain of recovery codes.
pub const RECOVERY_DOMAIN: &str = "recovery";
/// How many recovery codes enabling 2FA gives.
pub const RECOVERY_CODES: usize = 10;

fn totp(secret: &[u8], account: &str) -> Result<TOTP, ApiError> {
    TOTP::new(Algorithm::SHA1, 6, 1, STEP_SECS as u64, secret.to_vec(), Some("clawden".into()), account.to_owned())
        .map_err(ApiError::internal)
}

/// The time step of a Unix time.
pub fn step_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS)
}

/// The code for a time step (tests use it to act as an authenticator app).
pub fn code_for_step(secret: &[u8], step: i64) -> Result<String, ApiError> {
    Ok(totp(secret, "x")?.generate(u64::try_from(step * STEP_SECS).unwrap_or(0)))
}

/// The time step `code` is valid for around `now_secs`, if any.
pub fn matching_step(secret: &[u8], code: &str, now_secs: i64) -> Result<Option<i64>, ApiError> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let now = step_of(now_secs);
    let mut found = None;
    // Every candidate is compared, in constant time, so timing does not tell which matched.
    for step in [now - 1, now, now + 1] {
        if ct_str_eq(&code_for_step(secret, step)?, code) {
            found = Some(step);
        }
    }
    Ok(found)
}

/// The `otpauth://` URL an authenticator app scans.
pub fn otpauth_url(secret: &[u8], email: &str) -> Result<String, ApiError> {
    Ok(totp(secret, email)?.get_url())
}

/// The secret as authenticator apps show it.
pub fn secret_base32(secret: &[u8]) -> String {
    BASE32_NOPAD.encode(secret)
}

/// An SVG QR code of `text`, rendered on the server (no script, no external service).
pub fn qr_svg(text: &str) -> Result<String, ApiError> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(ApiError::internal)?;
    Ok(code.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).quiet_zone(true).build())
}

/// Normalises a recovery code as typed (case, dashes, spaces).
pub fn normalize_recovery(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase()
}

/// Fresh recovery codes (shown once) and their keyed hashes (stored).
pub fn new_recovery_codes(state: &AppState) -> (Vec<String>, Vec<TokenHash>) {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut hashes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let raw = BASE32_NOPAD.encode(&clawden_crypto::random_bytes::<10>()).to_ascii_lowercase();
        let shown = format!("{}-{}-{}-{}", &raw[0..4], &raw[4..8], &raw[8..12], &raw[12..16]);
        hashes.push(state.keyring.hasher().hash(RECOVERY_DOMAIN, &normalize_recovery(&shown)));
        codes.push(shown);
    }
    (codes, hashes)
}

/// Checks a second factor for `user` at sign-in (or to disable 2FA): a current TOTP code,
/// accepted once, or an unused recovery code, spent. `Ok(true)` when 2FA is off.
pub async fn check_second_factor(state: &AppState, user: UserId, code: Option<&str>) -> Result<SecondFactor, ApiError> {
    let Some(totp) = state.store.totp_state(&Principal::System, user).await? else {
        return Ok(SecondFactor::NotEnabled);
    };
    if !totp.enabled {
        return Ok(SecondFactor::NotEnabled);
    }
    let Some(code) = code.map(str::trim).filter(|c| !c.is_empty()) else { return Ok(SecondFactor::Missing) };
    if let Some(step) = matching_step(&totp.secret, code, state.clock.now_secs())? {
        return Ok(if state.store.totp_accept_step(&Principal::System, user, step).await? {
            SecondFactor::Passed
        } else {
            SecondFactor::Replayed
        });
    }
    let normalized = normalize_recovery(code);
    if normalized.len() == 16 {
        let hash = state.keyring.hasher().hash(RECOVERY_DOMAIN, &normalized);
        if state.store.use_recovery_code(&Principal::System, user, &hash, state.now()).await? {
            return Ok(SecondFactor::Passed);
        }
    }
    Ok(SecondFactor::Wrong)
}

/// The outcome of a second-factor check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    /// 2FA is off for this account.
    NotEnabled,
    /// 2FA is on and no code was given.
    Missing,
    /// A valid code, now spent.
    Passed,
    /// A code that was already used.
    Replayed,
    /// A wrong code.
    Wrong,
}
