//! The spool: `data_dir/spool/` (0700), one file per message waiting for the mail server
//! (0600), named `<sequence>-<id>.eml` so that names sort oldest first.
//!
//! A message is written to a hidden temporary file, synced, renamed into place, and the
//! directory synced, all before [`Spool::put`] returns: once the API has answered, the
//! message survives a crash. The spool holds at most `spool_max` messages; past that
//! `put` fails with [`SpoolError::Full`] rather than drop anything.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use lettre::message::Mailbox;
use tokio::sync::Notify;

use super::message::{self, Spooled};
use crate::clock::SharedClock;

/// Why a message could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the mail spool is full ({0} messages)")]
    Full(usize),
    #[error("{0}")]
    Message(String),
    #[error("cannot write to the mail spool: {0}")]
    Io(#[from] std::io::Error),
    /// The shared spool's database did not take the message.
    #[error("cannot put the message in the shared mail spool: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// The spool directory and what the sender needs to know of it.
pub struct Spool {
    dir: PathBuf,
    from: Mailbox,
    clock: SharedClock,
    max: usize,
    /// Messages in the spool (written and not yet delivered or given up).
    queued: AtomicUsize,
    /// The next sequence number: one past the highest found at start-up.
    next: AtomicU64,
    /// Wakes the sender when a message is spooled.
    wake: Notify,
}

impl Spool {
    /// Opens (or makes) the spool at `dir`: removes temporary files a crash left, and
    /// counts the messages a previous run did not deliver.
    pub fn open(dir: &Path, from: Mailbox, clock: SharedClock, max: usize) -> std::io::Result<Self> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        let mut queued = 0;
        let mut highest = 0;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                fs::remove_file(entry.path())?;
            } else if let Some(seq) = sequence(&name) {
                queued += 1;
                highest = highest.max(seq);
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            from,
            clock,
            max,
            queued: AtomicUsize::new(queued),
            next: AtomicU64::new(highest + 1),
            wake: Notify::new(),
        })
    }

    /// Messages waiting in the spool.
    pub fn len(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds one message and makes it durable in the spool, then wakes the sender.
    /// Blocking: runs on the blocking pool. Returns the message's id.
    pub fn put(&self, to: &str, subject: &str, body: &str) -> Result<String, SpoolError> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(SpoolError::Full(self.max));
        }
        let written = self.write(to, subject, body);
        if written.is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        let id = written?;
        self.wake.notify_one();
        Ok(id)
    }

    fn write(&self, to: &str, subject: &str, body: &str) -> Result<String, SpoolError> {
        let id = super::random_id();
        let date = UNIX_EPOCH + Duration::from_millis(self.clock.now_ms());
        let file = message::build(&self.from, to, subject, body, date, &id).map_err(SpoolError::Message)?;
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("{seq:016}-{id}.eml");
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&file)?;
            f.sync_all()?;
            fs::rename(&tmp, self.dir.join(&name))?;
            fs::File::open(&self.dir)?.sync_all()
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        Ok(id)
    }

    /// The names of the spooled messages, oldest first.
    pub fn list(&self) -> std::io::Result<Vec<String>> {
        let mut names: Vec<String> = fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| sequence(n).is_some())
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    /// Reads one message back: `Ok(None)` when it is gone, `Err` when it is unreadable.
    pub fn read(&self, name: &str) -> std::io::Result<Option<Spooled>> {
        match fs::read(self.dir.join(name)) {
            Ok(bytes) => message::parse(&bytes)
                .map(Some)
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not a spooled message")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes a message: delivered, or given up on.
    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        match fs::remove_file(self.dir.join(name)) {
            Ok(()) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                fs::File::open(&self.dir)?.sync_all()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits until a message is spooled (or returns at once if one was since the last
    /// wait).
    pub async fn spooled(&self) {
        self.wake.notified().await;
    }
}

/// The sequence number of a message file's name; `None` for anything else.
fn sequence(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".eml")?;
    let (seq, id) = stem.split_once('-')?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    seq.parse().ok()
}

/// The id part of a message file's name, for logs.
pub fn message_id(name: &str) -> &str {
    name.strip_suffix(".eml")
        .and_then(|s| s.split_once('-'))
        .map_or(name, |(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(dir: &Path, max: usize) -> Spool {
        let from: Mailbox = "Shop <no-reply@shop.example>".parse().unwrap();
        Spool::open(dir, from, std::sync::Arc::new(crate::clock::SystemClock), max).unwrap()
    }

    // Messages are private files, listed oldest first, counted across a reopen; a full
    // spool refuses instead of dropping; leftovers of a crash are cleaned.
    #[test]
    fn put_list_reopen_full() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spool");
        let s = spool(&dir, 3);
        let a = s.put("a@example.com", "s", "one").unwrap();
        let b = s.put("b@example.com", "s", "two").unwrap();
        let names = s.list().unwrap();
        assert_eq!(
            names.iter().map(|n| message_id(n)).collect::<Vec<_>>(),
            [a.as_str(), b.as_str()]
        );
        let mode = fs::metadata(dir.join(&names[0])).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        fs::write(dir.join(".0000000000000009-x.eml.tmp"), "half").unwrap();
        drop(s);

        let s = spool(&dir, 3);
        assert_eq!(s.len(), 2);
        assert!(!dir.join(".0000000000000009-x.eml.tmp").exists());
        let c = s.put("c@example.com", "s", "three").unwrap();
        assert!(matches!(s.put("d@example.com", "s", "four"), Err(SpoolError::Full(3))));
        let names = s.list().unwrap();
        assert_eq!(message_id(&names[2]), c, "a new run's messages sort after the old ones");
        assert_eq!(s.read(&names[0]).unwrap().unwrap().recipient(), "a@example.com");
        s.remove(&names[0]).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.read(&names[0]).unwrap().is_none());
        s.put("d@example.com", "s", "four").unwrap();
    }
}
