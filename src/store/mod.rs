//! The sled database: users, pending confirmations, MFA challenges, sessions and refresh
//! tokens, revoked access tokens and login failures. Nothing else touches sled.
//!
//! Secrets handed to clients (confirmation, MFA and refresh tokens) are stored only as
//! SHA-256 hashes. Writes that change security state are followed by [`Store::flush`]
//! before the response that reports them goes out, so a crash never forgets a lockout,
//! a revocation or a spent refresh token.

pub mod dir;

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sled::Error),
    #[error("corrupt record in {tree}: {source}")]
    Corrupt {
        tree: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("no such user")]
    NoSuchUser,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// Random and unguessable: `u-` and 26 base32 characters (128 bits).
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
    /// Access tokens issued before this (Unix seconds) are no longer accepted.
    pub tokens_valid_after: u64,
    pub created_at: u64,
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
}

/// A pending email confirmation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Confirmation {
    pub user_id: String,
    pub expires_ms: u64,
}

/// An MFA challenge: issued after a correct password, spent by one code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Challenge {
    pub user_id: String,
    pub expires_ms: u64,
    /// A secret offered by enrolment, activated by the first valid code.
    pub pending_secret: Option<String>,
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
    pub expires: u64,
    pub revoked: bool,
}

/// What a refresh-token hash points to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshEntry {
    pub session_id: String,
    pub expires: u64,
}

/// The database and its trees.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    users: sled::Tree,
    emails: sled::Tree,
    confirmations: sled::Tree,
    challenges: sled::Tree,
    sessions: sled::Tree,
    refresh: sled::Tree,
    revoked_jti: sled::Tree,
    failures: sled::Tree,
}

fn get<T: DeserializeOwned>(tree: &sled::Tree, name: &'static str, key: &[u8]) -> Result<Option<T>> {
    match tree.get(key)? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|source| StoreError::Corrupt { tree: name, source }),
    }
}

/// Every record of a tree, decoded.
fn all<T: DeserializeOwned>(tree: &sled::Tree, name: &'static str) -> Result<Vec<T>> {
    tree.iter()
        .values()
        .map(|v| serde_json::from_slice(&v?).map_err(|source| StoreError::Corrupt { tree: name, source }))
        .collect()
}

/// Removes a record and returns it decoded: for single-use entries.
fn take<T: DeserializeOwned>(tree: &sled::Tree, name: &'static str, key: &[u8]) -> Result<Option<T>> {
    match tree.remove(key)? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|source| StoreError::Corrupt { tree: name, source }),
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

