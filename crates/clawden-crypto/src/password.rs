//! Password hashing: argon2id with OWASP parameters, bcrypt accepted for imported accounts
//! and rehashed on the next login, and the password policy.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

/// A password that breaks the policy; the message is safe to show the user.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    /// Fewer than the minimum characters.
    #[error("the password must have at least {0} characters")]
    TooShort(usize),
    /// More than the maximum characters (hashing cost is bounded).
    #[error("the password must have at most {0} characters")]
    TooLong(usize),
    /// The same as the email address or its local part.
    #[error("the password must not be your email address")]
    SameAsEmail,
    /// On the list of most common passwords, or one character repeated.
    #[error("this password is too common; choose another")]
    TooCommon,
    /// The stored hash is in no format we know.
    #[error("unrecognised password hash format")]
    UnknownHashFormat,
}

/// Minimum password length, in characters.
pub const MIN_LEN: usize = 12;
/// Maximum password length, in characters.
pub const MAX_LEN: usize = 1024;

const COMMON: &str = include_str!("common-passwords.txt");

/// Checks a new password against the policy.
pub fn check_policy(password: &str, email: &str) -> Result<(), PasswordError> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(PasswordError::TooShort(MIN_LEN));
    }
    if len > MAX_LEN {
        return Err(PasswordError::TooLong(MAX_LEN));
    }
    let lower = password.to_lowercase();
    let email = email.trim().to_lowercase();
    let local = email.split('@').next().unwrap_or_default();
    if lower == email || (!local.is_empty() && lower == local) {
        return Err(PasswordError::SameAsEmail);
    }
    let mut chars = lower.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first) || COMMON.lines().any(|line| line == lower) {
        return Err(PasswordError::TooCommon);
    }
    Ok(())
}

/// The result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordVerdict {
    /// Wrong password.
    Mismatch,
    /// Right password; `rehash` says the stored hash should be replaced by a current one.
    Match {
        /// The hash is bcrypt or has weaker parameters than the current ones.
        rehash: bool,
    },
}

/// Hashes and verifies passwords. Expensive by design: call it from `spawn_blocking`.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    dummy_hash: String,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("m_cost", &self.params.m_cost())
            .field("t_cost", &self.params.t_cost())
            .finish()
    }
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::owasp()
    }
}

impl PasswordHasher {
    /// argon2id with the OWASP recommended minimum: 19 MiB, 2 iterations, 1 lane.
    pub fn owasp() -> Self {
        // These constants are within argon2's documented ranges, so construction cannot fail.
        let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
        Self::with_params(params)
    }

    fn with_params(params: Params) -> Self {
        let mut hasher = Self { params, dummy_hash: String::new() };
        // A hash of a random value: verifying against it costs the same as a real check, so an
        // unknown email takes as long as a wrong password.
        let dummy = data_encoding::HEXLOWER.encode(&crate::random_bytes::<16>());
        hasher.dummy_hash = hasher.hash(&SecretString::from(dummy));
        hasher
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC-format argon2id hash of `password` with a fresh salt.
    pub fn hash(&self, password: &SecretString) -> String {
        let salt = SaltString::encode_b64(&crate::random_bytes::<16>())
            .unwrap_or_else(|_| SaltString::from_b64("c2FsdHNhbHRzYWx0c2FsdA").expect("static salt is valid b64"));
        // Hashing only fails for out-of-range parameters or salts, which are fixed above.
        self.argon2()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    }

    /// Checks `password` against a stored argon2 or bcrypt hash.
    pub fn verify(&self, password: &SecretString, stored: &str) -> Result<PasswordVerdict, PasswordError> {
        let pw = password.expose_secret().as_bytes();
        if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
            return match bcrypt::verify(pw, stored) {
                Ok(true) => Ok(PasswordVerdict::Match { rehash: true }),
                Ok(false) => Ok(PasswordVerdict::Mismatch),
                Err(_) => Err(PasswordError::UnknownHashFormat),
            };
        }
        let parsed = PasswordHash::new(stored).map_err(|_| PasswordError::UnknownHashFormat)?;
        if self.argon2().verify_password(pw, &parsed).is_err() {
            return Ok(PasswordVerdict::Mismatch);
        }
        let current = Params::try_from(&parsed).ok();
        let rehash = parsed.algorithm.as_str() != "argon2id"
            || current.is_none_or(|p| p.m_cost() < self.params.m_cost() || p.t_cost() < self.params.t_cost());
        Ok(PasswordVerdict::Match { rehash })
    }

    /// Spends the same time as a real verification, for an account that does not exist.
    pub fn verify_dummy(&self, password: &SecretString) {
        let _ = self.verify(password, &self.dummy_hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> SecretString {
        SecretString::from(x.to_owned())
    }

    #[test]
    fn argon2_round_trip() {
        let h = PasswordHasher::owasp();
        let hash = h.hash(&s("correct horse battery"));
        assert!(hash.starts_with("$argon2id$"));
        assert_eq!(h.verify(&s("correct horse battery"), &hash).unwrap(), PasswordVerdict::Match { rehash: false });
        assert_eq!(h.verify(&s("wrong horse battery"), &hash).unwrap(), PasswordVerdict::Mismatch);
    }

    #[test]
    fn bcrypt_hash_is_accepted_and_flagged_for_rehash() {
        let h = PasswordHasher::owasp();
        let stored = bcrypt::hash("imported password", 4).unwrap();
        assert_eq!(h.verify(&s("imported password"), &stored).unwrap(), PasswordVerdict::Match { rehash: true });
        assert_eq!(h.verify(&s("other password!"), &stored).unwrap(), PasswordVerdict::Mismatch);
    }

    #[test]
    fn weaker_argon2_is_flagged_for_rehash() {
        let weak = PasswordHasher::with_params(Params::new(8 * 1024, 1, 1, None).unwrap());
        let hash = weak.hash(&s("a fine long password"));
        let h = PasswordHasher::owasp();
        assert_eq!(h.verify(&s("a fine long password"), &hash).unwrap(), PasswordVerdict::Match { rehash: true });
    }

    #[test]
    fn policy() {
        assert_eq!(check_policy("short", "a@b.c"), Err(PasswordError::TooShort(12)));
        assert_eq!(check_policy("alice.smith@example.com", "Alice.Smith@example.com"), Err(PasswordError::SameAsEmail));
        assert_eq!(check_policy("Password1234", "a@b.c"), Err(PasswordError::TooCommon));
        assert_eq!(check_policy("zzzzzzzzzzzzzz", "a@b.c"), Err(PasswordError::TooCommon));
        assert!(check_policy("violet-kettle-sings", "a@b.c").is_ok());
    }
}
