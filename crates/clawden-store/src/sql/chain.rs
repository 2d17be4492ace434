//! Tamper evidence for the audit log: every record carries an HMAC over its canonical encoding
//! and the previous record's MAC, one chain per account and per instance, and each chain's
//! head (last sequence number and MAC) is kept in the key store, apart from the audit table.
//!
//! Records are written in the transaction of their action without a MAC; the server chains
//! them shortly after (every housekeeping tick) and `clawden audit verify` chains what is left
//! before it checks. An edited, deleted or reordered record, or a cut tail, then no longer
//! matches.

use super::{get_i64, get_opt_str, get_str, SqlStore};
use crate::{StoreError, StoreResult};
use clawden_core::Principal;
use clawden_crypto::KeyedHasher;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::HashMap;

const MAC_DOMAIN: &str = "audit-record";
/// The MAC a chain's first record links to.
const GENESIS: [u8; 32] = [0; 32];

/// The first problem `verify_audit` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The chain.
    pub chain: String,
    /// The first sequence number that does not verify.
    pub seq: i64,
    /// What is wrong.
    pub reason: String,
}

fn canonical(row: &AnyRow) -> StoreResult<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    let seq = get_i64(row, "seq")?.to_string();
    let at = get_i64(row, "at")?.to_string();
    let fields = [
        get_str(row, "chain")?,
        seq,
        at,
        get_opt_str(row, "actor_user_id")?.unwrap_or_default(),
        get_opt_str(row, "instance_id")?.unwrap_or_default(),
        get_str(row, "action")?,
        get_str(row, "target")?,
        get_str(row, "outcome")?,
        get_opt_str(row, "ip")?.unwrap_or_default(),
    ];
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    let details: Option<Vec<u8>> = row.try_get("details")?;
    let details = details.unwrap_or_default();
    out.extend_from_slice(&(details.len() as u32).to_be_bytes());
    out.extend_from_slice(&details);
    Ok(out)
}

fn link(mac: &KeyedHasher, row: &AnyRow, prev: &[u8]) -> StoreResult<[u8; 32]> {
    let mut input = canonical(row)?;
    input.extend_from_slice(prev);
    Ok(mac.mac(MAC_DOMAIN, &input))
}

const COLUMNS: &str = "id, chain, seq, at, actor_user_id, instance_id, action, target, outcome, ip, details, mac";

