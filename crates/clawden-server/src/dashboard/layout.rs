//! The page frame every dashboard page shares. No inline script or style: the CSP forbids it.

use maud::{html, Markup, DOCTYPE};

/// A full page with the navigation for a signed-in (or anonymous) visitor.
pub fn page(title: &str, signed_in: Option<(&str, &str)>, body: Markup) -> Markup {
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
                header {
                    div.bar {
                        a.brand href="/" { "clawden" }
                        nav aria-label="Main" {
                            @if let Some((email, csrf)) = signed_in {
                                a href="/chat" { "Chat" }
                                a href="/account" { "Account" }
                                a href="/account/security" { "Security" }
                                a href="/account/invitations" { "Invitations" }
                                a href="/account/audit" { "Audit log" }
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
                }
                main { (body) }
            }
        }
    }
}
