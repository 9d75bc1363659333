//! The writer task: one order for every record, awaited writes, and a queue that is
//! lossy (counted) for floods and waits for room for the records of audited routes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::counts::Counts;
use super::*;
use crate::clock::SharedClock;
use crate::store::{Store, StoreError};

enum Job {
    Durable(Box<Event>, oneshot::Sender<()>),
    /// Write what is queued, flush, and stop.
    Close(oneshot::Sender<()>),
}

/// A handle for writing audit records; cheap to clone.
#[derive(Clone)]
pub struct Audit {
    queue: mpsc::Sender<Fields>,
    durable: mpsc::Sender<Job>,
    counts: Arc<Counts>,
}

impl Audit {
    /// Starts the writer task over `store`'s audit chain. The task ends, after a last
    /// flush, when every handle is dropped.
    pub fn start(store: &Store, clock: SharedClock) -> Result<(Self, tokio::task::JoinHandle<()>), StoreError> {
        Self::start_with_queue(store, clock, QUEUE)
    }

    pub fn start_with_queue(
        store: &Store,
        clock: SharedClock,
        queue: usize,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), StoreError> {
        let bound = queue.max(1);
        let (queue_tx, queue_rx) = mpsc::channel(bound);
        let (durable_tx, durable_rx) = mpsc::channel(256);
        let audit = Self {
            queue: queue_tx,
            durable: durable_tx,
            counts: Arc::default(),
        };
        let writer = Writer {
            store: store.clone(),
            clock,
            pending: Vec::new(),
            stamp: (0, Arc::from("")),
            bound,
            counts: audit.counts.clone(),
            flushing: None,
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
        self.record_fields(Fields::from(event));
    }

    /// Queues a high-volume record already encoded where it happened (see [`Fields`]).
    pub fn record_fields(&self, fields: Fields) {
        if let Err(e) = self.queue.try_send(fields) {
            let (mpsc::error::TrySendError::Full(f) | mpsc::error::TrySendError::Closed(f)) = e;
            self.count_dropped(&f);
        }
    }

    /// Queues a record that must not be dropped for want of room (an audited route's
    /// request): when the queue is full, the caller waits, in turn, for the writer to
    /// take records, up to [`ROOM_WAIT`]. It is counted as dropped only when the writer is
    /// stopped, its appends are failing (an outage is bounded as for every record), or
    /// the wait runs out.
    pub async fn record_waiting(&self, fields: Fields) {
        let fields = match self.queue.try_send(fields) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Closed(f)) => return self.count_dropped(&f),
            Err(mpsc::error::TrySendError::Full(f)) => f,
        };
        if self.counts.failing() {
            return self.count_dropped(&fields);
        }
        self.counts.waited();
        match tokio::time::timeout(ROOM_WAIT, self.queue.reserve()).await {
            Ok(Ok(room)) => room.send(fields),
            Ok(Err(_)) | Err(_) => self.count_dropped(&fields),
        }
    }

    /// The queue's counters now: records that waited for room, records dropped, and
    /// whether the writer is failing.
    pub fn stats(&self) -> QueueStats {
        self.counts.stats()
    }

    /// Records counted as dropped and not yet recorded as such.
    #[cfg(test)]
    pub(super) fn dropped(&self) -> u64 {
        self.counts.unrecorded()
    }

    /// Records in the queue.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    fn count_dropped(&self, fields: &Fields) {
        self.counts.drop_record(&fields.name);
    }
}

struct Writer {
    store: Store,
    clock: SharedClock,
    /// Events not yet in the trail, with their time, oldest first: the batch being built,
    /// and what a failed append left (at most `bound`).
    pending: Vec<(Fields, Arc<str>)>,
    /// The time of the last record stamped, and its text: records of one millisecond
    /// share it.
    stamp: (u64, Arc<str>),
    bound: usize,
    /// Shared with the handles. While appends fail, drops are counted but not recorded
    /// (an `audit_overflow` record could be dropped itself) and nobody waits for room.
    counts: Arc<Counts>,
    /// The periodic flush under way, in a task of its own: the queue is drained meanwhile
    /// (a flush waits for the disk, which a busy machine can make take hundreds of
    /// milliseconds).
    flushing: Option<tokio::task::JoinHandle<()>>,
}

impl Writer {
    /// Adds an event to the batch, stamped with the time now.
    fn append(&mut self, event: impl Into<Fields>) {
        let now = self.clock.now_ms();
        if self.stamp.0 != now || self.stamp.1.is_empty() {
            self.stamp = (now, rfc3339(now).into());
        }
        self.pending.push((event.into(), self.stamp.1.clone()));
    }

    /// Writes the batch; after an outage, also the `audit_overflow` record of what it
    /// dropped.
    async fn write(&mut self) {
        let was_failing = self.counts.failing();
        self.append_pending().await;
        if was_failing && !self.counts.failing() {
            tracing::warn!("audit records are written again");
            self.account_overflow();
            self.append_pending().await;
        }
    }

