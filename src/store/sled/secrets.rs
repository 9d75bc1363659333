//! TOTP secrets at rest: sealed as records are written, opened as they are read (see
//! [`crate::store::sealed`]), and the start-up migration of a database that holds them
//! in clear.
//!
//! sled is log-structured: a value overwritten in place can stay in its segment files
//! until they are compacted. So the migration seals every secret in place, then copies
//! the live records into a fresh database (`db.sealing`), renames it `db.sealed` once
//! it is complete and durable, and swaps it for `db` (the old one goes to `db.old` and is
//! removed). A start after a crash finishes or undoes the swap before opening ([`recover`]);
//! a database without the mark of a finished migration is migrated again (idempotent).

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use super::frames::io_err;
use super::trail::Trail;
use super::SledStore;
use crate::store::sealed::{is_sealed, SecretKey};
use crate::store::secrets::{open_challenge, open_user, seal_challenge, seal_user};
use crate::store::{Challenge, Result, StoreError, User};

/// Set in `meta` of a database whose secrets are sealed and whose files were rewritten.
const SEALED_MARK: &[u8] = b"secrets_sealed_v1";

/// A value sealed under the key in `meta`, so a wrong key is found at start-up.
const KEY_CHECK: &[u8] = b"secret_key_check";
const KEY_CHECK_TEXT: &str = "portcullis secret key check";

impl SledStore {
    pub(super) fn encode_user(&self, user: &User) -> Vec<u8> {
        super::encode(&*seal_user(&self.sealer, user))
    }

    pub(super) fn decode_user(&self, bytes: &[u8]) -> Result<User> {
        let mut user: User =
            serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt { tree: "users", source })?;
        open_user(&self.sealer, &mut user)?;
        Ok(user)
    }

    pub(super) fn encode_challenge(&self, key: &str, c: &Challenge) -> Vec<u8> {
        super::encode(&*seal_challenge(&self.sealer, key, c))
    }

    pub(super) fn decode_challenge(&self, key: &str, bytes: &[u8]) -> Result<Challenge> {
        let mut c: Challenge = serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
            tree: "challenges",
            source,
        })?;
        open_challenge(&self.sealer, key, &mut c)?;
        Ok(c)
    }

    /// Refuses a key other than the one this database was sealed with; notes the key of a
    /// database that has none yet.
    fn check_key(&self) -> Result<()> {
        match self.meta.get(KEY_CHECK)? {
            Some(v) => match self.sealer.open(KEY_CHECK, &String::from_utf8_lossy(&v)) {
                Ok(text) if text == KEY_CHECK_TEXT => Ok(()),
                _ => Err(StoreError::WrongKey),
            },
            None => {
                self.meta
                    .insert(KEY_CHECK, self.sealer.seal(KEY_CHECK, KEY_CHECK_TEXT).as_bytes())?;
                Ok(())
            }
        }
    }

    /// Seals, in place, every secret still in clear; returns how many.
    fn seal_plaintext(&self) -> Result<usize> {
        let mut sealed = 0;
        for item in self.users.iter() {
            let (k, v) = item?;
            let user: User =
                serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt { tree: "users", source })?;
            if user.totp_secret.as_deref().is_some_and(|s| !is_sealed(s)) {
                // A record changed meanwhile is read again by the next start's migration.
                let _ = self
                    .users
                    .compare_and_swap(&k, Some(v), Some(self.encode_user(&user)))?;
                sealed += 1;
            }
        }
        for item in self.challenges.iter() {
            let (k, v) = item?;
            let c: Challenge = serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                tree: "challenges",
                source,
            })?;
            if c.pending_secret.as_deref().is_some_and(|s| !is_sealed(s)) {
                let key = String::from_utf8_lossy(&k).into_owned();
                let _ = self
                    .challenges
                    .compare_and_swap(&k, Some(v), Some(self.encode_challenge(&key, &c)))?;
                sealed += 1;
            }
        }
        Ok(sealed)
    }
}

