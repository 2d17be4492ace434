//! The Usage page: today against the tier's limits, and the last 30 days as a bar chart drawn
//! on the server (inline SVG, no script), with the same numbers in a table.

use super::layout::page;
use super::{render, session};
use crate::auth::MaybeAuthed;
use crate::error::ApiError;
use crate::routes::account::{history, UsageDay};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use clawden_core::Tier;
use maud::{html, Markup};

/// The usage page's route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/usage", get(usage_page))
}

const DAYS: u32 = 30;
const WIDTH: usize = 720;
const HEIGHT: usize = 200;
const TOP: usize = 16;
const BOTTOM: usize = 24;

async fn usage_page(State(state): State<AppState>, MaybeAuthed(auth): MaybeAuthed) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(Redirect::to("/login").into_response()) };
    let days = history(&state, &auth.principal(), DAYS).await?;
    let tier = state.store.user(&auth.principal(), auth.user.id).await?.map_or(Tier::Base, |u| u.tier);
    let quotas = &state.runtime.settings().quotas;
    let today = days.last().cloned();
    let total: i64 = days.iter().map(|d| d.messages).sum();
    let tokens: i64 = days.iter().map(|d| d.input_tokens + d.output_tokens).sum();
    let markup = page(
        "Usage",
        Some((&auth.user.email, &csrf)),
        html! {
            div.card {
                h1 { "Usage" }
                p.hint { "Counted per UTC day. Your tier is " span.badge { (tier) } "." }
                @if let Some(t) = &today {
                    div.stats #usage-today {
                        div.stat { span.value { (t.messages) " / " (quotas.messages(tier)) } span.label { "messages today" } }
                        div.stat { span.value { (t.tool_calls) " / " (quotas.tool_calls(tier)) } span.label { "tool calls today" } }
                        div.stat { span.value { (t.input_tokens + t.output_tokens) } span.label { "tokens today" } }
                        div.stat { span.value { (total) } span.label { "messages in 30 days" } }
                        div.stat { span.value { (tokens) } span.label { "tokens in 30 days" } }
                    }
                }
            }
            div.card {
                h2 #chart-title { "Messages, last 30 days" }
                (chart(&days))
                details {
                    summary { "The numbers" }
                    table #usage-history {
                        thead { tr { th scope="col" { "Day" } th scope="col" { "Messages" } th scope="col" { "Input tokens" } th scope="col" { "Output tokens" } th scope="col" { "Tool calls" } } }
                        tbody {
                            @for d in days.iter().rev() {
                                tr { td { (d.day) } td { (d.messages) } td { (d.input_tokens) } td { (d.output_tokens) } td { (d.tool_calls) } }
                            }
                        }
                    }
                }
                p.hint { "As JSON: " code { "GET /api/v1/usage/history?days=30" } }
            }
        },
    );
    Ok(render(StatusCode::OK, markup))
}

/// The bar chart: one bar per day, the tallest day filling the height, each with a tooltip.
fn chart(days: &[UsageDay]) -> Markup {
    let max = days.iter().map(|d| d.messages).max().unwrap_or(0).max(1);
    let n = days.len().max(1);
    let slot = WIDTH / n;
    let bar = (slot * 7 / 10).max(1);
    let plot = HEIGHT - TOP - BOTTOM;
    let label = format!(
        "Bar chart of messages per day over the last {} days; the most in one day was {}.",
        days.len(),
        days.iter().map(|d| d.messages).max().unwrap_or(0)
    );
    html! {
        svg.chart #usage-chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-labelledby="chart-title" aria-describedby="chart-desc" {
            desc #chart-desc { (label) }
            line.axis x1="0" y1=(HEIGHT - BOTTOM) x2=(WIDTH) y2=(HEIGHT - BOTTOM) {}
            text x="0" y="11" { "most in a day: " (max) }
            @for (i, d) in days.iter().enumerate() {
                @let h = if d.messages > 0 { ((d.messages.max(0) as usize) * plot / (max as usize)).max(2) } else { 0 };
                @let x = i * slot + (slot - bar) / 2;
                rect class={ "bar" @if i + 1 == days.len() { " today" } } x=(x) y=(HEIGHT - BOTTOM - h) width=(bar) height=(h) {
                    title { (d.day) ": " (d.messages) " messages" }
                }
                @if i + 1 == days.len() {
                    text x=(x + bar) y=(HEIGHT - 6) text-anchor="end" { "today" }
                } @else if i % 5 == 0 {
                    text x=(x) y=(HEIGHT - 6) { (d.day.get(5..).unwrap_or(&d.day)) }
                }
            }
        }
    }
}
