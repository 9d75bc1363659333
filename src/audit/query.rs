//! Reading the trail: listing, verifying the chain, pruning old records.

use super::*;
use crate::store::{Store, StoreError};

/// How many records a walk of the trail reads from the store at a time.
pub(crate) const PAGE: usize = 1024;

/// Every record of the trail from the oldest, a page at a time: `visit` sees each
/// (sequence number, bytes) in order and returns false to stop.
pub(crate) async fn walk(
    store: &Store,
    mut visit: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut from = 0;
    loop {
        let page = store.audit_range(from, PAGE).await?;
        let full = page.len() == PAGE;
        for (seq, bytes) in &page {
            if !visit(*seq, bytes)? {
                return Ok(());
            }
            from = seq + 1;
        }
        if !full {
            return Ok(());
        }
    }
}

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
pub async fn list(store: &Store, q: &Query) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::new();
    walk(store, |_, bytes| {
        let r: Record =
            serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt { tree: "audit", source })?;
        if q.user
            .as_ref()
            .is_some_and(|u| r.event.user_id.as_ref() != Some(u) && r.event.email.as_ref() != Some(u))
        {
            return Ok(true);
        }
        if q.event.as_ref().is_some_and(|e| &r.event.event != e) {
            return Ok(true);
        }
        let ms = record_ms(&r);
        if q.since_ms.is_some_and(|s| ms < s) || q.until_ms.is_some_and(|u| ms >= u) {
            return Ok(true);
        }
        out.push(r);
        Ok(true)
    })
    .await?;
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
pub async fn verify(store: &Store) -> Result<Verification, StoreError> {
    let mut prev: Option<(u64, String)> = None;
    let mut count = 0;
    let mut broken = None;
    walk(store, |seq, bytes| {
        match check(seq, bytes, prev.as_ref()) {
            Ok(hash) => {
                prev = Some((seq, hash));
                count += 1;
            }
            Err(reason) => broken = Some(Verification::Broken { seq, reason }),
        }
        Ok(broken.is_none())
    })
    .await?;
    Ok(broken.unwrap_or(Verification::Intact { records: count }))
}

/// Checks one record against the one before it (none for the oldest kept); its hash, or
/// why it breaks the chain.
fn check(seq: u64, bytes: &[u8], prev: Option<&(u64, String)>) -> Result<String, String> {
    let r: Record = serde_json::from_slice(bytes).map_err(|e| format!("unreadable: {e}"))?;
    if r.seq != seq {
        return Err(format!("stored under {seq} but says {}", r.seq));
    }
    if r.compute_hash() != r.hash {
        return Err("content does not match its hash".into());
    }
    if let Some((pseq, phash)) = prev {
        if seq != pseq + 1 {
            return Err(format!("records {}..{} are missing", pseq + 1, seq - 1));
        }
        if &r.prev_hash != phash {
            return Err("does not chain to the record before it".into());
        }
    } else if seq == 1 && r.prev_hash != GENESIS {
        return Err("the first record does not start the chain".into());
    }
    Ok(r.hash)
}

/// Removes records older than `before_ms`. The oldest kept record keeps its `prev_hash`,
/// so the chain stays verifiable from there on.
pub async fn prune(store: &Store, before_ms: u64) -> Result<usize, StoreError> {
    let mut first_kept = None;
    walk(store, |seq, bytes| {
        let r: Record =
            serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt { tree: "audit", source })?;
        if record_ms(&r) >= before_ms {
            first_kept = Some(seq);
        }
        Ok(first_kept.is_none())
    })
    .await?;
    let removed = match first_kept {
        Some(seq) => store.audit_remove_before(seq).await?,
        // Keep the newest record even when everything is old, so the chain has a head.
        None => match store.audit_last().await? {
            Some((seq, _)) => store.audit_remove_before(seq).await?,
            None => 0,
        },
    };
    // Checkpoints of records no longer kept cannot be checked: they go too.
    if let Some((first, _)) = store.audit_range(0, 1).await?.into_iter().next() {
        store.checkpoint_remove_before(first).await?;
    }
    Ok(removed)
}
