//! Sign-up, sign-in, sign-out and password changes, shared by the JSON API and the dashboard.

use crate::audit;
use crate::auth::{SESSION_DOMAIN, SESSION_PREFIX};
use crate::client_ip::ClientIp;
use crate::error::ApiError;
use crate::state::AppState;
use crate::totp::SecondFactor;
use axum::http::StatusCode;
use clawden_core::{Principal, SignupMode, Tier};
use clawden_crypto::password::check_policy;
use clawden_crypto::{PasswordVerdict, PlainToken};
use clawden_store::{normalize_email, AuditChain, Instance, NewSession, NewUser, Session, User};
use secrecy::{ExposeSecret, SecretString};

/// Prefix of invite codes.
pub const INVITE_PREFIX: &str = "cdi_";
/// Hash domain of invite codes.
pub const INVITE_DOMAIN: &str = "invite";

/// A new session: the token to put in the cookie (once), and its row.
#[derive(Debug)]
pub struct NewLogin {
    /// The account.
    pub user: User,
    /// The token; goes into the cookie and nowhere else.
    pub token: PlainToken,
    /// The stored session.
    pub session: Session,
}

fn invalid_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "wrong email or password")
}

/// The files a new instance starts with.
pub fn default_workspace() -> Vec<(String, String)> {
    clawden_agent::workspace::default_files("Claw").into_iter().map(|(path, text)| (path.as_path(), text)).collect()
}

/// Checks an email's shape (we send no mail; this only keeps junk out).
pub fn validate_email(email: &str) -> Result<String, ApiError> {
    let email = normalize_email(email);
    let bad = || ApiError::bad_request("invalid_email", "enter a valid email address");
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    if local.is_empty() || domain.len() < 3 || !domain.contains('.') || domain.contains('@') || domain.starts_with('.')
    {
        return Err(bad());
    }
    Ok(email)
}

/// Checks a new password against the policy, as a 400.
pub fn validate_password(password: &SecretString, email: &str) -> Result<(), ApiError> {
    check_policy(password.expose_secret(), email).map_err(|e| ApiError::bad_request("weak_password", e.to_string()))
}

/// The user agent, truncated, for the sessions list.
pub fn user_agent(headers: &axum::http::HeaderMap) -> Option<String> {
    headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(200).collect())
}

async fn start_session(state: &AppState, ip: ClientIp, user: User, ua: Option<String>) -> Result<NewLogin, ApiError> {
    let token = PlainToken::generate(SESSION_PREFIX);
    let now = state.now();
    let absolute = i64::try_from(state.settings.auth.session_absolute.as_millis()).unwrap_or(i64::MAX);
    let new = NewSession {
        user_id: user.id,
        token_hash: state.keyring.hasher().hash(SESSION_DOMAIN, token.expose()),
        now,
        expires_at: now.saturating_add(absolute),
        ip: Some(ip.0.to_string()),
        user_agent: ua,
    };
    let ev = audit::success(state, ip, AuditChain::Account(user.id), Some(user.id), "auth.login");
    let session = state.store.create_session(&Principal::System, new, ev).await?;
    Ok(NewLogin { user, token, session })
}

/// Creates an account and its personal instance, and signs it in.
pub async fn signup(
    state: &AppState,
    ip: ClientIp,
    email: &str,
    password: SecretString,
    invite_code: Option<&str>,
    ua: Option<String>,
) -> Result<(NewLogin, Instance), ApiError> {
    let invite = match (state.settings.signup, invite_code.map(str::trim).filter(|c| !c.is_empty())) {
        (SignupMode::Closed, _) => {
            return Err(ApiError::forbidden("signup_closed", "sign-up is closed on this server"));
        }
        (SignupMode::InviteOnly, None) => {
            return Err(ApiError::forbidden("invite_required", "sign-up on this server needs an invite code"));
        }
        (_, code) => code.map(|c| state.keyring.hasher().hash(INVITE_DOMAIN, c)),
    };
    let email = validate_email(email)?;
    validate_password(&password, &email)?;
    state.limits.signup(ip.0).map_err(ApiError::rate_limited)?;
    let password_hash = state.passwords.hash(password).await?;
    let new = NewUser {
        email,
        password_hash,
        tier: Tier::Base,
        platform_admin: false,
        instance_name: "My agent".into(),
        now: state.now(),
        invite,
        // The first token is made with the instance; the owner gets a usable one by rotating.
        gateway_token: state
            .keyring
            .hasher()
            .hash(crate::auth::GATEWAY_DOMAIN, PlainToken::generate(crate::auth::GATEWAY_PREFIX).expose()),
        initial_files: default_workspace(),
    };
    let ev = audit::success(state, ip, AuditChain::System, None, "auth.signup");
    let (user, instance) = state.store.create_user(&Principal::System, new, ev).await?;
    let login = start_session(state, ip, user, ua).await?;
    Ok((login, instance))
}

