//! Signed checkpoints of the chain's head, and verification anchored to them.

use std::time::Duration;

use super::*;
use crate::store::{Store, StoreError};

/// The tree of signed checkpoints, as named in corruption errors.
const CHECKPOINTS: &str = "audit_checkpoints";
/// How often a running gateway signs a checkpoint of the head (when it moved): well
/// within the promised minute.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);
// The promise is at least one checkpoint a minute while the head moves.
const _: () = assert!(CHECKPOINT_EVERY.as_secs() <= 60);
/// The first line of every checkpoint's signed text: what it is, and its version.
pub const CHECKPOINT_FORMAT: &str = "portcullis-audit-checkpoint/1";

/// What signs and verifies checkpoints: the gateway's token signing key
/// (`crate::auth::tokens::KeyRing`), behind a trait so that the audit trail depends on
/// nothing above it.
pub trait Signer {
    /// The key's id (the JWKS `kid`), named in each checkpoint.
    fn key_id(&self) -> &str;
    /// A signature of `message`, base64url.
    fn sign(&self, message: &[u8]) -> Option<String>;
    /// Whether `signature` is this key's of `message`.
    fn verify(&self, message: &[u8], signature: &str) -> bool;
}

/// A signed statement that record `seq` of the chain had hash `hash` at `time`. The
/// chain alone cannot tell a rewritten-and-rehashed or cut tail from the real one; a
/// checkpoint can, wherever it is kept. Self-contained: `audit checkpoint` prints one as
/// JSON for the operator to keep off the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: String,
    pub seq: u64,
    pub hash: String,
    pub time: String,
    pub kid: String,
    pub signature: String,
}

impl Checkpoint {
    /// The exact text that is signed.
    fn message(&self) -> Vec<u8> {
        format!(
            "{}\nseq={}\nhash={}\ntime={}\nkid={}\n",
            self.format, self.seq, self.hash, self.time, self.kid
        )
        .into_bytes()
    }

    /// Whether the checkpoint is in the known format and signed by `signer`'s key.
    pub fn signed_by(&self, signer: &dyn Signer) -> bool {
        self.format == CHECKPOINT_FORMAT
            && self.kid == signer.key_id()
            && signer.verify(&self.message(), &self.signature)
    }
}

fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        tree: CHECKPOINTS,
        source,
    })
}

/// The newest stored checkpoint.
pub async fn latest_checkpoint(store: &Store) -> Result<Option<Checkpoint>, StoreError> {
    store
        .checkpoint_last()
        .await?
        .map(|(_, v)| decode_checkpoint(&v))
        .transpose()
}

/// The sequence number of the newest record, if any.
pub async fn head_seq(store: &Store) -> Result<Option<u64>, StoreError> {
    Ok(store.audit_last().await?.map(|(seq, _)| seq))
}

/// Signs and stores a checkpoint of the chain's head when the head is past the newest
/// checkpoint (the gateway calls this at least every minute and at shutdown). The
/// records are flushed first, so a checkpoint never names a record a crash could lose.
/// Returns the new checkpoint, or `None` when the head has not moved.
pub async fn sign_checkpoint(
    store: &Store,
    signer: &(dyn Signer + Sync),
    now_ms: u64,
) -> Result<Option<Checkpoint>, StoreError> {
    store.flush().await?;
    let Some((seq, bytes)) = store.audit_last().await? else {
        return Ok(None);
    };
    if latest_checkpoint(store).await?.is_some_and(|c| c.seq >= seq) {
        return Ok(None);
    }
    let head: Record =
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { tree: "audit", source })?;
    let mut checkpoint = Checkpoint {
        format: CHECKPOINT_FORMAT.to_owned(),
        seq,
        hash: head.hash,
        time: rfc3339(now_ms),
        kid: signer.key_id().to_owned(),
        signature: String::new(),
    };
    let Some(signature) = signer.sign(&checkpoint.message()) else {
        tracing::error!("cannot sign an audit checkpoint");
        return Ok(None);
    };
    checkpoint.signature = signature;
    let json = serde_json::to_vec(&checkpoint).map_err(|source| StoreError::Corrupt {
        tree: CHECKPOINTS,
        source,
    })?;
    store.checkpoint_put(seq, &json).await?;
    store.flush().await?;
    Ok(Some(checkpoint))
}

