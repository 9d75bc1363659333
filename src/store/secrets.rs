//! TOTP secrets in records: sealed as a record is written and opened as it is read, the
//! same way by every backend. An account's secret is bound to its id, an enrolment's to
//! its challenge key, so a sealed value moved to another record does not open.

use std::borrow::Cow;

use super::records::{Challenge, User};
use super::sealed::{is_sealed, SecretKey};
use super::{Result, StoreError};

/// The account as it is stored: its TOTP secret sealed (a copy only when there is one to
/// seal).
pub(crate) fn seal_user<'a>(key: &SecretKey, user: &'a User) -> Cow<'a, User> {
    match &user.totp_secret {
        Some(secret) if !is_sealed(secret) => {
            let mut sealed = user.clone();
            sealed.totp_secret = Some(key.seal(user.id.as_bytes(), secret));
            Cow::Owned(sealed)
        }
        _ => Cow::Borrowed(user),
    }
}

/// Opens a stored account's TOTP secret; a secret that does not open refuses the record.
pub(crate) fn open_user(key: &SecretKey, user: &mut User) -> Result<()> {
    if let Some(sealed) = &user.totp_secret {
        let plain = key.open(user.id.as_bytes(), sealed).map_err(|_| {
            tracing::error!(user = %user.id, "a TOTP secret does not open: wrong key, or the record was altered");
            StoreError::Sealed {
                tree: "users",
                id: user.id.clone(),
            }
        })?;
        user.totp_secret = Some(plain);
    }
    Ok(())
}

/// The challenge stored under `id` as it is stored: the secret of its enrolment sealed.
pub(crate) fn seal_challenge<'a>(key: &SecretKey, id: &str, c: &'a Challenge) -> Cow<'a, Challenge> {
    match &c.pending_secret {
        Some(secret) if !is_sealed(secret) => {
            let mut sealed = c.clone();
            sealed.pending_secret = Some(key.seal(id.as_bytes(), secret));
            Cow::Owned(sealed)
        }
        _ => Cow::Borrowed(c),
    }
}

/// Opens the enrolment secret of the challenge stored under `id`.
pub(crate) fn open_challenge(key: &SecretKey, id: &str, c: &mut Challenge) -> Result<()> {
    if let Some(sealed) = &c.pending_secret {
        let plain = key.open(id.as_bytes(), sealed).map_err(|_| {
            tracing::error!(user = %c.user_id, "an enrolment's TOTP secret does not open: wrong key, or the record was altered");
            StoreError::Sealed {
                tree: "challenges",
                id: c.user_id.clone(),
            }
        })?;
        c.pending_secret = Some(plain);
    }
    Ok(())
}
