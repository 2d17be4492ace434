//! Streaming AES-256-GCM for large values (sealed sandbox workspaces) that must never sit whole
//! in memory.
//!
//! Format, version 1:
//!
//! ```text
//! header  = "CLAWDSTR" (8) | version = 1 (1) | chunk size, u32 BE (4) | salt (32)
//! chunks  = chunk_0 … chunk_n, each = AES-256-GCM(ciphertext of ≤ chunk size bytes | tag 16)
//! ```
//!
//! * Each stream derives its own key, `HMAC-SHA256(key, "clawden stream v1" | salt)` with a fresh
//!   random salt, so nonces never repeat across streams sealed under the same data key.
//! * The nonce of chunk `i` is `i` (u64 BE) `| 0 0 0 | final flag`: a chunk moved to another
//!   position, or a non-final chunk presented as the last one, fails authentication. The final
//!   chunk (possibly empty) is the only one with the flag, so a stream cut at any point, or with
//!   its final chunk dropped, never ends cleanly.
//! * The associated data of every chunk is the header followed by the caller's associated data
//!   (length-prefixed), so a stream copied to another owner (another workspace) does not open.
//!
//! The reader only returns plaintext of chunks that have been authenticated, but a consumer of a
//! tampered stream may have seen earlier, authentic chunks before the error: it must treat its
//! output as void on any error (the sandbox unseals into a fresh volume and discards it).

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{self, Read, Write};
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"CLAWDSTR";
const VERSION: u8 = 1;
const SALT_LEN: usize = 32;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 8 + 1 + 4 + SALT_LEN;
/// Plaintext bytes per chunk written by [`StreamSealer`].
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Largest chunk size a reader accepts (bounds its buffer).
const MAX_CHUNK_SIZE: usize = 1024 * 1024;
const MIN_CHUNK_SIZE: usize = 1024;

/// Why a sealed stream did not open (or could not be written).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The header is missing, too short, or not a clawden stream.
    #[error("not a sealed stream (bad header)")]
    BadHeader,
    /// A format version this build does not know.
    #[error("unsupported sealed stream version {0}")]
    UnsupportedVersion(u8),
    /// A chunk failed authentication: tampered, reordered, from another stream, or the wrong key
    /// or associated data.
    #[error("sealed stream failed authentication at chunk {chunk} (tampered, reordered, or wrong key)")]
    Authentication {
        /// Index of the chunk that failed.
        chunk: u64,
    },
    /// The stream ended before its final chunk: truncated or its end dropped.
    #[error("sealed stream is truncated (its final chunk is missing)")]
    Truncated,
    /// Reading or writing the underlying stream failed.
    #[error("sealed stream i/o: {0}")]
    Io(#[source] io::Error),
}

impl StreamError {
    /// Recovers a [`StreamError`] from the `io::Error` that [`StreamOpener`]'s `Read` returns.
    pub fn from_io(err: io::Error) -> StreamError {
        if err.get_ref().is_some_and(|e| e.is::<StreamError>()) {
            match err.into_inner().map(|e| e.downcast::<StreamError>()) {
                Some(Ok(e)) => *e,
                Some(Err(other)) => StreamError::Io(io::Error::other(other)),
                None => StreamError::Io(io::Error::other("unknown")),
            }
        } else {
            StreamError::Io(err)
        }
    }

    fn into_io(self) -> io::Error {
        match self {
            StreamError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

fn derive(key: &[u8; 32], salt: &[u8]) -> Aes256Gcm {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable_hmac(),
    };
    mac.update(b"clawden stream v1");
    mac.update(salt);
    let sub = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
    Aes256Gcm::new(sub.as_slice().into())
}

#[cold]
fn unreachable_hmac() -> ! {
    // HMAC's `new_from_slice` only fails for fixed-size-key MACs; HMAC has none.
    panic!("HMAC rejected a 32-byte key")
}

fn nonce(index: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    n
}

fn chunk_aad(header: &[u8], ad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + 8 + ad.len());
    out.extend_from_slice(header);
    out.extend_from_slice(&(ad.len() as u64).to_be_bytes());
    out.extend_from_slice(ad);
    out
}

/// Encrypts everything written to it into `out`, chunk by chunk. Call [`StreamSealer::finish`]:
/// a sealer dropped without it leaves a stream that never opens (it has no final chunk).
pub struct StreamSealer<W: Write> {
    out: W,
    cipher: Aes256Gcm,
    aad: Vec<u8>,
    buf: Zeroizing<Vec<u8>>,
    index: u64,
}

impl<W: Write> std::fmt::Debug for StreamSealer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSealer").field("index", &self.index).finish_non_exhaustive()
    }
}

