//! In-process rate limits with exponential backoff, driven by the injected clock.
//!
//! Login failures are counted three ways: per (account, address), per address, and per
//! account. The per-account limit only ever slows addresses that have never signed in to that
//! account, and its backoff is capped short, so failing logins from elsewhere cannot lock an
//! owner out of their own account.

use crate::settings::AuthSettings;
use clawden_core::{Clock, UnixMillis};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: UnixMillis,
    blocked_until: UnixMillis,
}

/// Counts failures per key and blocks a key for a doubling time after `free` failures.
#[derive(Debug)]
pub struct Backoff {
    entries: Mutex<HashMap<String, Entry>>,
    free: u32,
    base_ms: i64,
    max_ms: i64,
    window_ms: i64,
}

impl Backoff {
    /// A limiter that allows `free - 1` failures; the `free`-th blocks for `base`, `2·base`, … up to `max`;
    /// failures are forgotten `window` after the last one.
    pub fn new(free: u32, base_ms: i64, max_ms: i64, window_ms: i64) -> Self {
        Self { entries: Mutex::new(HashMap::new()), free, base_ms: base_ms.max(1), max_ms, window_ms }
    }

    /// `Err(seconds to wait)` while the key is blocked.
    pub fn check(&self, key: &str, now: UnixMillis) -> Result<(), u64> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(key) {
            Some(e) if e.blocked_until > now => Err(((e.blocked_until - now) as u64).div_ceil(1000)),
            _ => Ok(()),
        }
    }

    /// Records a failure.
    pub fn fail(&self, key: &str, now: UnixMillis) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_KEYS {
            let window = self.window_ms;
            entries.retain(|_, e| now - e.last_failure < window || e.blocked_until > now);
            if entries.len() >= MAX_KEYS {
                // Still full of live entries: drop the oldest half rather than grow without bound.
                let mut ages: Vec<UnixMillis> = entries.values().map(|e| e.last_failure).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                entries.retain(|_, e| e.last_failure > cut);
            }
        }
        let entry = entries.entry(key.to_owned()).or_insert(Entry { failures: 0, last_failure: now, blocked_until: 0 });
        if now - entry.last_failure >= self.window_ms {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        if entry.failures >= self.free {
            let steps = (entry.failures - self.free).min(40);
            let delay = self.base_ms.saturating_mul(1_i64 << steps.min(40)).min(self.max_ms);
            entry.blocked_until = now + delay;
        }
    }

    /// Forgets the key (after a success).
    pub fn reset(&self, key: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// Counts events per key in fixed windows (e.g. signups per address per hour).
#[derive(Debug)]
pub struct WindowCounter {
    entries: Mutex<HashMap<String, (UnixMillis, u32)>>,
    limit: u32,
    window_ms: i64,
}

impl WindowCounter {
    /// At most `limit` events per `window_ms`.
    pub fn new(limit: u32, window_ms: i64) -> Self {
        Self { entries: Mutex::new(HashMap::new()), limit, window_ms }
    }

    /// Counts one event; `Err(seconds to wait)` when over the limit.
    pub fn hit(&self, key: &str, now: UnixMillis) -> Result<(), u64> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_KEYS {
            let window = self.window_ms;
            entries.retain(|_, (start, _)| now - *start < window);
        }
        let entry = entries.entry(key.to_owned()).or_insert((now, 0));
        if now - entry.0 >= self.window_ms {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return Err(((entry.0 + self.window_ms - now) as u64).div_ceil(1000));
        }
        entry.1 += 1;
        Ok(())
    }
}

/// Every limiter the server keeps.
#[derive(Debug)]
pub struct Limiters {
    clock: Arc<dyn Clock>,
    login_account_ip: Backoff,
    login_ip: Backoff,
    login_account: Backoff,
    /// Addresses that signed in to an account before, per account.
    known_addresses: Mutex<HashMap<String, HashSet<IpAddr>>>,
    signup_ip: WindowCounter,
    /// Failed bearer credentials per address.
    pub bearer_ip: Backoff,
    /// Failed invite redemptions per account.
    pub invite_redeem: Backoff,
}