    /// Appends the batch to the chain in one call, chained onto whatever head the store
    /// has then (another gateway may have appended since this one last did). A failed
    /// append keeps the batch for the next one; what exceeds the queue's bound is
    /// counted as dropped.
    async fn append_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = &self.pending;
        let mut unreadable_head = None;
        let mut chain = |head: Option<(u64, Vec<u8>)>| {
            let (mut seq, mut prev) = match head {
                None => (1, GENESIS.to_owned()),
                Some((seq, bytes)) => match serde_json::from_slice::<Record>(&bytes) {
                    Ok(r) => (seq + 1, r.hash),
                    Err(e) => {
                        // Chaining onto a record that cannot be read would hide it: wait.
                        unreadable_head = Some((seq, e.to_string()));
                        return Vec::new();
                    }
                },
            };
            unreadable_head = None;
            let mut out = Vec::with_capacity(pending.len());
            for (fields, time) in pending {
                let (bytes, hash) = Record::encode(seq, time, fields, &prev);
                out.push((seq, bytes));
                seq += 1;
                prev = hash;
            }
            out
        };
        let result = self.store.audit_append(&mut chain).await;
        let waiting = self.pending.len();
        match (result, unreadable_head) {
            (Ok(()), None) => {
                self.pending.clear();
                self.counts.set_failing(false);
                return;
            }
            // Said once per outage, not at every try.
            _ if self.counts.failing() => {}
            (Ok(()), Some((seq, error))) => {
                tracing::error!(seq, %error, waiting, "the audit trail's newest record is unreadable: nothing is chained onto it");
            }
            (Err(e), _) => {
                tracing::error!(error = %e, waiting, "cannot write audit records: kept for the next try");
            }
        }
        self.counts.set_failing(true);
        if self.pending.len() > self.bound {
            for (fields, _) in self.pending.split_off(self.bound) {
                self.counts.drop_record(&fields.name);
            }
        }
    }

    /// Writes one `audit_overflow` record for what the queue dropped since the last one.
    fn account_overflow(&mut self) {
        if self.counts.failing() || self.counts.unrecorded() == 0 {
            return;
        }
        let counts = self.counts.take_unrecorded();
        let total: u64 = counts.values().sum();
        if total == 0 {
            return;
        }
        let detail: Vec<String> = counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
        let mut ev = Event::new(EventKind::AuditOverflow);
        ev.reason = Some(format!("queue full: {total} records dropped ({})", detail.join(", ")));
        tracing::warn!(dropped = total, "audit queue overflowed");
        self.append(ev);
    }

    /// Flushes, and returns once what was written is on disk.
    async fn flush(&self) {
        flush(&self.store).await;
    }

    /// Starts a flush in a task of its own, unless the last one is still under way;
    /// whether it started one.
    fn flush_behind(&mut self) -> bool {
        if self.flushing.as_ref().is_some_and(|f| !f.is_finished()) {
            return false;
        }
        let store = self.store.clone();
        self.flushing = Some(tokio::spawn(async move { flush(&store).await }));
        true
    }

    /// Waits for the flush under way, if any.
    async fn flushed_behind(&mut self) {
        if let Some(f) = self.flushing.take() {
            let _ = f.await;
        }
    }

    async fn run(mut self, mut queue: mpsc::Receiver<Fields>, mut durable: mpsc::Receiver<Job>) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        let mut dirty = false;
        let mut queue_open = true;
        let mut durable_open = true;
        // After a batch smaller than the largest, the queue is left to gather for
        // GATHER before the next one is taken: one wake-up and one store append per
        // window rather than per record (every append also writes the store's log).
        // Durable records and closing are not held back.
        let gather = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(gather);
        let mut gathering = false;
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
                        self.write().await;
                        self.flush().await;
                        dirty = false;
                        let _ = done.send(());
                    }
                    Some(Job::Close(done)) => {
                        self.flushed_behind().await;
                        while let Ok(q) = queue.try_recv() {
                            self.append(q);
                        }
                        self.account_overflow();
                        self.write().await;
                        self.flush().await;
                        let _ = done.send(());
                        return;
                    }
                    None => durable_open = false,
                },
                () = &mut gather, if gathering => gathering = false,
                ev = queue.recv(), if queue_open && !gathering => match ev {
                    Some(ev) => {
                        self.append(ev);
                        let mut batch = 1;
                        while batch < BATCH {
                            match queue.try_recv() {
                                Ok(ev) => {
                                    self.append(ev);
                                    batch += 1;
                                }
                                Err(_) => break,
                            }
                        }
                        self.write().await;
                        dirty = true;
                        if batch < BATCH {
                            gather.as_mut().reset(tokio::time::Instant::now() + GATHER);
                            gathering = true;
                        }
                    }
                    None => queue_open = false,
                },
                _ = tick.tick() => {
                    self.account_overflow();
                    self.write().await;
                    // A flush still under way leaves `dirty` for the next tick.
                    if (dirty || self.counts.unrecorded() > 0) && self.flush_behind() {
                        dirty = false;
                    }
                }
            }
        }
        self.flushed_behind().await;
        self.account_overflow();
        self.write().await;
        self.flush().await;
    }
}

async fn flush(store: &Store) {
    if let Err(e) = store.flush().await {
        tracing::error!(error = %e, "cannot flush the audit trail");
    }
}
