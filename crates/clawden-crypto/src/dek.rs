//! Data keys (DEKs): one per user and one per instance, random, stored only wrapped by a KEK.

use crate::master::MasterKeys;
use crate::seal::{self, Aad};
use crate::CryptoError;
use zeroize::Zeroizing;

/// A 256-bit data key in memory. Zeroized on drop; `Debug` never shows it.
#[derive(Clone)]
pub struct Dek(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Dek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dek(<redacted>)")
    }
}

/// A DEK sealed by a version of the master key; safe to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedDek {
    /// Which master key version wrapped it.
    pub kek_version: u32,
    /// The sealed key bytes.
    pub bytes: Vec<u8>,
}

impl Dek {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(Zeroizing::new(crate::random_bytes()))
    }

    /// The raw key, for sealing.
    pub fn key(&self) -> &[u8; 32] {
        &self.0
    }

    /// Seals `plaintext` under this key.
    pub fn seal(&self, plaintext: &[u8], aad: &Aad) -> Vec<u8> {
        seal::seal(&self.0, plaintext, aad)
    }

    /// Opens a value sealed under this key.
    pub fn open(&self, sealed: &[u8], aad: &Aad) -> Result<Zeroizing<Vec<u8>>, seal::SealError> {
        seal::open(&self.0, sealed, aad)
    }

    /// Wraps this key with the current master key; `owner` names whose key it is
    /// (e.g. `user:<id>`), so a wrapped key copied to another owner does not unwrap.
    pub fn wrap(&self, master: &MasterKeys, owner: &str) -> WrappedDek {
        let kek = master.current();
        WrappedDek {
            kek_version: kek.version(),
            bytes: seal::seal(kek.key(), self.0.as_slice(), &wrap_aad(owner, kek.version())),
        }
    }

    /// Unwraps a stored key with whichever master key version wrapped it.
    pub fn unwrap_from(wrapped: &WrappedDek, master: &MasterKeys, owner: &str) -> Result<Self, CryptoError> {
        let kek = master.version(wrapped.kek_version).ok_or_else(|| {
            CryptoError::MasterKey(format!("master key version {} is not loaded", wrapped.kek_version))
        })?;
        let plain = seal::open(kek.key(), &wrapped.bytes, &wrap_aad(owner, wrapped.kek_version))?;
        let key: [u8; 32] = plain.as_slice().try_into().map_err(|_| CryptoError::Seal(seal::SealError::Malformed))?;
        Ok(Self(Zeroizing::new(key)))
    }
}

fn wrap_aad(owner: &str, version: u32) -> Aad {
    Aad::new("data_keys", "wrapped", owner, &format!("kek:{version}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_key_opens_only_for_its_owner() {
        let master = MasterKeys::generate_for_tests();
        let dek = Dek::generate();
        let wrapped = dek.wrap(&master, "user:a");
        let back = Dek::unwrap_from(&wrapped, &master, "user:a").unwrap();
        assert_eq!(back.key(), dek.key());
        assert!(Dek::unwrap_from(&wrapped, &master, "user:b").is_err());
    }

    #[test]
    fn debug_redacts() {
        assert_eq!(format!("{:?}", Dek::generate()), "Dek(<redacted>)");
    }
}
