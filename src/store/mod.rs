//! The sled database: users, pending confirmations, MFA challenges, sessions and refresh
//! tokens, revoked access tokens and login failures. Nothing else touches sled.
//!
//! Secrets handed to clients (confirmation, MFA and refresh tokens) are stored only as
//! SHA-256 hashes. Writes that change security state are followed by [`Store::flush`]
//! before the response that reports them goes out, so a crash never forgets a lockout,
//! a revocation or a spent refresh token.
//!
//! Nothing a client can make is kept for ever. Every record with a lifetime
//! (confirmation, challenge, session, refresh token, pending account) has a key in the
//! `expiry` index, ordered by its end, so [`Store::prune`] reads only what has run out;
//! failure counts are forgotten once their window has passed. Sessions are also indexed
//! by user, and revoked sessions and users have trees of their own, so neither revoking a
//! user nor starting up walks every session.

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
    /// Unix ms of the latest failure: a count whose window has passed starts afresh.
    #[serde(default)]
    pub last_ms: u64,
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

/// How many records some trees hold: what an attacker could try to grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub users: usize,
    pub confirmations: usize,
    pub challenges: usize,
    pub sessions: usize,
    pub refresh: usize,
    pub failures: usize,
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
    /// `expires_ms` (big-endian) + kind + id -> empty: what to prune, soonest first.
    expiry: sled::Tree,
    /// `user_id/session_id` -> empty.
    user_sessions: sled::Tree,
    /// Session id -> expiry (Unix s, big-endian), for revoked sessions.
    revoked_sessions: sled::Tree,
    /// User id -> `tokens_valid_after` (Unix s, big-endian), while it matters.
    revoked_users: sled::Tree,
    /// User id -> hash of that user's one live enrolment challenge.
    enrolments: sled::Tree,
    /// Unconfirmed user id -> when its latest confirmation link expires (Unix ms, BE).
    pending: sled::Tree,
    meta: sled::Tree,
}

/// What an `expiry` key points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Confirmation = 1,
    Challenge = 2,
    Session = 3,
    Refresh = 4,
    /// An account made by registration and not confirmed yet.
    Pending = 5,
}

impl Kind {
    fn of(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Confirmation,
            2 => Self::Challenge,
            3 => Self::Session,
            4 => Self::Refresh,
            5 => Self::Pending,
            _ => return None,
        })
    }
}

fn expiry_key(expires_ms: u64, kind: Kind, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + id.len());
    k.extend_from_slice(&expires_ms.to_be_bytes());
    k.push(kind as u8);
    k.extend_from_slice(id.as_bytes());
    k
}

fn user_session_key(user_id: &str, session_id: &str) -> Vec<u8> {
    format!("{user_id}/{session_id}").into_bytes()
}

/// The entries of a tree of id -> time (big-endian u64) whose time is after `cutoff`;
/// the others are removed as they are found (unless rewritten meanwhile).
fn live_times(tree: &sled::Tree, cutoff: u64) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for item in tree.iter() {
        let (k, v) = item?;
        let time = be_u64(&v);
        if time <= cutoff {
            let _ = tree.compare_and_swap(&k, Some(v), None as Option<&[u8]>)?;
        } else {
            out.push((String::from_utf8_lossy(&k).into_owned(), time));
        }
    }
    Ok(out)
}

