//! Gateway tokens: rotated now by the owner, or on a schedule by the server, with an overlap
//! window during which the previous token still works. New tokens from scheduled rotation are
//! announced to the owner's live connections through [`TokenNotices`].

use crate::audit;
use crate::auth::{GATEWAY_DOMAIN, GATEWAY_PREFIX};
use crate::client_ip::ClientIp;
use crate::error::ApiError;
use crate::state::AppState;
use clawden_core::{InstanceId, Principal};
use clawden_crypto::PlainToken;
use clawden_store::AuditChain;
use std::time::Duration;
use tokio::sync::broadcast;

/// A new gateway token made by scheduled rotation, for the instance owner's WebSocket.
#[derive(Debug, Clone)]
pub struct TokenNotice {
    /// The instance.
    pub instance: InstanceId,
    /// The new token (also valid: the previous one, until `overlap_until`).
    pub token: std::sync::Arc<PlainToken>,
    /// When the previous token stops working.
    pub overlap_until: i64,
}

/// Where scheduled rotations announce new tokens.
#[derive(Debug, Clone)]
pub struct TokenNotices(pub broadcast::Sender<TokenNotice>);

impl Default for TokenNotices {
    fn default() -> Self {
        Self(broadcast::channel(256).0)
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Rotates an instance's token on behalf of `by`; returns the new token.
pub async fn rotate(
    state: &AppState,
    by: &Principal,
    instance: InstanceId,
    ip: Option<ClientIp>,
) -> Result<(PlainToken, i64), ApiError> {
    let token = PlainToken::generate(GATEWAY_PREFIX);
    let now = state.now();
    let overlap_until = now.saturating_add(ms(state.settings.gateway.overlap));
    let hash = state.keyring.hasher().hash(GATEWAY_DOMAIN, token.expose());
    let mut ev = audit::event(
        state,
        ip.unwrap_or(ClientIp(std::net::IpAddr::from([127, 0, 0, 1]))),
        AuditChain::Instance(instance),
        by.user_id(),
        Some(instance),
        "gateway_token.rotate",
        format!("instance:{instance}"),
        clawden_core::Outcome::Success,
    );
    if ip.is_none() {
        ev.ip = None;
    }
    state.store.rotate_gateway_token(by, instance, &hash, now, overlap_until, ev).await?;
    Ok((token, overlap_until))
}

/// Rotates every token older than the rotation interval; returns how many.
pub async fn rotate_due(state: &AppState) -> Result<usize, ApiError> {
    let cutoff = state.now().saturating_sub(ms(state.settings.gateway.rotate_every));
    let mut done = 0;
    loop {
        let due = state.store.gateway_tokens_due(&Principal::System, cutoff, 200).await?;
        if due.is_empty() {
            return Ok(done);
        }
        for instance in due {
            let (token, overlap_until) = rotate(state, &Principal::System, instance, None).await?;
            // Nobody listening is fine: the owner can rotate by hand to get a token.
            let _ = state.notices.0.send(TokenNotice { instance, token: std::sync::Arc::new(token), overlap_until });
            done += 1;
        }
    }
}
