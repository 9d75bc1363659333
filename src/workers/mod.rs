//! Connection workers: one single-threaded tokio runtime per core, each on its own thread.
//!
//! The listeners accept on the main runtime and hand every accepted connection to the
//! next worker in turn. From then on the connection, the requests on it and the upstream
//! connections those requests open all run on that worker's thread: no request is woken
//! on one thread and continued on another, and each worker keeps its own pool of
//! upstream connections, so the pool lock is never contended. Each worker also keeps the
//! coarse deadlines of its requests (see [`deadlines`]).
//! This is the shape nginx and HAProxy have (a process or thread per core, each with its
//! own connections) and, measured on two cores, it is what removed most of the kernel
//! time the work-stealing scheduler spent waking workers.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

pub mod deadlines;

/// The worker runtimes. Dropping this stops them: each thread leaves its runtime, which
/// cancels whatever still runs on it (the listeners wait for their connections first).
/// [`Workers::stop`] does the same and waits until every thread has dropped its runtime.
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stops: Mutex<Vec<oneshot::Sender<()>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Workers {
    /// Starts `count` workers (at least one), threads named `{name}-{i}`.
    pub fn start(count: usize, name: &str) -> io::Result<Self> {
        let count = count.max(1);
        let mut handles = Vec::with_capacity(count);
        let mut stops = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for i in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            threads.push(std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                let deadlines = std::sync::Arc::new(deadlines::Deadlines::default());
                runtime.spawn(deadlines.install());
                // Either a stop or the sender dropped ends the wait.
                let _ = runtime.block_on(stopped);
                drop(runtime);
            })?);
        }
        Ok(Self {
            handles,
            next: AtomicUsize::new(0),
            stops: Mutex::new(stops),
            threads: Mutex::new(threads),
        })
    }

    /// Stops every worker and waits until each thread has dropped its runtime, and with
    /// it whatever its tasks held (the store among them), so that the data directory is
    /// free when this returns. Blocks: call it off the runtimes (never from a worker).
    pub fn stop(&self) {
        self.stops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The next worker in turn: its index and its runtime.
    pub fn next(&self) -> (usize, &Handle) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        (i, &self.handles[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Work handed to the workers runs on their threads, in turn, and each worker is a
    // distinct thread.
    #[tokio::test]
    async fn round_robin_on_own_threads() {
        let workers = Workers::start(2, "test-worker").unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (i, handle) = workers.next();
            let name = handle
                .spawn(async { std::thread::current().name().unwrap_or("").to_string() })
                .await
                .unwrap();
            seen.push((i, name));
        }
        assert_eq!(
            seen,
            [
                (0, "test-worker-0".to_string()),
                (1, "test-worker-1".to_string()),
                (0, "test-worker-0".to_string()),
                (1, "test-worker-1".to_string())
            ]
        );
    }

    // After stop, every worker thread has ended, and what its tasks held is dropped.
    #[tokio::test]
    async fn stop_waits_for_the_threads() {
        let workers = Workers::start(2, "test-stop").unwrap();
        let held = std::sync::Arc::new(());
        for _ in 0..2 {
            let (_, handle) = workers.next();
            let h = held.clone();
            handle.spawn(async move {
                let _h = h;
                std::future::pending::<()>().await;
            });
        }
        tokio::task::yield_now().await;
        tokio::task::spawn_blocking(move || workers.stop()).await.unwrap();
        assert_eq!(std::sync::Arc::strong_count(&held), 1);
    }
}
