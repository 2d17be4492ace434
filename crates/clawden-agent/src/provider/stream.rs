//! Turns an HTTP response carrying server-sent events into an [`EventStream`], with an idle
//! timeout between chunks; each protocol supplies a [`Decoder`] for its events.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use secrecy::SecretString;

use super::error::ProviderError;
use super::http::{map_transport_error, retry_delay, send_once, HttpSettings, Refused};
use super::sse::{SseEvent, SseParser};
use super::{EventStream, StreamEvent};

/// A protocol's reading of SSE events.
pub(crate) trait Decoder: Send + 'static {
    /// Reads one event; returns the reply events it completes.
    fn on_event(&mut self, event: SseEvent) -> Result<Vec<StreamEvent>, ProviderError>;

    /// Whether the reply is complete (everything after is ignored).
    fn is_done(&self) -> bool;

    /// The body ended before [`Decoder::is_done`]; returns closing events or the error.
    fn on_end(&mut self) -> Result<Vec<StreamEvent>, ProviderError>;
}

struct State<D> {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    parser: SseParser,
    decoder: D,
    idle: Duration,
    pending: VecDeque<StreamEvent>,
    error: Option<ProviderError>,
    finished: bool,
}

impl<D: Decoder> State<D> {
    /// Reads one more chunk (or the end of the body) into `pending`.
    async fn fill(&mut self) -> Result<(), ProviderError> {
        if self.decoder.is_done() {
            self.finished = true;
            return Ok(());
        }
        match tokio::time::timeout(self.idle, self.body.next()).await {
            Err(_) => Err(ProviderError::Timeout),
            Ok(Some(Err(err))) => Err(map_transport_error(&err)),
            Ok(Some(Ok(chunk))) => {
                let events = self.parser.push(&chunk).map_err(protocol)?;
                self.decode(events)
            }
            Ok(None) => {
                self.finished = true;
                let last = self.parser.finish().map_err(protocol)?;
                self.decode(last)?;
                if !self.decoder.is_done() {
                    let closing = self.decoder.on_end()?;
                    self.pending.extend(closing);
                }
                Ok(())
            }
        }
    }

    fn decode(&mut self, events: impl IntoIterator<Item = SseEvent>) -> Result<(), ProviderError> {
        for event in events {
            if self.decoder.is_done() {
                break;
            }
            let out = self.decoder.on_event(event)?;
            self.pending.extend(out);
        }
        Ok(())
    }
}

fn protocol(err: super::sse::SseError) -> ProviderError {
    ProviderError::Protocol { detail: err.to_string() }
}

/// The reply stream of `response`, decoded by `decoder`.
///
/// Events decoded before an error are delivered first; the error ends the stream.
pub(crate) fn sse_event_stream<D: Decoder>(response: reqwest::Response, decoder: D, idle: Duration) -> EventStream {
    let state = State {
        body: response.bytes_stream().boxed(),
        parser: SseParser::default(),
        decoder,
        idle,
        pending: VecDeque::new(),
        error: None,
        finished: false,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(event) = st.pending.pop_front() {
                return Some((Ok(event), st));
            }
            if let Some(error) = st.error.take() {
                return Some((Err(error), st));
            }
            if st.finished {
                return None;
            }
            if let Err(error) = st.fill().await {
                st.finished = true;
                st.error = Some(error);
            }
        }
    }))
}

/// Sends a streaming call and waits for its first reply event, retrying as `settings.retry`
/// allows while nothing has been delivered: on a retryable HTTP refusal (408, 409, 429, 5xx),
/// a failed connection, or a provider error reported in the stream before its first event
/// (Anthropic may answer 200 and then an `overloaded_error` event). Once the first event is
/// in hand, the stream is returned and no later failure is retried.
pub(crate) async fn open_stream<D: Decoder>(
    provider: &'static str,
    settings: &HttpSettings,
    key: Option<&SecretString>,
    make: impl Fn() -> reqwest::RequestBuilder,
    new_decoder: impl Fn() -> D,
) -> Result<EventStream, ProviderError> {
    let mut attempt: u32 = 0;
    loop {
        let refused = match send_once(provider, settings, key, &make).await {
            Ok(response) => {
                let mut events = sse_event_stream(response, new_decoder(), settings.idle_timeout);
                match events.next().await {
                    Some(Ok(first)) => {
                        let first = futures::stream::once(async move { Ok(first) });
                        return Ok(Box::pin(first.chain(events)));
                    }
                    Some(Err(error)) => Refused {
                        retryable: matches!(
                            error,
                            ProviderError::Upstream { .. }
                                | ProviderError::RateLimited { .. }
                                | ProviderError::Truncated
                        ),
                        error,
                        retry_after: None,
                    },
                    // A decoded stream always ends with `Finish` or an error; be total anyway.
                    None => Refused { error: ProviderError::Truncated, retryable: true, retry_after: None },
                }
            }
            Err(refused) => refused,
        };
        let Some(delay) = retry_delay(&settings.retry, attempt, &refused) else {
            return Err(refused.error);
        };
        tracing::warn!(
            provider,
            error.code = refused.error.code(),
            attempt = attempt + 1,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "provider call failed before replying; retrying"
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}