impl Store {
    /// Opens (or creates) the database under `data_dir/db`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(data_dir.join("db"))
            .mode(sled::Mode::HighThroughput)
            .open()?;
        Self::from_db(db)
    }

    /// A throwaway in-memory database, for tests.
    pub fn temporary() -> Result<Self> {
        Self::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> Result<Self> {
        Ok(Self {
            users: db.open_tree("users")?,
            emails: db.open_tree("emails")?,
            confirmations: db.open_tree("confirmations")?,
            challenges: db.open_tree("challenges")?,
            sessions: db.open_tree("sessions")?,
            refresh: db.open_tree("refresh")?,
            revoked_jti: db.open_tree("revoked_jti")?,
            failures: db.open_tree("failures")?,
            db,
        })
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// The underlying database, for modules that own trees of their own (the audit log).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    // --- users ----------------------------------------------------------------------

    /// Creates a user; fails if the email is taken (atomically).
    pub fn create_user(&self, user: &User) -> Result<()> {
        let claimed =
            self.emails
                .compare_and_swap(user.email.as_bytes(), None as Option<&[u8]>, Some(user.id.as_bytes()))?;
        if claimed.is_err() {
            return Err(StoreError::EmailTaken);
        }
        self.users.insert(user.id.as_bytes(), encode(user))?;
        Ok(())
    }

    pub fn user(&self, id: &str) -> Result<Option<User>> {
        get(&self.users, "users", id.as_bytes())
    }

    pub fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        match self.emails.get(email.as_bytes())? {
            None => Ok(None),
            Some(id) => self.user(&String::from_utf8_lossy(&id)),
        }
    }

    pub fn put_user(&self, user: &User) -> Result<()> {
        self.users.insert(user.id.as_bytes(), encode(user))?;
        Ok(())
    }

    /// Applies `change` to a user and stores the result.
    pub fn update_user(&self, id: &str, change: impl FnOnce(&mut User)) -> Result<User> {
        let mut user = self.user(id)?.ok_or(StoreError::NoSuchUser)?;
        change(&mut user);
        self.put_user(&user)?;
        Ok(user)
    }

    pub fn users(&self) -> Result<Vec<User>> {
        all(&self.users, "users")
    }

    // --- login failures -------------------------------------------------------------

    pub fn failures(&self, email: &str) -> Result<Failures> {
        Ok(get(&self.failures, "failures", email.as_bytes())?.unwrap_or_default())
    }

    /// Records one failed attempt for `email`, atomically. The failure that reaches
    /// `max` locks the email until `now + lockout` (and starts a fresh count for after).
    pub fn record_failure(&self, email: &str, max: u32, lockout_ms: u64, now_ms: u64) -> Result<Failures> {
        let updated = self.failures.update_and_fetch(email.as_bytes(), |old| {
            let mut f: Failures = old.and_then(|v| serde_json::from_slice(v).ok()).unwrap_or_default();
            if f.locked_until_ms != 0 && f.locked_until_ms <= now_ms {
                // A lockout that has passed starts a fresh count.
                f = Failures::default();
            }
            f.count += 1;
            if f.count >= max {
                f.locked_until_ms = now_ms + lockout_ms;
                f.count = 0;
            }
            Some(encode(&f))
        })?;
        Ok(updated
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }

    /// Whether `email` is locked at `now_ms`; the end of the lock when it is.
    pub fn locked_until(&self, email: &str, now_ms: u64) -> Result<Option<u64>> {
        let f = self.failures(email)?;
        Ok((f.locked_until_ms > now_ms).then_some(f.locked_until_ms))
    }

    pub fn clear_failures(&self, email: &str) -> Result<()> {
        self.failures.remove(email.as_bytes())?;
        Ok(())
    }

    // --- confirmations and challenges -----------------------------------------------

    pub fn put_confirmation(&self, token_hash: &str, c: &Confirmation) -> Result<()> {
        self.confirmations.insert(token_hash.as_bytes(), encode(c))?;
        Ok(())
    }

    /// Removes and returns a confirmation: single use.
    pub fn take_confirmation(&self, token_hash: &str) -> Result<Option<Confirmation>> {
        take(&self.confirmations, "confirmations", token_hash.as_bytes())
    }

    pub fn put_challenge(&self, token_hash: &str, c: &Challenge) -> Result<()> {
        self.challenges.insert(token_hash.as_bytes(), encode(c))?;
        Ok(())
    }

    /// Removes and returns a challenge: whatever happens next, it is spent.
    pub fn take_challenge(&self, token_hash: &str) -> Result<Option<Challenge>> {
        take(&self.challenges, "challenges", token_hash.as_bytes())
    }

    // --- sessions and refresh tokens ------------------------------------------------

    pub fn put_session(&self, s: &Session) -> Result<()> {
        self.sessions.insert(s.id.as_bytes(), encode(s))?;
        Ok(())
    }

    /// Replaces `old` with `new` only if the stored session is still exactly `old`.
    pub fn swap_session(&self, old: &Session, new: &Session) -> Result<bool> {
        let swapped = self
            .sessions
            .compare_and_swap(old.id.as_bytes(), Some(encode(old)), Some(encode(new)))?;
        Ok(swapped.is_ok())
    }

    pub fn session(&self, id: &str) -> Result<Option<Session>> {
        get(&self.sessions, "sessions", id.as_bytes())
    }

    pub fn put_refresh(&self, token_hash: &str, e: &RefreshEntry) -> Result<()> {
        self.refresh.insert(token_hash.as_bytes(), encode(e))?;
        Ok(())
    }

    pub fn refresh_entry(&self, token_hash: &str) -> Result<Option<RefreshEntry>> {
        get(&self.refresh, "refresh", token_hash.as_bytes())
    }

    /// Every session of a user.
    pub fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>> {
        let mut sessions: Vec<Session> = all(&self.sessions, "sessions")?;
        sessions.retain(|s| s.user_id == user_id);
        Ok(sessions)
    }

    /// Ids of revoked sessions that have not expired, with their expiry.
    pub fn revoked_sessions(&self, now: u64) -> Result<Vec<(String, u64)>> {
        let sessions: Vec<Session> = all(&self.sessions, "sessions")?;
        Ok(sessions
            .into_iter()
            .filter(|s| s.revoked && s.expires > now)
            .map(|s| (s.id, s.expires))
            .collect())
    }

    // --- revoked access tokens ------------------------------------------------------

    pub fn revoke_jti(&self, jti: &str, exp: u64) -> Result<()> {
        self.revoked_jti.insert(jti.as_bytes(), &exp.to_be_bytes())?;
        Ok(())
    }

    /// Revoked token ids still unexpired; expired ones are dropped as they are found.
    pub fn revoked_jtis(&self, now: u64) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for item in self.revoked_jti.iter() {
            let (k, v) = item?;
            let exp = v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            if exp <= now {
                self.revoked_jti.remove(&k)?;
            } else {
                out.push((String::from_utf8_lossy(&k).into_owned(), exp));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, email: &str) -> User {
        User {
            id: id.into(),
            email: email.into(),
            name: "N".into(),
            password_hash: "x".into(),
            roles: vec!["customer".into()],
            confirmed: false,
            disabled: false,
            totp_secret: None,
            totp_last_step: 0,
            tokens_valid_after: 0,
            created_at: 0,
        }
    }

    // An email is unique across accounts.
    #[test]
    fn email_unique() {
        let s = Store::temporary().unwrap();
        s.create_user(&user("u-1", "a@example.com")).unwrap();
        assert!(matches!(
            s.create_user(&user("u-2", "a@example.com")),
            Err(StoreError::EmailTaken)
        ));
        assert_eq!(s.user_by_email("a@example.com").unwrap().unwrap().id, "u-1");
    }

    // Confirmations and challenges are single use.
    #[test]
    fn single_use() {
        let s = Store::temporary().unwrap();
        s.put_challenge(
            "h",
            &Challenge {
                user_id: "u".into(),
                expires_ms: 1,
                pending_secret: None,
            },
        )
        .unwrap();
        assert!(s.take_challenge("h").unwrap().is_some());
        assert!(s.take_challenge("h").unwrap().is_none());
    }

    // The max-th failure locks until the lockout passes; then the count starts afresh.
    #[test]
    fn failures_lock() {
        let s = Store::temporary().unwrap();
        for _ in 0..4 {
            s.record_failure("a@b", 5, 1000, 0).unwrap();
        }
        assert_eq!(s.locked_until("a@b", 0).unwrap(), None);
        s.record_failure("a@b", 5, 1000, 0).unwrap();
        assert_eq!(s.locked_until("a@b", 10).unwrap(), Some(1000));
        assert_eq!(s.locked_until("a@b", 1000).unwrap(), None, "the lock expires");
        assert_eq!(s.record_failure("a@b", 5, 1000, 1000).unwrap().count, 1);
    }

    // Expired revocations are forgotten; live ones are kept.
    #[test]
    fn revoked_jti_expiry() {
        let s = Store::temporary().unwrap();
        s.revoke_jti("old", 10).unwrap();
        s.revoke_jti("live", 100).unwrap();
        assert_eq!(s.revoked_jtis(50).unwrap(), vec![("live".to_owned(), 100)]);
    }
}

/// The audit tree: records keyed by big-endian sequence number, oldest first. The record
/// encoding and the hash chain belong to `crate::audit`; this is storage only.
#[derive(Clone)]
pub struct AuditTree {
    tree: sled::Tree,
}

impl AuditTree {
    pub fn open(store: &Store) -> Result<Self> {
        Ok(Self {
            tree: store.db.open_tree("audit")?,
        })
    }

    /// The newest record, if any.
    pub fn last(&self) -> Result<Option<(u64, sled::IVec)>> {
        Ok(self.tree.last()?.map(|(k, v)| (key_seq(&k), v)))
    }

    pub fn insert(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.tree.insert(seq.to_be_bytes(), bytes)?;
        Ok(())
    }

    /// Overwrites a record in place (only the tamper tests do this).
    pub fn overwrite(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.insert(seq, bytes)
    }

    pub fn get(&self, seq: u64) -> Result<Option<sled::IVec>> {
        Ok(self.tree.get(seq.to_be_bytes())?)
    }

    /// Every record, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Result<(u64, sled::IVec)>> + '_ {
        self.tree
            .iter()
            .map(|item| item.map(|(k, v)| (key_seq(&k), v)).map_err(StoreError::from))
    }

    /// Removes the records with a sequence number below `seq`.
    pub fn remove_before(&self, seq: u64) -> Result<usize> {
        let mut removed = 0;
        for item in self.tree.range(..seq.to_be_bytes()) {
            let (k, _) = item?;
            self.tree.remove(k)?;
            removed += 1;
        }
        Ok(removed)
    }

    pub async fn flush(&self) -> Result<()> {
        self.tree.flush_async().await?;
        Ok(())
    }
}

fn key_seq(k: &[u8]) -> u64 {
    k.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// Signed checkpoints of the audit chain, keyed by the big-endian sequence number of the
/// record each names. Their encoding and signatures belong to `crate::audit`.
#[derive(Clone)]
pub struct CheckpointTree {
    tree: sled::Tree,
}

impl CheckpointTree {
    pub fn open(store: &Store) -> Result<Self> {
        Ok(Self {
            tree: store.db.open_tree("audit_checkpoints")?,
        })
    }

    /// The newest checkpoint, if any.
    pub fn last(&self) -> Result<Option<(u64, sled::IVec)>> {
        Ok(self.tree.last()?.map(|(k, v)| (key_seq(&k), v)))
    }

    pub fn insert(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.tree.insert(seq.to_be_bytes(), bytes)?;
        Ok(())
    }

    /// Every checkpoint, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Result<(u64, sled::IVec)>> + '_ {
        self.tree
            .iter()
            .map(|item| item.map(|(k, v)| (key_seq(&k), v)).map_err(StoreError::from))
    }

    /// Removes the checkpoints of records with a sequence number below `seq`.
    pub fn remove_before(&self, seq: u64) -> Result<usize> {
        let mut removed = 0;
        for key in self.tree.range(..seq.to_be_bytes()).keys() {
            self.tree.remove(key?)?;
            removed += 1;
        }
        Ok(removed)
    }
}
