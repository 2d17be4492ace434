//! Crypto benchmark for the numbers the security promises rest on: AES-256-GCM seal/open
//! throughput, API-key check latency through the real store on SQLite, and master-key rotation
//! of 100 000 data keys. Each figure is printed beside a plain SHA-256 of the same bytes,
//! measured in the same run, so a slow or busy machine shows up in both columns.
//!
//! Run with `bench/crypto.sh` (a release build). `CRYPTO_BENCH_USERS` changes the 100 000.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use clawden_core::{Outcome, Principal, Tier};
use clawden_crypto::{Aad, Dek, MasterKeys, PlainToken};
use clawden_store::{
    AuditChain, AuditEvent, KeyStore, Keyring, MasterKeySource, NewApiKey, NewUser, SecretStore, SqlStore, UserStore,
};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const API_KEY_DOMAIN: &str = "api_key";

/// Runs `f` repeatedly for about `budget`; returns (iterations, elapsed).
fn run_for(budget: Duration, mut f: impl FnMut()) -> (u64, Duration) {
    // Warm up caches and the CPU clock.
    for _ in 0..50 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    (n, start.elapsed())
}

fn rate(label: &str, bytes: usize, (n, took): (u64, Duration)) {
    let secs = took.as_secs_f64();
    let ops = n as f64 / secs;
    let mbs = ops * bytes as f64 / (1024.0 * 1024.0);
    println!("  {label:<28} {mbs:>9.1} MB/s  {ops:>12.0} ops/s");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn event(chain: AuditChain, action: &str) -> AuditEvent {
    AuditEvent {
        chain,
        actor: None,
        instance: None,
        action: action.into(),
        target: String::new(),
        outcome: Outcome::Success,
        ip: None,
        at: 1_800_000_000_000,
    }
}

fn seal_open() {
    println!("seal/open (AES-256-GCM, random nonce, associated data), 1 s per row:");
    let dek = Dek::generate();
    let aad = Aad::new("credentials", "value", "0190c0de-0000-7000-8000-000000000000", "user:0190c0de");
    for size in [1024usize, 64 * 1024] {
        let plain = vec![0x5au8; size];
        let sealed = dek.seal(&plain, &aad);
        let kib = size / 1024;
        rate(
            &format!("seal {kib} KiB"),
            size,
            run_for(Duration::from_secs(1), || {
                black_box(clawden_crypto::seal::seal(dek.key(), black_box(&plain), &aad));
            }),
        );
        rate(
            &format!("open {kib} KiB"),
            size,
            run_for(Duration::from_secs(1), || {
                black_box(clawden_crypto::seal::open(dek.key(), black_box(&sealed), &aad).expect("opens"));
            }),
        );
        rate(
            &format!("reference: SHA-256 {kib} KiB"),
            size,
            run_for(Duration::from_secs(1), || {
                black_box(Sha256::digest(black_box(&plain)));
            }),
        );
    }
}

async fn api_key_check(dir: &std::path::Path) {
    const USERS: usize = 1_000;
    const LOOKUPS: usize = 5_000;
    let keys = KeyStore::connect(&clawden_store::sqlite_url(&dir.join("keys-api.db"))).await.expect("key store");
    let keyring = Arc::new(
        Keyring::open(MasterKeys::generate_for_tests(), MasterKeySource::Fixed, keys, 0).await.expect("keyring"),
    );
    let store =
        SqlStore::connect(&clawden_store::sqlite_url(&dir.join("data.db")), keyring.clone()).await.expect("store");
    let hasher = keyring.hasher();
    let mut tokens = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let new = NewUser {
            email: format!("bench{i}@example.com"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
                .into(),
            tier: Tier::Base,
            platform_admin: false,
            instance_name: "My agent".into(),
            now: 1_800_000_000_000,
            invite: None,
            gateway_token: hasher.hash("gateway", PlainToken::generate("cdg_").expose()),
            initial_files: Vec::new(),
        };
        let (user, _) =
            store.create_user(&Principal::System, new, event(AuditChain::System, "auth.signup")).await.unwrap();
        let token = PlainToken::generate("cd_");
        let key = NewApiKey {
            name: "bench".into(),
            prefix: token.display_prefix(3),
            key_hash: hasher.hash(API_KEY_DOMAIN, token.expose()),
            now: 1_800_000_000_000,
        };
        let by = Principal::User { user: user.id };
        store.create_api_key(&by, key, event(AuditChain::Account(user.id), "api_key.create")).await.unwrap();
        tokens.push(token);
    }
    let mut check = Vec::with_capacity(LOOKUPS);
    let mut hash_only = Vec::with_capacity(LOOKUPS);
    let mut reference = Vec::with_capacity(LOOKUPS);
    for i in 0..LOOKUPS {
        let token = tokens[(i * 7919) % USERS].expose();
        let start = Instant::now();
        let hash = hasher.hash(API_KEY_DOMAIN, token);
        let hashed = start.elapsed();
        let found = store.api_key_by_hash(&Principal::System, &hash).await.unwrap();
        check.push(start.elapsed());
        assert!(found.is_some());
        hash_only.push(hashed);
        let start = Instant::now();
        black_box(Sha256::digest(black_box(token.as_bytes())));
        reference.push(start.elapsed());
    }
    for v in [&mut check, &mut hash_only, &mut reference] {
        v.sort();
    }
    println!("API-key check ({USERS} users with a key each, {LOOKUPS} lookups, SQLite):");
    for (label, v) in
        [("HMAC + api_key_by_hash", &check), ("HMAC alone", &hash_only), ("reference: SHA-256 of the key", &reference)]
    {
        println!("  {label:<30} p50 {:>8.1} µs  p99 {:>8.1} µs", us(percentile(v, 0.50)), us(percentile(v, 0.99)));
    }
}

async fn rotation(dir: &std::path::Path, users: usize) {
    let key_file = dir.join("master.key");
    let mut master = MasterKeys::generate_for_tests();
    master.save(&key_file).expect("save master key");
    let keys = KeyStore::connect(&clawden_store::sqlite_url(&dir.join("keys-rotate.db"))).await.expect("key store");
    let keyring =
        Keyring::open(master.clone(), MasterKeySource::File(key_file.clone()), keys, 0).await.expect("keyring");
    let start = Instant::now();
    for i in 0..users {
        let owner = format!("user:{}", uuid::Uuid::now_v7());
        let wrapped = Dek::generate().wrap(&master, &owner);
        keyring.key_store().insert_if_absent(&owner, &wrapped, i64::try_from(i).unwrap_or(0)).await.unwrap();
    }
    let inserted = start.elapsed();
    master.add_version();
    master.save(&key_file).expect("save rotated master key");
    let start = Instant::now();
    let mut done = 0usize;
    let mut batches = 0usize;
    loop {
        let n = keyring.rewrap_batch(1000).await.unwrap();
        if n == 0 {
            break;
        }
        done += n;
        batches += 1;
    }
    let took = start.elapsed();
    // The reference: hashing the same number of 60-byte wrapped keys, nothing else.
    let sample = vec![0xa5u8; 60];
    let ref_start = Instant::now();
    for _ in 0..done {
        black_box(Sha256::digest(black_box(&sample)));
    }
    let ref_took = ref_start.elapsed();
    let counts = keyring.key_store().count_by_version().await.unwrap();
    println!("master-key rotation ({users} user keys + the pepper, SQLite key store, batches of 1000):");
    println!("  setup: inserted {users} wrapped keys in {:.1} s (not counted)", inserted.as_secs_f64());
    println!(
        "  Keyring::rewrap_batch   {:>8.2} s total, {done} keys in {batches} transactions, {:.0} keys/s",
        took.as_secs_f64(),
        done as f64 / took.as_secs_f64()
    );
    println!("  reference: SHA-256 of {done} × 60 bytes   {:>8.3} s", ref_took.as_secs_f64());
    println!("  keys by master-key version afterwards: {counts:?}");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let users = std::env::var("CRYPTO_BENCH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000usize);
    let dir = tempfile::tempdir().expect("temp dir");
    println!("clawden crypto benchmark ({} build)", if cfg!(debug_assertions) { "DEBUG" } else { "release" });
    seal_open();
    api_key_check(dir.path()).await;
    rotation(dir.path(), users).await;
}
