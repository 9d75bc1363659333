//! Unit tests of the chain, the writer, checkpoints and the text forms.

use super::*;
use std::sync::Arc;

use crate::clock::{Clock, ManualClock};
use crate::store::Store;

async fn with_records(n: usize) -> Store {
    let store = Store::temporary().unwrap();
    let (audit, task) = Audit::start(&store, Arc::new(ManualClock::new())).unwrap();
    for i in 0..n {
        let mut ev = Event::new(EventKind::LoginFailure);
        ev.email = Some(format!("u{i}@example.com"));
        audit.durable(ev).await;
    }
    drop(audit);
    task.await.unwrap();
    store
}

/// Record 1 of a trail: a login failure for `email`, not hashed.
fn failure_record(email: &str) -> Record {
    let mut event = Event::new(EventKind::LoginFailure);
    event.email = Some(email.into());
    Record {
        seq: 1,
        time: rfc3339(0),
        event,
        prev_hash: GENESIS.into(),
        hash: String::new(),
    }
}

/// Changes record `seq` in place, as someone with the database file could.
async fn tamper(store: &Store, seq: u64, change: impl FnOnce(&mut Record)) {
    let mut r: Record = serde_json::from_slice(&store.audit_get(seq).await.unwrap().unwrap()).unwrap();
    change(&mut r);
    store
        .audit_overwrite(seq, &serde_json::to_vec(&r).unwrap())
        .await
        .unwrap();
}

// Records chain from the genesis hash, and an intact chain verifies.
#[tokio::test]
async fn chain_verifies() {
    let store = with_records(5).await;
    let records = list(&store, &Query::default()).await.unwrap();
    assert_eq!(records.len(), 5);
    assert_eq!(records[0].prev_hash, GENESIS);
    assert_eq!(records[1].prev_hash, records[0].hash);
    assert_eq!(verify(&store).await.unwrap(), Verification::Intact { records: 5 });
}

// Altering, or removing, one record breaks the chain at that record.
#[tokio::test]
async fn tampering_detected() {
    let store = with_records(5).await;
    tamper(&store, 3, |r| r.event.email = Some("someone-else@example.com".into())).await;
    assert!(matches!(
        verify(&store).await.unwrap(),
        Verification::Broken { seq: 3, .. }
    ));

    let store = with_records(5).await;
    tamper(&store, 2, |r| {
        r.event.reason = Some("forged".into());
        r.hash = r.compute_hash();
    })
    .await;
    assert!(
        matches!(verify(&store).await.unwrap(), Verification::Broken { seq: 3, .. }),
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
        audit.durable(Event::new(EventKind::Logout)).await;
    }
    clock.advance(Duration::from_secs(100 * 86_400));
    let cutoff = clock.now_ms() - 1000;
    for _ in 0..2 {
        audit.durable(Event::new(EventKind::Logout)).await;
    }
    drop(audit);
    task.await.unwrap();
    assert_eq!(prune(&store, cutoff).await.unwrap(), 3);
    assert_eq!(verify(&store).await.unwrap(), Verification::Intact { records: 2 });
}

