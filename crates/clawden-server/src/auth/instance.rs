//! Privilege inside an instance, as types: [`Member`] → [`InstanceAdmin`] → [`InstanceOwner`].
//! Each reads the `{id}` path parameter and the caller's role from the store; a handler that
//! changes configuration cannot be written without asking for [`InstanceAdmin`]. Non-members
//! get 404, as if the instance did not exist.

use super::Authed;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use clawden_core::{InstanceId, Principal, Role};

/// A platform admin. For anyone else the route does not exist: 404, never 403.
#[derive(Debug, Clone)]
pub struct PlatformAdmin(pub super::Auth);

impl FromRequestParts<AppState> for PlatformAdmin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<super::Auth>() {
            Some(auth) if auth.user.platform_admin && auth.gateway_instance().is_none() => {
                Ok(PlatformAdmin(auth.clone()))
            }
            _ => {
                let _ = state;
                Err(ApiError::not_found())
            }
        }
    }
}
use std::collections::HashMap;

/// A member of the instance named in the path.
#[derive(Debug, Clone)]
pub struct Member {
    /// The caller.
    pub auth: super::Auth,
    /// The instance.
    pub instance: InstanceId,
    /// The caller's role there.
    pub role: Role,
}

impl Member {
    /// The principal for store calls inside the instance.
    pub fn principal(&self) -> Principal {
        Principal::Member { user: self.auth.user.id, instance: self.instance, role: self.role }
    }
}

/// An owner or admin of the instance named in the path.
#[derive(Debug, Clone)]
pub struct InstanceAdmin(pub Member);

/// An owner of the instance named in the path.
#[derive(Debug, Clone)]
pub struct InstanceOwner(pub Member);

impl FromRequestParts<AppState> for Member {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Authed(auth) = Authed::from_request_parts(parts, state).await?;
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found())?;
        let instance: InstanceId = params.get("id").and_then(|id| id.parse().ok()).ok_or_else(ApiError::not_found)?;
        if auth.gateway_instance().is_some_and(|only| only != instance) {
            return Err(ApiError::not_found());
        }
        let role = state.store.role_in(&auth.principal(), instance).await?.ok_or_else(ApiError::not_found)?;
        Ok(Member { auth, instance, role })
    }
}

impl FromRequestParts<AppState> for InstanceAdmin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let member = Member::from_request_parts(parts, state).await?;
        if crate::permissions::allows(member.role, crate::permissions::Action::Configure) {
            Ok(InstanceAdmin(member))
        } else {
            Err(ApiError::forbidden("forbidden", "only the instance's owners and admins may do this"))
        }
    }
}

impl FromRequestParts<AppState> for InstanceOwner {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let member = Member::from_request_parts(parts, state).await?;
        if crate::permissions::allows(member.role, crate::permissions::Action::Own) {
            Ok(InstanceOwner(member))
        } else {
            Err(ApiError::forbidden("forbidden", "only the instance's owners may do this"))
        }
    }
}
