//! The audit writer through a store that refuses writes for a while (a database away):
//! the records wait and are written, in order and chained, when it is back; what waits
//! beyond the queue's size is counted, never lost silently.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::*;
use crate::clock::ManualClock;
use crate::store::backend::{Backend, ChainFrom, UserChange};
use crate::store::{
    Challenge, Confirmation, Counts, Failures, PasswordReset, Pruned, RefreshEntry, Result, Session, Store, StoreError,
    User,
};

/// A backend whose audit appends fail while `down` is set; everything else goes through.
/// A test holding `append_gate` or `flush_gate` stalls appends or flushes (a slow disk).
pub(super) struct Flaky {
    inner: Arc<dyn Backend>,
    pub(super) down: AtomicBool,
    pub(super) refused: AtomicU64,
    /// Appends that went through.
    pub(super) appends: AtomicU64,
    pub(super) append_gate: tokio::sync::Mutex<()>,
    pub(super) flush_gate: tokio::sync::Mutex<()>,
    /// Flushes begun.
    pub(super) flushes: AtomicU64,
}

pub(super) fn flaky() -> (Arc<Flaky>, Store) {
    let flaky = Arc::new(Flaky {
        inner: Store::temporary().unwrap().backend().clone(),
        down: AtomicBool::new(true),
        refused: AtomicU64::new(0),
        appends: AtomicU64::new(0),
        append_gate: tokio::sync::Mutex::new(()),
        flush_gate: tokio::sync::Mutex::new(()),
        flushes: AtomicU64::new(0),
    });
    let store = Store::new(flaky.clone());
    (flaky, store)
}

pub(super) fn denied(i: usize) -> Event {
    let mut ev = Event::new(EventKind::AccessDenied);
    ev.reason = Some(format!("r{i}"));
    ev
}

// Records queued and durable ones while appends fail are kept, and written in order,
// in one chain, with the first append that succeeds.
#[tokio::test]
async fn records_wait_out_an_outage() {
    let (flaky, store) = flaky();
    let (audit, task) = Audit::start_with_queue(&store, Arc::new(ManualClock::new()), 64).unwrap();
    for i in 0..10 {
        audit.record(denied(i));
    }
    audit.durable(denied(10)).await;
    assert!(flaky.refused.load(Ordering::Relaxed) > 0);
    assert!(list(&store, &Query::default()).await.unwrap().is_empty());
    flaky.down.store(false, Ordering::Relaxed);
    audit.durable(denied(11)).await;
    let records = list(&store, &Query::default()).await.unwrap();
    let reasons: Vec<String> = records.iter().map(|r| r.event.reason.clone().unwrap()).collect();
    let expected: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    assert_eq!(reasons, expected, "every record, in order, none counted as dropped");
    assert_eq!(verify(&store).await.unwrap(), Verification::Intact { records: 12 });
    drop(audit);
    task.await.unwrap();
}