impl Limiters {
    /// Limiters configured from the settings.
    pub fn new(auth: &AuthSettings, clock: Arc<dyn Clock>) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let base = ms(auth.login_backoff_base);
        let window = ms(auth.login_failure_window);
        Self {
            clock,
            login_account_ip: Backoff::new(
                auth.login_free_failures_per_account_ip,
                base,
                ms(auth.login_backoff_max),
                window,
            ),
            login_ip: Backoff::new(auth.login_free_failures_per_ip, base, ms(auth.login_backoff_max) * 4, window),
            login_account: Backoff::new(
                auth.login_free_failures_per_account,
                base,
                ms(auth.login_account_backoff_max),
                window,
            ),
            known_addresses: Mutex::new(HashMap::new()),
            signup_ip: WindowCounter::new(auth.signups_per_ip_per_hour, 3_600_000),
            bearer_ip: Backoff::new(10, base, ms(auth.login_backoff_max), window),
            invite_redeem: Backoff::new(5, base, ms(auth.login_backoff_max), window),
        }
    }

    /// The clock's now.
    pub fn now(&self) -> UnixMillis {
        self.clock.now_millis()
    }

    /// Whether `ip` signed in to `account` before.
    pub fn knows(&self, account: &str, ip: IpAddr) -> bool {
        self.known_addresses.lock().unwrap_or_else(|p| p.into_inner()).get(account).is_some_and(|set| set.contains(&ip))
    }

    /// Whether a login attempt for `account` from `ip` may proceed now.
    pub fn login_check(&self, account: &str, ip: IpAddr) -> Result<(), u64> {
        let now = self.now();
        self.login_ip.check(&ip.to_string(), now)?;
        self.login_account_ip.check(&format!("{account}|{ip}"), now)?;
        if !self.knows(account, ip) {
            self.login_account.check(account, now)?;
        }
        Ok(())
    }

    /// Records a failed login.
    pub fn login_failed(&self, account: &str, ip: IpAddr) {
        let now = self.now();
        self.login_ip.fail(&ip.to_string(), now);
        self.login_account_ip.fail(&format!("{account}|{ip}"), now);
        if !self.knows(account, ip) {
            self.login_account.fail(account, now);
        }
    }

    /// Records a successful login: the address becomes known for the account.
    pub fn login_succeeded(&self, account: &str, ip: IpAddr) {
        self.login_account_ip.reset(&format!("{account}|{ip}"));
        let mut known = self.known_addresses.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_KEYS {
            known.clear();
        }
        let set = known.entry(account.to_owned()).or_default();
        if set.len() < 32 {
            set.insert(ip);
        }
    }

    /// Counts a signup from `ip`.
    pub fn signup(&self, ip: IpAddr) -> Result<(), u64> {
        self.signup_ip.hit(&ip.to_string(), self.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff::new(2, 1000, 8000, 3_600_000);
        b.fail("k", 0);
        assert!(b.check("k", 0).is_ok());
        b.fail("k", 0);
        assert_eq!(b.check("k", 0), Err(1));
        b.fail("k", 0);
        assert_eq!(b.check("k", 0), Err(2));
        for _ in 0..10 {
            b.fail("k", 0);
        }
        assert_eq!(b.check("k", 0), Err(8));
        assert!(b.check("k", 8000).is_ok());
        b.reset("k");
        assert!(b.check("k", 0).is_ok());
    }

    #[test]
    fn failures_are_forgotten_after_the_window() {
        let b = Backoff::new(2, 1000, 8000, 10_000);
        b.fail("k", 0);
        b.fail("k", 0);
        assert!(b.check("k", 0).is_err());
        b.fail("k", 20_000);
        assert!(b.check("k", 20_000).is_ok(), "old failures no longer count");
    }

    #[test]
    fn window_counter_limits() {
        let w = WindowCounter::new(2, 1000);
        assert!(w.hit("a", 0).is_ok());
        assert!(w.hit("a", 10).is_ok());
        assert_eq!(w.hit("a", 500), Err(1));
        assert!(w.hit("a", 1000).is_ok());
    }
}
