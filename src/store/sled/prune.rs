//! Pruning: what has run out goes, read through the expiry index, a batch at a time.

use super::{be_u64, get, user_session_key, Kind, SledStore};
use crate::store::{Challenge, Confirmation, Failures, Pruned, RefreshEntry, Result};

/// The most expired records one [`Backend::prune`](crate::store::backend::Backend::prune)
/// removes, so a sweep after a flood stays short; the rest go in the next sweeps.
pub const PRUNE_BATCH: usize = 20_000;

impl SledStore {
    /// Removes what has run out by `now_ms`: confirmations, challenges, sessions (with
    /// their index entries), refresh tokens, accounts never confirmed whose last link has
    /// expired, password reset tokens, and failure counts outside `failure_window_ms`. At most [`PRUNE_BATCH`]
    /// expired records per call.
    pub(super) fn prune(&self, now_ms: u64, failure_window_ms: u64) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        let end = (now_ms.saturating_add(1)).to_be_bytes();
        let due: Vec<sled::IVec> = self
            .expiry
            .range(..end.as_slice())
            .keys()
            .take(PRUNE_BATCH)
            .collect::<std::result::Result<_, _>>()?;
        for key in due {
            let (Some(&kind), Some(id)) = (key.get(8), key.get(9..)) else {
                self.expiry.remove(&key)?;
                continue;
            };
            let id = String::from_utf8_lossy(id).into_owned();
            match Kind::of(kind) {
                Some(Kind::Confirmation) => {
                    let c: Option<Confirmation> = get(&self.confirmations, "confirmations", id.as_bytes())?;
                    if c.is_some_and(|c| c.expires_ms <= now_ms) {
                        self.confirmations.remove(id.as_bytes())?;
                        pruned.confirmations += 1;
                    }
                }
                Some(Kind::Challenge) => {
                    let c: Option<Challenge> = get(&self.challenges, "challenges", id.as_bytes())?;
                    if let Some(c) = c.filter(|c| c.expires_ms <= now_ms) {
                        self.challenges.remove(id.as_bytes())?;
                        pruned.challenges += 1;
                        let _ = self.enrolments.compare_and_swap(
                            c.user_id.as_bytes(),
                            Some(id.as_bytes()),
                            None as Option<&[u8]>,
                        )?;
                    }
                }
                Some(Kind::Session) => {
                    if let Some(s) = self.session(&id)?.filter(|s| s.expires.saturating_mul(1000) <= now_ms) {
                        self.sessions.remove(id.as_bytes())?;
                        self.user_sessions.remove(user_session_key(&s.user_id, &s.id))?;
                        self.revoked_sessions.remove(id.as_bytes())?;
                        self.activity.remove(id.as_bytes())?;
                        pruned.sessions += 1;
                    }
                }
                Some(Kind::Refresh) => {
                    let e: Option<RefreshEntry> = get(&self.refresh, "refresh", id.as_bytes())?;
                    if e.is_some_and(|e| e.expires.saturating_mul(1000) <= now_ms) {
                        self.refresh.remove(id.as_bytes())?;
                        pruned.refresh += 1;
                    }
                }
                Some(Kind::Pending) => {
                    // A newer registration moved the end later: only that one counts.
                    let ends = self.pending.get(id.as_bytes())?.map(|v| be_u64(&v));
                    if let Some(ends) = ends.filter(|e| *e <= now_ms) {
                        if self.remove_pending_user(&id)? {
                            pruned.pending_users += 1;
                        }
                        let _ = self.pending.compare_and_swap(
                            id.as_bytes(),
                            Some(&ends.to_be_bytes()[..]),
                            None as Option<&[u8]>,
                        )?;
                    }
                }
                Some(Kind::Reset) => pruned.resets += usize::from(self.prune_reset(&id, now_ms)?),
                None => {}
            }
            self.expiry.remove(&key)?;
        }
        pruned.failures = self.prune_failures(failure_window_ms, now_ms)?;
        Ok(pruned)
    }

    /// Forgets the failure counts that neither lock nor fall in the window any more.
    fn prune_failures(&self, window_ms: u64, now_ms: u64) -> Result<usize> {
        let mut removed = 0;
        for item in self.failures.iter() {
            let (k, v) = item?;
            let f: Failures = serde_json::from_slice(&v).unwrap_or_default();
            let stale = f.locked_until_ms <= now_ms && f.last_ms.saturating_add(window_ms) <= now_ms;
            // Only the value read is removed: a failure recorded meanwhile stays.
            if stale
                && self
                    .failures
                    .compare_and_swap(&k, Some(v), None as Option<&[u8]>)?
                    .is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
