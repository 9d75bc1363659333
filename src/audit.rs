//! The audit trail: every security event as a record in sled, chained by SHA-256 so that
//! altering or removing a record is detected, queryable from the command line.
//!
//! One writer task appends every record, so the chain has one order. Two ways in:
//! - [`Audit::durable`] for authentication and administration events: the caller waits
//!   until the record is on disk, so a response never reports what the trail forgot.
//! - [`Audit::record`] for high-volume events (refused and rate-limited requests,
//!   audited routes): a bounded queue, batched and flushed at least every 100 ms. When a
//!   flood overflows it the gateway keeps serving, counts what it dropped by kind, and
//!   the writer records one `audit_overflow` record saying so: nothing is lost silently.
//!
//! The chain alone cannot tell a tail rewritten and re-hashed, or cut, from the real one:
//! [`sign_checkpoint`] signs the head's `seq` and `hash` with the gateway's key (every
//! [`CHECKPOINT_EVERY`] when it moved, and at shutdown) into a tree of their own, and
//! [`verify_anchored`] holds the chain to every stored checkpoint and to one exported
//! earlier.
//!
//! Records hold no secrets: no password, token, code or confirmation link ever reaches
//! an [`Event`]. User-supplied text is stored as data, and quoted and escaped when shown
//! as text ([`format_line`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::clock::SharedClock;
use crate::store::{AuditTree, CheckpointTree, Store, StoreError};

/// Capacity of the high-volume queue.
pub const QUEUE: usize = 8192;
/// The writer flushes at least this often when records are pending.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// The hash the first record chains to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, as the code that decided it saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    pub event: String,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

impl Event {
    pub fn new(event: &str, outcome: &str) -> Self {
        Self {
            event: event.to_owned(),
            outcome: outcome.to_owned(),
            ..Self::default()
        }
    }
}

/// A stored record: the event, its place in the chain, and the chain hashes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub time: String,
    #[serde(flatten)]
    pub event: Event,
    pub prev_hash: String,
    pub hash: String,
}

