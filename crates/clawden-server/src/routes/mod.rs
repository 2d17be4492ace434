//! The JSON API. Every route is registered through `OpenApiRouter`, so the OpenAPI document
//! the server serves is generated from the same code that routes requests.

pub mod account;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod conversations;
pub mod export;
pub mod gateway;
pub mod health;
pub mod import;
pub mod instances;
pub mod invites;
pub mod keys;
pub mod me;
pub mod members;
pub mod openai;
pub mod tools;
pub mod totp;
pub mod ws;

use crate::state::AppState;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "clawden", description = "Host OpenClaw-compatible AI agents for many people, safely."),
    components(schemas(crate::error::ErrorBody))
)]
struct ApiDoc;

/// The API routes and their OpenAPI document.
pub fn api() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(auth::signup))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::change_password))
        .routes(routes!(me::me))
        .routes(routes!(me::list_sessions))
        .routes(routes!(me::revoke_session))
        .routes(routes!(invites::redeem))
        .routes(routes!(keys::create_api_key, keys::list_api_keys))
        .routes(routes!(keys::delete_api_key))
        .routes(routes!(keys::list_credentials))
        .routes(routes!(keys::put_credential, keys::delete_credential))
        .routes(routes!(totp::setup))
        .routes(routes!(totp::enable))
        .routes(routes!(totp::disable))
        .routes(routes!(gateway::rotate))
        .routes(routes!(gateway::models))
        .routes(routes!(openai::completions))
        .routes(routes!(instances::list))
        .routes(routes!(instances::get_one, members::delete_instance))
        .routes(routes!(instances::list_files))
        .routes(routes!(instances::read_file, instances::write_file, instances::delete_file))
        .routes(routes!(instances::usage))
        .routes(routes!(conversations::list, conversations::create, conversations::delete_all))
        .routes(routes!(conversations::delete_one))
        .routes(routes!(conversations::messages, conversations::send))
        .routes(routes!(ws::ws))
        .routes(routes!(members::list, members::invite))
        .routes(routes!(members::set_role, members::remove))
        .routes(routes!(members::invitations))
        .routes(routes!(members::accept))
        .routes(routes!(members::decline))
        .routes(routes!(admin::users))
        .routes(routes!(admin::update_user))
        .routes(routes!(admin::create_invite))
        .routes(routes!(admin::admin_log))
        .routes(routes!(admin::config))
        .routes(routes!(audit::list))
        .routes(routes!(tools::get_policy, tools::put_policy))
        .routes(routes!(tools::list_approvals))
        .routes(routes!(tools::decide))
        .routes(routes!(tools::stop))
        .routes(routes!(me::notices))
        .routes(routes!(export::export))
        .routes(routes!(import::import))
        .routes(routes!(account::delete_account))
        .routes(routes!(account::usage_history))
        .split_for_parts()
}