/// What `audit verify` found: the chain, and how many signed checkpoints it was held to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub verification: Verification,
    /// Checkpoints checked (stored ones, and the exported one when given).
    pub checkpoints: u64,
    /// The newest checkpoint checked: its sequence number and time.
    pub latest: Option<(u64, String)>,
}

/// [`verify`], then holds the chain to every stored checkpoint and to `exported` (one
/// printed by `audit checkpoint` earlier): each must carry a good signature of the
/// gateway's key, and the record it names must exist with the hash it names. A cut
/// tail or a rewritten and re-hashed one fails here; deleting the stored checkpoints as
/// well is caught only by an exported one. Stored checkpoints of pruned records are
/// skipped; an exported one of a record no longer kept fails.
pub async fn verify_anchored(
    store: &Store,
    signer: &(dyn Signer + Sync),
    exported: Option<&Checkpoint>,
) -> Result<Report, StoreError> {
    let broken = |seq, reason: String, checkpoints| Report {
        verification: Verification::Broken { seq, reason },
        checkpoints,
        latest: None,
    };
    if let Some(c) = exported {
        if !c.signed_by(signer) {
            let reason = if c.kid == signer.key_id() {
                "the given checkpoint's signature does not verify".to_owned()
            } else {
                format!(
                    "the given checkpoint is signed by another key ({:?}), or its signature does not verify",
                    c.kid
                )
            };
            return Ok(broken(c.seq, reason, 0));
        }
    }
    let chain = verify(store).await?;
    if let Verification::Broken { .. } = chain {
        return Ok(Report {
            verification: chain,
            checkpoints: 0,
            latest: None,
        });
    }
    let first = store.audit_range(0, 1).await?.first().map(|(seq, _)| *seq);
    let last = store.audit_last().await?.map(|(seq, _)| seq);
    let mut stored = Vec::new();
    let mut from = 0;
    loop {
        let page = store.checkpoint_range(from, PAGE).await?;
        for (seq, v) in &page {
            stored.push((decode_checkpoint(v)?, false));
            from = seq + 1;
        }
        if page.len() < PAGE {
            break;
        }
    }
    stored.extend(exported.map(|c| (c.clone(), true)));
    let mut checked = 0;
    let mut latest: Option<(u64, String)> = None;
    for (c, is_exported) in &stored {
        let which = if *is_exported {
            "the given checkpoint"
        } else {
            "a stored checkpoint"
        };
        if !is_exported && !c.signed_by(signer) {
            return Ok(broken(
                c.seq,
                format!("{which} of {} has a bad signature", c.time),
                checked,
            ));
        }
        match store.audit_get(c.seq).await? {
            Some(bytes) => {
                let r: Record =
                    serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { tree: "audit", source })?;
                if r.hash != c.hash {
                    return Ok(broken(
                        c.seq,
                        format!(
                            "differs from {which} signed at {}: the records up to it were rewritten",
                            c.time
                        ),
                        checked,
                    ));
                }
            }
            None if first.is_some_and(|f| c.seq < f) && !is_exported => continue,
            None => {
                let reason = match last {
                    Some(last) if c.seq > last => format!(
                        "missing: the chain ends at record {last}, but {which} signed at {} names record {}",
                        c.time, c.seq
                    ),
                    _ => format!("missing: {which} signed at {} names it (cut or pruned)", c.time),
                };
                return Ok(broken(c.seq, reason, checked));
            }
        }
        checked += 1;
        if latest.as_ref().is_none_or(|(seq, _)| c.seq >= *seq) {
            latest = Some((c.seq, c.time.clone()));
        }
    }
    Ok(Report {
        verification: chain,
        checkpoints: checked,
        latest,
    })
}
