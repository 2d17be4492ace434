//! What the remote providers share: base URL rules, the HTTP client, retries, error mapping.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv6Addr;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use url::{Host, Url};

use super::error::{scrub, ProviderError};

/// A provider's base URL, checked: an operator setting, never taken from users.
///
/// Rules: `https` for any host; plain `http` only when the host is `localhost` or a loopback
/// address (`127.0.0.0/8`, `::1`), for local servers such as Ollama and for test fakes. No
/// user name or password in the URL (a credential in a setting that gets printed), no query
/// and no fragment. A path prefix is kept (`https://gateway.example/openai`); a trailing
/// `/v1` is tolerated, since OpenAI SDK settings are usually written that way.
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl {
    url: Url,
    loopback: bool,
}

impl BaseUrl {
    /// Parses and checks a base URL.
    pub fn parse(text: &str) -> Result<Self, ProviderError> {
        let bad = |reason: &str| ProviderError::Config { reason: format!("base URL {reason}") };
        let url = Url::parse(text.trim()).map_err(|_| bad("is not a valid URL"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not contain a user name or password"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a query or fragment"));
        }
        let loopback = match url.host() {
            Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => is_loopback_v6(ip),
            None => return Err(bad("has no host")),
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => return Err(bad("must use https unless the host is localhost or a loopback address")),
            _ => return Err(bad("must use https (or http to a loopback address)")),
        }
        Ok(Self { url, loopback })
    }

    /// Whether the host is `localhost` or a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    /// The URL as configured.
    pub fn as_url(&self) -> &Url {
        &self.url
    }

    /// `{base}/v1/{path}`, without doubling a `/v1` the base already ends with.
    pub(crate) fn endpoint(&self, path: &str) -> Url {
        let mut url = self.url.clone();
        let prefix = url.path().trim_end_matches('/').to_owned();
        let prefix = prefix.strip_suffix("/v1").unwrap_or(&prefix);
        url.set_path(&format!("{prefix}/v1/{path}"));
        url
    }
}

fn is_loopback_v6(ip: Ipv6Addr) -> bool {
    ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BaseUrl").field(&self.url.as_str()).finish()
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

impl TryFrom<String> for BaseUrl {
    type Error = ProviderError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl<'de> serde::Deserialize<'de> for BaseUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for BaseUrl {
    type Err = ProviderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Timeouts and retries of a remote provider client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Time allowed to open the TCP and TLS connection. Default 10 s.
    pub connect_timeout: Duration,
    /// Time allowed for one attempt of a call, from sending to the last byte of the stream.
    /// Default 10 min (long replies stream for minutes).
    pub request_timeout: Duration,
    /// Longest silence allowed between two chunks of a streamed reply (and before the
    /// response headers). Default 90 s; Anthropic sends `ping` events well within it.
    pub idle_timeout: Duration,
    /// When and how often to retry.
    pub retry: RetrySettings,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(90),
            retry: RetrySettings::default(),
        }
    }
}

/// Retries of calls the provider refused with 408, 409, 429 or 5xx, that could not connect,
/// or whose stream reported a provider error before its first event. A call is retried only
/// while nothing of its reply has been delivered to the caller; timeouts are not retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    /// Retries after the first attempt. Default 2; 0 disables retries.
    pub max_retries: u32,
    /// Wait before the first retry when the provider gives no `Retry-After`; doubled each
    /// time (with up to 25 % random reduction, so many clients do not retry in step).
    /// Default 500 ms.
    pub initial_backoff: Duration,
    /// The longest computed backoff. Default 8 s.
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; a provider asking for more is not retried and the
    /// caller gets [`ProviderError::RateLimited`] with the requested wait. Default 30 s.
    pub max_retry_after: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetrySettings {
    /// The backoff before retry number `attempt` (0-based), without `Retry-After`.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(16));
        let full = self.initial_backoff.saturating_mul(factor).min(self.max_backoff);
        // Up to 25 % shorter, chosen at random (RandomState is randomly seeded per value).
        let random = RandomState::new().build_hasher().finish();
        let cut = full.mul_f64((random % 1000) as f64 / 4000.0);
        full.saturating_sub(cut)
    }
}

impl HttpSettings {
    fn validate(&self) -> Result<(), ProviderError> {
        for (name, value) in [
            ("connect timeout", self.connect_timeout),
            ("request timeout", self.request_timeout),
            ("idle timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(ProviderError::Config { reason: format!("{name} must be greater than zero") });
            }
        }
        Ok(())
    }
}

/// Builds the HTTP client of one provider: rustls with TLS 1.2 or newer, no redirects (a
/// redirect could point the key at another host), no proxy for a loopback base URL.
pub(crate) fn build_client(base: &BaseUrl, settings: &HttpSettings) -> Result<reqwest::Client, ProviderError> {
    settings.validate()?;
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("clawden/", env!("CARGO_PKG_VERSION")));
    if base.is_loopback() {
        builder = builder.no_proxy();
    } else {
        builder = builder.https_only(true);
    }
    builder.build().map_err(|_| ProviderError::Config { reason: "the HTTP client could not be built".to_owned() })
}