impl Record {
    /// SHA-256 over the canonical encoding: the record's JSON (fields in declaration
    /// order, absent options omitted) with `hash` empty; `prev_hash` is inside it.
    pub fn compute_hash(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.hash.clear();
        let bytes = serde_json::to_vec(&unhashed).unwrap_or_default();
        let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Formats Unix milliseconds as RFC 3339 UTC.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

enum Job {
    Durable(Box<Event>, oneshot::Sender<()>),
    /// Write what is queued, flush, and stop.
    Close(oneshot::Sender<()>),
}

/// A handle for writing audit records; cheap to clone.
#[derive(Clone)]
pub struct Audit {
    queue: mpsc::Sender<Event>,
    durable: mpsc::Sender<Job>,
    dropped: Arc<Mutex<BTreeMap<String, u64>>>,
    dropped_total: Arc<AtomicU64>,
}

impl Audit {
    /// Opens the audit tree and starts its writer task. The task ends, after a last
    /// flush, when every handle is dropped.
    pub fn start(store: &Store, clock: SharedClock) -> Result<(Self, tokio::task::JoinHandle<()>), StoreError> {
        Self::start_with_queue(store, clock, QUEUE)
    }

    pub fn start_with_queue(
        store: &Store,
        clock: SharedClock,
        queue: usize,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), StoreError> {
        let tree = AuditTree::open(store)?;
        let (seq, prev) = match tree.last()? {
            Some((seq, bytes)) => {
                let r: Record =
                    serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { tree: "audit", source })?;
                (seq + 1, r.hash)
            }
            None => (1, GENESIS.to_owned()),
        };
        let (queue_tx, queue_rx) = mpsc::channel(queue.max(1));
        let (durable_tx, durable_rx) = mpsc::channel(256);
        let audit = Self {
            queue: queue_tx,
            durable: durable_tx,
            dropped: Arc::default(),
            dropped_total: Arc::default(),
        };
        let writer = Writer {
            tree,
            clock,
            seq,
            prev,
            dropped: audit.dropped.clone(),
            dropped_total: audit.dropped_total.clone(),
        };
        let task = tokio::spawn(writer.run(queue_rx, durable_rx));
        Ok((audit, task))
    }

    /// Writes a record and returns once it is on disk.
    pub async fn durable(&self, event: Event) {
        let (done, wait) = oneshot::channel();
        if self.durable.send(Job::Durable(Box::new(event), done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Writes what is queued, flushes, and stops the writer. Records sent after this are
    /// counted as dropped.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.durable.send(Job::Close(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Queues a high-volume record; never waits. Overflow is counted, not lost silently.
    pub fn record(&self, event: Event) {
        if let Err(e) = self.queue.try_send(event) {
            let kind = match &e {
                mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev) => ev.event.clone(),
            };
            let mut dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
            *dropped.entry(kind).or_default() += 1;
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Writer {
    tree: AuditTree,
    clock: SharedClock,
    seq: u64,
    prev: String,
    dropped: Arc<Mutex<BTreeMap<String, u64>>>,
    dropped_total: Arc<AtomicU64>,
}

impl Writer {
    fn append(&mut self, event: Event) {
        let mut record = Record {
            seq: self.seq,
            time: rfc3339(self.clock.now_ms()),
            event,
            prev_hash: self.prev.clone(),
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        let bytes = serde_json::to_vec(&record).unwrap_or_default();
        match self.tree.insert(record.seq, &bytes) {
            Ok(()) => {
                self.seq += 1;
                self.prev = record.hash;
            }
            Err(e) => tracing::error!(error = %e, event = %record.event.event, "cannot write an audit record"),
        }
    }

    /// Writes one `audit_overflow` record for what the queue dropped since the last one.
    fn account_overflow(&mut self) {
        if self.dropped_total.load(Ordering::Relaxed) == 0 {
            return;
        }
        let counts = std::mem::take(&mut *self.dropped.lock().unwrap_or_else(|p| p.into_inner()));
        let total: u64 = counts.values().sum();
        self.dropped_total.fetch_sub(total, Ordering::Relaxed);
        if total == 0 {
            return;
        }
        let detail: Vec<String> = counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
        let mut ev = Event::new("audit_overflow", "failure");
        ev.reason = Some(format!("queue full: {total} records dropped ({})", detail.join(", ")));
        tracing::warn!(dropped = total, "audit queue overflowed");
        self.append(ev);
    }

    async fn flush(&self) {
        if let Err(e) = self.tree.flush().await {
            tracing::error!(error = %e, "cannot flush the audit trail");
        }
    }

    async fn run(mut self, mut queue: mpsc::Receiver<Event>, mut durable: mpsc::Receiver<Job>) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        let mut dirty = false;
        let mut queue_open = true;
        let mut durable_open = true;
        while queue_open || durable_open {
            tokio::select! {
                biased;
                job = durable.recv(), if durable_open => match job {
                    Some(Job::Durable(ev, done)) => {
                        // Queued records that came first are written first.
                        while let Ok(q) = queue.try_recv() {
                            self.append(q);
                        }
                        self.account_overflow();
                        self.append(*ev);
                        self.flush().await;
                        dirty = false;
                        let _ = done.send(());
                    }
                    Some(Job::Close(done)) => {
                        while let Ok(q) = queue.try_recv() {
                            self.append(q);
                        }
                        self.account_overflow();
                        self.flush().await;
                        let _ = done.send(());
                        return;
                    }
                    None => durable_open = false,
                },
                ev = queue.recv(), if queue_open => match ev {
                    Some(ev) => {
                        self.append(ev);
                        let mut batch = 1;
                        while batch < 512 {
                            match queue.try_recv() {
                                Ok(ev) => {
                                    self.append(ev);
                                    batch += 1;
                                }
                                Err(_) => break,
                            }
                        }
                        dirty = true;
                    }
                    None => queue_open = false,
                },
                _ = tick.tick() => {
                    self.account_overflow();
                    if dirty || self.dropped_total.load(Ordering::Relaxed) > 0 {
                        self.flush().await;
                        dirty = false;
                    }
                }
            }
        }
        self.account_overflow();
        self.flush().await;
    }
}

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
pub fn latest_checkpoint(store: &Store) -> Result<Option<Checkpoint>, StoreError> {
    CheckpointTree::open(store)?
        .last()?
        .map(|(_, v)| decode_checkpoint(&v))
        .transpose()
}

/// The sequence number of the newest record, if any.
pub fn head_seq(store: &Store) -> Result<Option<u64>, StoreError> {
    Ok(AuditTree::open(store)?.last()?.map(|(seq, _)| seq))
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
    let Some((seq, bytes)) = AuditTree::open(store)?.last()? else {
        return Ok(None);
    };
    if latest_checkpoint(store)?.is_some_and(|c| c.seq >= seq) {
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
    CheckpointTree::open(store)?.insert(seq, &json)?;
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
pub fn verify_anchored(
    store: &Store,
    signer: &dyn Signer,
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
    let chain = verify(store)?;
    if let Verification::Broken { .. } = chain {
        return Ok(Report {
            verification: chain,
            checkpoints: 0,
            latest: None,
        });
    }
    let tree = AuditTree::open(store)?;
    let first = tree.iter().next().transpose()?.map(|(seq, _)| seq);
    let last = tree.last()?.map(|(seq, _)| seq);
    let mut stored = Vec::new();
    for item in CheckpointTree::open(store)?.iter() {
        let (_, v) = item?;
        stored.push((decode_checkpoint(&v)?, false));
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
        match tree.get(c.seq)? {
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

/// Whether a character must not reach a terminal raw: control characters (Cc), line
/// and paragraph separators (Zl, Zp), format characters (Cf: bidi overrides and
/// isolates, zero-width characters, the BOM, soft hyphen...), and whitespace other than
/// the plain space (which could pass for a field separator).
fn must_escape(c: char) -> bool {
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(
            c,
            // Cf, as of Unicode 16.
            '\u{00ad}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061c}'
                | '\u{06dd}'
                | '\u{070f}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08e2}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{110bd}'
                | '\u{110cd}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0001}'
                | '\u{e0020}'..='\u{e007f}'
        )
}

/// Escapes backslashes, control characters, Unicode line and paragraph separators and
/// format characters, so text output shows data as data: a newline or U+2028 in an
/// email cannot fake a second record, and U+202E cannot reorder what follows it.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if must_escape(c) => out.push_str(&format!("\\u{{{:04x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// One record as one line of JSON (`audit list --json`), with every character that
/// [`escape`] escapes written as a JSON `\uXXXX` escape: JSON leaves U+2028, U+202E and
/// the like raw, which a terminal or a line-based reader would act on. The line parses
/// to exactly the stored record.
pub fn json_line(r: &Record) -> String {
    let raw = serde_json::to_string(r).unwrap_or_default();
    let mut out = String::with_capacity(raw.len());
    // Such characters only occur inside JSON strings: the structure is ASCII.
    for c in raw.chars() {
        if must_escape(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A field value of `audit list`'s text: bare when it is plain (letters, digits and
/// `@ . _ : / % + -`), otherwise in double quotes with `"` escaped as well as what
/// [`escape`] escapes. A space, `=` or quote in user-supplied text cannot start a field
/// of its own. Absent values are `-`; a value that is itself `-` is quoted.
pub fn field(value: Option<&str>) -> String {
    let Some(v) = value else {
        return "-".to_owned();
    };
    let plain = !v.is_empty()
        && v != "-"
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | ':' | '/' | '%' | '+' | '-'));
    if plain {
        v.to_owned()
    } else {
        format!("\"{}\"", escape(v).replace('"', "\\\""))
    }
}

/// One line of `audit list`'s table. Every value that a client or the policy supplied
/// (email, user, method, path, route, reason) goes through [`field`].
pub fn format_line(r: &Record) -> String {
    let e = &r.event;
    let f = |v: &Option<String>| field(v.as_deref());
    let mut line = format!(
        "{:>6} {} {:<22} {:<8} user={} email={} ip={}",
        r.seq,
        r.time,
        field(Some(&e.event)),
        field(Some(&e.outcome)),
        f(&e.user_id),
        f(&e.email),
        f(&e.ip),
    );
    if e.method.is_some() || e.path.is_some() {
        line.push_str(&format!(" {} {}", f(&e.method), f(&e.path)));
    }
    if let Some(route) = &e.route {
        line.push_str(&format!(" route=\"{}\"", escape(route).replace('"', "\\\"")));
    }
    if let Some(status) = e.status {
        line.push_str(&format!(" status={status}"));
    }
    if let Some(ms) = e.latency_ms {
        line.push_str(&format!(" latency={ms}ms"));
    }
    if let Some(reason) = &e.reason {
        line.push_str(&format!(" reason=\"{}\"", escape(reason).replace('"', "\\\"")));
    }
    if let Some(id) = &e.request_id {
        line.push_str(&format!(" request={}", field(Some(id))));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    async fn with_records(n: usize) -> Store {
        let store = Store::temporary().unwrap();
        let (audit, task) = Audit::start(&store, Arc::new(ManualClock::new())).unwrap();
        for i in 0..n {
            let mut ev = Event::new("login_failure", "failure");
            ev.email = Some(format!("u{i}@example.com"));
            audit.durable(ev).await;
        }
        drop(audit);
        task.await.unwrap();
        store
    }

    // Records chain from the genesis hash, and an intact chain verifies.
    #[tokio::test]
    async fn chain_verifies() {
        let store = with_records(5).await;
        let records = list(&store, &Query::default()).unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(records[0].prev_hash, GENESIS);
        assert_eq!(records[1].prev_hash, records[0].hash);
        assert_eq!(verify(&store).unwrap(), Verification::Intact { records: 5 });
    }

    // Altering, or removing, one record breaks the chain at that record.
    #[tokio::test]
    async fn tampering_detected() {
        let store = with_records(5).await;
        let tree = AuditTree::open(&store).unwrap();
        let mut r: Record = serde_json::from_slice(&tree.get(3).unwrap().unwrap()).unwrap();
        r.event.email = Some("someone-else@example.com".into());
        tree.overwrite(3, &serde_json::to_vec(&r).unwrap()).unwrap();
        assert!(matches!(verify(&store).unwrap(), Verification::Broken { seq: 3, .. }));

        let store = with_records(5).await;
        let tree = AuditTree::open(&store).unwrap();
        let mut r: Record = serde_json::from_slice(&tree.get(2).unwrap().unwrap()).unwrap();
        r.event.reason = Some("forged".into());
        r.hash = r.compute_hash();
        tree.overwrite(2, &serde_json::to_vec(&r).unwrap()).unwrap();
        assert!(
            matches!(verify(&store).unwrap(), Verification::Broken { seq: 3, .. }),
            "a re-hashed record went unnoticed"
        );
    }

    // Pruning keeps the chain verifiable from the oldest kept record.
    #[tokio::test]
    async fn prune_keeps_chain() {
        let store = Store::temporary().unwrap();
        let clock = ManualClock::new();
        let (audit, task) = Audit::start(&store, Arc::new(clock.clone())).unwrap();
        for _ in 0..3 {
            audit.durable(Event::new("logout", "success")).await;
        }
        clock.advance(Duration::from_secs(100 * 86_400));
        let cutoff = clock.now_ms() - 1000;
        for _ in 0..2 {
            audit.durable(Event::new("logout", "success")).await;
        }
        drop(audit);
        task.await.unwrap();
        assert_eq!(prune(&store, cutoff).unwrap(), 3);
        assert_eq!(verify(&store).unwrap(), Verification::Intact { records: 2 });
    }

    // A flood past the queue is counted into one audit_overflow record.
    #[tokio::test]
    async fn overflow_recorded() {
        let store = Store::temporary().unwrap();
        let (audit, task) = Audit::start_with_queue(&store, Arc::new(ManualClock::new()), 4).unwrap();
        for _ in 0..100 {
            audit.record(Event::new("access_denied", "denied"));
        }
        drop(audit);
        task.await.unwrap();
        let overflow = list(
            &store,
            &Query {
                event: Some("audit_overflow".into()),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(overflow.len(), 1);
        let written = list(
            &store,
            &Query {
                event: Some("access_denied".into()),
                ..Query::default()
            },
        )
        .unwrap()
        .len();
        let reason = overflow[0].event.reason.clone().unwrap();
        assert!(
            reason.contains(&format!(
                "{} records dropped (access_denied={})",
                100 - written,
                100 - written
            )),
            "{reason}"
        );
        assert_eq!(
            verify(&store).unwrap(),
            Verification::Intact {
                records: u64::try_from(written).unwrap() + 1
            }
        );
    }

    /// A stand-in for the gateway's key: "signs" with a keyed hash.
    struct TestSigner(&'static str);

    impl Signer for TestSigner {
        fn key_id(&self) -> &str {
            self.0
        }
        fn sign(&self, message: &[u8]) -> Option<String> {
            let mut keyed = self.0.as_bytes().to_vec();
            keyed.extend_from_slice(message);
            Some(format!("{:?}", ring::digest::digest(&ring::digest::SHA256, &keyed)))
        }
        fn verify(&self, message: &[u8], signature: &str) -> bool {
            self.sign(message).as_deref() == Some(signature)
        }
    }

    // A checkpoint is signed only when the head moved past the newest one; it verifies
    // under its key only, and pruning drops the checkpoints of pruned records.
    #[tokio::test]
    async fn checkpoints_follow_the_head() {
        let store = Store::temporary().unwrap();
        let clock = ManualClock::new();
        let key = TestSigner("k1");
        assert_eq!(
            sign_checkpoint(&store, &key, 0).await.unwrap(),
            None,
            "an empty trail was signed"
        );
        let (audit, task) = Audit::start(&store, Arc::new(clock.clone())).unwrap();
        for _ in 0..3 {
            audit.durable(Event::new("logout", "success")).await;
        }
        let first = sign_checkpoint(&store, &key, clock.now_ms()).await.unwrap().unwrap();
        assert_eq!(first.seq, 3);
        assert_eq!(sign_checkpoint(&store, &key, clock.now_ms()).await.unwrap(), None);
        clock.advance(Duration::from_secs(100 * 86_400));
        audit.durable(Event::new("logout", "success")).await;
        drop(audit);
        task.await.unwrap();
        let second = sign_checkpoint(&store, &key, clock.now_ms()).await.unwrap().unwrap();
        assert_eq!(second.seq, 4);
        assert!(second.signed_by(&key) && !second.signed_by(&TestSigner("k2")));
        let report = verify_anchored(&store, &key, Some(&first)).unwrap();
        assert_eq!(report.verification, Verification::Intact { records: 4 });
        assert_eq!((report.checkpoints, report.latest.map(|l| l.0)), (3, Some(4)));
        // Signed by another key: refused, stored or given.
        let report = verify_anchored(&store, &TestSigner("k2"), None).unwrap();
        assert!(
            matches!(report.verification, Verification::Broken { seq: 3, .. }),
            "{report:?}"
        );

        prune(&store, clock.now_ms() - 1000).unwrap();
        let report = verify_anchored(&store, &key, None).unwrap();
        assert_eq!(
            (report.verification, report.checkpoints),
            (Verification::Intact { records: 1 }, 1)
        );
        assert!(
            matches!(
                verify_anchored(&store, &key, Some(&first)).unwrap().verification,
                Verification::Broken { seq: 3, .. }
            ),
            "a checkpoint of a record no longer kept passed"
        );
    }

    // Unicode line and paragraph separators, format characters (bidi overrides,
    // zero-width) and odd whitespace are escaped; text with a space, `=` or quote is
    // quoted, plain values are not.
    #[test]
    fn separators_and_fields() {
        assert_eq!(escape("a\u{2028}b\u{2029}c"), "a\\u{2028}b\\u{2029}c");
        assert_eq!(
            escape("\u{202e}x\u{200b}\u{feff}\u{2066}"),
            "\\u{202e}x\\u{200b}\\u{feff}\\u{2066}"
        );
        assert_eq!(
            escape("\u{85}\u{a0}\u{3000}\u{e0041}"),
            "\\u{0085}\\u{00a0}\\u{3000}\\u{e0041}"
        );
        assert_eq!(escape("é ü 日本 🙂"), "é ü 日本 🙂");
        assert_eq!(field(Some("a@b.example")), "a@b.example");
        assert_eq!(field(Some("/api/x%20y")), "/api/x%20y");
        assert_eq!(field(None), "-");
        assert_eq!(field(Some("-")), "\"-\"");
        assert_eq!(field(Some("")), "\"\"");
        assert_eq!(field(Some("a b ip=1")), "\"a b ip=1\"");
        assert_eq!(field(Some("a\"b\\")), "\"a\\\"b\\\\\"");
    }

    // JSON lines escape separators and format characters too, and parse back exactly.
    #[test]
    fn json_lines_escaped() {
        let mut ev = Event::new("login_failure", "failure");
        ev.email = Some("a\u{2028}b\u{202e}c\u{85}d\u{e0041}\"e".into());
        let r = Record {
            seq: 1,
            time: rfc3339(0),
            event: ev,
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        let line = json_line(&r);
        assert!(line.is_ascii(), "{line}");
        assert!(line.contains("\\u2028") && line.contains("\\udb40\\udc41"), "{line}");
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), r);
    }

    // Control characters are escaped in text output.
    #[test]
    fn escaping() {
        let mut ev = Event::new("login_failure", "failure");
        ev.email = Some("a@b.c\n    7 2026-01-01T00:00:00Z login_success".into());
        let r = Record {
            seq: 1,
            time: rfc3339(0),
            event: ev,
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        let line = format_line(&r);
        assert!(!line.contains('\n') && line.contains("a@b.c\\n"), "{line}");
        assert_eq!(escape("tab\there\u{1b}[31m"), "tab\\there\\u{001b}[31m");
    }
}