impl SqlStore {
    /// Computes the MAC of every record not chained yet, in order, and moves the chains'
    /// heads forward. Returns how many records it chained.
    pub async fn chain_audit(&self, now: i64) -> StoreResult<usize> {
        let mac = self.keyring.audit_mac(now).await?;
        let checkpoints: HashMap<String, (i64, Vec<u8>)> =
            self.keyring.key_store().audit_checkpoints().await?.into_iter().map(|(c, s, m)| (c, (s, m))).collect();
        let mut total = 0;
        loop {
            let mut tx = self.begin(&Principal::System).await?;
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM audit_log WHERE mac IS NULL ORDER BY chain, seq LIMIT 1000"
            ))
            .fetch_all(&mut *tx.tx)
            .await?;
            if rows.is_empty() {
                tx.commit().await?;
                return Ok(total);
            }
            let mut prev: HashMap<String, (i64, Vec<u8>)> = HashMap::new();
            let mut heads = Vec::new();
            let mut done = 0;
            for row in &rows {
                let chain = get_str(row, "chain")?;
                let seq = get_i64(row, "seq")?;
                let before = match prev.get(&chain) {
                    Some((s, m)) if *s == seq - 1 => Some(m.clone()),
                    _ if seq == 1 => Some(GENESIS.to_vec()),
                    _ => match sqlx::query_scalar::<_, Option<Vec<u8>>>(
                        "SELECT mac FROM audit_log WHERE chain = $1 AND seq = $2",
                    )
                    .bind(&chain)
                    .bind(seq - 1)
                    .fetch_optional(&mut *tx.tx)
                    .await?
                    {
                        Some(mac) => mac,
                        // The predecessor was removed by retention: link to the checkpoint.
                        None => checkpoints.get(&chain).filter(|(s, _)| *s == seq - 1).map(|(_, m)| m.clone()),
                    },
                };
                // A missing or unchained predecessor is a gap `verify` reports; never paper
                // over it by chaining past it.
                let Some(before) = before else { continue };
                let this = link(&mac, row, &before)?;
                sqlx::query("UPDATE audit_log SET mac = $1 WHERE id = $2")
                    .bind(this.to_vec())
                    .bind(get_str(row, "id")?)
                    .execute(&mut *tx.tx)
                    .await?;
                prev.insert(chain, (seq, this.to_vec()));
                done += 1;
            }
            tx.commit().await?;
            for (chain, (seq, m)) in prev {
                heads.push((chain, seq, m));
            }
            self.keyring.key_store().advance_audit_heads(&heads).await?;
            total += done;
            if done == 0 {
                return Ok(total);
            }
        }
    }

    /// Removes chained records older than `cutoff` from the start of every chain, keeping
    /// each chain verifiable: the last removed record's sequence number and MAC become the
    /// chain's checkpoint in the key store (written before anything is removed). Only the
    /// audit log is touched; conversations are never removed here. Returns how many records
    /// were removed.
    pub async fn apply_audit_retention(&self, cutoff: i64, now: i64) -> StoreResult<u64> {
        self.chain_audit(now).await?;
        let mut removed = 0;
        let chains: Vec<String> = {
            let mut conn = self.conn(&Principal::System).await?;
            sqlx::query_scalar("SELECT DISTINCT chain FROM audit_log WHERE at < $1 AND mac IS NOT NULL")
                .bind(cutoff)
                .fetch_all(&mut *conn)
                .await?
        };
        for chain in chains {
            let mut tx = self.begin(&Principal::System).await?;
            // The longest run from the start of the chain that is old and chained.
            let rows = sqlx::query("SELECT seq, at, mac FROM audit_log WHERE chain = $1 ORDER BY seq")
                .bind(&chain)
                .fetch_all(&mut *tx.tx)
                .await?;
            let mut last: Option<(i64, Vec<u8>)> = None;
            for row in &rows {
                let at = get_i64(row, "at")?;
                let mac: Option<Vec<u8>> = row.try_get("mac")?;
                match mac {
                    Some(mac) if at < cutoff => last = Some((get_i64(row, "seq")?, mac)),
                    _ => break,
                }
            }
            let Some((seq, mac)) = last else { continue };
            self.keyring.key_store().advance_audit_checkpoint(&chain, seq, &mac).await?;
            let done = sqlx::query("DELETE FROM audit_log WHERE chain = $1 AND seq <= $2")
                .bind(&chain)
                .bind(seq)
                .execute(&mut *tx.tx)
                .await?;
            tx.commit().await?;
            removed += done.rows_affected();
        }
        Ok(removed)
    }

    /// Checks every chain (or only `chain`): sequence numbers without gaps from the first,
    /// every MAC, and the last record against the head kept in the key store. Returns the
    /// first break, or `None` when everything verifies.
    pub async fn verify_audit(&self, only: Option<&str>, now: i64) -> StoreResult<Option<ChainBreak>> {
        let mac = self.keyring.audit_mac(now).await?;
        let heads: HashMap<String, (i64, Vec<u8>)> =
            self.keyring.key_store().audit_heads().await?.into_iter().map(|(c, s, m)| (c, (s, m))).collect();
        let checkpoints: HashMap<String, (i64, Vec<u8>)> =
            self.keyring.key_store().audit_checkpoints().await?.into_iter().map(|(c, s, m)| (c, (s, m))).collect();
        let mut chains: Vec<String> = match only {
            Some(c) => vec![c.to_owned()],
            None => {
                let mut conn = self.conn(&Principal::System).await?;
                sqlx::query_scalar("SELECT DISTINCT chain FROM audit_log").fetch_all(&mut *conn).await?
            }
        };
        // A chain whose records are all gone but whose head remains was deleted wholesale.
        for chain in heads.keys() {
            if only.is_none_or(|c| c == chain) && !chains.contains(chain) {
                chains.push(chain.clone());
            }
        }
        chains.sort();
        for chain in chains {
            let mut conn = self.conn(&Principal::System).await?;
            let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log WHERE chain = $1 ORDER BY seq"))
                .bind(&chain)
                .fetch_all(&mut *conn)
                .await?;
            let broken =
                |seq: i64, reason: &str| Ok(Some(ChainBreak { chain: chain.clone(), seq, reason: reason.to_owned() }));
            // After a retention cut the chain continues from its checkpoint.
            let (start, mut prev) = match checkpoints.get(&chain) {
                Some((seq, mac)) => (*seq, mac.clone()),
                None => (0, GENESIS.to_vec()),
            };
            let mut last_chained = start;
            let kept = rows.iter().filter(|r| get_i64(r, "seq").is_ok_and(|s| s > start));
            for (expected, row) in (start + 1..).zip(kept) {
                let seq = get_i64(row, "seq")?;
                if seq != expected {
                    return broken(expected, "a record is missing (deleted or reordered)");
                }
                let stored: Option<Vec<u8>> = row.try_get("mac")?;
                let Some(stored) = stored else {
                    // Not chained yet: everything after it is unchained too.
                    break;
                };
                let this = link(&mac, row, &prev)?;
                if !clawden_crypto::token::ct_bytes_eq(&this, &stored) {
                    return broken(seq, "the record's MAC does not match (edited, moved or replaced)");
                }
                prev = stored;
                last_chained = seq;
            }
            if let Some((head_seq, head_mac)) = heads.get(&chain) {
                if last_chained < *head_seq {
                    return broken(
                        last_chained + 1,
                        "the chain is shorter than its recorded head (records cut from the end)",
                    );
                }
                if last_chained == *head_seq && prev != *head_mac {
                    return broken(last_chained, "the last record does not match the recorded head");
                }
            }
        }
        Ok(None)
    }
}

impl From<ChainBreak> for StoreError {
    fn from(b: ChainBreak) -> Self {
        StoreError::Corrupt(format!("audit chain {} breaks at {}: {}", b.chain, b.seq, b.reason))
    }
}
