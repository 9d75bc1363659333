//! The store: every record the gateway keeps (users, pending confirmations, MFA
//! challenges, sessions and refresh tokens, revoked access tokens, login failures and the
//! audit trail), behind one seam: the [`backend::Backend`] trait, which every caller
//! reaches through the [`Store`] handle (`handle`). The embedded backend is sled (the
//! `sled` submodule is the only one that names it). The records themselves live in
//! `records`, free of any backend.
//!
//! Secrets handed to clients (confirmation, MFA and refresh tokens) are stored only as
//! SHA-256 hashes. TOTP secrets are sealed with an AEAD key as records are written and
//! opened as they are read (`sealed`), so the flows see them in clear and the files never
//! do. Writes that change security state are followed by [`Backend::flush`](backend::Backend::flush)
//! before the response that reports them goes out, so a crash never forgets a lockout,
//! a revocation or a spent refresh token.
//!
//! Nothing a client can make is kept for ever. Every record with a lifetime
//! (confirmation, challenge, session, refresh token, pending account) has a key in an
//! expiry index, ordered by its end, so [`Backend::prune`](backend::Backend::prune) reads only what has run out;
//! failure counts are forgotten once their window has passed. Sessions are also indexed
//! by user, and revoked sessions and users are kept apart, so neither revoking a user nor
//! starting up walks every session.

pub mod backend;
pub mod dir;
mod handle;
pub mod postgres;
mod records;
pub mod sealed;
mod secrets;
mod sled;
#[cfg(test)]
mod tests;

pub use self::sled::{DbError, SledStore, PRUNE_BATCH};
pub use handle::Store;
pub use records::{Challenge, Confirmation, Counts, Failures, PasswordReset, Pruned, RefreshEntry, Session, User};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// An error PostgreSQL answered with (a constraint, a bad statement): not an outage.
    #[error("database: {0}")]
    Database(postgres::PgError),
    /// The database cannot be reached (refused, lost, or no answer in time): callers
    /// answer 503, and the next operation tries again.
    #[error("the database cannot be reached: {0}")]
    Unavailable(String),
    /// A shared store without the key every gateway of it must share.
    #[error(
        "{} must be set with [store] backend = \"postgres\": every gateway of one database needs the same secret key (32 bytes, base64)",
        sealed::KEY_ENV
    )]
    KeyRequired,
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
    #[error(transparent)]
    Key(#[from] sealed::KeyError),
    /// A sealed TOTP secret that does not open: the record is refused, never read as if
    /// it had no secret.
    #[error("the TOTP secret of {tree} record {id} does not open (wrong key, or the record was altered)")]
    Sealed { tree: &'static str, id: String },
    #[error(
        "the secret key ({} or keys/{}) is not the one this database's TOTP secrets were sealed with",
        sealed::KEY_ENV,
        sealed::KEY_FILE
    )]
    WrongKey,
    #[error(
        "{}: missing, and this database's TOTP secrets were sealed with a key: restore the file from a backup, or set {}",
        .0.display(),
        sealed::KEY_ENV
    )]
    KeyMissing(std::path::PathBuf),
    #[error("{}: {source}", .path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;
