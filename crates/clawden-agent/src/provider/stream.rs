//! Turns an HTTP response carrying server-sent events into an [`EventStream`], with an idle
//! timeout between chunks; each protocol supplies a [`Decoder`] for its events.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::error::ProviderError;
use super::http::map_transport_error;
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
    ProviderError::Protocol {
        detail: err.to_string(),
    }
}

/// The reply stream of `response`, decoded by `decoder`.
///
/// Events decoded before an error are delivered first; the error ends the stream.
pub(crate) fn sse_event_stream<D: Decoder>(
    response: reqwest::Response,
    decoder: D,
    idle: Duration,
) -> EventStream {
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
