//! The audit trail's files: records appended to files in `data_dir/audit/`, beside the
//! database, so that appending a batch is one write of its bytes. (In a sled tree a
//! record cost a page of the tree rewritten to sled's log, several times its own size,
//! as the leaf it went into grew.)
//!
//! The trail is cut into segments ([`super::segment`]) of about [`SEGMENT_BYTES`], each
//! named by the sequence number of its first record: a segment holds the records from
//! its name's number up to the next segment's. Opening reads only the newest segment;
//! an older one is read (once) when a record in it is asked for. Removing old records
//! deletes the segments that hold only those, and writes the one that holds both anew
//! from the first record kept, so retention costs at most one segment's copy.
//!
//! A crash can leave the newest segment's last frames cut short, or with bytes that were
//! never written: opening cuts them off and keeps them in `NAME.log.damaged-OFFSET`, and
//! the error log says so. A record lost this way is found by `audit verify` against the
//! signed checkpoints, as a removed record is. Damage anywhere else is an error.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::frames::{corrupt, io_err};
use super::segment::{self, Segment};
use crate::store::Result;

/// The trail's directory in the data directory.
pub(super) const DIR: &str = "audit";
/// A segment takes no more appends once it is this large (in tests, small enough that
/// a trail of a few hundred records spans several).
const SEGMENT_BYTES: u64 = if cfg!(test) { 8 * 1024 } else { 8 * 1024 * 1024 };

pub(super) struct Trail {
    inner: Mutex<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// A temporary store's trail: its directory goes when the trail does.
    temporary: bool,
    /// Oldest first.
    segments: Vec<Segment>,
    /// The newest record.
    last: Option<(u64, Vec<u8>)>,
    /// Frames being appended, kept between batches.
    buf: Vec<u8>,
}

impl Trail {
    /// Opens (or creates) `data_dir/audit/`, cutting off a damaged end.
    pub(super) fn open(data_dir: &Path) -> Result<Self> {
        Self::in_dir(data_dir.join(DIR), false)
    }

