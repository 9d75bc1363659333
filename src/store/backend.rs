//! The seam between the flows and the database: every record the gateway keeps is read
//! and written through [`Backend`], which the sled backend (one gateway, embedded) and
//! the PostgreSQL backend (any number of gateways sharing one database) both implement.
//!
//! The contract each method states (what is atomic, what is single-use, what a
//! concurrent caller sees) holds across every gateway that shares the backend: a
//! PostgreSQL implementation keeps it with transactions and row locks, not with
//! anything held in one process.
//!
//! Records are the backend-free types of `records`; TOTP secrets in them are in clear
//! here and sealed by the backend as they are written (see `sealed`). Secrets handed to
//! clients (confirmation, MFA, reset and refresh tokens) arrive already hashed.

use async_trait::async_trait;

use super::{Challenge, Confirmation, Counts, Failures, PasswordReset, Pruned, RefreshEntry, Result, Session, User};

/// A change to a user record, applied under the backend's lock on that record: it
/// returns false to leave the record as it was.
pub type UserChange<'a> = &'a mut (dyn FnMut(&mut User) -> bool + Send);

/// Builds the next audit records from the chain's head: given the newest stored record
/// (its sequence number and bytes) or `None` for an empty trail, it returns the records
/// to store, each with its sequence number, oldest first.
pub type ChainFrom<'a> = &'a mut (dyn FnMut(Option<(u64, Vec<u8>)>) -> Vec<(u64, Vec<u8>)> + Send);

/// A change that in-memory caches of revocations must follow, published by backends
/// shared by several gateways (see [`Backend::subscribe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A session was revoked; it matters until `expires` (Unix s).
    Session { id: String, expires: u64 },
    /// Every token of the user issued at or before `after` (Unix s) is revoked.
    User { id: String, after: u64 },
    /// An access token was revoked; it matters until `exp` (Unix s).
    Jti { jti: String, exp: u64 },
    /// Changes may have been missed (the feed reconnected, or this receiver lagged):
    /// reload the revocation lists before trusting the cache again.
    Resync,
}

/// What a shared rate budget answered ([`Backend::rate_take`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Taken; `remaining` more fit in the budget now, and it is whole again after
    /// `reset_us` microseconds.
    Allowed { remaining: u32, reset_us: u64 },
    /// Refused; the budget has room again after this many microseconds.
    Refused { retry_after_us: u64 },
}

/// A message claimed from the shared mail spool ([`Backend::mail_claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedMail {
    pub id: String,
    pub message: Vec<u8>,
    /// How many times it was claimed before this one.
    pub attempts: u32,
}

