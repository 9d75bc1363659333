//! Sessions (refresh-token families), refresh tokens and revocations: of sessions, of a
//! user's tokens and of single access tokens.

use super::{encode, expiry_key, get, live_times, user_session_key, Kind, SledStore};
use crate::store::{RefreshEntry, Result, Session};

impl SledStore {
    /// Stores a new or revoked session (a rotation goes through [`SledStore::swap_session`]).
    pub(super) fn put_session(&self, s: &Session) -> Result<()> {
        self.index_session(s)?;
        self.sessions.insert(s.id.as_bytes(), encode(s))?;
        Ok(())
    }

    pub(super) fn index_session(&self, s: &Session) -> Result<()> {
        self.user_sessions.insert(user_session_key(&s.user_id, &s.id), &[])?;
        self.expiry
            .insert(expiry_key(s.expires.saturating_mul(1000), Kind::Session, &s.id), &[])?;
        if s.revoked {
            self.revoked_sessions
                .insert(s.id.as_bytes(), &s.expires.to_be_bytes())?;
        }
        Ok(())
    }

    /// Replaces `old` with `new` only if the stored session is still exactly `old`.
    pub(super) fn swap_session(&self, old: &Session, new: &Session) -> Result<bool> {
        let swapped = self
            .sessions
            .compare_and_swap(old.id.as_bytes(), Some(encode(old)), Some(encode(new)))?;
        Ok(swapped.is_ok())
    }

    pub(super) fn session(&self, id: &str) -> Result<Option<Session>> {
        get(&self.sessions, "sessions", id.as_bytes())
    }

    pub(super) fn put_refresh(&self, token_hash: &str, e: &RefreshEntry) -> Result<()> {
        self.expiry.insert(
            expiry_key(e.expires.saturating_mul(1000), Kind::Refresh, token_hash),
            &[],
        )?;
        self.refresh.insert(token_hash.as_bytes(), encode(e))?;
        Ok(())
    }

    pub(super) fn refresh_entry(&self, token_hash: &str) -> Result<Option<RefreshEntry>> {
        get(&self.refresh, "refresh", token_hash.as_bytes())
    }

    /// Every session of a user, read through the index by user.
    pub(super) fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>> {
        let mut sessions = Vec::new();
        for item in self.user_sessions.scan_prefix(format!("{user_id}/").as_bytes()) {
            let (k, _) = item?;
            let id = String::from_utf8_lossy(&k[user_id.len() + 1..]).into_owned();
            if let Some(s) = self.session(&id)?.filter(|s: &Session| s.user_id == user_id) {
                sessions.push(s);
            }
        }
        Ok(sessions)
    }

    /// Ids of revoked sessions that have not expired, with their expiry; expired ones are
    /// dropped as they are found.
    pub(super) fn revoked_sessions(&self, now: u64) -> Result<Vec<(String, u64)>> {
        live_times(&self.revoked_sessions, now)
    }

    /// Notes that a user's access tokens issued at or before `after` are refused; kept
    /// while such tokens can still be unexpired.
    pub(super) fn revoke_user_tokens(&self, user_id: &str, after: u64) -> Result<()> {
        // A later revocation is never undone by an earlier one arriving after it.
        self.revoked_users.fetch_and_update(user_id.as_bytes(), |old| {
            let kept = old.map(super::be_u64).unwrap_or(0).max(after);
            Some(kept.to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// Users whose tokens up to a time are refused, with that time, when it is later than
    /// `since`; older entries are dropped as they are found.
    pub(super) fn revoked_users(&self, since: u64) -> Result<Vec<(String, u64)>> {
        live_times(&self.revoked_users, since)
    }

    // --- revoked access tokens ------------------------------------------------------

    pub(super) fn revoke_jti(&self, jti: &str, exp: u64) -> Result<()> {
        self.revoked_jti.insert(jti.as_bytes(), &exp.to_be_bytes())?;
        Ok(())
    }

    /// Revoked token ids still unexpired; expired ones are dropped as they are found.
    pub(super) fn revoked_jtis(&self, now: u64) -> Result<Vec<(String, u64)>> {
        live_times(&self.revoked_jti, now)
    }
}
