//! Email confirmations and MFA challenges (enrolment included): single-use records.

use super::{encode, expiry_key, take, Kind, SledStore};
use crate::store::{Challenge, Confirmation, Result};

impl SledStore {
    pub(super) fn put_confirmation(&self, token_hash: &str, c: &Confirmation) -> Result<()> {
        self.expiry
            .insert(expiry_key(c.expires_ms, Kind::Confirmation, token_hash), &[])?;
        self.confirmations.insert(token_hash.as_bytes(), encode(c))?;
        Ok(())
    }

    /// Removes and returns a confirmation: single use.
    pub(super) fn take_confirmation(&self, token_hash: &str) -> Result<Option<Confirmation>> {
        take(&self.confirmations, "confirmations", token_hash.as_bytes())
    }

    pub(super) fn put_challenge(&self, token_hash: &str, c: &Challenge) -> Result<()> {
        self.expiry
            .insert(expiry_key(c.expires_ms, Kind::Challenge, token_hash), &[])?;
        self.challenges
            .insert(token_hash.as_bytes(), self.encode_challenge(token_hash, c))?;
        Ok(())
    }

    /// Stores an enrolment challenge as its user's only one: the one before is removed.
    pub(super) fn put_enrolment(&self, token_hash: &str, c: &Challenge) -> Result<()> {
        self.put_challenge(token_hash, c)?;
        if let Some(previous) = self.enrolments.insert(c.user_id.as_bytes(), token_hash.as_bytes())? {
            if previous.as_ref() != token_hash.as_bytes() {
                self.challenges.remove(previous)?;
            }
        }
        Ok(())
    }

    /// Removes and returns a challenge: whatever happens next, it is spent.
    pub(super) fn take_challenge(&self, token_hash: &str) -> Result<Option<Challenge>> {
        match self.challenges.remove(token_hash.as_bytes())? {
            None => Ok(None),
            Some(v) => self.decode_challenge(token_hash, &v).map(Some),
        }
    }
}