// While appends fail, what waits is bounded by the queue's size: the rest is counted in
// one audit_overflow record once the store is back, and the chain verifies.
#[tokio::test]
async fn an_outage_is_bounded_and_counted() {
    let (flaky, store) = flaky();
    let (audit, task) = Audit::start_with_queue(&store, Arc::new(ManualClock::new()), 8).unwrap();
    for i in 0..40 {
        audit.record(denied(i));
        if i % 4 == 3 {
            // Let the writer take what is queued and fail to write it.
            audit.durable(denied(1000 + i)).await;
        }
    }
    flaky.down.store(false, Ordering::Relaxed);
    audit.close().await;
    drop(audit);
    task.await.unwrap();
    let records = list(&store, &Query::default()).await.unwrap();
    let written = records.iter().filter(|r| r.event.event == "access_denied").count();
    assert!(written <= 8 + 1, "at most the bound waited: {written}");
    let overflow: Vec<&Record> = records.iter().filter(|r| r.event.event == "audit_overflow").collect();
    assert!(!overflow.is_empty(), "the drops are counted");
    let dropped: u64 = overflow
        .iter()
        .map(|r| {
            let reason = r.event.reason.as_deref().unwrap();
            let n = reason.trim_start_matches("queue full: ").split(' ').next().unwrap();
            n.parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(
        u64::try_from(written).unwrap() + dropped,
        50,
        "written + dropped = sent"
    );
    assert_eq!(
        verify(&store).await.unwrap(),
        Verification::Intact {
            records: u64::try_from(records.len()).unwrap()
        }
    );
}

// A steady stream of records is appended a window at a time, not a record at a time:
// a record every millisecond, 40 of them, go in a few batches of about ten (one a record
// without the gathering, as the writer has time to take each before the next).
#[tokio::test]
async fn a_stream_of_records_is_appended_in_windows() {
    let (flaky, store) = flaky();
    flaky.down.store(false, Ordering::Relaxed);
    let (audit, task) = Audit::start_with_queue(&store, Arc::new(ManualClock::new()), 64).unwrap();
    for i in 0..40 {
        audit.record(denied(i));
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    audit.close().await;
    drop(audit);
    task.await.unwrap();
    let appends = flaky.appends.load(Ordering::Relaxed);
    let records = list(&store, &Query::default()).await.unwrap();
    assert_eq!(records.len(), 40, "every record is written");
    assert!(appends <= 20, "{appends} appends for 40 records");
    assert_eq!(verify(&store).await.unwrap(), Verification::Intact { records: 40 });
}

#[async_trait]
impl Backend for Flaky {
    async fn audit_append(&self, chain: ChainFrom<'_>) -> Result<()> {
        drop(self.append_gate.lock().await);
        if self.down.load(Ordering::Relaxed) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Io {
                path: "audit".into(),
                source: std::io::Error::other("the database is away"),
            });
        }
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.inner.audit_append(chain).await
    }
    async fn create_user(&self, user: &User) -> Result<()> {
        self.inner.create_user(user).await
    }
    async fn user(&self, id: &str) -> Result<Option<User>> {
        self.inner.user(id).await
    }
    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.inner.user_by_email(email).await
    }
    async fn put_user(&self, user: &User) -> Result<()> {
        self.inner.put_user(user).await
    }
    async fn try_update_user(&self, id: &str, change: UserChange<'_>) -> Result<Option<User>> {
        self.inner.try_update_user(id, change).await
    }
    async fn users(&self) -> Result<Vec<User>> {
        self.inner.users().await
    }
    async fn put_pending(&self, user_id: &str, expires_ms: u64) -> Result<()> {
        self.inner.put_pending(user_id, expires_ms).await
    }
    async fn clear_pending(&self, user_id: &str) -> Result<()> {
        self.inner.clear_pending(user_id).await
    }
    async fn failures(&self, email: &str) -> Result<Failures> {
        self.inner.failures(email).await
    }
    async fn record_failure(
        &self,
        email: &str,
        max: u32,
        lockout_ms: u64,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<Failures> {
        self.inner
            .record_failure(email, max, lockout_ms, window_ms, now_ms)
            .await
    }
    async fn clear_failures(&self, email: &str) -> Result<()> {
        self.inner.clear_failures(email).await
    }
    async fn put_confirmation(&self, token_hash: &str, c: &Confirmation) -> Result<()> {
        self.inner.put_confirmation(token_hash, c).await
    }
    async fn take_confirmation(&self, token_hash: &str) -> Result<Option<Confirmation>> {
        self.inner.take_confirmation(token_hash).await
    }
    async fn put_challenge(&self, token_hash: &str, c: &Challenge) -> Result<()> {
        self.inner.put_challenge(token_hash, c).await
    }
    async fn put_enrolment(&self, token_hash: &str, c: &Challenge) -> Result<()> {
        self.inner.put_enrolment(token_hash, c).await
    }
    async fn take_challenge(&self, token_hash: &str) -> Result<Option<Challenge>> {
        self.inner.take_challenge(token_hash).await
    }
    async fn put_reset(&self, token_hash: &str, r: &PasswordReset) -> Result<()> {
        self.inner.put_reset(token_hash, r).await
    }
    async fn reset(&self, token_hash: &str) -> Result<Option<PasswordReset>> {
        self.inner.reset(token_hash).await
    }
    async fn take_reset(&self, token_hash: &str) -> Result<Option<PasswordReset>> {
        self.inner.take_reset(token_hash).await
    }
    async fn touch_reset_decoy(&self, now_ms: u64) -> Result<()> {
        self.inner.touch_reset_decoy(now_ms).await
    }
    async fn put_session(&self, s: &Session) -> Result<()> {
        self.inner.put_session(s).await
    }
    async fn swap_session(&self, old: &Session, new: &Session) -> Result<bool> {
        self.inner.swap_session(old, new).await
    }
    async fn session(&self, id: &str) -> Result<Option<Session>> {
        self.inner.session(id).await
    }
    async fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>> {
        self.inner.sessions_of(user_id).await
    }
    async fn put_refresh(&self, token_hash: &str, e: &RefreshEntry) -> Result<()> {
        self.inner.put_refresh(token_hash, e).await
    }
    async fn refresh_entry(&self, token_hash: &str) -> Result<Option<RefreshEntry>> {
        self.inner.refresh_entry(token_hash).await
    }
    async fn revoked_sessions(&self, now: u64) -> Result<Vec<(String, u64)>> {
        self.inner.revoked_sessions(now).await
    }
    async fn revoke_user_tokens(&self, user_id: &str, after: u64) -> Result<()> {
        self.inner.revoke_user_tokens(user_id, after).await
    }
    async fn revoked_users(&self, since: u64) -> Result<Vec<(String, u64)>> {
        self.inner.revoked_users(since).await
    }
    async fn revoke_jti(&self, jti: &str, exp: u64) -> Result<()> {
        self.inner.revoke_jti(jti, exp).await
    }
    async fn revoked_jtis(&self, now: u64) -> Result<Vec<(String, u64)>> {
        self.inner.revoked_jtis(now).await
    }
    async fn put_activity(&self, times: &[(String, u64)]) -> Result<()> {
        self.inner.put_activity(times).await
    }
    async fn activity(&self) -> Result<Vec<(String, u64)>> {
        self.inner.activity().await
    }
    async fn remove_activity(&self, sid: &str) -> Result<()> {
        self.inner.remove_activity(sid).await
    }
    async fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        self.inner.audit_last().await
    }
    async fn audit_get(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        self.inner.audit_get(seq).await
    }
    async fn audit_range(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.inner.audit_range(from, limit).await
    }
    async fn audit_remove_before(&self, seq: u64) -> Result<usize> {
        self.inner.audit_remove_before(seq).await
    }
    async fn audit_overwrite(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.inner.audit_overwrite(seq, bytes).await
    }
    async fn checkpoint_put(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.inner.checkpoint_put(seq, bytes).await
    }
    async fn checkpoint_last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        self.inner.checkpoint_last().await
    }
    async fn checkpoint_range(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.inner.checkpoint_range(from, limit).await
    }
    async fn checkpoint_remove_before(&self, seq: u64) -> Result<usize> {
        self.inner.checkpoint_remove_before(seq).await
    }
    async fn prune(&self, now_ms: u64, failure_window_ms: u64) -> Result<Pruned> {
        self.inner.prune(now_ms, failure_window_ms).await
    }
    async fn counts(&self) -> Result<Counts> {
        self.inner.counts().await
    }
    async fn probe(&self, now_ms: u64) -> Result<()> {
        self.inner.probe(now_ms).await
    }
    async fn flush(&self) -> Result<()> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        drop(self.flush_gate.lock().await);
        self.inner.flush().await
    }
}
