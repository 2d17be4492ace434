//! The keyring: the master key, the key store, and the data keys it unwraps.
//!
//! A data key (DEK) is created on first use for its owner, wrapped by the current master key
//! and stored in the [`KeyStore`]; unwrapped keys are cached in memory. The server pepper for
//! keyed token hashes is kept the same way, so rotating the master key re-wraps it and every
//! session, API key and gateway token stays valid.

use crate::{KeyStore, StoreError, StoreResult};
use clawden_core::{InstanceId, UserId};
use clawden_crypto::{Dek, KeyedHasher, MasterKeys};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};
use std::time::SystemTime;

const PEPPER_OWNER: &str = "server:pepper";
const AUDIT_OWNER: &str = "server:audit";
const CACHE_LIMIT: usize = 20_000;

/// Whose data a key protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyOwner {
    /// A user's own data (credentials, conversations, TOTP secret).
    User(UserId),
    /// An instance's data (agent files, sandbox workspace, audit details).
    Instance(InstanceId),
}

impl KeyOwner {
    /// The owner's name in the key store and in associated data.
    pub fn name(&self) -> String {
        match self {
            KeyOwner::User(u) => format!("user:{u}"),
            KeyOwner::Instance(i) => format!("instance:{i}"),
        }
    }
}

/// Where the master key comes from; a file is re-read when it changes on disk, so a server
/// keeps working while `clawden keys rotate` runs beside it.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// A key file (created on first start).
    File(PathBuf),
    /// A fixed key (from the environment, or tests).
    Fixed,
}

/// The keyring.
pub struct Keyring {
    source: MasterKeySource,
    master: RwLock<(MasterKeys, Option<SystemTime>)>,
    keys: KeyStore,
    hasher: KeyedHasher,
    cache: Mutex<HashMap<String, Dek>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("source", &self.source).finish_non_exhaustive()
    }
}

fn mtime(source: &MasterKeySource) -> Option<SystemTime> {
    match source {
        MasterKeySource::File(path) => std::fs::metadata(path).and_then(|m| m.modified()).ok(),
        MasterKeySource::Fixed => None,
    }
}

impl Keyring {
    /// Opens the keyring, creating the server pepper on first start.
    pub async fn open(master: MasterKeys, source: MasterKeySource, keys: KeyStore, now: i64) -> StoreResult<Self> {
        let stamp = mtime(&source);
        let pepper = match keys.get(PEPPER_OWNER).await? {
            Some(wrapped) => Dek::unwrap_from(&wrapped, &master, PEPPER_OWNER)?,
            None => {
                let fresh = Dek::generate();
                keys.insert_if_absent(PEPPER_OWNER, &fresh.wrap(&master, PEPPER_OWNER), now).await?;
                // Another node may have won the race: always use what is stored.
                let stored = keys.get(PEPPER_OWNER).await?.ok_or(StoreError::NotFound)?;
                Dek::unwrap_from(&stored, &master, PEPPER_OWNER)?
            }
        };
        Ok(Self {
            source,
            master: RwLock::new((master, stamp)),
            keys,
            hasher: KeyedHasher::new(*pepper.key()),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The keyed hasher for tokens.
    pub fn hasher(&self) -> &KeyedHasher {
        &self.hasher
    }

    /// The keyed MAC for audit chains, under a key of its own (created on first use).
    pub async fn audit_mac(&self, now: i64) -> StoreResult<KeyedHasher> {
        if let Some(dek) = self.cached(AUDIT_OWNER) {
            return Ok(KeyedHasher::new(*dek.key()));
        }
        let master = self.master()?;
        if self.keys.get(AUDIT_OWNER).await?.is_none() {
            let fresh = Dek::generate();
            self.keys.insert_if_absent(AUDIT_OWNER, &fresh.wrap(&master, AUDIT_OWNER), now).await?;
        }
        let stored = self.keys.get(AUDIT_OWNER).await?.ok_or(StoreError::NotFound)?;
        let dek = Dek::unwrap_from(&stored, &master, AUDIT_OWNER)?;
        self.remember(AUDIT_OWNER.to_owned(), dek.clone());
        Ok(KeyedHasher::new(*dek.key()))
    }

    /// The key store.
    pub fn key_store(&self) -> &KeyStore {
        &self.keys
    }

    /// The master keys, re-read from the key file if it changed since last read.
    pub fn master(&self) -> StoreResult<MasterKeys> {
        let stamp = mtime(&self.source);
        {
            let guard = self.master.read().unwrap_or_else(|p| p.into_inner());
            if guard.1 == stamp {
                return Ok(guard.0.clone());
            }
        }
        if let MasterKeySource::File(path) = &self.source {
            let fresh = MasterKeys::load_or_create(path)?;
            let mut guard = self.master.write().unwrap_or_else(|p| p.into_inner());
            *guard = (fresh.clone(), stamp);
            return Ok(fresh);
        }
        Ok(self.master.read().unwrap_or_else(|p| p.into_inner()).0.clone())
    }

    fn cached(&self, name: &str) -> Option<Dek> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    fn remember(&self, name: String, dek: Dek) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(name, dek);
    }

    /// The owner's data key, created on first use.
    pub async fn dek(&self, owner: KeyOwner, now: i64) -> StoreResult<Dek> {
        if let Some(dek) = self.existing_dek(owner).await? {
            return Ok(dek);
        }
        let name = owner.name();
        let master = self.master()?;
        let fresh = Dek::generate();
        self.keys.insert_if_absent(&name, &fresh.wrap(&master, &name), now).await?;
        self.existing_dek(owner).await?.ok_or(StoreError::NotFound)
    }

    /// The owner's data key if it exists; `None` after it was destroyed.
    pub async fn existing_dek(&self, owner: KeyOwner) -> StoreResult<Option<Dek>> {
        let name = owner.name();
        if let Some(dek) = self.cached(&name) {
            return Ok(Some(dek));
        }
        let Some(wrapped) = self.keys.get(&name).await? else { return Ok(None) };
        let dek = Dek::unwrap_from(&wrapped, &self.master()?, &name)?;
        self.remember(name, dek.clone());
        Ok(Some(dek))
    }

    /// Destroys the owner's data key: everything sealed under it becomes unreadable,
    /// in this database and in every backup of it.
    pub async fn destroy(&self, owner: KeyOwner) -> StoreResult<bool> {
        let name = owner.name();
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(&name);
        self.keys.delete(&name).await
    }

    /// Re-wraps up to `batch` keys (and the pepper) that are not wrapped by the current master
    /// key version, in one transaction; returns how many were re-wrapped (0 when done).
    pub async fn rewrap_batch(&self, batch: i64) -> StoreResult<usize> {
        let master = self.master()?;
        let current = master.current().version();
        let stale = self.keys.wrapped_not_by(current, batch).await?;
        let mut out = Vec::with_capacity(stale.len());
        for (owner, wrapped) in stale {
            let dek = Dek::unwrap_from(&wrapped, &master, &owner)?;
            out.push((owner.clone(), wrapped.kek_version, dek.wrap(&master, &owner)));
        }
        self.keys.rewrap_batch(&out).await?;
        Ok(out.len())
    }
}
