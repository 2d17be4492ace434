//! Markup of the security pages. Pure functions of what the handlers loaded; no I/O here.

use super::super::layout::page;
use super::super::when;
use clawden_core::InstanceId;
use clawden_store::{ApiKey, CredentialInfo, User};
use maud::{html, Markup, PreEscaped};

/// The part of the security page a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Totp,
    Password,
    Keys,
    Credentials,
    Gateway,
}

/// A message shown at the top of one section: an error (`role="alert"`) or a confirmation.
#[derive(Debug, Clone)]
pub struct Notice {
    pub section: Section,
    pub text: String,
    pub error: bool,
}

/// What a form sent, kept when it is shown again with an error (never secrets).
#[derive(Debug, Clone, Default)]
pub struct Prefill {
    pub key_name: String,
    pub credential_name: String,
}

/// Everything the security page shows.
pub struct SecurityPage<'a> {
    pub user: &'a User,
    pub csrf: &'a str,
    pub totp_enabled: bool,
    pub keys: &'a [ApiKey],
    pub credentials: &'a [CredentialInfo],
    /// Instances the user owns: (id, name).
    pub owned: &'a [(InstanceId, String)],
    /// How long a rotated-out gateway token keeps working, for the explanation.
    pub overlap_minutes: u64,
    pub notice: Option<Notice>,
    pub prefill: Prefill,
}

fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(csrf); }
}

fn notice_for(notice: Option<&Notice>, section: Section) -> Markup {
    html! {
        @if let Some(n) = notice.filter(|n| n.section == section) {
            @if n.error {
                p.error role="alert" { (n.text) }
            } @else {
                p.ok role="status" { (n.text) }
            }
        }
    }
}