impl<W: Write> StreamSealer<W> {
    /// Writes the header to `out` and returns a sealer bound to `key` and the associated data
    /// `ad` (what the stream belongs to, e.g. the sandbox's instance and member).
    pub fn new(key: &[u8; 32], ad: &[u8], mut out: W) -> Result<Self, StreamError> {
        let salt: [u8; SALT_LEN] = crate::random_bytes();
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.push(VERSION);
        header.extend_from_slice(&(CHUNK_SIZE as u32).to_be_bytes());
        header.extend_from_slice(&salt);
        out.write_all(&header).map_err(StreamError::Io)?;
        Ok(StreamSealer {
            out,
            cipher: derive(key, &salt),
            aad: chunk_aad(&header, ad),
            buf: Zeroizing::new(Vec::with_capacity(CHUNK_SIZE + TAG_LEN)),
            index: 0,
        })
    }

    fn emit(&mut self, last: bool) -> Result<(), StreamError> {
        let n = nonce(self.index, last);
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&n), &self.aad, &mut self.buf)
            .map_err(|_| StreamError::Io(io::Error::other("chunk encryption failed")))?;
        self.out.write_all(&self.buf).map_err(StreamError::Io)?;
        self.out.write_all(&tag).map_err(StreamError::Io)?;
        self.buf.clear();
        self.index = self.index.checked_add(1).ok_or(StreamError::Io(io::Error::other("stream too long")))?;
        Ok(())
    }

    /// Seals the last (possibly empty) chunk, flushes, and returns the writer.
    pub fn finish(mut self) -> Result<W, StreamError> {
        self.emit(true)?;
        self.out.flush().map_err(StreamError::Io)?;
        Ok(self.out)
    }
}

impl<W: Write> Write for StreamSealer<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        // A full buffer is only sealed once more data arrives: until then it may be the last.
        if self.buf.len() == CHUNK_SIZE {
            self.emit(false).map_err(StreamError::into_io)?;
        }
        let take = data.len().min(CHUNK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..take]);
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Decrypts a stream written by [`StreamSealer`]. `read` returns only authenticated plaintext
/// and returns end-of-file only after the final chunk authenticated; any tampering, reordering,
/// truncation or a wrong key or associated data is an `io::Error` of kind `InvalidData` that
/// [`StreamError::from_io`] turns back into a [`StreamError`].
pub struct StreamOpener<R: Read> {
    input: R,
    cipher: Aes256Gcm,
    aad: Vec<u8>,
    chunk_size: usize,
    /// Ciphertext read ahead (one byte beyond a full chunk tells it is not the last).
    pending: Vec<u8>,
    plain: Zeroizing<Vec<u8>>,
    pos: usize,
    index: u64,
    done: bool,
}

impl<R: Read> std::fmt::Debug for StreamOpener<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamOpener").field("index", &self.index).field("done", &self.done).finish_non_exhaustive()
    }
}

