//! Log output that cannot carry a secret. Secret values live in `secrecy` types whose `Debug`
//! prints a placeholder; on top of that every log line passes through [`RedactingWriter`],
//! which masks anything shaped like a clawden token, a bearer header or a provider key, so
//! even a secret that slipped into a plain string is not written.

use std::io::{self, Write};
use tracing_subscriber::fmt::MakeWriter;

/// Token prefixes clawden issues, and provider key prefixes.
const PREFIXES: &[&str] = &["cds_", "cdg_", "cdi_", "cd_", "sk-"];

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Masks token-shaped values in `line`.
pub fn redact(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &line[i..];
        let at_word_start = i == 0 || !is_token_char(bytes[i - 1]);
        if at_word_start {
            if let Some(prefix) = PREFIXES.iter().find(|p| rest.starts_with(**p)) {
                let body = rest[prefix.len()..].bytes().take_while(|b| is_token_char(*b)).count();
                if body >= 12 {
                    out.push_str(prefix);
                    out.push_str("[redacted]");
                    i += prefix.len() + body;
                    continue;
                }
            }
            for scheme in ["Bearer ", "bearer "] {
                if let Some(after) = rest.strip_prefix(scheme) {
                    let body = after.bytes().take_while(|b| !b.is_ascii_whitespace() && *b != b'"').count();
                    if body > 0 {
                        out.push_str(scheme);
                        out.push_str("[redacted]");
                        i += scheme.len() + body;
                    }
                }
            }
            if i >= bytes.len() {
                break;
            }
        }
        // Copy one whole UTF-8 character.
        let ch_len = rest.chars().next().map_or(1, char::len_utf8);
        out.push_str(&line[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// A writer that redacts each buffer before passing it on.
#[derive(Debug)]
pub struct RedactingWriter<W: Write>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Wraps any `MakeWriter` so everything it writes is redacted.
#[derive(Debug, Clone)]
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn masks_tokens_bearers_and_provider_keys() {
        let line = "auth=Bearer cd_abcdefghijklmnopqrstuv cookie=cds_aaaaaaaaaaaaaaaaaaaaaaaa key=sk-ant-api03-XYZxyz0123456789 ok";
        let out = redact(line);
        assert!(!out.contains("abcdefghijklmnop"), "{out}");
        assert!(!out.contains("aaaaaaaaaaaa"), "{out}");
        assert!(!out.contains("XYZxyz0123456789"), "{out}");
        assert!(out.ends_with(" ok"));
        assert_eq!(redact("plain text, cd_short, ünïcödé"), "plain text, cd_short, ünïcödé");
        assert_eq!(redact("gateway cdg_0123456789abcdef."), "gateway cdg_[redacted].");
    }
}