/// Opens `data_dir/db` with `key`, migrating it first if its secrets may lie in clear in
/// its files.
pub(super) fn open(data_dir: &Path, key: SecretKey) -> Result<SledStore> {
    let key = Arc::new(key);
    let live = data_dir.join("db");
    // One process at a time recovers or migrates (a command run while a gateway starts
    // waits here); once the database is open, sled's own lock keeps others out.
    let lock_path = data_dir.join("db.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    lock.lock().map_err(io_err(&lock_path))?;
    recover(data_dir)?;
    let store = SledStore::from_db(super::open_db(&live)?, key.clone(), Trail::open(data_dir)?)?;
    store.check_key()?;
    if store.meta.contains_key(SEALED_MARK)? {
        return Ok(store);
    }
    let sealed = store.seal_plaintext()?;
    store.db.flush()?;
    let building = data_dir.join("db.sealing");
    remove_dir(&building)?;
    {
        let fresh = super::open_db(&building)?;
        for name in store.db.tree_names() {
            let from = store.db.open_tree(&name)?;
            let to = fresh.open_tree(&name)?;
            for item in from.iter() {
                let (k, v) = item?;
                to.insert(k, v)?;
            }
        }
        fresh.open_tree("meta")?.insert(SEALED_MARK, &[])?;
        fresh.flush()?;
    }
    drop(store);
    rename(&building, &data_dir.join("db.sealed"))?;
    sync_dir(data_dir)?;
    recover(data_dir)?;
    if sealed > 0 {
        tracing::info!(
            sealed,
            "TOTP secrets sealed at rest; the database was rewritten without them"
        );
    }
    SledStore::from_db(super::open_db(&live)?, key, Trail::open(data_dir)?)
}

/// Finishes (or undoes) a swap a crash interrupted: an incomplete `db.sealing` goes, a
/// complete `db.sealed` replaces `db`, and `db.old` goes once `db` is there again.
fn recover(data_dir: &Path) -> Result<()> {
    let live = data_dir.join("db");
    let sealed = data_dir.join("db.sealed");
    let old = data_dir.join("db.old");
    remove_dir(&data_dir.join("db.sealing"))?;
    if sealed.exists() {
        if live.exists() {
            remove_dir(&old)?;
            rename(&live, &old)?;
        }
        rename(&sealed, &live)?;
        sync_dir(data_dir)?;
    }
    if old.exists() {
        if live.exists() {
            remove_dir(&old)?;
        } else {
            rename(&old, &live)?;
        }
        sync_dir(data_dir)?;
    }
    Ok(())
}

fn remove_dir(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(io_err(from))
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

    /// A user record as the code before sealing wrote it: the secret in clear.
    fn old_user(id: &str, email: &str, secret: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "id": id, "email": email, "name": "N", "password_hash": "x", "roles": ["staff"],
            "confirmed": true, "disabled": false, "totp_secret": secret, "totp_last_step": 0,
            "tokens_valid_after": 0, "created_at": 0
        })
    }

    /// Every byte of every file below `dir`.
    fn all_bytes(dir: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(all_bytes(&path));
            } else {
                out.extend(fs::read(&path).unwrap());
            }
        }
        out
    }

    fn holds(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn key() -> SecretKey {
        SecretKey::from_bytes(&[9u8; 32]).unwrap()
    }

    // A database with a secret in clear (a user and an enrolment) is sealed at open and
    // rewritten: the flows read the same secret, no file holds it, a second open changes
    // nothing, and another key is refused at open.
    #[test]
    fn migrates_old_database() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let db = super::super::open_db(&tmp.path().join("db")).unwrap();
            let u = old_user("u-1", "a@example.com", Some(SECRET));
            db.open_tree("users")
                .unwrap()
                .insert("u-1", serde_json::to_vec(&u).unwrap())
                .unwrap();
            let c = serde_json::json!({ "user_id": "u-2", "expires_ms": u64::MAX, "pending_secret": SECRET });
            db.open_tree("challenges")
                .unwrap()
                .insert("h1", serde_json::to_vec(&c).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        assert!(
            holds(&all_bytes(tmp.path()), SECRET.as_bytes()),
            "the old format holds it"
        );
        let store = open(tmp.path(), key()).unwrap();
        assert_eq!(store.user("u-1").unwrap().unwrap().totp_secret.as_deref(), Some(SECRET));
        assert!(!holds(&all_bytes(tmp.path()), SECRET.as_bytes()));
        assert_eq!(
            store.take_challenge("h1").unwrap().unwrap().pending_secret.as_deref(),
            Some(SECRET)
        );
        store.put_user(&store.user("u-1").unwrap().unwrap()).unwrap();
        drop(store);
        assert!(!tmp.path().join("db.old").exists() && !tmp.path().join("db.sealed").exists());

        let store = open(tmp.path(), key()).unwrap();
        assert_eq!(store.user("u-1").unwrap().unwrap().totp_secret.as_deref(), Some(SECRET));
        assert_eq!(store.seal_plaintext().unwrap(), 0, "nothing left in clear");
        drop(store);
        assert!(!holds(&all_bytes(tmp.path()), SECRET.as_bytes()));
        assert!(matches!(
            open(tmp.path(), SecretKey::from_bytes(&[8u8; 32]).unwrap()),
            Err(StoreError::WrongKey)
        ));
    }

    // A sealed secret moved to another account does not open there: reading that account
    // fails, it is never read as one without a second factor.
    #[test]
    fn moved_secret_fails_closed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path(), key()).unwrap();
        for (id, email) in [("u-1", "a@example.com"), ("u-2", "b@example.com")] {
            let u: User = serde_json::from_value(old_user(id, email, None)).unwrap();
            store.create_user(&u).unwrap();
        }
        store
            .try_update_user("u-1", |u| {
                u.totp_secret = Some(SECRET.into());
                true
            })
            .unwrap();
        let raw: serde_json::Value = serde_json::from_slice(&store.users.get("u-1").unwrap().unwrap()).unwrap();
        let sealed = raw["totp_secret"].as_str().unwrap().to_owned();
        assert!(is_sealed(&sealed) && !sealed.contains(SECRET));
        let mut other: serde_json::Value = serde_json::from_slice(&store.users.get("u-2").unwrap().unwrap()).unwrap();
        other["totp_secret"] = sealed.into();
        store.users.insert("u-2", serde_json::to_vec(&other).unwrap()).unwrap();
        assert!(matches!(store.user("u-2"), Err(StoreError::Sealed { .. })));
        assert!(store.user_by_email("b@example.com").is_err());
        assert!(store.try_update_user("u-2", |_| true).is_err());
        assert!(store.users().is_err());
    }

    // A crash after the sealed copy was complete finishes the swap; a crash while it was
    // being built throws the copy away and keeps the database.
    #[test]
    fn interrupted_swap_recovers() {
        let tmp = tempfile::tempdir().unwrap();
        let (live, sealed, old) = (
            tmp.path().join("db"),
            tmp.path().join("db.sealed"),
            tmp.path().join("db.old"),
        );
        fs::create_dir_all(&live).unwrap();
        fs::write(live.join("x"), "old").unwrap();
        fs::create_dir_all(&sealed).unwrap();
        fs::write(sealed.join("x"), "new").unwrap();
        fs::create_dir_all(tmp.path().join("db.sealing")).unwrap();
        recover(tmp.path()).unwrap();
        assert_eq!(fs::read_to_string(live.join("x")).unwrap(), "new");
        assert!(!sealed.exists() && !old.exists() && !tmp.path().join("db.sealing").exists());
        // Only db.old is left: it is the database again.
        fs::rename(&live, &old).unwrap();
        recover(tmp.path()).unwrap();
        assert_eq!(fs::read_to_string(live.join("x")).unwrap(), "new");
        assert!(!old.exists());
    }
}