/// Where the state lives. Object safe: the gateway holds an `Arc<dyn Backend>`.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    // --- accounts -------------------------------------------------------------------

    /// Stores a new account; [`StoreError::EmailTaken`](super::StoreError::EmailTaken)
    /// when another account has its email (two concurrent creations with one email:
    /// exactly one succeeds).
    async fn create_user(&self, user: &User) -> Result<()>;
    async fn user(&self, id: &str) -> Result<Option<User>>;
    async fn user_by_email(&self, email: &str) -> Result<Option<User>>;
    /// Overwrites an existing account as given (email unchanged).
    async fn put_user(&self, user: &User) -> Result<()>;
    /// Reads, changes and writes one account atomically (a compare-and-swap loop or a
    /// row lock): concurrent changes never lose one another, and a change that returns
    /// false writes nothing. `Ok(None)` when the change declined;
    /// [`StoreError::NoSuchUser`](super::StoreError::NoSuchUser) when there is no such
    /// account. The spending of TOTP steps and recovery codes relies on this.
    async fn try_update_user(&self, id: &str, change: UserChange<'_>) -> Result<Option<User>>;
    /// Every account (the CLI's list, the index build).
    async fn users(&self) -> Result<Vec<User>>;
    /// An unconfirmed account, to be removed by [`Backend::prune`] after `expires_ms`.
    async fn put_pending(&self, user_id: &str, expires_ms: u64) -> Result<()>;
    async fn clear_pending(&self, user_id: &str) -> Result<()>;

    // --- login failures --------------------------------------------------------------

    async fn failures(&self, email: &str) -> Result<Failures>;
    /// Records one failed attempt for `email` atomically: N concurrent failures (from any
    /// number of gateways) count N. The failure that reaches `max` locks the email until
    /// `now + lockout_ms` and starts a fresh count; a lockout that has passed, or a count
    /// whose latest failure is older than `window_ms`, starts again from zero.
    async fn record_failure(
        &self,
        email: &str,
        max: u32,
        lockout_ms: u64,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<Failures>;
    async fn clear_failures(&self, email: &str) -> Result<()>;

    // --- single-use tokens -------------------------------------------------------------

    async fn put_confirmation(&self, token_hash: &str, c: &Confirmation) -> Result<()>;
    /// Removes and returns a confirmation: of two concurrent takes, exactly one gets it.
    async fn take_confirmation(&self, token_hash: &str) -> Result<Option<Confirmation>>;
    async fn put_challenge(&self, token_hash: &str, c: &Challenge) -> Result<()>;
    /// Like [`Backend::put_challenge`], and the user's previous enrolment challenge, if
    /// any, is removed: one live enrolment per user.
    async fn put_enrolment(&self, token_hash: &str, c: &Challenge) -> Result<()>;
    /// Removes and returns a challenge: single use, exactly one of concurrent takes.
    async fn take_challenge(&self, token_hash: &str) -> Result<Option<Challenge>>;
    /// Stores a reset token; the user's previous one, if any, is removed (one live reset
    /// token per user).
    async fn put_reset(&self, token_hash: &str, r: &PasswordReset) -> Result<()>;
    /// A reset token without spending it.
    async fn reset(&self, token_hash: &str) -> Result<Option<PasswordReset>>;
    /// Removes and returns a reset token: exactly one of concurrent takes gets it.
    async fn take_reset(&self, token_hash: &str) -> Result<Option<PasswordReset>>;
    /// Rewrites one fixed record: the durable work a reset request for an unknown address
    /// does in place of storing a token.
    async fn touch_reset_decoy(&self, now_ms: u64) -> Result<()>;

    // --- sessions, refresh tokens, revocations -----------------------------------------

    /// Stores a new or revoked session (a rotation goes through `swap_session`); a
    /// revoked one is also listed by [`Backend::revoked_sessions`].
    async fn put_session(&self, s: &Session) -> Result<()>;
    /// Replaces `old` with `new` only if the stored session is still exactly `old`:
    /// of two concurrent rotations of one refresh token, exactly one swaps.
    async fn swap_session(&self, old: &Session, new: &Session) -> Result<bool>;
    async fn session(&self, id: &str) -> Result<Option<Session>>;
    async fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>>;
    async fn put_refresh(&self, token_hash: &str, e: &RefreshEntry) -> Result<()>;
    async fn refresh_entry(&self, token_hash: &str) -> Result<Option<RefreshEntry>>;
    /// Revoked sessions that have not expired at `now` (Unix s): (id, expiry).
    async fn revoked_sessions(&self, now: u64) -> Result<Vec<(String, u64)>>;
    /// Every token of `user_id` issued at or before `after` (Unix s) is revoked.
    async fn revoke_user_tokens(&self, user_id: &str, after: u64) -> Result<()>;
    /// Users whose revocation time is after `since` (Unix s): (id, time); older entries
    /// may be forgotten.
    async fn revoked_users(&self, since: u64) -> Result<Vec<(String, u64)>>;
    async fn revoke_jti(&self, jti: &str, exp: u64) -> Result<()>;
    /// Revoked access tokens not expired at `now` (Unix s): (jti, exp).
    async fn revoked_jtis(&self, now: u64) -> Result<Vec<(String, u64)>>;

    // --- idle sessions -------------------------------------------------------------------

    /// Stores last-used times (Unix s) of sessions, in one batch; a time never moves back.
    async fn put_activity(&self, times: &[(String, u64)]) -> Result<()>;
    async fn activity(&self) -> Result<Vec<(String, u64)>>;
    async fn remove_activity(&self, sid: &str) -> Result<()>;

    // --- the audit trail -----------------------------------------------------------------

    /// Appends records to the one audit chain. `chain` is called with the newest stored
    /// record, inside whatever lock makes the chain one across every gateway of the
    /// backend, and its records are written in the same transaction: appends from two
    /// gateways never interleave or fork the chain. Durable when this returns, or, for a
    /// backend whose writes wait for it (sled's), at the next [`Backend::flush`].
    async fn audit_append(&self, chain: ChainFrom<'_>) -> Result<()>;
    async fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>>;
    async fn audit_get(&self, seq: u64) -> Result<Option<Vec<u8>>>;
    /// Up to `limit` records from `from` on (inclusive), oldest first.
    async fn audit_range(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>>;
    /// Removes records with a sequence number below `seq`; how many.
    async fn audit_remove_before(&self, seq: u64) -> Result<usize>;
    /// Overwrites a record in place: only the tamper tests do this.
    async fn audit_overwrite(&self, seq: u64, bytes: &[u8]) -> Result<()>;
    /// Signed checkpoints of the chain, keyed by the sequence number each names.
    async fn checkpoint_put(&self, seq: u64, bytes: &[u8]) -> Result<()>;
    async fn checkpoint_last(&self) -> Result<Option<(u64, Vec<u8>)>>;
    async fn checkpoint_range(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>>;
    async fn checkpoint_remove_before(&self, seq: u64) -> Result<usize>;

    // --- upkeep ----------------------------------------------------------------------------

    /// Removes what has run out by `now_ms` (confirmations, challenges, sessions, refresh
    /// tokens, pending accounts, reset tokens, failure counts older than
    /// `failure_window_ms`), a bounded batch at a time.
    async fn prune(&self, now_ms: u64, failure_window_ms: u64) -> Result<Pruned>;
    /// Record counts of what an attacker could grow (tests and diagnostics).
    async fn counts(&self) -> Result<Counts>;
    /// Writes, reads back and makes durable a probe record: the readiness check.
    async fn probe(&self, now_ms: u64) -> Result<()>;
    /// Makes every write so far durable (a no-op where every write already is).
    async fn flush(&self) -> Result<()>;

    // --- change feed ---------------------------------------------------------------------

    /// The revocations made by every gateway of the backend, as they commit: `None` where
    /// there is no other gateway to hear from (the default). A receiver that lags, or
    /// gets [`Change::Resync`], reloads the revocation lists.
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }

    // --- signing keys --------------------------------------------------------------------

    /// The signing key stored under `name` (PKCS#8), shared by every gateway of the
    /// backend; `None` when none is stored, or where keys are not shared (the default:
    /// they live in `data_dir/keys`).
    async fn signing_key(&self, _name: &str) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Stores `pkcs8` under `name` unless a key is stored there already, and returns the
    /// stored key: of gateways starting at once, the first one's key wins and every one
    /// signs with it. Sealed with the secret key at rest. The default shares nothing.
    async fn put_signing_key_if_absent(&self, _name: &str, pkcs8: &[u8]) -> Result<Vec<u8>> {
        Ok(pkcs8.to_vec())
    }

    // --- rate budgets --------------------------------------------------------------------

    /// Takes one request from the budget `key`, shared by every gateway (GCRA: a request
    /// every `interval_us` microseconds sustained, up to `burst` at once), atomically: N
    /// concurrent takes from any gateways spend N. `now_us` is wall-clock time, the one
    /// clock every gateway shares. `None` where budgets are not shared (the default):
    /// the caller keeps its own.
    async fn rate_take(&self, _key: &str, _interval_us: u64, _burst: u32, _now_us: u64) -> Result<Option<Budget>> {
        Ok(None)
    }

    // --- the mail spool ------------------------------------------------------------------

    /// Puts a message in the spool shared by every gateway, unless it holds `max`
    /// already (`Ok(false)`); durable when this returns. The default has no shared spool
    /// (`Ok(false)`): callers use their own.
    async fn mail_put(&self, _id: &str, _message: &[u8], _max: usize, _now_ms: u64) -> Result<bool> {
        Ok(false)
    }

    /// Claims up to `limit` messages due at `now_ms` for `lease_ms`: a claimed message
    /// goes to no other claimer (of any gateway) until its lease runs out, so exactly one
    /// gateway sends each unless the sender dies mid-way.
    async fn mail_claim(&self, _now_ms: u64, _lease_ms: u64, _limit: usize) -> Result<Vec<ClaimedMail>> {
        Ok(Vec::new())
    }

    /// Removes a message that was sent (or given up on).
    async fn mail_done(&self, _id: &str) -> Result<()> {
        Ok(())
    }

    /// Puts a claimed message back, due again at `at_ms`.
    async fn mail_retry(&self, _id: &str, _at_ms: u64) -> Result<()> {
        Ok(())
    }
}
