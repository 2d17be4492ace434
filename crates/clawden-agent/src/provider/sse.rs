//! An incremental parser for server-sent events (the `text/event-stream` format).
//!
//! Both remote providers stream over SSE. Network chunks do not respect event boundaries, so
//! the parser buffers bytes until a whole line has arrived and only then decodes it as UTF-8:
//! a multi-byte character split across two chunks is never seen half. It follows the WHATWG
//! rules that matter here: lines end in `\n`, `\r\n` or `\r` (a `\r` at the end of one chunk
//! followed by `\n` at the start of the next is one line end), `data:` lines of one event are
//! joined with `\n`, one space after the colon is dropped, lines starting with `:` are
//! comments, a blank line dispatches the event, and an event without data is not dispatched.
//! A leading byte-order mark is skipped. Lines longer than a bound are an error, so a broken or
//! hostile server cannot make the buffer grow without end.
//!
//! Written here rather than taken from a crate because it is small, has no dependencies, and
//! its bound on line length matters to us.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field; `None` means the default type (`message`).
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The `id:` field, if any.
    pub id: Option<String>,
}

/// The stream broke the format's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line or an event grew past the parser's limit.
    #[error("event stream line or event longer than {limit} bytes")]
    TooLong {
        /// The limit in bytes.
        limit: usize,
    },
}

/// The default bound on one line and on one event's data: 4 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// Incremental SSE parser: feed it chunks with [`SseParser::push`], then call
/// [`SseParser::finish`] at the end of the body.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended with `\r`; a `\n` starting the next chunk belongs to it.
    after_cr: bool,
    /// Still at the very start of the stream (a BOM may follow).
    at_start: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
    max_bytes: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser that refuses lines and events longer than `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            event: None,
            data: String::new(),
            has_data: false,
            id: None,
            max_bytes,
        }
    }

    /// Feeds one chunk of the body; returns the events it completed, in order.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let events = Vec::new();
        if self.at_start {
            // The BOM may itself arrive split; only decide once three bytes are known.
            let mut probe = std::mem::take(&mut self.line);
            probe.extend_from_slice(chunk);
            if probe.len() < 3 && b"\xEF\xBB\xBF".starts_with(&probe) {
                self.line = probe;
                return Ok(events);
            }
            self.at_start = false;
            let start = if probe.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
            let owned = probe.split_off(start);
            return self.push_bytes(&owned, events);
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        self.push_bytes(chunk, events)
    }

    fn push_bytes(&mut self, mut chunk: &[u8], mut events: Vec<SseEvent>) -> Result<Vec<SseEvent>, SseError> {
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&chunk[..pos]);
            self.check_len(self.line.len())?;
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.process_line(&line)? {
                events.push(event);
            }
            let was_cr = chunk[pos] == b'\r';
            chunk = &chunk[pos + 1..];
            if was_cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.line.extend_from_slice(chunk);
        self.check_len(self.line.len())?;
        Ok(events)
    }

    /// Ends the stream. A final event not followed by a blank line is dispatched anyway:
    /// servers that close right after the last `data:` line still get their last event read.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, SseError> {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() {
            if let Some(event) = self.process_line(&line)? {
                return Ok(Some(event));
            }
        }
        Ok(self.dispatch())
    }

    fn check_len(&self, len: usize) -> Result<(), SseError> {
        if len > self.max_bytes {
            Err(SseError::TooLong { limit: self.max_bytes })
        } else {
            Ok(())
        }
    }

    fn process_line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        // Invalid UTF-8 is replaced, as the SSE spec requires; only whole lines are decoded.
        let line = String::from_utf8_lossy(line);
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                self.check_len(self.data.len())?;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            // `retry` and unknown fields do not matter to a one-shot request.
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(SseEvent { event, data: std::mem::take(&mut self.data), id: self.id.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(body: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        for chunk in body.chunks(piece) {
            events.extend(parser.push(chunk).expect("within limits"));
        }
        events.extend(parser.finish().expect("within limits"));
        events
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent { event: event.map(str::to_owned), data: data.to_owned(), id: None }
    }

    #[test]
    fn parses_named_events_and_default_events() {
        let body = b"event: ping\ndata: {}\n\ndata: hello\n\n";
        assert_eq!(parse_in_pieces(body, 1024), vec![ev(Some("ping"), "{}"), ev(None, "hello")]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let body =
            "event: a\r\ndata: h\u{e9}llo \u{1f99e}\r\n\r\n: comment\r\ndata: one\rdata: two\r\rdata:x\n\n".as_bytes();
        let expected = vec![ev(Some("a"), "h\u{e9}llo \u{1f99e}"), ev(None, "one\ntwo"), ev(None, "x")];
        for piece in 1..body.len() {
            assert_eq!(parse_in_pieces(body, piece), expected, "piece size {piece}");
        }
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        let body = b"data: first\ndata:second\ndata:  third\n\n";
        assert_eq!(parse_in_pieces(body, 3), vec![ev(None, "first\nsecond\n third")]);
    }

    #[test]
    fn comments_and_events_without_data_are_not_dispatched() {
        let body = b": keep-alive\n\nevent: lonely\n\nid: 7\ndata: x\n\n";
        let events = parse_in_pieces(body, 2);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, None, "the event type resets on blank line");
        assert_eq!(events[0].id.as_deref(), Some("7"));
    }

    #[test]
    fn byte_order_mark_is_skipped_even_when_split() {
        let body = b"\xEF\xBB\xBFdata: a\n\n";
        for piece in 1..4 {
            assert_eq!(parse_in_pieces(body, piece), vec![ev(None, "a")]);
        }
    }

    #[test]
    fn last_event_without_blank_line_is_dispatched_at_finish() {
        assert_eq!(parse_in_pieces(b"data: [DONE]", 5), vec![ev(None, "[DONE]")]);
    }

    #[test]
    fn field_without_colon_counts_as_empty_value() {
        assert_eq!(parse_in_pieces(b"data\n\n", 1), vec![ev(None, "")]);
    }

    #[test]
    fn overlong_line_is_an_error() {
        let mut parser = SseParser::new(16);
        let result = parser.push(&[b'a'; 32]);
        assert_eq!(result, Err(SseError::TooLong { limit: 16 }));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let events = parse_in_pieces(b"data: a\xFFb\n\n", 1);
        assert_eq!(events, vec![ev(None, "a\u{fffd}b")]);
    }
}