fn be_u64(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// The most expired records one [`Store::prune`] removes, so a sweep after a flood stays
/// short; the rest go in the next sweeps.
pub const PRUNE_BATCH: usize = 20_000;

/// What one [`Store::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub confirmations: usize,
    pub challenges: usize,
    pub sessions: usize,
    pub refresh: usize,
    /// Accounts never confirmed, whose last confirmation link has expired.
    pub pending_users: usize,
    pub failures: usize,
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
            expiry: db.open_tree("expiry")?,
            user_sessions: db.open_tree("user_sessions")?,
            revoked_sessions: db.open_tree("revoked_sessions")?,
            revoked_users: db.open_tree("revoked_users")?,
            enrolments: db.open_tree("enrolments")?,
            pending: db.open_tree("pending")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    /// Builds the indexes from the records, once, for a database written before they
    /// existed; accounts pending since then expire `pending_ttl_ms` after creation.
    pub fn build_indexes(&self, pending_ttl_ms: u64) -> Result<()> {
        const MARK: &[u8] = b"indexes_v1";
        if self.meta.contains_key(MARK)? {
            return Ok(());
        }
        for s in all::<Session>(&self.sessions, "sessions")? {
            self.index_session(&s)?;
        }
        for item in self.refresh.iter() {
            let (k, v) = item?;
            let e: RefreshEntry = serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                tree: "refresh",
                source,
            })?;
            let hash = String::from_utf8_lossy(&k);
            self.expiry
                .insert(expiry_key(e.expires.saturating_mul(1000), Kind::Refresh, &hash), &[])?;
        }
        for item in self.confirmations.iter() {
            let (k, v) = item?;
            let c: Confirmation = serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                tree: "confirmations",
                source,
            })?;
            self.expiry.insert(
                expiry_key(c.expires_ms, Kind::Confirmation, &String::from_utf8_lossy(&k)),
                &[],
            )?;
        }
        for item in self.challenges.iter() {
            let (k, v) = item?;
            let c: Challenge = serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                tree: "challenges",
                source,
            })?;
            self.expiry.insert(
                expiry_key(c.expires_ms, Kind::Challenge, &String::from_utf8_lossy(&k)),
                &[],
            )?;
        }
        for u in self.users()? {
            if !u.confirmed {
                let ends = u.created_at.saturating_mul(1000).saturating_add(pending_ttl_ms);
                self.put_pending(&u.id, ends)?;
            }
            if u.tokens_valid_after > 0 {
                self.revoked_users
                    .insert(u.id.as_bytes(), &u.tokens_valid_after.to_be_bytes())?;
            }
        }
        self.meta.insert(MARK, &[])?;
        Ok(())
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

    /// The number of records in the trees an attacker could grow (a count walks a tree:
    /// for tests and diagnostics, not the request path).
    pub fn counts(&self) -> Result<Counts> {
        Ok(Counts {
            users: self.users.len(),
            confirmations: self.confirmations.len(),
            challenges: self.challenges.len(),
            sessions: self.sessions.len(),
            refresh: self.refresh.len(),
            failures: self.failures.len(),
        })
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

    /// Applies `change` to a user and stores the result, atomically: a change made by
    /// someone else in between is never lost (the change is applied again on top of it).
    pub fn update_user(&self, id: &str, mut change: impl FnMut(&mut User)) -> Result<User> {
        self.try_update_user(id, |u| {
            change(u);
            true
        })?
        .ok_or(StoreError::NoSuchUser)
    }

    /// Like [`Store::update_user`], but `change` may decline (return false) on the state
    /// it sees, and then nothing is written: `Ok(None)`. A missing user is an error.
    pub fn try_update_user(&self, id: &str, mut change: impl FnMut(&mut User) -> bool) -> Result<Option<User>> {
        loop {
            let old = self.users.get(id.as_bytes())?.ok_or(StoreError::NoSuchUser)?;
            let mut user: User =
                serde_json::from_slice(&old).map_err(|source| StoreError::Corrupt { tree: "users", source })?;
            if !change(&mut user) {
                return Ok(None);
            }
            let swapped = self
                .users
                .compare_and_swap(id.as_bytes(), Some(old), Some(encode(&user)))?;
            if swapped.is_ok() {
                return Ok(Some(user));
            }
        }
    }

    /// Removes an account that was never confirmed (and its email), if it still is one.
    fn remove_pending_user(&self, id: &str) -> Result<bool> {
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
    pub fn put_pending(&self, user_id: &str, expires_ms: u64) -> Result<()> {
        self.expiry
            .insert(expiry_key(expires_ms, Kind::Pending, user_id), &[])?;
        self.pending.insert(user_id.as_bytes(), &expires_ms.to_be_bytes())?;
        Ok(())
    }

    /// A confirmed account is no longer pending.
    pub fn clear_pending(&self, user_id: &str) -> Result<()> {
        self.pending.remove(user_id.as_bytes())?;
        Ok(())
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
    /// Failures older than `window_ms` are forgotten.
    pub fn record_failure(
        &self,
        email: &str,
        max: u32,
        lockout_ms: u64,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<Failures> {
        let updated = self.failures.update_and_fetch(email.as_bytes(), |old| {
            let mut f: Failures = old.and_then(|v| serde_json::from_slice(v).ok()).unwrap_or_default();
            if f.locked_until_ms != 0 && f.locked_until_ms <= now_ms {
                // A lockout that has passed starts a fresh count.
                f = Failures::default();
            }
            if f.locked_until_ms == 0 && f.last_ms.saturating_add(window_ms) <= now_ms {
                // So does a count whose latest failure is older than the window.
                f.count = 0;
            }
            f.last_ms = now_ms;
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

    // --- confirmations and challenges -----------------------------------------------

    pub fn put_confirmation(&self, token_hash: &str, c: &Confirmation) -> Result<()> {
        self.expiry
            .insert(expiry_key(c.expires_ms, Kind::Confirmation, token_hash), &[])?;
        self.confirmations.insert(token_hash.as_bytes(), encode(c))?;
        Ok(())
    }

    /// Removes and returns a confirmation: single use.
    pub fn take_confirmation(&self, token_hash: &str) -> Result<Option<Confirmation>> {
        take(&self.confirmations, "confirmations", token_hash.as_bytes())
    }

    pub fn put_challenge(&self, token_hash: &str, c: &Challenge) -> Result<()> {
        self.expiry
            .insert(expiry_key(c.expires_ms, Kind::Challenge, token_hash), &[])?;
        self.challenges.insert(token_hash.as_bytes(), encode(c))?;
        Ok(())
    }

    /// Stores an enrolment challenge as its user's only one: the one before is removed.
    pub fn put_enrolment(&self, token_hash: &str, c: &Challenge) -> Result<()> {
        self.put_challenge(token_hash, c)?;
        if let Some(previous) = self.enrolments.insert(c.user_id.as_bytes(), token_hash.as_bytes())? {
            if previous.as_ref() != token_hash.as_bytes() {
                self.challenges.remove(previous)?;
            }
        }
        Ok(())
    }

    /// Removes and returns a challenge: whatever happens next, it is spent.
    pub fn take_challenge(&self, token_hash: &str) -> Result<Option<Challenge>> {
        take(&self.challenges, "challenges", token_hash.as_bytes())
    }

    // --- sessions and refresh tokens ------------------------------------------------

    /// Stores a new or revoked session (a rotation goes through [`Store::swap_session`]).
    pub fn put_session(&self, s: &Session) -> Result<()> {
        self.index_session(s)?;
        self.sessions.insert(s.id.as_bytes(), encode(s))?;
        Ok(())
    }

    fn index_session(&self, s: &Session) -> Result<()> {
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
        self.expiry.insert(
            expiry_key(e.expires.saturating_mul(1000), Kind::Refresh, token_hash),
            &[],
        )?;
        self.refresh.insert(token_hash.as_bytes(), encode(e))?;
        Ok(())
    }

    pub fn refresh_entry(&self, token_hash: &str) -> Result<Option<RefreshEntry>> {
        get(&self.refresh, "refresh", token_hash.as_bytes())
    }

    /// Every session of a user, read through the index by user.
    pub fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>> {
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
    pub fn revoked_sessions(&self, now: u64) -> Result<Vec<(String, u64)>> {
        live_times(&self.revoked_sessions, now)
    }

    /// Notes that a user's access tokens issued at or before `after` are refused; kept
    /// while such tokens can still be unexpired.
    pub fn revoke_user_tokens(&self, user_id: &str, after: u64) -> Result<()> {
        self.revoked_users.insert(user_id.as_bytes(), &after.to_be_bytes())?;
        Ok(())
    }

    /// Users whose tokens up to a time are refused, with that time, when it is later than
    /// `since`; older entries are dropped as they are found.
    pub fn revoked_users(&self, since: u64) -> Result<Vec<(String, u64)>> {
        live_times(&self.revoked_users, since)
    }

    // --- pruning --------------------------------------------------------------------

    /// Removes what has run out by `now_ms`: confirmations, challenges, sessions (with
    /// their index entries), refresh tokens, accounts never confirmed whose last link has
    /// expired, and failure counts outside `failure_window_ms`. At most [`PRUNE_BATCH`]
    /// expired records per call.
    pub fn prune(&self, now_ms: u64, failure_window_ms: u64) -> Result<Pruned> {
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
                None => {}
            }
            self.expiry.remove(&key)?;
        }
        pruned.failures = self.prune_failures(failure_window_ms, now_ms)?;
        Ok(pruned)
    }

    // --- revoked access tokens ------------------------------------------------------

    pub fn revoke_jti(&self, jti: &str, exp: u64) -> Result<()> {
        self.revoked_jti.insert(jti.as_bytes(), &exp.to_be_bytes())?;
        Ok(())
    }

    /// Revoked token ids still unexpired; expired ones are dropped as they are found.
    pub fn revoked_jtis(&self, now: u64) -> Result<Vec<(String, u64)>> {
        live_times(&self.revoked_jti, now)
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
            s.record_failure("a@b", 5, 1000, 1000, 0).unwrap();
        }
        assert_eq!(s.locked_until("a@b", 0).unwrap(), None);
        s.record_failure("a@b", 5, 1000, 1000, 0).unwrap();
        assert_eq!(s.locked_until("a@b", 10).unwrap(), Some(1000));
        assert_eq!(s.locked_until("a@b", 1000).unwrap(), None, "the lock expires");
        assert_eq!(s.record_failure("a@b", 5, 1000, 1000, 1000).unwrap().count, 1);
    }

    // Failures older than the window are forgotten, by the count and by the sweep.
    #[test]
    fn failures_window() {
        let s = Store::temporary().unwrap();
        for t in [0, 100, 200, 300] {
            s.record_failure("a@b", 5, 1000, 500, t).unwrap();
        }
        assert_eq!(s.record_failure("a@b", 5, 1000, 500, 800).unwrap().count, 1);
        s.record_failure("x@y", 5, 1000, 500, 800).unwrap();
        assert_eq!(s.prune(1299, 500).unwrap().failures, 0, "inside the window");
        assert_eq!(s.prune(1300, 500).unwrap().failures, 2);
        assert_eq!(s.counts().unwrap().failures, 0);
        // A lock outlives the window.
        for _ in 0..5 {
            s.record_failure("l@m", 5, 10_000, 500, 2000).unwrap();
        }
        assert_eq!(s.prune(3000, 500).unwrap().failures, 0);
        assert_eq!(s.locked_until("l@m", 3000).unwrap(), Some(12_000));
    }

    fn session(id: &str, user: &str, expires: u64) -> Session {
        Session {
            id: id.into(),
            user_id: user.into(),
            current_refresh: format!("r-{id}"),
            amr: vec![],
            created: 0,
            expires,
            revoked: false,
        }
    }

    // A user's sessions are found through the index; expired ones are pruned with it.
    #[test]
    fn sessions_indexed_and_pruned() {
        let s = Store::temporary().unwrap();
        s.put_session(&session("s-1", "u-1", 10)).unwrap();
        s.put_session(&session("s-2", "u-1", 20)).unwrap();
        s.put_session(&session("s-3", "u-10", 20)).unwrap();
        let mut mine: Vec<String> = s.sessions_of("u-1").unwrap().into_iter().map(|x| x.id).collect();
        mine.sort();
        assert_eq!(mine, ["s-1", "s-2"]);
        let mut revoked = session("s-2", "u-1", 20);
        revoked.revoked = true;
        s.put_session(&revoked).unwrap();
        assert_eq!(s.revoked_sessions(0).unwrap(), vec![("s-2".to_owned(), 20)]);
        assert_eq!(s.prune(10_000, 0).unwrap().sessions, 1);
        assert_eq!(s.sessions_of("u-1").unwrap().len(), 1);
        assert_eq!(s.prune(20_000, 0).unwrap().sessions, 2);
        assert!(s.sessions_of("u-1").unwrap().is_empty());
        assert!(s.revoked_sessions(0).unwrap().is_empty());
        assert_eq!(s.counts().unwrap().sessions, 0);
    }

    // A user holds one enrolment challenge: a new one replaces the one before.
    #[test]
    fn one_enrolment_per_user() {
        let s = Store::temporary().unwrap();
        let c = Challenge {
            user_id: "u".into(),
            expires_ms: 100,
            pending_secret: Some("S".into()),
        };
        for h in ["h1", "h2", "h3"] {
            s.put_enrolment(h, &c).unwrap();
        }
        assert_eq!(s.counts().unwrap().challenges, 1);
        assert!(s.take_challenge("h3").unwrap().is_some());
    }

    // An account never confirmed goes when its latest link has expired, freeing the
    // address; a later registration moves that end; a confirmed one stays.
    #[test]
    fn pending_accounts_pruned() {
        let s = Store::temporary().unwrap();
        s.create_user(&user("u-1", "a@example.com")).unwrap();
        s.put_pending("u-1", 100).unwrap();
        s.put_pending("u-1", 200).unwrap();
        s.create_user(&user("u-2", "b@example.com")).unwrap();
        s.put_pending("u-2", 100).unwrap();
        s.update_user("u-2", |u| u.confirmed = true).unwrap();
        assert_eq!(s.prune(150, 0).unwrap().pending_users, 0);
        assert!(s.user("u-1").unwrap().is_some());
        assert_eq!(s.prune(200, 0).unwrap().pending_users, 1);
        assert!(s.user("u-1").unwrap().is_none());
        assert!(s.user_by_email("a@example.com").unwrap().is_none());
        assert!(s.user("u-2").unwrap().is_some());
        s.create_user(&user("u-3", "a@example.com")).unwrap();
    }

    // A change that declines writes nothing; a change is never lost to a concurrent one.
    #[test]
    fn user_updates_atomic() {
        let s = Store::temporary().unwrap();
        s.create_user(&user("u-1", "a@example.com")).unwrap();
        assert!(s.try_update_user("u-1", |_| false).unwrap().is_none());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        s.update_user("u-1", |u| u.totp_last_step += 1).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.user("u-1").unwrap().unwrap().totp_last_step, 200);
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
