//! Bearer secrets: session tokens, API keys, gateway tokens, invite codes.
//!
//! A token is 256 random bits in lowercase base32 behind a readable prefix (`cd_` for API
//! keys, `cds_` for sessions, `cdg_` for gateway tokens). Only an HMAC-SHA256 of it under the
//! server pepper is stored, so a copy of the database cannot be replayed as a credential.

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// A freshly generated token; shown to its owner once, then dropped.
pub struct PlainToken(SecretString);

impl std::fmt::Debug for PlainToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlainToken(<redacted>)")
    }
}

impl PlainToken {
    /// 256 random bits behind `prefix`.
    pub fn generate(prefix: &str) -> Self {
        let bytes = Zeroizing::new(crate::random_bytes::<32>());
        let body = BASE32_NOPAD.encode(bytes.as_slice()).to_ascii_lowercase();
        Self(SecretString::from(format!("{prefix}{body}")))
    }

    /// The token text, to hand to its owner exactly once.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The first characters after the prefix, safe to display to identify the token.
    pub fn display_prefix(&self, prefix_len: usize) -> String {
        self.expose().chars().take(prefix_len + 6).collect()
    }
}

/// The keyed hash of a token, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

impl TokenHash {
    /// Compares two hashes in constant time.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// HMAC-SHA256 under the server pepper. The pepper is random, kept in the key store wrapped by
/// the master key, so rotating the master key leaves every token valid.
#[derive(Clone)]
pub struct KeyedHasher {
    pepper: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for KeyedHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHasher(<redacted>)")
    }
}

impl KeyedHasher {
    /// A hasher over the given pepper.
    pub fn new(pepper: [u8; 32]) -> Self {
        Self { pepper: Zeroizing::new(pepper) }
    }

    /// The pepper bytes, for wrapping into the key store.
    pub fn pepper(&self) -> &[u8; 32] {
        &self.pepper
    }

    /// The keyed hash of `token` within `domain` (e.g. `session`, `api_key`), so a value
    /// that is valid as one kind of secret never matches another kind.
    pub fn hash(&self, domain: &str, token: &str) -> TokenHash {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
        let mut mac = HmacSha256::new_from_slice(self.pepper.as_slice()).expect("HMAC takes any key length");
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(token.as_bytes());
        TokenHash(mac.finalize().into_bytes().into())
    }

    /// The raw keyed MAC of `value` within `domain`.
    pub fn mac(&self, domain: &str, value: &[u8]) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(self.pepper.as_slice()).expect("HMAC takes any key length");
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// A short keyed tag (base32) for values derived from a secret, such as CSRF tokens.
    pub fn tag(&self, domain: &str, value: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(self.pepper.as_slice()).expect("HMAC takes any key length");
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(value);
        BASE32_NOPAD.encode(&mac.finalize().into_bytes()).to_ascii_lowercase()
    }
}

/// Compares two byte strings in constant time.
pub fn ct_bytes_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Compares two strings in constant time (for secrets of the same expected length).
pub fn ct_str_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_long() {
        let a = PlainToken::generate("cd_");
        let b = PlainToken::generate("cd_");
        assert!(a.expose().starts_with("cd_"));
        assert_eq!(a.expose().len(), 3 + 52);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(format!("{a:?}"), "PlainToken(<redacted>)");
    }

    #[test]
    fn hashes_depend_on_pepper_and_domain() {
        let h1 = KeyedHasher::new([1; 32]);
        let h2 = KeyedHasher::new([2; 32]);
        assert!(h1.hash("session", "x").ct_eq(&h1.hash("session", "x")));
        assert!(!h1.hash("session", "x").ct_eq(&h2.hash("session", "x")));
        assert!(!h1.hash("session", "x").ct_eq(&h1.hash("api_key", "x")));
    }
}
