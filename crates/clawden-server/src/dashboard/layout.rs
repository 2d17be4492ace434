//! The page frame every dashboard page shares. No inline script or style: the CSP forbids it.
//!
//! The navigation depends on where the visitor is and whether they are a platform admin. That
//! is known to the [`nav_context`] middleware, which runs every dashboard request inside a
//! task-local [`Nav`], so every page gets the same navigation without each handler passing it.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use maud::{html, Markup, DOCTYPE};

/// What the navigation needs to know about the request.
#[derive(Debug, Clone, Default)]
pub struct Nav {
    /// The path asked for (to mark the current item).
    path: String,
    /// Whether the visitor is a platform admin signed in with a session.
    platform_admin: bool,
}

tokio::task_local! {
    static NAV: Nav;
}

/// Middleware: records the request's path and the visitor's admin flag for [`page`].
pub async fn nav_context(req: Request, next: Next) -> Response {
    let platform_admin =
        req.extensions().get::<crate::auth::Auth>().is_some_and(|a| a.user.platform_admin && a.session().is_some());
    let nav = Nav { path: req.uri().path().to_owned(), platform_admin };
    NAV.scope(nav, next.run(req)).await
}

/// The sections of the main navigation: label, link, and the path prefixes they cover.
const MAIN: [(&str, &str, &[&str]); 4] = [
    ("Chat", "/chat", &["/chat"]),
    ("Agent", "/agent", &["/agent"]),
    ("Usage", "/usage", &["/usage"]),
    ("Settings", "/settings", &["/settings", "/account"]),
];

/// The pages under Settings.
const SETTINGS: [(&str, &str); 5] = [
    ("Account", "/account"),
    ("Security", "/account/security"),
    ("Data", "/settings/data"),
    ("Audit log", "/account/audit"),
    ("Invitations", "/account/invitations"),
];

fn covers(path: &str, prefix: &str) -> bool {
    path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// A full page with the navigation for a signed-in (or anonymous) visitor.
pub fn page(title: &str, signed_in: Option<(&str, &str)>, body: Markup) -> Markup {
    let nav = NAV.try_with(Nav::clone).unwrap_or_default();
    let in_settings = covers(&nav.path, "/settings") || covers(&nav.path, "/account");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · clawden" }
                link rel="stylesheet" href="/static/app.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    div.bar {
                        a.brand href="/" { "clawden" }
                        nav aria-label="Main" {
                            @if let Some((email, csrf)) = signed_in {
                                @for (label, href, prefixes) in MAIN {
                                    @let current = prefixes.iter().any(|p| covers(&nav.path, p));
                                    a href=(href) aria-current=[current.then_some("page")] { (label) }
                                }
                                @if nav.platform_admin {
                                    a href="/admin" aria-current=[covers(&nav.path, "/admin").then_some("page")] { "Admin" }
                                }
                                span.muted { " " (email) " " }
                                form.inline method="post" action="/logout" {
                                    input type="hidden" name="csrf_token" value=(csrf);
                                    button.secondary type="submit" { "Sign out" }
                                }
                            } @else {
                                a href="/login" { "Sign in" }
                                a href="/signup" { "Create account" }
                            }
                        }
                    }
                    @if signed_in.is_some() && in_settings {
                        nav.sub aria-label="Settings" {
                            @for (label, href) in SETTINGS {
                                // `/account` is also the prefix of its siblings: it is current only itself.
                                @let current = nav.path == href || (href != "/account" && covers(&nav.path, href));
                                a href=(href) aria-current=[current.then_some("page")] { (label) }
                            }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}
