//! Reading the trail: listing, verifying the chain, pruning old records.

use super::*;
use crate::store::{AuditTree, CheckpointTree, Store, StoreError};

/// Filters of `audit list`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Query {
    pub user: Option<String>,
    pub event: Option<String>,
    /// Unix ms, inclusive.
    pub since_ms: Option<u64>,
    /// Unix ms, exclusive.
    pub until_ms: Option<u64>,
    /// The newest `limit` matching records (still printed oldest first).
    pub limit: Option<usize>,
}

fn record_ms(r: &Record) -> u64 {
    humantime::parse_rfc3339(&r.time)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Records matching a query, oldest first.
pub fn list(store: &Store, q: &Query) -> Result<Vec<Record>, StoreError> {
    let tree = AuditTree::open(store)?;
    let mut out = Vec::new();
    for item in tree.iter() {
        let (_, bytes) = item?;
        let r: Record =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { tree: "audit", source })?;
        if q.user
            .as_ref()
            .is_some_and(|u| r.event.user_id.as_ref() != Some(u) && r.event.email.as_ref() != Some(u))
        {
            continue;
        }
        if q.event.as_ref().is_some_and(|e| &r.event.event != e) {
            continue;
        }
        let ms = record_ms(&r);
        if q.since_ms.is_some_and(|s| ms < s) || q.until_ms.is_some_and(|u| ms >= u) {
            continue;
        }
        out.push(r);
    }
    if let Some(limit) = q.limit {
        let skip = out.len().saturating_sub(limit);
        out.drain(..skip);
    }
    Ok(out)
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verification {
    Intact { records: u64 },
    Broken { seq: u64, reason: String },
}

/// Walks the chain from the oldest kept record. Each record's hash must match its content
/// and chain to the record before it, and sequence numbers must have no gaps.
pub fn verify(store: &Store) -> Result<Verification, StoreError> {
    let tree = AuditTree::open(store)?;
    let mut prev: Option<(u64, String)> = None;
    let mut count = 0;
    for item in tree.iter() {
        let (seq, bytes) = item?;
        let r: Record = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Verification::Broken {
                    seq,
                    reason: format!("unreadable: {e}"),
                })
            }
        };
        if r.seq != seq {
            return Ok(Verification::Broken {
                seq,
                reason: format!("stored under {seq} but says {}", r.seq),
            });
        }
        if r.compute_hash() != r.hash {
            return Ok(Verification::Broken {
                seq,
                reason: "content does not match its hash".into(),
            });
        }
        if let Some((pseq, phash)) = &prev {
            if seq != pseq + 1 {
                return Ok(Verification::Broken {
                    seq,
                    reason: format!("records {}..{} are missing", pseq + 1, seq - 1),
                });
            }
            if &r.prev_hash != phash {
                return Ok(Verification::Broken {
                    seq,
                    reason: "does not chain to the record before it".into(),
                });
            }
        } else if seq == 1 && r.prev_hash != GENESIS {
            return Ok(Verification::Broken {
                seq,
                reason: "the first record does not start the chain".into(),
            });
        }
        prev = Some((seq, r.hash));
        count += 1;
    }
    Ok(Verification::Intact { records: count })
}

/// Removes records older than `before_ms`. The oldest kept record keeps its `prev_hash`,
/// so the chain stays verifiable from there on.
pub fn prune(store: &Store, before_ms: u64) -> Result<usize, StoreError> {
    let tree = AuditTree::open(store)?;
    let mut first_kept = None;
    for item in tree.iter() {
        let (seq, bytes) = item?;
        let r: Record =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { tree: "audit", source })?;
        if record_ms(&r) >= before_ms {
            first_kept = Some(seq);
            break;
        }
    }
    let removed = match first_kept {
        Some(seq) => tree.remove_before(seq)?,
        // Keep the newest record even when everything is old, so the chain has a head.
        None => match tree.last()? {
            Some((seq, _)) => tree.remove_before(seq)?,
            None => 0,
        },
    };
    // Checkpoints of records no longer kept cannot be checked: they go too.
    if let Some((first, _)) = tree.iter().next().transpose()? {
        CheckpointTree::open(store)?.remove_before(first)?;
    }
    Ok(removed)
}
