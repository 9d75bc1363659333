//! The sled backend: the database, its trees and the encoding of keys and values. Nothing
//! outside this module names sled, except [`SledStore::db`], which hands the database to
//! tests that tamper with it offline. The flows reach it through
//! [`Backend`](super::backend::Backend) (`backend.rs`); the inherent methods are the
//! synchronous implementation underneath.

mod activity;
mod audit;
mod backend;
mod confirm;
mod frames;
mod pack;
mod prune;
mod resets;
mod secrets;
mod segment;
mod sessions;
mod trail;
mod users;

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::sealed::SecretKey;
use super::{Challenge, Confirmation, Counts, RefreshEntry, Result, Session, StoreError};

pub use prune::PRUNE_BATCH;

/// An error of the database itself (I/O, corruption found by sled), shown as sled says it.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DbError(sled::Error);

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        Self::Db(DbError(e))
    }
}

/// The database and its trees.
#[derive(Clone)]
pub struct SledStore {
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
    /// Password reset token hash -> [`PasswordReset`](crate::store::PasswordReset).
    resets: sled::Tree,
    /// User id -> hash of that user's one live reset token.
    user_resets: sled::Tree,
    meta: sled::Tree,
    /// Session id -> when it was last used (Unix s, big-endian), for `idle_timeout`.
    activity: sled::Tree,
    /// Audit records as earlier versions kept them (keyed by sequence number,
    /// big-endian): moved into [`trail`] at opening.
    audit: sled::Tree,
    /// The audit records.
    trail: Arc<trail::Trail>,
    /// Signed checkpoints of the audit chain, keyed by the sequence number each names.
    checkpoints: sled::Tree,
    /// Seals TOTP secrets as records are written, opens them as they are read.
    sealer: Arc<SecretKey>,
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
    /// A password reset token.
    Reset = 6,
}

impl Kind {
    fn of(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Confirmation,
            2 => Self::Challenge,
            3 => Self::Session,
            4 => Self::Refresh,
            5 => Self::Pending,
            6 => Self::Reset,
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

/// sled's page cache (its default is 1 GiB). What the request path reads is cached in
/// the gateway already; the cache mostly holds what was written last, and a flood of
/// audited requests (refusals are audited) would otherwise grow the process by the
/// pages it writes, up to that default.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Opens (or creates) the sled database in `path`. A database whose lock is still held is
/// tried again for up to [`LOCK_PATIENCE`]: a store just closed in this process or another
/// lets its lock go only when sled's background threads have finished with it, which on
/// a busy machine can be a moment after the close returned.
fn open_db(path: &Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        let config = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(CACHE_BYTES);
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            opened => return Ok(opened?),
        }
    }
}

/// How long opening waits for a database lock that another holder is letting go.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

impl SledStore {
    /// Opens (or creates) the database under `data_dir/db`, with the secret key from
    /// `PORTCULLIS_SECRET_KEY` or `data_dir/keys/secret.key` (made on first start).
    /// A database holding TOTP secrets in clear is migrated first.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let file = data_dir.join("keys").join(super::sealed::KEY_FILE);
        let made = std::env::var_os(super::sealed::KEY_ENV).is_none() && !file.exists();
        match Self::open_with_key(data_dir, SecretKey::from_environment(data_dir)?) {
            // A key made just now cannot be the one a sealed database needs: its own key
            // file was lost. The new one goes, so restoring the old one is all it takes.
            Err(StoreError::WrongKey) if made => {
                let _ = std::fs::remove_file(&file);
                Err(StoreError::KeyMissing(file))
            }
            other => other,
        }
    }

    /// Like [`SledStore::open`], with the secret key given.
    pub fn open_with_key(data_dir: &Path, key: SecretKey) -> Result<Self> {
        secrets::open(data_dir, key)
    }

    /// A throwaway in-memory database, for tests.
    pub fn temporary() -> Result<Self> {
        Self::from_db(
            sled::Config::new().temporary(true).open()?,
            Arc::new(SecretKey::random()),
            trail::Trail::temporary()?,
        )
    }

    /// The store over `db` and `trail`, with the audit records `db` still holds moved
    /// into `trail`.
    fn from_db(db: sled::Db, sealer: Arc<SecretKey>, trail: trail::Trail) -> Result<Self> {
        let store = Self {
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
            resets: db.open_tree("resets")?,
            user_resets: db.open_tree("user_resets")?,
            meta: db.open_tree("meta")?,
            activity: db.open_tree("session_activity")?,
            audit: db.open_tree("audit")?,
            checkpoints: db.open_tree("audit_checkpoints")?,
            trail: Arc::new(trail),
            sealer,
            db,
        };
        store.move_audit_tree()?;
        Ok(store)
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

    /// The sled database itself: only the tests that change records behind the store's
    /// back, offline, use it.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The readiness probe: writes a key of its own, reads it back and flushes. An
    /// error (or a hang, which the caller times out) means the store cannot serve.
    pub(super) fn probe(&self, now_ms: u64) -> Result<()> {
        self.db.insert(b"readiness-probe", &now_ms.to_be_bytes())?;
        match self.db.get(b"readiness-probe")? {
            Some(v) if v.as_ref() == now_ms.to_be_bytes() => {}
            _ => return Err(sled::Error::Io(std::io::Error::other("the probe read back something else")).into()),
        }
        self.db.flush()?;
        Ok(())
    }

    /// The number of records in the trees an attacker could grow (a count walks a tree:
    /// for tests and diagnostics, not the request path).
    pub(super) fn counts(&self) -> Result<Counts> {
        Ok(Counts {
            users: self.users.len(),
            confirmations: self.confirmations.len(),
            challenges: self.challenges.len(),
            sessions: self.sessions.len(),
            refresh: self.refresh.len(),
            failures: self.failures.len(),
            resets: self.resets.len(),
        })
    }
}
