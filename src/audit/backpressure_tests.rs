//! The writer held up (a slow disk, a slow database): records of audited routes wait for
//! room instead of being dropped, a failing writer is not waited for, and a slow flush
//! does not stop the queue from being drained.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::outage_tests::{denied, flaky, Flaky};
use super::*;
use crate::clock::ManualClock;
use crate::store::Store;

/// Waits (up to a minute) until `done` holds; whether it did.
async fn until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

async fn overflow_records(store: &Store) -> usize {
    let all = list(store, &Query::default()).await.unwrap();
    all.iter().filter(|r| r.event.event == "audit_overflow").count()
}

// Appends stalled, a queue of 4 and 40 audited requests: the requests past the room wait
// (they are not done while the writer is held), none is dropped, and once the writer
// moves every record is written, in one verifying chain, without an audit_overflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audited_records_wait_for_room_instead_of_dropping() {
    let (flaky, store) = flaky();
    flaky.down.store(false, Ordering::Relaxed);
    let (audit, task) = Audit::start_with_queue(&store, Arc::new(ManualClock::new()), 4).unwrap();
    let held = flaky.append_gate.lock().await;
    let mut waiting = Vec::new();
    for i in 0..40 {
        let audit = audit.clone();
        waiting.push(tokio::spawn(async move {
            audit.record_waiting(Fields::from(denied(i))).await
        }));
    }
    // The writer took what it could and is stuck in its append; the queue is full.
    assert!(until(|| waiting.iter().filter(|w| w.is_finished()).count() >= 4).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let done = waiting.iter().filter(|w| w.is_finished()).count();
    assert!(
        done < 40,
        "with the writer held, requests past the room wait: {done} done"
    );
    assert_eq!(audit.dropped(), 0, "nothing dropped");
    drop(held);
    for w in waiting {
        w.await.unwrap();
    }
    // What `/metrics` shows: the requests that found the queue full waited, none dropped.
    let stats = audit.stats();
    assert!(stats.waited > 0 && stats.waited <= 36, "{stats:?}");
    assert_eq!((stats.dropped, stats.failing), (0, false), "{stats:?}");
    audit.close().await;
    drop(audit);
    task.await.unwrap();
    let records = list(&store, &Query::default()).await.unwrap();
    assert_eq!(records.len(), 40, "every record is written, none counted as dropped");
    assert_eq!(verify(&store).await.unwrap(), Verification::Intact { records: 40 });
}

// With appends failing and the writer held in one, a full queue does not make an audited
// request wait: the record is counted as dropped at once (an outage stays bounded), and
// the count is recorded when the store is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_writer_is_not_waited_for() {
    let (flaky, store) = flaky();
    let (audit, task) = Audit::start_with_queue(&store, Arc::new(ManualClock::new()), 4).unwrap();
    audit.durable(denied(0)).await;
    assert!(
        flaky.refused.load(Ordering::Relaxed) > 0,
        "the writer has seen its append fail"
    );
    let held = flaky.append_gate.lock().await;
    let started = Instant::now();
    for i in 1..=20 {
        audit.record_waiting(Fields::from(denied(i))).await;
    }
    assert!(
        started.elapsed() < ROOM_WAIT / 2,
        "no wait for a failing writer: {:?}",
        started.elapsed()
    );
    assert!(audit.dropped() > 0, "the drops are counted");
    let stats = audit.stats();
    assert!(stats.failing, "the writer is shown failing: {stats:?}");
    assert_eq!(stats.waited, 0, "nobody waited for a failing writer: {stats:?}");
    assert_eq!(stats.dropped, audit.dropped(), "{stats:?}");
    drop(held);
    flaky.down.store(false, Ordering::Relaxed);
    audit.close().await;
    let after = audit.stats();
    drop(audit);
    task.await.unwrap();
    assert!(!after.failing, "the writer is back: {after:?}");
    assert_eq!(
        after.dropped, stats.dropped,
        "the count since start stays once recorded"
    );
    assert_eq!(overflow_records(&store).await, 1);
    let records = list(&store, &Query::default()).await.unwrap();
    assert_eq!(
        verify(&store).await.unwrap(),
        Verification::Intact {
            records: u64::try_from(records.len()).unwrap()
        }
    );
}

// A flush that takes long (held here) does not stop the writer from draining the queue:
// records sent meanwhile, eight at a time into a queue of eight, are all appended while
// the flush is still under way, and none is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_flush_does_not_hold_the_queue_up() {
    let (flaky, store) = flaky();
    flaky.down.store(false, Ordering::Relaxed);
    let (audit, task) = Audit::start_with_queue(&store, Arc::new(ManualClock::new()), 8).unwrap();
    let held = flaky.flush_gate.lock().await;
    audit.record(denied(0));
    let flaky2: Arc<Flaky> = flaky.clone();
    assert!(
        until(|| flaky2.flushes.load(Ordering::Relaxed) > 0).await,
        "the writer's periodic flush begins"
    );
    let mut sent = 1;
    for _ in 0..10 {
        let before = flaky.appends.load(Ordering::Relaxed);
        for _ in 0..8 {
            audit.record(denied(sent));
            sent += 1;
        }
        assert!(
            until(|| flaky.appends.load(Ordering::Relaxed) > before && audit.queued() == 0).await,
            "records are appended while the flush is held"
        );
    }
    assert_eq!(audit.dropped(), 0, "nothing dropped");
    drop(held);
    audit.close().await;
    drop(audit);
    task.await.unwrap();
    assert_eq!(list(&store, &Query::default()).await.unwrap().len(), sent);
    assert_eq!(overflow_records(&store).await, 0);
}