/// A header value holding the key, marked sensitive so `Debug` of the request hides it.
pub(crate) fn secret_header(prefix: &str, key: &SecretString) -> Result<HeaderValue, ProviderError> {
    let mut value =
        HeaderValue::from_str(&format!("{prefix}{}", key.expose_secret())).map_err(|_| ProviderError::MalformedKey)?;
    value.set_sensitive(true);
    Ok(value)
}

/// The most bytes of an error response body read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A call that did not produce a 2xx response, with what the retry logic needs to know.
#[derive(Debug)]
pub(crate) struct Refused {
    /// The clean error.
    pub(crate) error: ProviderError,
    /// Whether trying again could help.
    pub(crate) retryable: bool,
    /// The wait the provider asked for.
    pub(crate) retry_after: Option<Duration>,
}

/// Sends one request built by `make`; returns the response if it is a 2xx one.
pub(crate) async fn send_once(
    provider: &'static str,
    settings: &HttpSettings,
    key: Option<&SecretString>,
    make: &impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, Refused> {
    let response = match tokio::time::timeout(settings.idle_timeout, make().send()).await {
        Err(_) => return Err(Refused { error: ProviderError::Timeout, retryable: false, retry_after: None }),
        Ok(Err(err)) => {
            return Err(Refused {
                error: map_transport_error(&err),
                // Only a failed connection is surely not a call the provider started working on.
                retryable: err.is_connect() && !err.is_timeout(),
                retry_after: None,
            });
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = retry_after(response.headers());
    let retryable = should_retry(status, response.headers());
    let body = read_error_body(response, settings.idle_timeout).await;
    let error = error_from_status(status.as_u16(), &body, retry_after, key);
    tracing::info!(provider, http.status = status.as_u16(), error.code = error.code(), "provider call refused");
    Err(Refused { error, retryable, retry_after })
}

/// How long to wait before retry number `attempt` (0-based) of a refused call, or `None`
/// when it must not be retried (not retryable, retries spent, or the provider asked for a
/// longer wait than [`RetrySettings::max_retry_after`]).
pub(crate) fn retry_delay(retry: &RetrySettings, attempt: u32, refused: &Refused) -> Option<Duration> {
    if !refused.retryable || attempt >= retry.max_retries {
        return None;
    }
    match refused.retry_after {
        Some(asked) if asked > retry.max_retry_after => None,
        Some(asked) => Some(asked),
        None => Some(retry.backoff(attempt)),
    }
}

fn should_retry(status: StatusCode, headers: &HeaderMap) -> bool {
    // Both providers may say explicitly whether a retry can help.
    match headers.get("x-should-retry").and_then(|v| v.to_str().ok()) {
        Some("true") => return true,
        Some("false") => return false,
        _ => {}
    }
    matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error()
}

/// The wait a response asks for: `retry-after-ms` (OpenAI) or `retry-after` in seconds.
/// The HTTP-date form of `Retry-After` is not read; the normal backoff applies then.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    if let Some(ms) = number("retry-after-ms") {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    number("retry-after").and_then(|secs| Duration::try_from_secs_f64(secs).ok())
}

async fn read_error_body(mut response: reqwest::Response, idle: Duration) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match tokio::time::timeout(idle, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    body
}

/// Maps a failure of the HTTP transport (no response) to a clean error.
pub(crate) fn map_transport_error(err: &reqwest::Error) -> ProviderError {
    // The reqwest error (which names the URL) is logged at debug level only; the URL holds no
    // secret because base URLs with credentials are refused and keys travel in headers.
    tracing::debug!(error = %err, "provider transport error");
    if err.is_timeout() {
        ProviderError::Timeout
    } else if err.is_connect() || err.is_request() {
        ProviderError::Unreachable
    } else {
        ProviderError::Truncated
    }
}

/// The error type and message of a provider's JSON error body, in any of the shapes seen:
/// Anthropic `{"type":"error","error":{"type","message"}}`, OpenAI `{"error":{"message",
/// "type","code"}}`, Ollama/llama.cpp `{"error":"text"}`.
pub(crate) fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, None);
    };
    let error = value.get("error").unwrap_or(&value);
    if let Some(text) = error.as_str() {
        return (None, Some(text.to_owned()));
    }
    let field = |name: &str| error.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let kind = field("type").or_else(|| field("code"));
    (kind, field("message"))
}

