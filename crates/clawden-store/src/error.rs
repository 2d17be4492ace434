//! Store errors.

/// What can go wrong in the store. Messages never contain secrets or row contents.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The principal may not make this call.
    #[error("not permitted for this caller")]
    Forbidden,
    /// An account with this email exists.
    #[error("an account with this email exists")]
    EmailTaken,
    /// The invite code is unknown, spent or expired.
    #[error("the invite code is not valid")]
    InvalidInvite,
    /// The change breaks a rule of the data (the last owner cannot leave).
    #[error("{0}")]
    Conflict(&'static str),
    /// A daily quota is spent.
    #[error("today's quota is spent")]
    QuotaExceeded,
    /// A count limit (conversations, files) is reached.
    #[error("limit reached: {0}")]
    LimitReached(&'static str),
    /// The owner's data key was destroyed: their sealed values can never open again.
    #[error("the data key of this owner was destroyed")]
    KeyDestroyed,
    /// A referenced row does not exist (or is not the caller's).
    #[error("not found")]
    NotFound,
    /// Stored data did not decode (a bug or tampering).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The keyring failed (a key would not unwrap, a value would not open).
    #[error("keyring: {0}")]
    Crypto(#[from] clawden_crypto::CryptoError),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        StoreError::Corrupt(what.to_string())
    }
}
