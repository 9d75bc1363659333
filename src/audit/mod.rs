//! The audit trail: every security event as a record in the store, chained by SHA-256 so
//! that altering or removing a record is detected, queryable from the command line.
//!
//! One writer task per gateway appends its records, a batch at a time, through the
//! store's `audit_append`, which chains them onto the head it holds then: the writers of
//! every gateway sharing a store make one chain with one order. Two ways in:
//! - [`Audit::durable`] for authentication and administration events: the caller waits
//!   until the record is on disk, so a response never reports what the trail forgot.
//! - [`Audit::record`] for high-volume events (refused and rate-limited requests): a
//!   bounded queue, taken in batches at most every 10 ms (one append, and one write of
//!   the store's log, per batch) and flushed at least every 100 ms, by a flush that
//!   does not hold the draining up. When a flood overflows it the gateway keeps
//!   serving, counts what it dropped by kind, and the writer records one
//!   `audit_overflow` record saying so: nothing is lost silently.
//! - [`Audit::record_waiting`] for the requests of routes with `audit = true`: the same
//!   queue, but a request finding it full waits for room (up to [`ROOM_WAIT`]) rather
//!   than being dropped, so an audited route slows to what the writer takes instead of
//!   losing records. Only a writer that is failing or stopped makes it count a drop.
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

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Capacity of the high-volume queue.
pub const QUEUE: usize = 8192;
/// The writer flushes at least this often when records are pending.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How long the high-volume queue gathers records after a batch smaller than [`BATCH`].
const GATHER: Duration = Duration::from_millis(10);
/// How long a record that must not be dropped ([`Audit::record_waiting`]) waits for room
/// in a full queue.
pub const ROOM_WAIT: Duration = Duration::from_secs(2);
/// The most queued records appended in one batch.
const BATCH: usize = 512;
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
    /// An event of `kind`, with the kind's name and outcome.
    pub fn new(kind: EventKind) -> Self {
        Self {
            event: kind.name().to_owned(),
            outcome: kind.outcome().as_str().to_owned(),
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
        hex_sha256(&bytes)
    }
}

/// SHA-256 of `bytes`, lowercase hex.
fn hex_sha256(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = Vec::with_capacity(64);
    for b in d.as_ref() {
        out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
    }
    // Hex digits are ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// Formats Unix milliseconds as RFC 3339 UTC.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

mod checkpoint;
mod counts;
mod encode;
mod event;
mod query;
mod text;
mod writer;

pub use checkpoint::*;
pub use counts::QueueStats;
pub use encode::{clip, Address, EventRef, Fields};
pub use event::{EventKind, Outcome};
pub use query::*;
pub use text::*;
pub use writer::*;

#[cfg(test)]
mod backpressure_tests;
#[cfg(test)]
mod encode_tests;
#[cfg(test)]
mod outage_tests;
#[cfg(test)]
pub(crate) mod tests;
