//! The audit trail's trees: records and signed checkpoints, keyed by sequence number.

use std::ops::Deref;

use super::Store;
use crate::store::{Result, StoreError};

/// A stored value as the backend hands it out, without a copy: read it as `&[u8]`.
#[derive(Debug, Clone)]
pub struct Bytes(sled::IVec);

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A tree of values keyed by big-endian sequence number, oldest first: the storage under
/// both the audit records and their signed checkpoints.
#[derive(Clone)]
pub struct SeqTree {
    tree: sled::Tree,
}

impl SeqTree {
    fn open(store: &Store, name: &str) -> Result<Self> {
        Ok(Self {
            tree: store.db.open_tree(name)?,
        })
    }

    /// The newest value, if any.
    pub fn last(&self) -> Result<Option<(u64, Bytes)>> {
        Ok(self.tree.last()?.map(|(k, v)| (key_seq(&k), Bytes(v))))
    }

    pub fn insert(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.tree.insert(seq.to_be_bytes(), bytes)?;
        Ok(())
    }

    /// Overwrites a value in place (only the tamper tests do this).
    pub fn overwrite(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.insert(seq, bytes)
    }

    pub fn get(&self, seq: u64) -> Result<Option<Bytes>> {
        Ok(self.tree.get(seq.to_be_bytes())?.map(Bytes))
    }

    /// Every value, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Result<(u64, Bytes)>> + '_ {
        self.tree
            .iter()
            .map(|item| item.map(|(k, v)| (key_seq(&k), Bytes(v))).map_err(StoreError::from))
    }

    /// Removes the values with a sequence number below `seq`.
    pub fn remove_before(&self, seq: u64) -> Result<usize> {
        let mut removed = 0;
        for key in self.tree.range(..seq.to_be_bytes()).keys() {
            self.tree.remove(key?)?;
            removed += 1;
        }
        Ok(removed)
    }

    pub async fn flush(&self) -> Result<()> {
        self.tree.flush_async().await?;
        Ok(())
    }
}

fn key_seq(k: &[u8]) -> u64 {
    k.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// The audit tree: records keyed by sequence number. The record encoding and the hash
/// chain belong to `crate::audit`; this is storage only.
#[derive(Clone)]
pub struct AuditTree(SeqTree);

impl AuditTree {
    pub fn open(store: &Store) -> Result<Self> {
        SeqTree::open(store, "audit").map(Self)
    }
}

impl Deref for AuditTree {
    type Target = SeqTree;

    fn deref(&self) -> &SeqTree {
        &self.0
    }
}

/// Signed checkpoints of the audit chain, keyed by the sequence number of the record
/// each names. Their encoding and signatures belong to `crate::audit`.
#[derive(Clone)]
pub struct CheckpointTree(SeqTree);

impl CheckpointTree {
    pub fn open(store: &Store) -> Result<Self> {
        SeqTree::open(store, "audit_checkpoints").map(Self)
    }
}

impl Deref for CheckpointTree {
    type Target = SeqTree;

    fn deref(&self) -> &SeqTree {
        &self.0
    }
}