fn read_full(input: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> io::Result<()> {
    // Reads until `buf` holds `want` bytes or the input ends.
    let mut tmp = [0u8; 8192];
    while buf.len() < want {
        let room = (want - buf.len()).min(tmp.len());
        match input.read(&mut tmp[..room]) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl<R: Read> StreamOpener<R> {
    /// Reads and checks the header. The key and associated data must be those of the sealer.
    pub fn new(key: &[u8; 32], ad: &[u8], mut input: R) -> Result<Self, StreamError> {
        let mut header = Vec::with_capacity(HEADER_LEN);
        read_full(&mut input, &mut header, HEADER_LEN).map_err(StreamError::Io)?;
        if header.len() < 9 || &header[..8] != MAGIC {
            return Err(StreamError::BadHeader);
        }
        if header[8] != VERSION {
            return Err(StreamError::UnsupportedVersion(header[8]));
        }
        if header.len() < HEADER_LEN {
            return Err(StreamError::BadHeader);
        }
        let chunk_size = u32::from_be_bytes([header[9], header[10], header[11], header[12]]) as usize;
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(StreamError::BadHeader);
        }
        Ok(StreamOpener {
            input,
            cipher: derive(key, &header[13..HEADER_LEN]),
            aad: chunk_aad(&header, ad),
            chunk_size,
            pending: Vec::with_capacity(chunk_size + TAG_LEN + 1),
            plain: Zeroizing::new(Vec::with_capacity(chunk_size + TAG_LEN)),
            pos: 0,
            index: 0,
            done: false,
        })
    }

    fn next_chunk(&mut self) -> Result<(), StreamError> {
        let full = self.chunk_size + TAG_LEN;
        // One byte more than a full chunk: if it exists, this chunk is not the last.
        read_full(&mut self.input, &mut self.pending, full + 1).map_err(StreamError::Io)?;
        let last = self.pending.len() <= full;
        let take = self.pending.len().min(full);
        if take < TAG_LEN {
            return Err(StreamError::Truncated);
        }
        self.plain.clear();
        self.plain.extend_from_slice(&self.pending[..take - TAG_LEN]);
        let tag = Tag::clone_from_slice(&self.pending[take - TAG_LEN..take]);
        let n = nonce(self.index, last);
        if self.cipher.decrypt_in_place_detached(Nonce::from_slice(&n), &self.aad, &mut self.plain, &tag).is_err() {
            // aes-gcm decrypts before it compares tags: never keep what it produced.
            self.plain.clear();
            // A chunk sealed as non-final that now sits at the end means the stream was cut.
            let cut = last && {
                let mut probe = Zeroizing::new(self.pending[..take - TAG_LEN].to_vec());
                let n = nonce(self.index, false);
                self.cipher.decrypt_in_place_detached(Nonce::from_slice(&n), &self.aad, &mut probe, &tag).is_ok()
            };
            return Err(if cut { StreamError::Truncated } else { StreamError::Authentication { chunk: self.index } });
        }
        self.pending.drain(..take);
        self.pos = 0;
        self.index += 1;
        self.done = last;
        Ok(())
    }
}

impl<R: Read> Read for StreamOpener<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.plain.len() {
                let n = out.len().min(self.plain.len() - self.pos);
                out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.done || out.is_empty() {
                return Ok(0);
            }
            self.next_chunk().map_err(StreamError::into_io)?;
        }
    }
}

/// Seals everything `input` yields into `out`; returns the plaintext length.
pub fn seal_stream(key: &[u8; 32], ad: &[u8], input: &mut impl Read, out: impl Write) -> Result<u64, StreamError> {
    let mut sealer = StreamSealer::new(key, ad, out)?;
    let n = io::copy(input, &mut sealer).map_err(StreamError::Io)?;
    sealer.finish()?;
    Ok(n)
}

