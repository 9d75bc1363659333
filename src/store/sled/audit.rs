//! The audit trail's storage: records in the trail's file ([`super::trail`]), signed
//! checkpoints in a tree keyed by big-endian sequence number, and the move of records
//! that earlier versions kept in a tree ([`pack`]) into the file. The record encoding and
//! the hash chain belong to `crate::audit`; this is storage only.

use super::{pack, SledStore};
use crate::store::backend::ChainFrom;
use crate::store::Result;

impl SledStore {
    /// Appends what `chain` builds from the head: one chain, whichever handle of this
    /// database appends.
    pub(super) fn audit_append_now(&self, chain: ChainFrom<'_>) -> Result<()> {
        self.trail.append(chain)
    }

    /// The newest record and its sequence number.
    pub(super) fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        Ok(self.trail.last())
    }

    pub(super) fn audit_get(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        self.trail.get(seq)
    }

    /// Up to `limit` records from `from` on, oldest first.
    pub(super) fn audit_range(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.trail.range(from, limit)
    }

    /// Removes the records with a sequence number below `seq`; how many.
    pub(super) fn audit_remove_before(&self, seq: u64) -> Result<usize> {
        self.trail.remove_before(seq)
    }

    /// Replaces the record `seq` (the tamper tests' tool).
    pub(super) fn audit_overwrite(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.trail.overwrite(seq, bytes)
    }

    /// Moves the records an earlier version kept in the `audit` tree (one record or one
    /// [`pack`] a value) into the trail's file, then empties the tree. A move cut short
    /// is finished at the next opening: what the file already holds is not added again.
    pub(super) fn move_audit_tree(&self) -> Result<()> {
        if self.audit.is_empty() {
            return Ok(());
        }
        let newest = self.trail.last().map(|(seq, _)| seq);
        let mut moved = 0;
        let mut batch = Vec::new();
        for item in self.audit.iter() {
            let (k, v) = item?;
            for (seq, record) in (key_seq(&k)..).zip(pack::unpack(&v)?) {
                if newest.is_none_or(|n| seq > n) {
                    batch.push((seq, record.to_vec()));
                }
            }
            if batch.len() >= 4096 {
                moved += batch.len();
                let records = std::mem::take(&mut batch);
                self.trail.append(|_| records)?;
            }
        }
        moved += batch.len();
        self.trail.append(|_| batch)?;
        self.trail.sync()?;
        self.audit.clear()?;
        self.db.flush()?;
        tracing::info!(
            moved,
            "audit records moved from the database into {}/",
            super::trail::DIR
        );
        Ok(())
    }
}

/// The newest value of a tree keyed by sequence number, one value a key (the
/// checkpoints).
pub(super) fn last(tree: &sled::Tree) -> Result<Option<(u64, Vec<u8>)>> {
    Ok(tree.last()?.map(|(k, v)| (key_seq(&k), v.to_vec())))
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