/// The security settings page.
pub fn security(p: &SecurityPage<'_>) -> Markup {
    let notice = p.notice.as_ref();
    let csrf = p.csrf;
    page(
        "Security",
        Some((&p.user.email, csrf)),
        html! {
            h1 { "Security" }
            p.hint { "Sign-in protection, keys for programs, and the secrets your agents use." }

            section.card aria-labelledby="totp-h" {
                h2 #totp-h { "Two-factor sign-in" }
                (notice_for(notice, Section::Totp))
                @if p.totp_enabled {
                    p #totp-status { span.badge.on { "On" } " Signing in asks for a code from your authenticator app." }
                    form method="post" action="/account/security/totp/disable" {
                        (csrf_field(csrf))
                        div.fields {
                            div {
                                label for="disable_password" { "Password" }
                                input #disable_password type="password" name="password" autocomplete="current-password" required;
                            }
                            div {
                                label for="disable_code" { "Code or recovery code" }
                                input #disable_code type="text" name="code" autocomplete="one-time-code" required;
                            }
                        }
                        button.danger type="submit" { "Turn off two-factor sign-in" }
                    }
                } @else {
                    p #totp-status { span.badge.off { "Off" } " Add a code from an authenticator app to every sign-in." }
                    form method="post" action="/account/security/totp/setup" {
                        (csrf_field(csrf))
                        button type="submit" { "Set up two-factor sign-in" }
                    }
                }
            }

            section.card aria-labelledby="password-h" {
                h2 #password-h { "Password" }
                (notice_for(notice, Section::Password))
                form method="post" action="/account/security/password" {
                    (csrf_field(csrf))
                    div.fields {
                        div {
                            label for="current_password" { "Current password" }
                            input #current_password type="password" name="current_password" autocomplete="current-password" required;
                        }
                        div {
                            label for="new_password" { "New password" }
                            input #new_password type="password" name="new_password" autocomplete="new-password" minlength="12" required aria-describedby="new-pw-hint";
                        }
                    }
                    p #new-pw-hint .hint { "At least 12 characters. Your other devices are signed out." }
                    button type="submit" { "Change password" }
                }
            }

            section.card aria-labelledby="keys-h" {
                h2 #keys-h { "API keys" }
                (notice_for(notice, Section::Keys))
                p.hint { "For scripts and programs: send one as " code { "Authorization: Bearer cd_…" } ". A key is shown once, when it is made." }
                @if p.keys.is_empty() {
                    p.muted #no-keys { "No API keys yet." }
                } @else {
                    table #keys {
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Starts with" } th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { span.muted { "Action" } } } }
                        tbody {
                            @for k in p.keys {
                                tr {
                                    td { (k.name) }
                                    td { code { (k.prefix) "…" } }
                                    td { (when(k.created_at)) }
                                    td { @if let Some(t) = k.last_used_at { (when(t)) } @else { span.muted { "never" } } }
                                    td {
                                        form.inline method="post" action={ "/account/security/keys/" (k.id) "/delete" } {
                                            (csrf_field(csrf))
                                            button.secondary type="submit" aria-label={ "Delete API key " (k.name) } { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                form.row method="post" action="/account/security/keys" {
                    (csrf_field(csrf))
                    div.grow {
                        label for="key_name" { "New key name" }
                        input #key_name type="text" name="name" maxlength="100" required placeholder="e.g. laptop script" value=(p.prefill.key_name);
                    }
                    button type="submit" { "Create API key" }
                }
            }

            section.card aria-labelledby="cred-h" {
                h2 #cred-h { "Stored credentials" }
                (notice_for(notice, Section::Credentials))
                p.hint { "Your own provider keys (" code { "anthropic" } ", " code { "openai" } ") and channel tokens. Sealed with your account's key; only the last four characters are ever shown." }
                @if p.credentials.is_empty() {
                    p.muted #no-credentials { "No stored credentials." }
                } @else {
                    table #credentials {
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Ends with" } th scope="col" { "Updated" } th scope="col" { span.muted { "Action" } } } }
                        tbody {
                            @for c in p.credentials {
                                tr {
                                    td { code { (c.name) } }
                                    td.last4 { code { "…" (c.last4) } }
                                    td { (when(c.updated_at)) }
                                    td {
                                        form.inline method="post" action={ "/account/security/credentials/" (c.name) "/delete" } {
                                            (csrf_field(csrf))
                                            button.secondary type="submit" aria-label={ "Delete credential " (c.name) } { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                form method="post" action="/account/security/credentials" {
                    (csrf_field(csrf))
                    div.fields {
                        div {
                            label for="credential_name" { "Name" }
                            input #credential_name type="text" name="name" list="credential-names" maxlength="64" required
                                autocomplete="off" aria-describedby="cred-name-hint" value=(p.prefill.credential_name);
                            datalist #credential-names { option value="anthropic"; option value="openai"; }
                            p #cred-name-hint .hint { "a-z, 0-9, '-' and '_'. The same name replaces the stored value." }
                        }
                        div {
                            label for="credential_value" { "Value" }
                            input #credential_value type="password" name="value" autocomplete="off" required;
                        }
                    }
                    button type="submit" { "Save credential" }
                }
            }

            section.card aria-labelledby="gw-h" {
                h2 #gw-h { "Instance gateway tokens" }
                (notice_for(notice, Section::Gateway))
                p.hint {
                    "Each instance has a token for OpenAI-compatible clients (" code { "/v1/chat/completions" } "). "
                    "It is rotated on a schedule; after a rotation the previous token keeps working for "
                    (p.overlap_minutes) " minutes."
                }
                @if p.owned.is_empty() {
                    p.muted { "You own no instances." }
                } @else {
                    table #instances {
                        thead { tr { th scope="col" { "Instance" } th scope="col" { "Id" } th scope="col" { span.muted { "Action" } } } }
                        tbody {
                            @for (id, name) in p.owned {
                                tr {
                                    td { (name) }
                                    td { code { (id) } }
                                    td {
                                        form.inline method="post" action={ "/account/security/instances/" (id) "/gateway-token" } {
                                            (csrf_field(csrf))
                                            button.secondary type="submit" aria-label={ "Rotate gateway token of " (name) } { "Rotate gateway token" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Drops the XML prolog the QR renderer writes: inside HTML it would become a bogus comment.
fn inline_svg(svg: &str) -> &str {
    svg.find("<svg").map_or(svg, |at| &svg[at..])
}

/// Step two of 2FA setup: the QR code, the secret to type, and the first code.
pub fn totp_setup(user: &User, csrf: &str, secret_b32: &str, qr_svg: &str, error: Option<&str>) -> Markup {
    page(
        "Set up two-factor sign-in",
        Some((&user.email, csrf)),
        html! {
            div.card {
                h1 { "Set up two-factor sign-in" }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                ol.steps {
                    li { "Open an authenticator app (for example Aegis, Google Authenticator, 1Password)." }
                    li { "Scan this code, or type the key below." }
                    li { "Enter the 6-digit code the app shows." }
                }
                div.totp-setup {
                    figure.qr role="img" aria-label="QR code holding your two-factor secret" {
                        (PreEscaped(inline_svg(qr_svg)))
                    }
                    div {
                        p #totp-secret-label { strong { "Key to type instead" } }
                        p { code.secret #totp-secret aria-labelledby="totp-secret-label" { (grouped(secret_b32)) } }
                        p.hint { "Time-based, 6 digits, every 30 seconds." }
                        form method="post" action="/account/security/totp/enable" {
                            input type="hidden" name="csrf_token" value=(csrf);
                            label for="totp_code" { "Code from the app" }
                            input #totp_code type="text" name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="7" required;
                            button type="submit" { "Turn on" }
                        }
                    }
                }
                p { a href="/account/security" { "Cancel" } }
            }
        },
    )
}

/// Groups a base32 secret in fours, the way apps show it; spaces are ignored when typed.
fn grouped(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(" ")
}

/// The recovery codes, shown this once.
pub fn recovery_codes(user: &User, csrf: &str, codes: &[String]) -> Markup {
    page(
        "Recovery codes",
        Some((&user.email, csrf)),
        html! {
            div.card {
                h1 { "Two-factor sign-in is on" }
                p.ok role="status" { "From now on, signing in asks for a code from your authenticator app." }
                h2 { "Your recovery codes" }
                p { "Each code signs you in once if you lose your phone. Save them somewhere safe now: " strong { "they are not shown again." } }
                ol.codes #recovery-codes {
                    @for c in codes { li { code { (c) } } }
                }
                p { a.button href="/account/security" { "I saved them — back to security settings" } }
            }
        },
    )
}

/// A secret shown once (a new API key or gateway token).
pub fn shown_once(user: &User, csrf: &str, title: &str, lead: Markup, secret_id: &str, secret: &str) -> Markup {
    page(
        title,
        Some((&user.email, csrf)),
        html! {
            div.card {
                h1 { (title) }
                (lead)
                p #secret-label { strong { "Copy it now: it is not shown again." } }
                p { code.secret.wide #(secret_id) aria-labelledby="secret-label" { (secret) } }
                p { a.button href="/account/security" { "Done — back to security settings" } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_svg_prolog_is_dropped() {
        assert_eq!(super::inline_svg("<?xml version=\"1.0\"?><svg a=\"b\"/>"), "<svg a=\"b\"/>");
        assert_eq!(super::inline_svg("<svg/>"), "<svg/>");
    }

    #[test]
    fn secrets_are_grouped_in_fours() {
        assert_eq!(super::grouped("ABCDEFGHIJ"), "ABCD EFGH IJ");
    }
}
