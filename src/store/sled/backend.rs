//! [`Backend`] for sled: each method runs the synchronous sled code of this module inline
//! (sled answers from memory and its own threads; nothing here waits on the network).
//! Only the readiness probe (whose flush may block on a failing disk, so its caller must
//! be able to time it out) and pruning run on the blocking pool, as they always did.

use async_trait::async_trait;

use super::{audit, SledStore};
use crate::store::backend::{Backend, ChainFrom, UserChange};
use crate::store::{
    Challenge, Confirmation, Counts, Failures, PasswordReset, Pruned, RefreshEntry, Result, Session, User,
};

#[async_trait]
impl Backend for SledStore {
    async fn create_user(&self, user: &User) -> Result<()> {
        SledStore::create_user(self, user)
    }
    async fn user(&self, id: &str) -> Result<Option<User>> {
        SledStore::user(self, id)
    }
    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        SledStore::user_by_email(self, email)
    }
    async fn put_user(&self, user: &User) -> Result<()> {
        SledStore::put_user(self, user)
    }
    async fn try_update_user(&self, id: &str, change: UserChange<'_>) -> Result<Option<User>> {
        SledStore::try_update_user(self, id, |u| change(u))
    }
    async fn users(&self) -> Result<Vec<User>> {
        SledStore::users(self)
    }
    async fn put_pending(&self, user_id: &str, expires_ms: u64) -> Result<()> {
        SledStore::put_pending(self, user_id, expires_ms)
    }
    async fn clear_pending(&self, user_id: &str) -> Result<()> {
        SledStore::clear_pending(self, user_id)
    }

    async fn failures(&self, email: &str) -> Result<Failures> {
        SledStore::failures(self, email)
    }
    async fn record_failure(
        &self,
        email: &str,
        max: u32,
        lockout_ms: u64,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<Failures> {
        SledStore::record_failure(self, email, max, lockout_ms, window_ms, now_ms)
    }
    async fn clear_failures(&self, email: &str) -> Result<()> {
        SledStore::clear_failures(self, email)
    }

    async fn put_confirmation(&self, token_hash: &str, c: &Confirmation) -> Result<()> {
        SledStore::put_confirmation(self, token_hash, c)
    }
    async fn take_confirmation(&self, token_hash: &str) -> Result<Option<Confirmation>> {
        SledStore::take_confirmation(self, token_hash)
    }
    async fn put_challenge(&self, token_hash: &str, c: &Challenge) -> Result<()> {
        SledStore::put_challenge(self, token_hash, c)
    }
    async fn put_enrolment(&self, token_hash: &str, c: &Challenge) -> Result<()> {
        SledStore::put_enrolment(self, token_hash, c)
    }
    async fn take_challenge(&self, token_hash: &str) -> Result<Option<Challenge>> {
        SledStore::take_challenge(self, token_hash)
    }
    async fn put_reset(&self, token_hash: &str, r: &PasswordReset) -> Result<()> {
        SledStore::put_reset(self, token_hash, r)
    }
    async fn reset(&self, token_hash: &str) -> Result<Option<PasswordReset>> {
        SledStore::reset(self, token_hash)
    }
    async fn take_reset(&self, token_hash: &str) -> Result<Option<PasswordReset>> {
        SledStore::take_reset(self, token_hash)
    }
    async fn touch_reset_decoy(&self, now_ms: u64) -> Result<()> {
        SledStore::touch_reset_decoy(self, now_ms)
    }

    async fn put_session(&self, s: &Session) -> Result<()> {
        SledStore::put_session(self, s)
    }
    async fn swap_session(&self, old: &Session, new: &Session) -> Result<bool> {
        SledStore::swap_session(self, old, new)
    }
    async fn session(&self, id: &str) -> Result<Option<Session>> {
        SledStore::session(self, id)
    }
    async fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>> {
        SledStore::sessions_of(self, user_id)
    }
    async fn put_refresh(&self, token_hash: &str, e: &RefreshEntry) -> Result<()> {
        SledStore::put_refresh(self, token_hash, e)
    }
    async fn refresh_entry(&self, token_hash: &str) -> Result<Option<RefreshEntry>> {
        SledStore::refresh_entry(self, token_hash)
    }
    async fn revoked_sessions(&self, now: u64) -> Result<Vec<(String, u64)>> {
        SledStore::revoked_sessions(self, now)
    }
    async fn revoke_user_tokens(&self, user_id: &str, after: u64) -> Result<()> {
        SledStore::revoke_user_tokens(self, user_id, after)
    }
    async fn revoked_users(&self, since: u64) -> Result<Vec<(String, u64)>> {
        SledStore::revoked_users(self, since)
    }
    async fn revoke_jti(&self, jti: &str, exp: u64) -> Result<()> {
        SledStore::revoke_jti(self, jti, exp)
    }
    async fn revoked_jtis(&self, now: u64) -> Result<Vec<(String, u64)>> {
        SledStore::revoked_jtis(self, now)
    }

    async fn put_activity(&self, times: &[(String, u64)]) -> Result<()> {
        SledStore::put_activity(self, times)
    }
    async fn activity(&self) -> Result<Vec<(String, u64)>> {
        SledStore::activity(self)
    }
    async fn remove_activity(&self, sid: &str) -> Result<()> {
        SledStore::remove_activity(self, sid)
    }

    /// Atomic across every handle of this database (one process holds it: sled's own
    /// lock keeps others out). Written, not flushed: the audit writer flushes after a
    /// durable record and at least every 100 ms, as it always has.
    async fn audit_append(&self, chain: ChainFrom<'_>) -> Result<()> {
        self.audit_append_now(chain)
    }
    async fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        SledStore::audit_last(self)
    }
    async fn audit_get(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        SledStore::audit_get(self, seq)
    }
    async fn audit_range(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        SledStore::audit_range(self, from, limit)
    }
    async fn audit_remove_before(&self, seq: u64) -> Result<usize> {
        SledStore::audit_remove_before(self, seq)
    }
    async fn audit_overwrite(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        SledStore::audit_overwrite(self, seq, bytes)
    }
    async fn checkpoint_put(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        audit::put(&self.checkpoints, seq, bytes)
    }
    async fn checkpoint_last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        audit::last(&self.checkpoints)
    }
    async fn checkpoint_range(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        audit::range(&self.checkpoints, from, limit)
    }
    async fn checkpoint_remove_before(&self, seq: u64) -> Result<usize> {
        audit::remove_before(&self.checkpoints, seq)
    }

    /// On the blocking pool, as the sweep always ran it: a batch after a flood is a long
    /// run of synchronous removals.
    async fn prune(&self, now_ms: u64, failure_window_ms: u64) -> Result<Pruned> {
        let sled = self.clone();
        blocking(move || sled.prune(now_ms, failure_window_ms)).await
    }
    async fn counts(&self) -> Result<Counts> {
        SledStore::counts(self)
    }
    async fn probe(&self, now_ms: u64) -> Result<()> {
        let sled = self.clone();
        blocking(move || sled.probe(now_ms)).await
    }
    async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        let trail = self.trail.clone();
        blocking(move || trail.sync()).await
    }
}

/// Runs sled work that may take long on the blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| sled::Error::Io(std::io::Error::other(format!("the store task failed: {e}"))))?
}
