//! [`Backend`] for [`PgStore`]: each method is the query of its kind's file, run within
//! the store's deadline (an unreachable database is an error within seconds, never a
//! hang).

use async_trait::async_trait;

use super::PgStore;
use crate::store::backend::{Backend, Budget, ChainFrom, Change, ClaimedMail, UserChange};
use crate::store::{
    Challenge, Confirmation, Counts, Failures, PasswordReset, Pruned, RefreshEntry, Result, Session, User,
};

#[async_trait]
impl Backend for PgStore {
    async fn create_user(&self, user: &User) -> Result<()> {
        self.bounded(PgStore::create_user(self, user)).await
    }

    async fn user(&self, id: &str) -> Result<Option<User>> {
        self.bounded(PgStore::user(self, id)).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.bounded(PgStore::user_by_email(self, email)).await
    }

    async fn put_user(&self, user: &User) -> Result<()> {
        self.bounded(PgStore::put_user(self, user)).await
    }

    async fn try_update_user(&self, id: &str, change: UserChange<'_>) -> Result<Option<User>> {
        self.bounded(PgStore::try_update_user(self, id, change)).await
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.bounded(PgStore::users(self)).await
    }

    async fn put_pending(&self, user_id: &str, expires_ms: u64) -> Result<()> {
        self.bounded(PgStore::put_pending(self, user_id, expires_ms)).await
    }

    async fn clear_pending(&self, user_id: &str) -> Result<()> {
        self.bounded(PgStore::clear_pending(self, user_id)).await
    }

    async fn failures(&self, email: &str) -> Result<Failures> {
        self.bounded(PgStore::failures(self, email)).await
    }

    async fn record_failure(
        &self,
        email: &str,
        max: u32,
        lockout_ms: u64,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<Failures> {
        self.bounded(PgStore::record_failure(self, email, max, lockout_ms, window_ms, now_ms))
            .await
    }

    async fn clear_failures(&self, email: &str) -> Result<()> {
        self.bounded(PgStore::clear_failures(self, email)).await
    }

    async fn put_confirmation(&self, token_hash: &str, c: &Confirmation) -> Result<()> {
        self.bounded(PgStore::put_confirmation(self, token_hash, c)).await
    }

    async fn take_confirmation(&self, token_hash: &str) -> Result<Option<Confirmation>> {
        self.bounded(PgStore::take_confirmation(self, token_hash)).await
    }

    async fn put_challenge(&self, token_hash: &str, c: &Challenge) -> Result<()> {
        self.bounded(PgStore::put_challenge(self, token_hash, c)).await
    }

    async fn put_enrolment(&self, token_hash: &str, c: &Challenge) -> Result<()> {
        self.bounded(PgStore::put_enrolment(self, token_hash, c)).await
    }

    async fn take_challenge(&self, token_hash: &str) -> Result<Option<Challenge>> {
        self.bounded(PgStore::take_challenge(self, token_hash)).await
    }

    async fn put_reset(&self, token_hash: &str, r: &PasswordReset) -> Result<()> {
        self.bounded(PgStore::put_reset(self, token_hash, r)).await
    }

    async fn reset(&self, token_hash: &str) -> Result<Option<PasswordReset>> {
        self.bounded(PgStore::reset(self, token_hash)).await
    }

    async fn take_reset(&self, token_hash: &str) -> Result<Option<PasswordReset>> {
        self.bounded(PgStore::take_reset(self, token_hash)).await
    }

    async fn touch_reset_decoy(&self, now_ms: u64) -> Result<()> {
        self.bounded(PgStore::touch_reset_decoy(self, now_ms)).await
    }

    async fn put_session(&self, s: &Session) -> Result<()> {
        self.bounded(PgStore::put_session(self, s)).await
    }

    async fn swap_session(&self, old: &Session, new: &Session) -> Result<bool> {
        self.bounded(PgStore::swap_session(self, old, new)).await
    }

    async fn session(&self, id: &str) -> Result<Option<Session>> {
        self.bounded(PgStore::session(self, id)).await
    }

    async fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>> {
        self.bounded(PgStore::sessions_of(self, user_id)).await
    }

    async fn put_refresh(&self, token_hash: &str, e: &RefreshEntry) -> Result<()> {
        self.bounded(PgStore::put_refresh(self, token_hash, e)).await
    }

    async fn refresh_entry(&self, token_hash: &str) -> Result<Option<RefreshEntry>> {
        self.bounded(PgStore::refresh_entry(self, token_hash)).await
    }

    async fn revoked_sessions(&self, now: u64) -> Result<Vec<(String, u64)>> {
        self.bounded(PgStore::revoked_sessions(self, now)).await
    }

    async fn revoke_user_tokens(&self, user_id: &str, after: u64) -> Result<()> {
        self.bounded(PgStore::revoke_user_tokens(self, user_id, after)).await
    }

    async fn revoked_users(&self, since: u64) -> Result<Vec<(String, u64)>> {
        self.bounded(PgStore::revoked_users(self, since)).await
    }

    async fn revoke_jti(&self, jti: &str, exp: u64) -> Result<()> {
        self.bounded(PgStore::revoke_jti(self, jti, exp)).await
    }

    async fn revoked_jtis(&self, now: u64) -> Result<Vec<(String, u64)>> {
        self.bounded(PgStore::revoked_jtis(self, now)).await
    }

    async fn put_activity(&self, times: &[(String, u64)]) -> Result<()> {
        self.bounded(PgStore::put_activity(self, times)).await
    }

    async fn activity(&self) -> Result<Vec<(String, u64)>> {
        self.bounded(PgStore::activity(self)).await
    }

    async fn remove_activity(&self, sid: &str) -> Result<()> {
        self.bounded(PgStore::remove_activity(self, sid)).await
    }

    async fn audit_append(&self, chain: ChainFrom<'_>) -> Result<()> {
        self.bounded(PgStore::audit_append(self, chain)).await
    }

    async fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        self.bounded(PgStore::audit_last(self)).await
    }