/// Signs in with email, password and (when 2FA is on) a TOTP or recovery code. Unknown email
/// and wrong password answer the same, in the same time.
pub async fn login(
    state: &AppState,
    ip: ClientIp,
    email: &str,
    password: SecretString,
    totp_code: Option<&str>,
    ua: Option<String>,
) -> Result<NewLogin, ApiError> {
    let account = normalize_email(email);
    if account.is_empty() || account.len() > 254 {
        return Err(invalid_credentials());
    }
    if let Err(wait) = state.limits.login_check(&account, ip.0) {
        audit::record_failure(state, ip, AuditChain::System, None, "auth.login.rate_limited", String::new()).await;
        return Err(ApiError::rate_limited(wait));
    }
    let record = state.store.login_lookup(&Principal::System, &account).await?;
    let verdict = state.passwords.verify(password.clone(), record.as_ref().map(|r| r.password_hash.clone())).await?;
    let (record, rehash) = match (record, verdict) {
        (Some(record), PasswordVerdict::Match { rehash }) => (record, rehash),
        (record, _) => {
            state.limits.login_failed(&account, ip.0);
            let (chain, target) = match &record {
                Some(r) => (AuditChain::Account(r.user.id), format!("user:{}", r.user.id)),
                None => (AuditChain::System, "unknown account".to_owned()),
            };
            audit::record_failure(state, ip, chain, None, "auth.login", target).await;
            return Err(invalid_credentials());
        }
    };
    // An anomaly lock pauses sign-in from addresses that never signed in to the account; the
    // owner's known addresses still work, so nobody can lock them out from elsewhere.
    if let Some(until) = record.locked_until.filter(|u| *u > state.now()) {
        if !state.limits.knows(&account, ip.0) {
            let chain = AuditChain::Account(record.user.id);
            audit::record_failure(state, ip, chain, None, "auth.login.locked", format!("user:{}", record.user.id))
                .await;
            let mut err =
                ApiError::forbidden("account_locked", "sign-in to this account is paused for a while; try again later");
            err.set_retry_after(u64::try_from((until - state.now()) / 1000).unwrap_or(1));
            return Err(err);
        }
    }
    if record.user.disabled {
        audit::record_failure(
            state,
            ip,
            AuditChain::Account(record.user.id),
            Some(record.user.id),
            "auth.login.disabled",
            String::new(),
        )
        .await;
        return Err(ApiError::forbidden("account_disabled", "this account is disabled"));
    }
    match crate::totp::check_second_factor(state, record.user.id, totp_code).await? {
        SecondFactor::NotEnabled | SecondFactor::Passed => {}
        SecondFactor::Missing => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "totp_required",
                "enter the code from your authenticator app",
            ));
        }
        SecondFactor::Wrong | SecondFactor::Replayed => {
            state.limits.login_failed(&account, ip.0);
            let chain = AuditChain::Account(record.user.id);
            audit::record_failure(state, ip, chain, None, "auth.login.totp", format!("user:{}", record.user.id)).await;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_totp",
                "that code is not valid or was already used",
            ));
        }
    }
    state.limits.login_succeeded(&account, ip.0);
    if rehash {
        let fresh = state.passwords.hash(password).await?;
        state.store.set_password_hash(&Principal::System, record.user.id, &fresh, None, None).await?;
    }
    start_session(state, ip, record.user, ua).await
}

/// Ends one session of the caller.
pub async fn logout(state: &AppState, ip: ClientIp, user: &User, session: &Session) -> Result<(), ApiError> {
    let ev = audit::success(state, ip, AuditChain::Account(user.id), Some(user.id), "auth.logout");
    state.store.revoke_session(&Principal::User { user: user.id }, session.id, ev).await?;
    Ok(())
}

/// Changes the caller's password after checking the current one; ends their other sessions.
pub async fn change_password(
    state: &AppState,
    ip: ClientIp,
    user: &User,
    session: &Session,
    current: SecretString,
    new: SecretString,
) -> Result<(), ApiError> {
    let record = state.store.login_lookup(&Principal::System, &user.email).await?.ok_or_else(ApiError::not_found)?;
    let verdict = state.passwords.verify(current, Some(record.password_hash)).await?;
    if verdict == PasswordVerdict::Mismatch {
        audit::record_failure(
            state,
            ip,
            AuditChain::Account(user.id),
            Some(user.id),
            "auth.password.change",
            String::new(),
        )
        .await;
        return Err(ApiError::forbidden("invalid_credentials", "the current password is wrong"));
    }
    validate_password(&new, &user.email)?;
    let hash = state.passwords.hash(new).await?;
    let ev = audit::success(state, ip, AuditChain::Account(user.id), Some(user.id), "auth.password.change");
    state
        .store
        .set_password_hash(&Principal::User { user: user.id }, user.id, &hash, Some(Some(session.id)), Some(ev))
        .await?;
    Ok(())
}

/// Issues an invite code: stored only as a keyed hash, recorded in the audit log and the admin
/// log (`actor` is the platform admin, or none for the operator's command line). Returns the
/// code, to show once.
pub async fn issue_invite(
    store: &dyn clawden_store::Store,
    keyring: &clawden_store::Keyring,
    actor: Option<(clawden_core::UserId, String)>,
    uses: i64,
    expires_at: i64,
    now: i64,
) -> Result<PlainToken, clawden_store::StoreError> {
    let code = PlainToken::generate(INVITE_PREFIX);
    let new = clawden_store::NewInvite {
        code_hash: keyring.hasher().hash(INVITE_DOMAIN, code.expose()),
        uses,
        expires_at: Some(expires_at),
        now,
    };
    let (actor_id, ip) = match &actor {
        Some((id, ip)) => (Some(*id), Some(ip.clone())),
        None => (None, None),
    };
    let event = clawden_store::AuditEvent {
        chain: AuditChain::System,
        actor: actor_id,
        instance: None,
        action: "admin.invite.create".into(),
        target: String::new(),
        outcome: clawden_core::Outcome::Success,
        ip: ip.clone(),
        at: now,
    };
    store.create_invite(&Principal::System, new, event).await?;
    let entry = clawden_store::AdminLogEntry {
        at: now,
        actor: actor_id.map(|a| a.to_string()),
        action: "admin.invite.create".into(),
        target: format!("uses:{uses}"),
        outcome: "success".into(),
        ip,
    };
    store.admin_log(&Principal::System, entry).await?;
    Ok(code)
}
