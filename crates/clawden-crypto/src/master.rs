//! The master key (KEK): versioned, kept in a 0600 file apart from the data, or given in the
//! environment. It only ever wraps data keys and the server pepper.
//!
//! File format, one version per line: `clawden-kek v<version> <64 hex digits>`. The highest
//! version is current; older versions stay until `clawden keys rotate --retire`.

use crate::CryptoError;
use data_encoding::HEXLOWER;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// One version of the master key.
#[derive(Clone)]
pub struct MasterKey {
    version: u32,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(v{}, <redacted>)", self.version)
    }
}

impl MasterKey {
    /// The version number.
    pub fn version(&self) -> u32 {
        self.version
    }

    pub(crate) fn key(&self) -> &[u8; 32] {
        &self.key
    }
}

/// Every loaded master key version; the highest is current.
#[derive(Clone, Debug)]
pub struct MasterKeys {
    versions: BTreeMap<u32, MasterKey>,
}

impl MasterKeys {
    /// The current (highest) version.
    pub fn current(&self) -> &MasterKey {
        // `versions` is never empty: every constructor inserts at least one key and
        // `retire_old` keeps the current one.
        self.versions.values().next_back().expect("at least one master key version")
    }

    /// A given version, if loaded.
    pub fn version(&self, v: u32) -> Option<&MasterKey> {
        self.versions.get(&v)
    }

    /// All loaded version numbers, oldest first.
    pub fn versions(&self) -> Vec<u32> {
        self.versions.keys().copied().collect()
    }

    /// A single random key, for tests.
    pub fn generate_for_tests() -> Self {
        let mut versions = BTreeMap::new();
        versions.insert(1, MasterKey { version: 1, key: Zeroizing::new(crate::random_bytes()) });
        Self { versions }
    }

    /// Parses a master key from hex given in the environment (version 1).
    pub fn from_hex(hex: &str) -> Result<Self, CryptoError> {
        let text = Zeroizing::new(hex.trim().to_owned());
        if text.contains(' ') {
            return Self::parse(&text);
        }
        let bytes = Zeroizing::new(
            HEXLOWER
                .decode(text.to_ascii_lowercase().as_bytes())
                .map_err(|_| CryptoError::MasterKey("the master key must be 64 hex digits".into()))?,
        );
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::MasterKey("the master key must be 64 hex digits".into()))?;
        let mut versions = BTreeMap::new();
        versions.insert(1, MasterKey { version: 1, key: Zeroizing::new(key) });
        Ok(Self { versions })
    }

    fn parse(text: &str) -> Result<Self, CryptoError> {
        let mut versions = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || CryptoError::MasterKey(format!("master key file line {} is malformed", n + 1));
            let mut parts = line.split_whitespace();
            if parts.next() != Some("clawden-kek") {
                return Err(bad());
            }
            let version: u32 =
                parts.next().and_then(|v| v.strip_prefix('v')).and_then(|v| v.parse().ok()).ok_or_else(bad)?;
            let hex = parts.next().ok_or_else(bad)?;
            let bytes = Zeroizing::new(HEXLOWER.decode(hex.as_bytes()).map_err(|_| bad())?);
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| bad())?;
            versions.insert(version, MasterKey { version, key: Zeroizing::new(key) });
        }
        if versions.is_empty() {
            return Err(CryptoError::MasterKey("the master key file holds no key".into()));
        }
        Ok(Self { versions })
    }

    /// Loads the key file, creating it with one fresh key (mode 0600) when it does not exist.
    /// Refuses a file that group or others can read or write.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        match std::fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(CryptoError::MasterKey(format!(
                        "{} has mode {mode:o}; it must not be readable by group or others (chmod 600)",
                        path.display()
                    )));
                }
                let text = Zeroizing::new(std::fs::read_to_string(path)?);
                Self::parse(&text)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut versions = BTreeMap::new();
                versions.insert(1, MasterKey { version: 1, key: Zeroizing::new(crate::random_bytes()) });
                let keys = Self { versions };
                keys.write_new(path)?;
                Ok(keys)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Adds a new current version.
    pub fn add_version(&mut self) -> u32 {
        let next = self.current().version + 1;
        self.versions.insert(next, MasterKey { version: next, key: Zeroizing::new(crate::random_bytes()) });
        next
    }

    /// Drops every version but the current one.
    pub fn retire_old(&mut self) -> Vec<u32> {
        let current = self.current().version;
        let old: Vec<u32> = self.versions.keys().copied().filter(|v| *v != current).collect();
        for v in &old {
            self.versions.remove(v);
        }
        old
    }

    fn encode(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::from("# clawden master key; keep apart from backups of the data\n"));
        for key in self.versions.values() {
            out.push_str(&format!("clawden-kek v{} {}\n", key.version, HEXLOWER.encode(key.key.as_slice())));
        }
        out
    }

    fn write_new(&self, path: &Path) -> Result<(), CryptoError> {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        file.write_all(self.encode().as_bytes())?;
        file.sync_all()?;
        Ok(())
    }

    /// Replaces the key file atomically (write a 0600 temporary, then rename over).
    pub fn save(&self, path: &Path) -> Result<(), CryptoError> {
        let tmp = path.with_extension("key.new");
        let _ = std::fs::remove_file(&tmp);
        self.write_new(&tmp)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let a = MasterKeys::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = MasterKeys::load_or_create(&path).unwrap();
        assert_eq!(a.current().key(), b.current().key());
    }

    #[test]
    fn world_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKeys::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKeys::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn rotation_adds_and_retires_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let mut keys = MasterKeys::load_or_create(&path).unwrap();
        assert_eq!(keys.add_version(), 2);
        keys.save(&path).unwrap();
        let reloaded = MasterKeys::load_or_create(&path).unwrap();
        assert_eq!(reloaded.versions(), vec![1, 2]);
        let mut r = reloaded;
        assert_eq!(r.retire_old(), vec![1]);
        assert_eq!(r.current().version(), 2);
    }

    #[test]
    fn debug_redacts() {
        let keys = MasterKeys::generate_for_tests();
        let text = format!("{keys:?}");
        assert!(!text.contains(&HEXLOWER.encode(keys.current().key())));
    }
}
