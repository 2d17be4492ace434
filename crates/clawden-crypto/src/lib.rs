//! The keyring and every cryptographic primitive clawden uses.
//!
//! - [`master`]: the key-encryption key (KEK), versioned, from a 0600 file or the environment.
//! - [`dek`]: per-user and per-instance data keys (DEK), only ever stored wrapped by the KEK.
//! - [`seal`]: AES-256-GCM with associated data naming what a value belongs to.
//! - [`token`]: random tokens with a readable prefix, stored only as a keyed HMAC.
//! - [`password`]: argon2id hashing with transparent rehash; bcrypt accepted for import.

pub mod dek;
pub mod master;
pub mod password;
pub mod seal;
pub mod stream;
pub mod token;

pub use dek::{Dek, WrappedDek};
pub use master::{MasterKey, MasterKeys};
pub use password::{PasswordError, PasswordHasher, PasswordVerdict};
pub use seal::{Aad, SealError};
pub use token::{KeyedHasher, PlainToken, TokenHash};

/// Errors of the keyring.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The master key file or variable could not be used.
    #[error("master key: {0}")]
    MasterKey(String),
    /// A wrapped key or sealed value did not open.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Reading or writing a key file failed.
    #[error("key file I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Fills a fixed-size array with bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut out = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut out);
    out
}