/// Opens a sealed stream from `input` into `out`; returns the plaintext length. On error, `out`
/// may hold a prefix of authentic plaintext, which the caller must discard.
pub fn open_stream(key: &[u8; 32], ad: &[u8], input: impl Read, out: &mut impl Write) -> Result<u64, StreamError> {
    let mut opener = StreamOpener::new(key, ad, input)?;
    io::copy(&mut opener, out).map_err(StreamError::from_io)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7u8; 32];
    const AD: &[u8] = b"instance:a member:b";

    fn sealed(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal_stream(&KEY, AD, &mut &data[..], &mut out).expect("seal");
        out
    }

    fn open(bytes: &[u8], ad: &[u8]) -> Result<Vec<u8>, StreamError> {
        let mut out = Vec::new();
        open_stream(&KEY, ad, bytes, &mut out)?;
        Ok(out)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn chunk_at(i: usize) -> std::ops::Range<usize> {
        let start = HEADER_LEN + i * (CHUNK_SIZE + TAG_LEN);
        start..start + CHUNK_SIZE + TAG_LEN
    }

    #[test]
    fn round_trips_every_size_around_chunk_boundaries() {
        for len in [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE, 3 * CHUNK_SIZE + 17] {
            let d = data(len);
            let s = sealed(&d);
            assert_eq!(open(&s, AD).expect("open"), d, "len {len}");
            // Plaintext never shows through.
            if len > 64 {
                assert!(!s.windows(64).any(|w| w == &d[..64]));
            }
        }
    }

    #[test]
    fn two_seals_of_the_same_data_differ() {
        let d = data(1000);
        assert_ne!(sealed(&d), sealed(&d));
    }

    #[test]
    fn a_flipped_bit_anywhere_refuses_to_open() {
        let d = data(2 * CHUNK_SIZE + 5);
        let s = sealed(&d);
        for pos in [0, 9, 20, HEADER_LEN, HEADER_LEN + CHUNK_SIZE + 3, s.len() - 1] {
            let mut t = s.clone();
            t[pos] ^= 1;
            assert!(open(&t, AD).is_err(), "flip at {pos}");
        }
    }

    #[test]
    fn reordered_chunks_refuse_to_open() {
        let d = data(3 * CHUNK_SIZE + 5);
        let s = sealed(&d);
        let mut t = s.clone();
        let (a, b) = (chunk_at(0), chunk_at(1));
        t[a.clone()].copy_from_slice(&s[b.clone()]);
        t[b].copy_from_slice(&s[a]);
        assert!(matches!(open(&t, AD), Err(StreamError::Authentication { chunk: 0 })));
    }

    #[test]
    fn a_dropped_middle_chunk_refuses_to_open() {
        let d = data(3 * CHUNK_SIZE + 5);
        let s = sealed(&d);
        let mut t = s[..chunk_at(1).start].to_vec();
        t.extend_from_slice(&s[chunk_at(2).start..]);
        assert!(matches!(open(&t, AD), Err(StreamError::Authentication { chunk: 1 })));
    }

    #[test]
    fn a_truncated_stream_refuses_to_open() {
        let d = data(3 * CHUNK_SIZE + 5);
        let s = sealed(&d);
        // Cut at a chunk boundary (the final chunk dropped) and in the middle of a chunk.
        let boundary = &s[..chunk_at(3).start];
        assert!(matches!(open(boundary, AD), Err(StreamError::Truncated)), "{:?}", open(boundary, AD));
        assert!(open(&s[..s.len() - 3], AD).is_err());
        assert!(open(&s[..HEADER_LEN + 10], AD).is_err());
        assert!(open(&s[..HEADER_LEN], AD).is_err());
        assert!(matches!(open(&s[..5], AD), Err(StreamError::BadHeader)));
        // Data appended after the final chunk is refused as well.
        let mut long = s.clone();
        long.extend_from_slice(&[0u8; 40]);
        assert!(open(&long, AD).is_err());
    }

    #[test]
    fn the_final_chunk_of_an_exact_multiple_cannot_be_dropped() {
        let d = data(2 * CHUNK_SIZE);
        let s = sealed(&d);
        assert_eq!(s.len(), HEADER_LEN + 2 * (CHUNK_SIZE + TAG_LEN));
        assert!(matches!(open(&s[..chunk_at(1).start], AD), Err(StreamError::Truncated)));
    }

    #[test]
    fn another_owners_associated_data_or_key_refuses_to_open() {
        let s = sealed(&data(100));
        assert!(matches!(open(&s, b"instance:a member:c"), Err(StreamError::Authentication { chunk: 0 })));
        let mut out = Vec::new();
        assert!(open_stream(&[8u8; 32], AD, &s[..], &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn chunks_cannot_be_swapped_between_streams() {
        let d = data(2 * CHUNK_SIZE + 1);
        let s1 = sealed(&d);
        let s2 = sealed(&d);
        let mut t = s1.clone();
        t[chunk_at(1)].copy_from_slice(&s2[chunk_at(1)]);
        assert!(open(&t, AD).is_err());
    }

    #[test]
    fn an_unknown_version_is_named() {
        let mut s = sealed(&data(10));
        s[8] = 9;
        assert!(matches!(open(&s, AD), Err(StreamError::UnsupportedVersion(9))));
    }
}
