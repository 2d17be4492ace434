//! AES-256-GCM sealing with associated data.
//!
//! A sealed value is `[format version (1 byte)] [nonce (12 bytes)] [ciphertext + tag]`.
//! The associated data names the table, column, row and owner the value belongs to, so a
//! ciphertext copied into another row, column or owner's row fails to open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

/// Why a sealed value did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Too short or an unknown format version.
    #[error("sealed value is malformed")]
    Malformed,
    /// Wrong key, wrong associated data, or tampered bytes.
    #[error("sealed value failed authentication")]
    Authentication,
}

/// What a sealed value belongs to; bound into the ciphertext as associated data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aad {
    bytes: Vec<u8>,
}

impl Aad {
    /// Associated data for a value stored at `table.column` of row `row_id`, owned by `owner`
    /// (a user id or an instance id, written with its kind, e.g. `user:…`).
    pub fn new(table: &str, column: &str, row_id: &str, owner: &str) -> Self {
        let mut bytes = Vec::with_capacity(16 + table.len() + column.len() + row_id.len() + owner.len());
        for part in [table, column, row_id, owner] {
            // Length-prefixing each part makes the encoding unambiguous ("a","bc" ≠ "ab","c").
            bytes.extend_from_slice(&(part.len() as u32).to_be_bytes());
            bytes.extend_from_slice(part.as_bytes());
        }
        Self { bytes }
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Seals `plaintext` under `key` with a fresh random nonce.
pub fn seal(key: &[u8; 32], plaintext: &[u8], aad: &Aad) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.into());
    let nonce_bytes: [u8; NONCE_LEN] = crate::random_bytes();
    let nonce = Nonce::from_slice(&nonce_bytes);
    // Encryption with a valid 32-byte key only fails for plaintexts over 64 GiB, which every
    // caller's size limits rule out; an empty vec would then fail to open, never leak.
    let ciphertext = cipher.encrypt(nonce, Payload { msg: plaintext, aad: aad.as_bytes() }).unwrap_or_default();
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ciphertext);
    out
}

/// Opens a value sealed by [`seal`] with the same key and associated data.
pub fn open(key: &[u8; 32], sealed: &[u8], aad: &Aad) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != FORMAT_V1 {
        return Err(SealError::Malformed);
    }
    let cipher = Aes256Gcm::new(key.into());
    let nonce = Nonce::from_slice(&sealed[1..1 + NONCE_LEN]);
    cipher
        .decrypt(nonce, Payload { msg: &sealed[1 + NONCE_LEN..], aad: aad.as_bytes() })
        .map(Zeroizing::new)
        .map_err(|_| SealError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let key = crate::random_bytes();
        let aad = Aad::new("credentials", "value", "row1", "user:u1");
        let sealed = seal(&key, b"hello", &aad);
        assert_eq!(open(&key, &sealed, &aad).unwrap().as_slice(), b"hello");
    }

    #[test]
    fn ciphertext_moved_to_another_row_does_not_open() {
        let key = crate::random_bytes();
        let sealed = seal(&key, b"secret", &Aad::new("credentials", "value", "row1", "user:u1"));
        for other in [
            Aad::new("credentials", "value", "row2", "user:u1"),
            Aad::new("credentials", "value", "row1", "user:u2"),
            Aad::new("credentials", "name", "row1", "user:u1"),
            Aad::new("totp", "value", "row1", "user:u1"),
        ] {
            assert_eq!(open(&key, &sealed, &other), Err(SealError::Authentication));
        }
    }

    #[test]
    fn tampered_ciphertext_is_rejected() {
        let key = crate::random_bytes();
        let aad = Aad::new("t", "c", "r", "o");
        let sealed = seal(&key, b"secret value", &aad);
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(open(&key, &bad, &aad).is_err(), "flipping byte {i} must be detected");
        }
        assert_eq!(open(&key, &sealed[..10], &aad), Err(SealError::Malformed));
        let other_key = crate::random_bytes();
        assert_eq!(open(&other_key, &sealed, &aad), Err(SealError::Authentication));
    }

    #[test]
    fn aad_parts_are_unambiguous() {
        assert_ne!(Aad::new("a", "bc", "r", "o"), Aad::new("ab", "c", "r", "o"));
    }
}