    async fn audit_get(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        self.bounded(PgStore::audit_get(self, seq)).await
    }

    async fn audit_range(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.bounded(PgStore::audit_range(self, from, limit)).await
    }

    async fn audit_remove_before(&self, seq: u64) -> Result<usize> {
        self.bounded(PgStore::audit_remove_before(self, seq)).await
    }

    async fn audit_overwrite(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.bounded(PgStore::audit_overwrite(self, seq, bytes)).await
    }

    async fn checkpoint_put(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.bounded(PgStore::checkpoint_put(self, seq, bytes)).await
    }

    async fn checkpoint_last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        self.bounded(PgStore::checkpoint_last(self)).await
    }

    async fn checkpoint_range(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.bounded(PgStore::checkpoint_range(self, from, limit)).await
    }

    async fn checkpoint_remove_before(&self, seq: u64) -> Result<usize> {
        self.bounded(PgStore::checkpoint_remove_before(self, seq)).await
    }

    async fn prune(&self, now_ms: u64, failure_window_ms: u64) -> Result<Pruned> {
        self.bounded(PgStore::prune(self, now_ms, failure_window_ms)).await
    }

    async fn counts(&self) -> Result<Counts> {
        self.bounded(PgStore::counts(self)).await
    }

    async fn probe(&self, now_ms: u64) -> Result<()> {
        self.bounded(PgStore::probe(self, now_ms)).await
    }

    async fn flush(&self) -> Result<()> {
        self.bounded(PgStore::flush(self)).await
    }

    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        self.feed.subscribe()
    }

    async fn signing_key(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.bounded(PgStore::signing_key(self, name)).await
    }

    async fn put_signing_key_if_absent(&self, name: &str, pkcs8: &[u8]) -> Result<Vec<u8>> {
        self.bounded(PgStore::put_signing_key_if_absent(self, name, pkcs8))
            .await
    }

    async fn rate_take(&self, key: &str, interval_us: u64, burst: u32, now_us: u64) -> Result<Option<Budget>> {
        self.bounded(PgStore::rate_take(self, key, interval_us, burst, now_us))
            .await
            .map(Some)
    }

    async fn mail_put(&self, id: &str, message: &[u8], max: usize, now_ms: u64) -> Result<bool> {
        self.bounded(PgStore::mail_put(self, id, message, max, now_ms)).await
    }

    async fn mail_claim(&self, now_ms: u64, lease_ms: u64, limit: usize) -> Result<Vec<ClaimedMail>> {
        self.bounded(PgStore::mail_claim(self, now_ms, lease_ms, limit)).await
    }

    async fn mail_done(&self, id: &str) -> Result<()> {
        self.bounded(PgStore::mail_done(self, id)).await
    }

    async fn mail_retry(&self, id: &str, at_ms: u64) -> Result<()> {
        self.bounded(PgStore::mail_retry(self, id, at_ms)).await
    }
}