// A flood past the queue is counted into one audit_overflow record.
#[tokio::test]
async fn overflow_recorded() {
    let store = Store::temporary().unwrap();
    let (audit, task) = Audit::start_with_queue(&store, Arc::new(ManualClock::new()), 4).unwrap();
    for _ in 0..100 {
        audit.record(Event::new(EventKind::AccessDenied));
    }
    drop(audit);
    task.await.unwrap();
    let overflow = list(
        &store,
        &Query {
            event: Some(EventKind::AuditOverflow.name().into()),
            ..Query::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(overflow.len(), 1);
    let written = list(
        &store,
        &Query {
            event: Some(EventKind::AccessDenied.name().into()),
            ..Query::default()
        },
    )
    .await
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
        verify(&store).await.unwrap(),
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
        audit.durable(Event::new(EventKind::Logout)).await;
    }
    let first = sign_checkpoint(&store, &key, clock.now_ms()).await.unwrap().unwrap();
    assert_eq!(first.seq, 3);
    assert_eq!(sign_checkpoint(&store, &key, clock.now_ms()).await.unwrap(), None);
    clock.advance(Duration::from_secs(100 * 86_400));
    audit.durable(Event::new(EventKind::Logout)).await;
    drop(audit);
    task.await.unwrap();
    let second = sign_checkpoint(&store, &key, clock.now_ms()).await.unwrap().unwrap();
    assert_eq!(second.seq, 4);
    assert!(second.signed_by(&key) && !second.signed_by(&TestSigner("k2")));
    let report = verify_anchored(&store, &key, Some(&first)).await.unwrap();
    assert_eq!(report.verification, Verification::Intact { records: 4 });
    assert_eq!((report.checkpoints, report.latest.map(|l| l.0)), (3, Some(4)));
    // Signed by another key: refused, stored or given.
    let report = verify_anchored(&store, &TestSigner("k2"), None).await.unwrap();
    assert!(
        matches!(report.verification, Verification::Broken { seq: 3, .. }),
        "{report:?}"
    );

    prune(&store, clock.now_ms() - 1000).await.unwrap();
    let report = verify_anchored(&store, &key, None).await.unwrap();
    assert_eq!(
        (report.verification, report.checkpoints),
        (Verification::Intact { records: 1 }, 1)
    );
    assert!(
        matches!(
            verify_anchored(&store, &key, Some(&first)).await.unwrap().verification,
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
    let r = failure_record("a\u{2028}b\u{202e}c\u{85}d\u{e0041}\"e");
    let line = json_line(&r);
    assert!(line.is_ascii(), "{line}");
    assert!(line.contains("\\u2028") && line.contains("\\udb40\\udc41"), "{line}");
    assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), r);
}

// Control characters are escaped in text output.
#[test]
fn escaping() {
    let r = failure_record("a@b.c\n    7 2026-01-01T00:00:00Z login_success");
    let line = format_line(&r);
    assert!(!line.contains('\n') && line.contains("a@b.c\\n"), "{line}");
    assert_eq!(escape("tab\there\u{1b}[31m"), "tab\\there\\u{001b}[31m");
}

/// Two writers (two gateways) appending to one store: their records take turns, then
/// flood at once, and the trail is still one chain, each sequence number once. Any
/// backend must pass this (`audit_append` chains onto the head it is given, never onto
/// one a writer remembers).
pub(crate) async fn two_writers_make_one_chain(store: &Store) {
    let start = |store: &Store| Audit::start(store, Arc::new(ManualClock::new())).unwrap();
    let (a, task_a) = start(store);
    let (b, task_b) = start(store);
    let event = |who: &str, i: usize| {
        let mut ev = Event::new(EventKind::AccessDenied);
        ev.reason = Some(format!("{who}{i}"));
        ev
    };
    for i in 0..10 {
        a.durable(event("a", i)).await;
        b.durable(event("b", i)).await;
    }
    let flood = |audit: Audit, who: &'static str| {
        tokio::spawn(async move {
            for i in 10..400 {
                if i % 50 == 0 {
                    audit.durable(event(who, i)).await;
                } else {
                    audit.record(event(who, i));
                }
                if i % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            audit.close().await;
        })
    };
    let (fa, fb) = tokio::join!(flood(a, "a"), flood(b, "b"));
    fa.unwrap();
    fb.unwrap();
    task_a.await.unwrap();
    task_b.await.unwrap();

    let records = list(store, &Query::default()).await.unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    let expected: Vec<u64> = (1..=u64::try_from(records.len()).unwrap()).collect();
    assert_eq!(seqs, expected, "every sequence number once, in order");
    let reasons: Vec<&str> = records.iter().filter_map(|r| r.event.reason.as_deref()).collect();
    let turns: Vec<String> = (0..10).flat_map(|i| [format!("a{i}"), format!("b{i}")]).collect();
    assert_eq!(
        reasons[..20],
        turns.iter().map(String::as_str).collect::<Vec<_>>()[..],
        "turns"
    );
    for who in ["a", "b"] {
        let mine = reasons.iter().filter(|r| r.starts_with(who)).count();
        assert_eq!(mine, 400, "{who}: every record written (none dropped)");
    }
    assert_eq!(
        verify(store).await.unwrap(),
        Verification::Intact {
            records: u64::try_from(records.len()).unwrap()
        }
    );
}

// With sled: one chain from two writers (audit_append is atomic under its lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_one_chain() {
    two_writers_make_one_chain(&Store::temporary().unwrap()).await;
}
