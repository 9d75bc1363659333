//! Coarse deadlines kept by each connection worker: a request's upstream timeout without
//! a tokio timer of its own.
//!
//! A tokio timer costs a request its registration in the runtime's timer wheel, a
//! deregistration when it is dropped, and the wheel's bookkeeping in between; almost
//! every upstream answers long before its timeout, so that work is nearly always
//! thrown away. Here a deadline is an entry in the worker's table, added and removed
//! under an uncontended lock, and one task per worker looks at the table every
//! [`TICK`] while it is not empty, waking the deadlines that have passed. A deadline
//! therefore fires between its time and one tick (plus the worker's own delay) later,
//! never before.
//!
//! Off a worker thread (a test's runtime, the main runtime) a [`Deadline`] is a tokio
//! timer, with the same behaviour to its caller.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use slab::Slab;
use tokio::time::Instant;

/// How often a worker looks at its deadlines while it has any.
pub const TICK: Duration = Duration::from_millis(50);

thread_local! {
    /// The deadlines of the worker this thread runs, if it runs one.
    static WORKER: RefCell<Option<Arc<Deadlines>>> = const { RefCell::new(None) };
}

/// One worker's table of deadlines.
#[derive(Default)]
pub struct Deadlines {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    entries: Slab<Entry>,
    /// The worker's task that checks the table, waiting for a first entry.
    checker: Option<Waker>,
}

struct Entry {
    at: Instant,
    waker: Option<Waker>,
    passed: bool,
}

impl Deadlines {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes these the deadlines of the current thread's worker, and returns the task
    /// that checks them, to run on that worker.
    pub fn install(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        WORKER.with(|w| *w.borrow_mut() = Some(self.clone()));
        let this = self.clone();
        async move {
            loop {
                std::future::poll_fn(|cx| {
                    let mut table = this.table();
                    if table.entries.is_empty() {
                        table.checker = Some(cx.waker().clone());
                        Poll::Pending
                    } else {
                        Poll::Ready(())
                    }
                })
                .await;
                tokio::time::sleep(TICK).await;
                this.wake_passed(Instant::now());
            }
        }
    }

    /// Wakes every deadline at or before `now` (outside the lock).
    fn wake_passed(&self, now: Instant) {
        let mut due = Vec::new();
        {
            let mut table = self.table();
            for (_, e) in table.entries.iter_mut().filter(|(_, e)| !e.passed && e.at <= now) {
                e.passed = true;
                due.extend(e.waker.take());
            }
        }
        due.into_iter().for_each(Waker::wake);
    }

    fn insert(&self, at: Instant) -> usize {
        let mut table = self.table();
        let key = table.entries.insert(Entry {
            at,
            waker: None,
            passed: false,
        });
        if let Some(checker) = table.checker.take() {
            drop(table);
            checker.wake();
        }
        key
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table().entries.len()
    }
}

/// A point in time to wait for: on a worker, an entry in its [`Deadlines`]; elsewhere a
/// tokio timer.
pub struct Deadline {
    kind: Kind,
}

enum Kind {
    Worker { deadlines: Arc<Deadlines>, key: usize },
    Tokio(Pin<Box<tokio::time::Sleep>>),
}

impl Deadline {
    /// A deadline `after` from now.
    pub fn after(after: Duration) -> Self {
        let at = Instant::now() + after;
        let kind = WORKER.with(|w| match &*w.borrow() {
            Some(d) => Kind::Worker {
                key: d.insert(at),
                deadlines: d.clone(),
            },
            None => Kind::Tokio(Box::pin(tokio::time::sleep_until(at))),
        });
        Self { kind }
    }

    /// Moves the deadline to `after` from now (it may have passed already).
    pub fn reset(&mut self, after: Duration) {
        let at = Instant::now() + after;
        match &mut self.kind {
            Kind::Worker { deadlines, key } => {
                if let Some(e) = deadlines.table().entries.get_mut(*key) {
                    e.at = at;
                    e.passed = false;
                }
            }
            Kind::Tokio(sleep) => sleep.as_mut().reset(at),
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.kind {
            Kind::Worker { deadlines, key } => {
                let mut table = deadlines.table();
                let Some(e) = table.entries.get_mut(*key) else {
                    return Poll::Ready(());
                };
                if e.passed {
                    return Poll::Ready(());
                }
                match &mut e.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Kind::Tokio(sleep) => sleep.as_mut().poll(cx),
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Kind::Worker { deadlines, key } = &self.kind {
            deadlines.table().entries.try_remove(*key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a current-thread runtime whose thread has installed deadlines.
    fn on_worker<F: Future<Output = ()>>(f: impl FnOnce(Arc<Deadlines>) -> F) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let deadlines = Arc::new(Deadlines::default());
        rt.spawn(deadlines.install());
        rt.block_on(f(deadlines.clone()));
        WORKER.with(|w| *w.borrow_mut() = None);
    }

    #[test]
    fn a_worker_deadline_fires_after_its_time_within_a_tick() {
        on_worker(|deadlines| async move {
            let started = std::time::Instant::now();
            Deadline::after(Duration::from_millis(120)).await;
            let took = started.elapsed();
            assert!(took >= Duration::from_millis(120), "early: {took:?}");
            assert!(took < Duration::from_millis(120) + TICK * 6, "late: {took:?}");
            assert_eq!(deadlines.len(), 0, "the entry outlived its deadline");
        });
    }

    #[test]
    fn a_dropped_or_reset_deadline_leaves_nothing_behind() {
        on_worker(|deadlines| async move {
            let waits: Vec<_> = (0..100).map(|_| Deadline::after(Duration::from_secs(30))).collect();
            assert_eq!(deadlines.len(), 100);
            drop(waits);
            assert_eq!(deadlines.len(), 0);
            // A deadline that has passed can be moved later, and waits again.
            let mut d = Deadline::after(Duration::ZERO);
            (&mut d).await;
            d.reset(Duration::from_millis(200));
            let waited = tokio::time::timeout(Duration::from_millis(100), &mut d).await;
            assert!(waited.is_err(), "a reset deadline fired at once");
            let started = std::time::Instant::now();
            d.await;
            assert!(started.elapsed() >= Duration::from_millis(90));
            assert_eq!(deadlines.len(), 0);
        });
    }

    #[test]
    fn a_request_that_ends_first_is_not_woken() {
        on_worker(|deadlines| async move {
            let fast = tokio::time::sleep(Duration::from_millis(10));
            tokio::select! {
                () = Deadline::after(Duration::from_secs(5)) => panic!("the deadline won"),
                () = fast => {}
            }
            assert_eq!(deadlines.len(), 0);
        });
    }

    #[tokio::test]
    async fn off_a_worker_it_is_a_tokio_timer() {
        let started = std::time::Instant::now();
        let mut d = Deadline::after(Duration::from_millis(30));
        assert!(matches!(d.kind, Kind::Tokio(_)));
        (&mut d).await;
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
