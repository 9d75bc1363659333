//! The audit trail's trees: records and signed checkpoints, keyed by big-endian sequence
//! number. The record encoding and the hash chain belong to `crate::audit`; this is
//! storage only.

use super::SledStore;
use crate::store::backend::ChainFrom;
use crate::store::Result;

impl SledStore {
    /// Appends what `chain` builds from the head, under the lock that makes appends from
    /// every handle of this database one chain; the records go in one atomic batch.
    pub(super) fn audit_append_now(&self, chain: ChainFrom<'_>) -> Result<()> {
        let _one_at_a_time = self.audit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let head = self.audit.last()?.map(|(k, v)| (key_seq(&k), v.to_vec()));
        let records = chain(head);
        if records.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (seq, bytes) in records {
            batch.insert(&seq.to_be_bytes(), bytes);
        }
        self.audit.apply_batch(batch)?;
        Ok(())
    }
}

/// The newest value of a tree keyed by sequence number.
pub(super) fn last(tree: &sled::Tree) -> Result<Option<(u64, Vec<u8>)>> {
    Ok(tree.last()?.map(|(k, v)| (key_seq(&k), v.to_vec())))
}

pub(super) fn get(tree: &sled::Tree, seq: u64) -> Result<Option<Vec<u8>>> {
    Ok(tree.get(seq.to_be_bytes())?.map(|v| v.to_vec()))
}

pub(super) fn put(tree: &sled::Tree, seq: u64, bytes: &[u8]) -> Result<()> {
    tree.insert(seq.to_be_bytes(), bytes)?;
    Ok(())
}

/// Up to `limit` values from `from` on, oldest first.
pub(super) fn range(tree: &sled::Tree, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
    tree.range(from.to_be_bytes()..)
        .take(limit)
        .map(|item| {
            let (k, v) = item?;
            Ok((key_seq(&k), v.to_vec()))
        })
        .collect()
}

/// Removes the values with a sequence number below `seq`.
pub(super) fn remove_before(tree: &sled::Tree, seq: u64) -> Result<usize> {
    let mut removed = 0;
    for key in tree.range(..seq.to_be_bytes()).keys() {
        tree.remove(key?)?;
        removed += 1;
    }
    Ok(removed)
}

fn key_seq(k: &[u8]) -> u64 {
    k.try_into().map(u64::from_be_bytes).unwrap_or(0)
}
