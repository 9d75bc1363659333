//! The audit trail's trees: records and signed checkpoints, keyed by big-endian sequence
//! number, records several to a value ([`pack`]). The record encoding and the hash
//! chain belong to `crate::audit`; this is storage only.

use super::{pack, SledStore};
use crate::store::backend::ChainFrom;
use crate::store::Result;

impl SledStore {
    /// Appends what `chain` builds from the head, under the lock that makes appends from
    /// every handle of this database one chain; the records go in one atomic batch, a
    /// pack ([`pack`]) per run of them.
    pub(super) fn audit_append_now(&self, chain: ChainFrom<'_>) -> Result<()> {
        let _one_at_a_time = self.audit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let head = self.audit_last()?;
        let records = chain(head);
        if records.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for run in pack::runs(&records) {
            batch.insert(
                &run[0].0.to_be_bytes(),
                pack::pack(run.iter().map(|(_, b)| b.as_slice())),
            );
        }
        self.audit.apply_batch(batch)?;
        Ok(())
    }

    /// The newest record and its sequence number.
    pub(super) fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let Some((k, v)) = self.audit.last()? else {
            return Ok(None);
        };
        let records = pack::unpack(&v)?;
        let newest = records.len() - 1;
        Ok(Some((key_seq(&k) + newest as u64, records[newest].to_vec())))
    }

    /// The pack holding `seq`, if one may: the one stored under the greatest key at
    /// or below it, with its first sequence number.
    fn audit_pack_at(&self, seq: u64) -> Result<Option<(u64, sled::IVec)>> {
        Ok(self
            .audit
            .range(..=seq.to_be_bytes())
            .next_back()
            .transpose()?
            .map(|(k, v)| (key_seq(&k), v)))
    }

    pub(super) fn audit_get(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        let Some((first, value)) = self.audit_pack_at(seq)? else {
            return Ok(None);
        };
        let records = pack::unpack(&value)?;
        Ok(usize::try_from(seq - first)
            .ok()
            .and_then(|i| records.get(i))
            .map(|r| r.to_vec()))
    }

    /// Up to `limit` records from `from` on, oldest first.
    pub(super) fn audit_range(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let start = self.audit_pack_at(from)?.map_or(from, |(first, _)| first);
        for item in self.audit.range(start.to_be_bytes()..) {
            let (k, v) = item?;
            for (seq, record) in (key_seq(&k)..).zip(pack::unpack(&v)?) {
                if seq >= from {
                    out.push((seq, record.to_vec()));
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Removes the records with a sequence number below `seq`; how many. A pack that
    /// holds `seq` too is stored again, under `seq`, with the rest, in one batch.
    pub(super) fn audit_remove_before(&self, seq: u64) -> Result<usize> {
        let _one_at_a_time = self.audit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut removed = 0;
        for item in self.audit.range(..seq.to_be_bytes()) {
            let (k, v) = item?;
            let records = pack::unpack(&v)?;
            let gone = usize::try_from(seq - key_seq(&k))
                .unwrap_or(usize::MAX)
                .min(records.len());
            let mut batch = sled::Batch::default();
            batch.remove(&k);
            if gone < records.len() {
                batch.insert(&seq.to_be_bytes(), pack::pack(records[gone..].iter().copied()));
            }
            self.audit.apply_batch(batch)?;
            removed += gone;
        }
        Ok(removed)
    }

    /// Replaces the record `seq` (the tamper tests' tool).
    pub(super) fn audit_overwrite(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        let _one_at_a_time = self.audit_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((first, value)) = self.audit_pack_at(seq)? {
            let mut records = pack::unpack(&value)?;
            if let Some(record) = usize::try_from(seq - first).ok().and_then(|i| records.get_mut(i)) {
                *record = bytes;
                self.audit.insert(first.to_be_bytes(), pack::pack(records))?;
                return Ok(());
            }
        }
        self.audit.insert(seq.to_be_bytes(), pack::pack([bytes]))?;
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
