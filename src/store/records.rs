//! The records the store keeps, as every backend stores them (JSON-encoded values).

use serde::{Deserialize, Serialize};

/// An account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// Random and unguessable: `u-` and 32 hex digits (128 random bits).
    pub id: String,
    /// Lower-cased.
    pub email: String,
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub roles: Vec<String>,
    pub confirmed: bool,
    pub disabled: bool,
    /// Base32 TOTP secret, once enrolment completed.
    pub totp_secret: Option<String>,
    /// The last TOTP time step accepted: a code is never accepted twice.
    pub totp_last_step: u64,
    /// Hashes of the recovery codes not used yet (see `auth::recovery`); each works once.
    #[serde(default)]
    pub recovery_codes: Vec<String>,
    /// Access tokens issued before this (Unix seconds) are no longer accepted.
    pub tokens_valid_after: u64,
    pub created_at: u64,
    /// Set by an administrator (or `[registration] default_attributes`); bounded as
    /// `crate::attributes` says. Carried in access tokens, compared by `owner` rules and
    /// forwarded upstream. Absent in records written before attributes existed.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl User {
    pub fn mfa_enabled(&self) -> bool {
        self.totp_secret.is_some()
    }
}

/// Failed logins for one normalized email, whether an account exists or not.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    /// Unix ms until which every attempt is refused; 0 when not locked.
    pub locked_until_ms: u64,
    /// Unix ms of the latest failure: a count whose window has passed starts afresh.
    #[serde(default)]
    pub last_ms: u64,
}

impl Failures {
    /// The count after one more failure at `now_ms`, as every backend records it (see
    /// [`Backend::record_failure`](crate::store::backend::Backend::record_failure)): the
    /// failure that reaches `max` locks until `now + lockout_ms` and starts a fresh
    /// count; a lockout that has passed, or a count whose latest failure is older than
    /// `window_ms`, starts again from zero.
    #[must_use]
    pub fn after_failure(mut self, max: u32, lockout_ms: u64, window_ms: u64, now_ms: u64) -> Self {
        if self.locked_until_ms != 0 && self.locked_until_ms <= now_ms {
            // A lockout that has passed starts a fresh count.
            self = Self::default();
        }
        if self.locked_until_ms == 0 && self.last_ms.saturating_add(window_ms) <= now_ms {
            // So does a count whose latest failure is older than the window.
            self.count = 0;
        }
        self.last_ms = now_ms;
        self.count += 1;
        if self.count >= max {
            self.locked_until_ms = now_ms.saturating_add(lockout_ms);
            self.count = 0;
        }
        self
    }
}

/// A pending email confirmation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Confirmation {
    pub user_id: String,
    pub expires_ms: u64,
    /// The password hash of the registration that sent this link: the link confirms the
    /// account only while that password is still the pending one, so a later
    /// registration of the address kills it.
    #[serde(default)]
    pub password_hash: Option<String>,
}

/// A password reset token (keyed by its hash): single use, bound to the password the
/// account had when it was issued, so any change of password kills it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasswordReset {
    pub user_id: String,
    pub expires_ms: u64,
    pub password_hash: String,
}

/// An MFA challenge: issued after a correct password, spent by one code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Challenge {
    pub user_id: String,
    pub expires_ms: u64,
    /// A secret offered by enrolment, activated by the first valid code.
    pub pending_secret: Option<String>,
    /// The account's password hash when the challenge was issued: a new password (a
    /// reset, a change, `user password`) voids every challenge the old one opened.
    #[serde(default)]
    pub password_hash: Option<String>,
}

/// A login session: one family of refresh tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    /// Hash of the one refresh token of this family that may still be used.
    pub current_refresh: String,
    pub amr: Vec<String>,
    pub created: u64,
    /// When the user last passed the second factor in this session (or the password, for
    /// an account without one), Unix seconds; 0 in sessions made before it was recorded,
    /// which count from `created`.
    #[serde(default)]
    pub auth_time: u64,
    pub expires: u64,
    pub revoked: bool,
}

impl Session {
    /// When the user last passed the second factor (or the password) in this session.
    pub fn last_auth(&self) -> u64 {
        if self.auth_time == 0 {
            self.created
        } else {
            self.auth_time
        }
    }
}

/// What a refresh-token hash points to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshEntry {
    pub session_id: String,
    pub expires: u64,
}

/// How many records some trees hold: what an attacker could try to grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub users: usize,
    pub confirmations: usize,
    pub challenges: usize,
    pub sessions: usize,
    pub refresh: usize,
    pub failures: usize,
    pub resets: usize,
}

/// What one [`Backend::prune`](super::backend::Backend::prune) removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub confirmations: usize,
    pub challenges: usize,
    pub sessions: usize,
    pub refresh: usize,
    /// Accounts never confirmed, whose last confirmation link has expired.
    pub pending_users: usize,
    pub failures: usize,
    pub resets: usize,
}
