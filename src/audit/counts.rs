//! What the handles and the writer share about the records the queue could not take at
//! once: the drops not yet recorded in an `audit_overflow` record, whether the writer's
//! appends are failing, and, since start, how many records waited for room and how many
//! were dropped (for `/metrics`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Shared by every [`super::Audit`] handle and the writer.
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// Dropped records by kind, not yet recorded as dropped.
    unrecorded: Mutex<BTreeMap<String, u64>>,
    /// Their total, read without the lock.
    unrecorded_total: AtomicU64,
    /// Set while the writer's appends fail, until one succeeds: nothing is waited for
    /// meanwhile, and drops are counted but not recorded.
    failing: AtomicBool,
    /// Since start: records of audited routes that found the queue full and waited.
    waited: AtomicU64,
    /// Since start: records dropped, whether recorded as such yet or not.
    dropped: AtomicU64,
}

/// The audit queue's counters at one moment, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Records of audited routes that waited for room in a full queue.
    pub waited: u64,
    /// Records dropped: the queue full (refusals, rate-limit records), a wait for room
    /// that ran out, or the writer failing or stopped. Each is also counted in an
    /// `audit_overflow` record once the writer can write one.
    pub dropped: u64,
    /// The writer's appends are failing now.
    pub failing: bool,
}

impl Counts {
    /// Counts a dropped record of kind `name`.
    pub(super) fn drop_record(&self, name: &str) {
        let mut unrecorded = self.unrecorded.lock().unwrap_or_else(|p| p.into_inner());
        // Kinds are few (event names): a name is copied only the first time.
        match unrecorded.get_mut(name) {
            Some(count) => *count += 1,
            None => {
                unrecorded.insert(name.to_owned(), 1);
            }
        }
        self.unrecorded_total.fetch_add(1, Ordering::Relaxed);
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the drops not yet recorded, by kind.
    pub(super) fn take_unrecorded(&self) -> BTreeMap<String, u64> {
        let counts = std::mem::take(&mut *self.unrecorded.lock().unwrap_or_else(|p| p.into_inner()));
        self.unrecorded_total
            .fetch_sub(counts.values().sum(), Ordering::Relaxed);
        counts
    }

    /// Drops counted and not yet recorded.
    pub(super) fn unrecorded(&self) -> u64 {
        self.unrecorded_total.load(Ordering::Relaxed)
    }

    pub(super) fn waited(&self) {
        self.waited.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    pub(super) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    pub(super) fn stats(&self) -> QueueStats {
        QueueStats {
            waited: self.waited.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failing: self.failing(),
        }
    }
}