/// Maps a non-2xx response to a clean error.
pub(crate) fn error_from_status(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
    key: Option<&SecretString>,
) -> ProviderError {
    let (kind, message) = parse_error_body(body);
    match status {
        401 => ProviderError::Unauthorized,
        403 => ProviderError::Forbidden,
        404 => ProviderError::NotFound,
        429 => ProviderError::RateLimited { retry_after },
        400 | 413 | 422 => ProviderError::BadRequest {
            message: message.map(|m| scrub(&m, key)).unwrap_or_else(|| format!("HTTP {status}")),
        },
        _ => ProviderError::Upstream {
            status: Some(status),
            message: upstream_message(Some(status), kind.as_deref(), message.as_deref(), key),
        },
    }
}

/// Maps an error reported inside a stream (Anthropic `error` event, OpenAI error chunk).
pub(crate) fn error_from_stream(
    kind: Option<&str>,
    message: Option<&str>,
    key: Option<&SecretString>,
) -> ProviderError {
    match kind {
        Some("authentication_error" | "invalid_api_key") => ProviderError::Unauthorized,
        Some("permission_error") => ProviderError::Forbidden,
        Some("not_found_error") => ProviderError::NotFound,
        Some("rate_limit_error" | "rate_limit_exceeded" | "insufficient_quota") => {
            ProviderError::RateLimited { retry_after: None }
        }
        Some("invalid_request_error" | "request_too_large") => ProviderError::BadRequest {
            message: message.map(|m| scrub(m, key)).unwrap_or_else(|| "invalid request".to_owned()),
        },
        _ => ProviderError::Upstream { status: None, message: upstream_message(None, kind, message, key) },
    }
}

fn upstream_message(
    status: Option<u16>,
    kind: Option<&str>,
    message: Option<&str>,
    key: Option<&SecretString>,
) -> String {
    match (status, kind) {
        (Some(529), _) | (_, Some("overloaded_error")) => return "overloaded".to_owned(),
        (_, Some("api_error" | "server_error")) => return "internal error".to_owned(),
        (_, Some("timeout_error")) => return "timed out".to_owned(),
        _ => {}
    }
    match (message.map(|m| scrub(m, key)), status) {
        (Some(m), _) if !m.is_empty() => m,
        (_, Some(status)) => format!("HTTP {status}"),
        _ => "unknown error".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_required_for_remote_hosts() {
        assert!(BaseUrl::parse("https://api.anthropic.com").is_ok());
        for bad in [
            "http://api.openai.com",
            "http://10.0.0.5:11434",
            "http://127.0.0.1.nip.io",
            "ftp://localhost",
            "http://user:pw@localhost:1",
            "https://api.example/?x=1",
            "not a url",
        ] {
            assert!(matches!(BaseUrl::parse(bad), Err(ProviderError::Config { .. })), "{bad} was accepted");
        }
    }

    #[test]
    fn plain_http_is_allowed_only_to_loopback() {
        for good in [
            "http://localhost:11434",
            "http://127.0.0.1:8000",
            "http://127.1.2.3",
            "http://[::1]:8080",
            "http://[::ffff:127.0.0.1]:1",
        ] {
            let url = BaseUrl::parse(good).expect(good);
            assert!(url.is_loopback(), "{good}");
        }
    }

    #[test]
    fn endpoint_does_not_double_v1() {
        let a = BaseUrl::parse("http://localhost:11434").expect("valid");
        let b = BaseUrl::parse("http://localhost:11434/v1/").expect("valid");
        let c = BaseUrl::parse("https://gw.example/openai").expect("valid");
        assert_eq!(a.endpoint("chat/completions").as_str(), "http://localhost:11434/v1/chat/completions");
        assert_eq!(b.endpoint("chat/completions").as_str(), "http://localhost:11434/v1/chat/completions");
        assert_eq!(c.endpoint("messages").as_str(), "https://gw.example/openai/v1/messages");
    }

    #[test]
    fn retry_after_reads_seconds_and_milliseconds() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(150)));
        let mut date = HeaderMap::new();
        date.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&date), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = RetrySettings {
            max_retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            max_retry_after: Duration::from_secs(1),
        };
        let first = r.backoff(0);
        assert!(first <= Duration::from_millis(100) && first >= Duration::from_millis(75));
        assert!(r.backoff(10) <= Duration::from_millis(300));
        assert!(r.backoff(10) >= Duration::from_millis(225));
    }

    #[test]
    fn status_codes_map_to_clean_errors() {
        let key = SecretString::from("sk-planted-secret-value-123456");
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-planted-secret-value-123456","type":"invalid_request_error"}}"#;
        assert_eq!(error_from_status(401, body, None, Some(&key)), ProviderError::Unauthorized);
        let bad = error_from_status(400, body, None, Some(&key));
        assert!(!bad.to_string().contains("planted-secret"), "{bad}");
        let overloaded = error_from_status(
            529,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            None,
            None,
        );
        assert_eq!(overloaded.to_string(), "provider error: overloaded");
        let ollama = error_from_status(500, br#"{"error":"model crashed"}"#, None, None);
        assert_eq!(ollama.to_string(), "provider error: model crashed");
    }
}
