//! Accounts, the email index, pending (unconfirmed) accounts and login failures (lockout).

use super::{encode, expiry_key, get, Kind, SledStore};
use crate::store::{Failures, Result, StoreError, User};

impl SledStore {
    // --- users ----------------------------------------------------------------------

    /// Creates a user; fails if the email is taken (atomically).
    pub(super) fn create_user(&self, user: &User) -> Result<()> {
        let claimed =
            self.emails
                .compare_and_swap(user.email.as_bytes(), None as Option<&[u8]>, Some(user.id.as_bytes()))?;
        if claimed.is_err() {
            return Err(StoreError::EmailTaken);
        }
        self.users.insert(user.id.as_bytes(), self.encode_user(user))?;
        Ok(())
    }

    pub(super) fn user(&self, id: &str) -> Result<Option<User>> {
        match self.users.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => self.decode_user(&v).map(Some),
        }
    }

    pub(super) fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        match self.emails.get(email.as_bytes())? {
            None => Ok(None),
            Some(id) => self.user(&String::from_utf8_lossy(&id)),
        }
    }

    pub(super) fn put_user(&self, user: &User) -> Result<()> {
        self.users.insert(user.id.as_bytes(), self.encode_user(user))?;
        Ok(())
    }

    /// Applies `change` to a user and stores the result, atomically: a change made by
    /// someone else in between is never lost (the change is applied again on top of it).
    /// `change` may decline (return false) on the state it sees, and then nothing is
    /// written: `Ok(None)`. A missing user is an error.
    pub(super) fn try_update_user(&self, id: &str, mut change: impl FnMut(&mut User) -> bool) -> Result<Option<User>> {
        loop {
            let old = self.users.get(id.as_bytes())?.ok_or(StoreError::NoSuchUser)?;
            let mut user = self.decode_user(&old)?;
            if !change(&mut user) {
                return Ok(None);
            }
            let swapped = self
                .users
                .compare_and_swap(id.as_bytes(), Some(old), Some(self.encode_user(&user)))?;
            if swapped.is_ok() {
                return Ok(Some(user));
            }
        }
    }

    /// Removes an account that was never confirmed (and its email), if it still is one.
    pub(super) fn remove_pending_user(&self, id: &str) -> Result<bool> {
        let Some(old) = self.users.get(id.as_bytes())? else {
            return Ok(false);
        };
        let user: User =
            serde_json::from_slice(&old).map_err(|source| StoreError::Corrupt { tree: "users", source })?;
        if user.confirmed {
            return Ok(false);
        }
        if self
            .users
            .compare_and_swap(id.as_bytes(), Some(old), None as Option<&[u8]>)?
            .is_err()
        {
            // Changed meanwhile (a registration or a confirmation): look again next time.
            return Ok(false);
        }
        let _ = self
            .emails
            .compare_and_swap(user.email.as_bytes(), Some(id.as_bytes()), None as Option<&[u8]>)?;
        Ok(true)
    }

    /// Notes that an unconfirmed account lives until `expires_ms` unless confirmed.
    pub(super) fn put_pending(&self, user_id: &str, expires_ms: u64) -> Result<()> {
        self.expiry
            .insert(expiry_key(expires_ms, Kind::Pending, user_id), &[])?;
        self.pending.insert(user_id.as_bytes(), &expires_ms.to_be_bytes())?;
        Ok(())
    }

    /// A confirmed account is no longer pending.
    pub(super) fn clear_pending(&self, user_id: &str) -> Result<()> {
        self.pending.remove(user_id.as_bytes())?;
        Ok(())
    }

    pub(super) fn users(&self) -> Result<Vec<User>> {
        self.users.iter().values().map(|v| self.decode_user(&v?)).collect()
    }

    // --- login failures -------------------------------------------------------------

    pub(super) fn failures(&self, email: &str) -> Result<Failures> {
        Ok(get(&self.failures, "failures", email.as_bytes())?.unwrap_or_default())
    }

    /// Records one failed attempt for `email`, atomically. The failure that reaches
    /// `max` locks the email until `now + lockout` (and starts a fresh count for after).
    /// Failures older than `window_ms` are forgotten.
    pub(super) fn record_failure(
        &self,
        email: &str,
        max: u32,
        lockout_ms: u64,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<Failures> {
        let updated = self.failures.update_and_fetch(email.as_bytes(), |old| {
            let f: Failures = old.and_then(|v| serde_json::from_slice(v).ok()).unwrap_or_default();
            Some(encode(&f.after_failure(max, lockout_ms, window_ms, now_ms)))
        })?;
        Ok(updated
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }

    pub(super) fn clear_failures(&self, email: &str) -> Result<()> {
        self.failures.remove(email.as_bytes())?;
        Ok(())
    }
}