    /// A trail in a directory of its own under the system's temporary directory, removed
    /// with it, for a temporary store.
    pub(super) fn temporary() -> Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "portcullis-trail-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        Self::in_dir(dir, true)
    }

    fn in_dir(dir: PathBuf, temporary: bool) -> Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(&dir))?;
        let mut firsts = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            if let Some(first) = entry.file_name().to_str().and_then(segment::parse_name) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut segments = Vec::new();
        for first in firsts {
            segments.push(Segment::open(&dir, first)?);
        }
        let mut inner = Inner {
            dir,
            temporary,
            segments,
            last: None,
            buf: Vec::new(),
        };
        if let Some(newest) = inner.segments.last_mut() {
            newest.read_all(true)?;
        }
        inner.settle()?;
        inner.last = inner.newest_record()?;
        Ok(Self {
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends what `chain` builds from the newest record, in one write; appends are one
    /// at a time. A write that fails leaves the trail as it was.
    pub(super) fn append(&self, chain: impl FnOnce(Option<(u64, Vec<u8>)>) -> Vec<(u64, Vec<u8>)>) -> Result<()> {
        let mut t = self.lock();
        let records = chain(t.last.clone());
        t.append(records)
    }

    pub(super) fn last(&self) -> Option<(u64, Vec<u8>)> {
        self.lock().last.clone()
    }

    pub(super) fn get(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        let found = self.lock().range(seq, 1)?;
        Ok(found.into_iter().find(|(s, _)| *s == seq).map(|(_, r)| r))
    }

    /// Up to `limit` records from `from` on, oldest first.
    pub(super) fn range(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.lock().range(from, limit)
    }

    /// Removes the records below `seq`; how many.
    pub(super) fn remove_before(&self, seq: u64) -> Result<usize> {
        self.lock().remove_before(seq)
    }

    /// Replaces the record `seq`, or adds it (the tamper tests' tool).
    pub(super) fn overwrite(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.lock().overwrite(seq, bytes)
    }

    /// Forces what was appended to disk (without holding appends up meanwhile).
    pub(super) fn sync(&self) -> Result<()> {
        let Some((file, path)) = self.lock().segments.last().map(|s| (s.handle(), s.path.clone())) else {
            return Ok(());
        };
        file?.sync_data().map_err(io_err(&path))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.temporary {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Inner {
    /// Only the newest segment, which takes the appends, keeps its file open; the
    /// others' are synced and closed.
    fn settle(&mut self) -> Result<()> {
        let n = self.segments.len();
        for (i, segment) in self.segments.iter_mut().enumerate() {
            if i + 1 == n {
                segment.keep_open()?;
            } else {
                segment.retire()?;
            }
        }
        Ok(())
    }

    fn newest_record(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        for segment in self.segments.iter_mut().rev() {
            if let Some(newest) = segment.newest_record()? {
                return Ok(Some(newest));
            }
        }
        Ok(None)
    }

    fn append(&mut self, records: Vec<(u64, Vec<u8>)>) -> Result<()> {
        let (Some((first, _)), Some((newest, _))) = (records.first(), records.last()) else {
            return Ok(());
        };
        let after = self.last.as_ref().map(|(s, _)| *s);
        let ordered = records.windows(2).all(|w| w[0].0 < w[1].0);
        if !ordered || after.is_some_and(|a| *first <= a) {
            return Err(corrupt("a record's sequence number does not follow the newest"));
        }
        let newest = *newest;
        let mut buf = std::mem::take(&mut self.buf);
        let result = match self.segments.last_mut() {
            Some(s) if s.first > *first => Err(corrupt("a record older than the newest file's first")),
            Some(s) if s.end < SEGMENT_BYTES => s.append(&mut buf, &records),
            _ => {
                buf.clear();
                for (seq, record) in &records {
                    super::frames::frame(&mut buf, *seq, record);
                }
                // What the full segment took is on disk before the next one exists.
                let retired = self.segments.last_mut().map_or(Ok(()), Segment::retire);
                let made = retired.and_then(|()| Segment::create(&self.dir, *first, &buf));
                made.and_then(|s| {
                    self.segments.push(s);
                    sync_dir(&self.dir)
                })
            }
        };
        if buf.capacity() <= 4 * super::frames::CHUNK {
            self.buf = buf;
        }
        result?;
        self.last = records.into_iter().next_back().filter(|(s, _)| *s == newest);
        Ok(())
    }

    fn range(&mut self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        let start = self.segments.partition_point(|s| s.first <= from).saturating_sub(1);
        for i in start..self.segments.len() {
            if out.len() >= limit {
                break;
            }
            let until = self.segments.get(i + 1).map_or(u64::MAX, |s| s.first);
            let left = limit - out.len();
            self.segments[i].read(from, until, left, &mut out)?;
        }
        Ok(out)
    }

    fn remove_before(&mut self, seq: u64) -> Result<usize> {
        let mut removed = 0;
        // Segments that hold only older records go whole.
        while self.segments.len() > 1 && self.segments[1].first <= seq {
            let mut gone = self.segments.remove(0);
            removed += gone.older_than(u64::MAX)?.0;
            fs::remove_file(&gone.path).map_err(io_err(&gone.path))?;
        }
        // The first segment left may hold both: it is written anew from the first record
        // kept, under that record's number.
        if let Some(segment) = self.segments.first_mut() {
            let (older, from) = segment.older_than(seq)?;
            if older > 0 {
                removed += older;
                let rest = segment.bytes_from(from)?;
                let old = segment.path.clone();
                let kept_first = super::frames::first_seq(&rest);
                match kept_first {
                    Some(first) => {
                        self.segments[0] = Segment::create(&self.dir, first, &rest)?;
                    }
                    None => {
                        self.segments.remove(0);
                    }
                }
                fs::remove_file(&old).map_err(io_err(&old))?;
            }
        }
        sync_dir(&self.dir)?;
        self.settle()?;
        if self.segments.is_empty() {
            self.last = None;
        }
        Ok(removed)
    }

    fn overwrite(&mut self, seq: u64, bytes: &[u8]) -> Result<()> {
        let i = self.segments.partition_point(|s| s.first <= seq).saturating_sub(1);
        let (first, mut records) = match self.segments.get_mut(i) {
            Some(s) => (s.first.min(seq), s.all()?),
            None => (seq, Vec::new()),
        };
        match records.binary_search_by_key(&seq, |(s, _)| *s) {
            Ok(at) => records[at].1 = bytes.to_vec(),
            Err(at) => records.insert(at, (seq, bytes.to_vec())),
        }
        let mut frames = Vec::new();
        for (s, record) in &records {
            super::frames::frame(&mut frames, *s, record);
        }
        let made = Segment::create(&self.dir, first, &frames)?;
        match self.segments.get(i) {
            Some(old) if old.first != first => {
                let old = old.path.clone();
                self.segments[i] = made;
                fs::remove_file(&old).map_err(io_err(&old))?;
            }
            Some(_) => self.segments[i] = made,
            None => self.segments.push(made),
        }
        sync_dir(&self.dir)?;
        self.settle()?;
        self.last = self.newest_record()?;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

#[cfg(test)]
#[path = "trail_tests.rs"]
mod tests;
