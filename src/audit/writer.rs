//! The writer task: one order for every record, awaited writes and a counted lossy queue.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::clock::SharedClock;
use crate::store::{AuditTree, Store, StoreError};

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
        let mut ev = Event::new(EventKind::AuditOverflow);
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
