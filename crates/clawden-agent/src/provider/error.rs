//! Provider errors: messages safe to show users, never the key.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// Why a provider call failed.
///
/// Every `Display` text is safe to show the user; strings carried in variants were cleaned by
/// clawden (the key and any piece of it removed, control characters dropped, length capped),
/// so `Debug` is safe to log too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The provider needs a key and none was given.
    #[error("no API key is configured for the AI provider")]
    MissingKey,
    /// The key cannot be put in an HTTP header (it contains control characters).
    #[error("the API key is not valid: it contains characters that cannot be sent")]
    MalformedKey,
    /// HTTP 401: the provider did not accept the key.
    #[error("the AI provider rejected the API key")]
    Unauthorized,
    /// HTTP 403: the key is valid but may not do this.
    #[error("the AI provider denied access with this API key")]
    Forbidden,
    /// HTTP 404: unknown model or endpoint.
    #[error("the AI provider does not know this model or endpoint")]
    NotFound,
    /// HTTP 429, still refused after the allowed retries.
    #[error("rate limited by the provider")]
    RateLimited {
        /// How long the provider asked to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// HTTP 400/413/422: the provider refused the request itself.
    #[error("the AI provider rejected the request: {message}")]
    BadRequest {
        /// The provider's explanation, cleaned.
        message: String,
    },
    /// A server-side failure of the provider (HTTP 5xx, `overloaded`, a mid-stream error).
    #[error("provider error: {message}")]
    Upstream {
        /// The HTTP status, when the failure came as one.
        status: Option<u16>,
        /// A short description (`overloaded`, `internal error`, …), cleaned.
        message: String,
    },
    /// The provider could not be reached (DNS, connection refused, TLS handshake).
    #[error("could not reach the AI provider")]
    Unreachable,
    /// No answer within the connect, overall or idle timeout.
    #[error("the AI provider did not answer in time")]
    Timeout,
    /// The provider sent something that does not follow its own protocol.
    #[error("the AI provider sent a malformed reply: {detail}")]
    Protocol {
        /// What was wrong (written by clawden, not copied from the reply).
        detail: String,
    },
    /// The reply stream ended before the reply was complete.
    #[error("the AI provider's reply ended unexpectedly")]
    Truncated,
    /// An operator setting is invalid (base URL, timeouts). Not a user error.
    #[error("invalid AI provider setting: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}

impl ProviderError {
    /// A stable snake_case code for the API's JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::MissingKey => "provider_key_missing",
            ProviderError::MalformedKey => "provider_key_malformed",
            ProviderError::Unauthorized => "provider_unauthorized",
            ProviderError::Forbidden => "provider_forbidden",
            ProviderError::NotFound => "provider_not_found",
            ProviderError::RateLimited { .. } => "provider_rate_limited",
            ProviderError::BadRequest { .. } => "provider_bad_request",
            ProviderError::Upstream { .. } => "provider_error",
            ProviderError::Unreachable => "provider_unreachable",
            ProviderError::Timeout => "provider_timeout",
            ProviderError::Protocol { .. } => "provider_protocol_error",
            ProviderError::Truncated => "provider_truncated",
            ProviderError::Config { .. } => "provider_misconfigured",
        }
    }

    /// Whether the same call could succeed if tried again later (rate limits, provider
    /// outages, timeouts) — as opposed to a key or request the provider will keep refusing.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. }
                | ProviderError::Upstream { .. }
                | ProviderError::Unreachable
                | ProviderError::Timeout
                | ProviderError::Truncated
        )
    }
}

/// The most characters of a provider's own message kept in an error.
const MAX_MESSAGE_CHARS: usize = 300;

/// Shortest piece of the key that counts as leaking it.
const KEY_FRAGMENT_CHARS: usize = 8;

/// Cleans text that came from a provider before it goes into an error: drops control
/// characters (no log injection), caps the length, and replaces every word containing the key
/// or any run of [`KEY_FRAGMENT_CHARS`] characters of it with `[redacted]` — providers
/// sometimes echo a masked form of a bad key back.
pub(crate) fn scrub(text: &str, key: Option<&SecretString>) -> String {
    let capped: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_MESSAGE_CHARS).collect();
    let Some(key) = key else {
        return capped.trim().to_owned();
    };
    let key: Vec<char> = key.expose_secret().chars().collect();
    if key.is_empty() {
        return capped.trim().to_owned();
    }
    let fragment = KEY_FRAGMENT_CHARS.min(key.len());
    let leaks = |word: &str| {
        let chars: Vec<char> = word.chars().collect();
        chars.len() >= fragment && chars.windows(fragment).any(|w| key.windows(fragment).any(|k| k == w))
    };
    let mut out = String::with_capacity(capped.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if leaks(word) {
            out.push_str("[redacted]");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in capped.chars() {
        if c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ',' | ';' | '(' | ')') {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_the_key_and_pieces_of_it() {
        let key = SecretString::from("sk-live-ABCDEFGHIJKLMNOP");
        let text = "Incorrect API key provided: sk-live-ABCDEFGHIJKLMNOP. Also sk-li****KLMNOP and \"EFGHIJKL\" here";
        let out = scrub(text, Some(&key));
        assert!(!out.contains("ABCDEFGH"), "{out}");
        assert!(!out.contains("EFGHIJKL"), "{out}");
        assert!(out.contains("Incorrect API key provided:"), "{out}");
        assert!(out.contains("here"));
    }

    #[test]
    fn scrub_drops_control_characters_and_caps_length() {
        let long = format!("line1\nline2\u{1b}[31m{}", "x".repeat(1000));
        let out = scrub(&long, None);
        assert!(!out.contains('\n'));
        assert!(!out.contains('\u{1b}'));
        assert!(out.chars().count() <= MAX_MESSAGE_CHARS);
    }
}
