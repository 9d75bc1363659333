//! Password reset tokens: single-use, at most one live token per account.

use super::{encode, expiry_key, get, take, Kind, SledStore};
use crate::store::{PasswordReset, Result};

impl SledStore {
    /// Stores a reset token as its user's only one: the one before, if any, stops working.
    pub(super) fn put_reset(&self, token_hash: &str, r: &PasswordReset) -> Result<()> {
        self.expiry
            .insert(expiry_key(r.expires_ms, Kind::Reset, token_hash), &[])?;
        self.resets.insert(token_hash.as_bytes(), encode(r))?;
        if let Some(previous) = self.user_resets.insert(r.user_id.as_bytes(), token_hash.as_bytes())? {
            if previous.as_ref() != token_hash.as_bytes() {
                self.resets.remove(previous)?;
            }
        }
        Ok(())
    }

    /// A reset token, without spending it (to check it before the work that may refuse
    /// the request without spending the token).
    pub(super) fn reset(&self, token_hash: &str) -> Result<Option<PasswordReset>> {
        get(&self.resets, "resets", token_hash.as_bytes())
    }

    /// Removes and returns a reset token, atomically: of two requests spending one token,
    /// exactly one gets it.
    pub(super) fn take_reset(&self, token_hash: &str) -> Result<Option<PasswordReset>> {
        let r: Option<PasswordReset> = take(&self.resets, "resets", token_hash.as_bytes())?;
        if let Some(r) = &r {
            let _ = self.user_resets.compare_and_swap(
                r.user_id.as_bytes(),
                Some(token_hash.as_bytes()),
                None as Option<&[u8]>,
            )?;
        }
        Ok(r)
    }

    /// Removes a reset token that has run out by `now_ms` (part of [`SledStore::prune`]).
    pub(super) fn prune_reset(&self, token_hash: &str, now_ms: u64) -> Result<bool> {
        let r: Option<PasswordReset> = get(&self.resets, "resets", token_hash.as_bytes())?;
        let Some(r) = r.filter(|r| r.expires_ms <= now_ms) else {
            return Ok(false);
        };
        self.resets.remove(token_hash.as_bytes())?;
        let _ = self.user_resets.compare_and_swap(
            r.user_id.as_bytes(),
            Some(token_hash.as_bytes()),
            None as Option<&[u8]>,
        )?;
        Ok(true)
    }

    /// Writes one fixed record (its value replaced each time, so nothing grows): the
    /// work a reset request for an unknown address does in place of storing a token,
    /// so that both wait on a flush that has something to write.
    pub(super) fn touch_reset_decoy(&self, now_ms: u64) -> Result<()> {
        self.meta.insert(b"reset_decoy", &now_ms.to_be_bytes())?;
        Ok(())
    }
}
