//! One file of the audit trail ([`super::trail`]): [`MAGIC`], then frames
//! ([`super::frames`]) of records whose sequence numbers only grow, the first of them
//! the number in the file's name. In memory once read: where the file's whole frames end,
//! the newest sequence number, and where every [`STRIDE`]th record starts, so that
//! reading a record reads at most that many frames.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::frames::{corrupt, frame, io_err, Frames, CHUNK};
use crate::store::Result;

/// The first bytes of every file.
const MAGIC: &[u8; 16] = b"portcullis-aud1\n";
/// One record in this many has its offset kept in memory.
pub(super) const STRIDE: u64 = if cfg!(test) { 16 } else { 256 };

pub(super) struct Segment {
    /// The sequence number in the file's name: no record in it is older.
    pub(super) first: u64,
    pub(super) path: PathBuf,
    /// The open file, while the segment takes appends: older segments are opened when
    /// read and closed after (a long trail has many).
    file: Option<Arc<File>>,
    /// The end of the last whole frame (until read: the file's size).
    pub(super) end: u64,
    /// `(seq, offset)` of the first record and every [`STRIDE`]th after it; `None` until
    /// the file is read.
    index: Option<Vec<(u64, u64)>>,
    /// Records from the index's last entry on.
    since_index: u64,
    /// The newest record's sequence number and offset, once read.
    pub(super) newest: Option<(u64, u64)>,
}

/// The file name of the segment whose first record is `first`.
pub(super) fn name(first: u64) -> String {
    format!("{first:020}.log")
}

/// The first sequence number a segment's file name gives, if it is one.
pub(super) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).mode(0o600);
    o
}

impl Segment {
    /// A new, empty file for records from `first` on, written with `bytes` (frames)
    /// after the mark and synced; the caller syncs the directory.
    pub(super) fn create(dir: &Path, first: u64, bytes: &[u8]) -> Result<Self> {
        let path = dir.join(name(first));
        let fresh = dir.join(format!("{}.new", name(first)));
        let file = options()
            .create(true)
            .truncate(true)
            .open(&fresh)
            .map_err(io_err(&fresh))?;
        let mut out = std::io::BufWriter::with_capacity(CHUNK, &file);
        out.write_all(MAGIC)
            .and_then(|()| out.write_all(bytes))
            .and_then(|()| out.flush())
            .map_err(io_err(&fresh))?;
        drop(out);
        file.sync_all().map_err(io_err(&fresh))?;
        fs::rename(&fresh, &path).map_err(io_err(&fresh))?;
        let mut segment = Self::new(first, path, file, MAGIC.len() as u64 + bytes.len() as u64);
        segment.read_all(false)?;
        Ok(segment)
    }

    /// An existing file, not read yet.
    pub(super) fn open(dir: &Path, first: u64) -> Result<Self> {
        let path = dir.join(name(first));
        let file = options().open(&path).map_err(io_err(&path))?;
        let size = file.metadata().map_err(io_err(&path))?.len();
        let mut magic = [0; MAGIC.len()];
        if file.read_exact_at(&mut magic, 0).is_err() || &magic != MAGIC {
            return Err(corrupt(&format!(
                "{} does not start as an audit trail file",
                path.display()
            )));
        }
        let mut segment = Self::new(first, path, file, size);
        segment.file = None;
        Ok(segment)
    }

    /// The file, opened for this call if the segment does not keep it open.
    pub(super) fn handle(&self) -> Result<Arc<File>> {
        match &self.file {
            Some(f) => Ok(f.clone()),
            None => Ok(Arc::new(options().open(&self.path).map_err(io_err(&self.path))?)),
        }
    }

    /// Stops keeping the file open (once the segment takes no more appends), after
    /// forcing what was appended to it to disk.
    pub(super) fn retire(&mut self) -> Result<()> {
        if let Some(f) = self.file.take() {
            f.sync_data().map_err(io_err(&self.path))?;
        }
        Ok(())
    }

    /// Keeps the file open, for appends.
    pub(super) fn keep_open(&mut self) -> Result<()> {
        self.file = Some(self.handle()?);
        Ok(())
    }

    fn new(first: u64, path: PathBuf, file: File, end: u64) -> Self {
        Self {
            first,
            path,
            file: Some(Arc::new(file)),
            end,
            index: None,
            since_index: 0,
            newest: None,
        }
    }

    /// Reads the file once (later calls do nothing). With `cut`, a damaged or cut-short
    /// end (a crash mid-write) is cut off and kept in a file beside it; without, it is an
    /// error.
    pub(super) fn read_all(&mut self, cut: bool) -> Result<()> {
        if self.index.is_some() {
            return Ok(());
        }
        self.index = Some(Vec::new());
        let (file, path) = (self.handle()?, self.path.clone());
        let size = self.end;
        let mut frames = Frames::new(&file, &path, MAGIC.len() as u64, size);
        self.end = MAGIC.len() as u64;
        loop {
            let at = frames.offset();
            match frames.next() {
                Ok(Some((seq, _))) if seq >= self.first && self.newest.is_none_or(|(p, _)| seq > p) => {
                    self.note(seq, at);
                    self.newest = Some((seq, at));
                    self.end = frames.offset();
                }
                Ok(None) => return Ok(()),
                Ok(Some(_)) => return self.damaged(cut, at, size, "a sequence number out of order"),
                Err(e) => return self.damaged(cut, at, size, &e.to_string()),
            }
        }
    }

    fn damaged(&mut self, cut: bool, at: u64, size: u64, what: &str) -> Result<()> {
        if !cut {
            self.index = None;
            return Err(corrupt(&format!("{} at byte {at}: {what}", self.path.display())));
        }
        let mut tail = vec![0; usize::try_from(size - at).unwrap_or(0)];
        let file = self.handle()?;
        file.read_exact_at(&mut tail, at).map_err(io_err(&self.path))?;
        let kept = self.path.with_extension(format!("log.damaged-{at}"));
        fs::write(&kept, &tail).map_err(io_err(&kept))?;
        tracing::error!(
            file = %self.path.display(),
            offset = at,
            bytes = tail.len(),
            kept = %kept.display(),
            %what,
            "the audit trail ends with a damaged or cut-short record: cut off there (a crash while writing); `audit verify` tells whether records were lost"
        );
        file.set_len(at).map_err(io_err(&self.path))?;
        self.end = at;
        Ok(())
    }

    /// Counts a record at `offset`, indexing it if it is the first or the [`STRIDE`]th
    /// since the last indexed.
    fn note(&mut self, seq: u64, offset: u64) {
        let Some(index) = self.index.as_mut() else {
            return;
        };
        if index.is_empty() || self.since_index == STRIDE {
            index.push((seq, offset));
            self.since_index = 0;
        }
        self.since_index += 1;
    }

    /// Appends `records` (after the newest, read already) as frames built in `buf`, in
    /// one write. A write that fails leaves the file as it was.
    pub(super) fn append(&mut self, buf: &mut Vec<u8>, records: &[(u64, Vec<u8>)]) -> Result<()> {
        let (index, since, newest) = (self.index.as_ref().map_or(0, Vec::len), self.since_index, self.newest);
        buf.clear();
        for (seq, record) in records {
            let at = self.end + buf.len() as u64;
            self.note(*seq, at);
            self.newest = Some((*seq, at));
            frame(buf, *seq, record);
        }
        let file = self.handle()?;
        if let Err(e) = file.write_all_at(buf, self.end) {
            let _ = file.set_len(self.end);
            if let Some(i) = self.index.as_mut() {
                i.truncate(index);
            }
            (self.since_index, self.newest) = (since, newest);
            return Err(io_err(&self.path)(e));
        }
        self.end += buf.len() as u64;
        Ok(())
    }

    /// Adds to `out` up to `limit` records from `from` on, older than `until`.
    pub(super) fn read(&mut self, from: u64, until: u64, limit: usize, out: &mut Vec<(u64, Vec<u8>)>) -> Result<()> {
        self.read_all(false)?;
        let index = self.index.as_deref().unwrap_or_default();
        let start = match index.partition_point(|(s, _)| *s <= from) {
            0 => MAGIC.len() as u64,
            i => index[i - 1].1,
        };
        let file = self.handle()?;
        let mut frames = Frames::new(&file, &self.path, start, self.end);
        let wanted = out.len().saturating_add(limit);
        while out.len() < wanted {
            match frames.next()? {
                Some((seq, _)) if seq >= until => break,
                Some((seq, record)) if seq >= from => out.push((seq, record.to_vec())),
                Some(_) => {}
                None => break,
            }
        }
        Ok(())
    }

    /// The newest record.
    pub(super) fn newest_record(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        self.read_all(false)?;
        let Some((_, at)) = self.newest else {
            return Ok(None);
        };
        let file = self.handle()?;
        Ok(Frames::new(&file, &self.path, at, self.end)
            .next()?
            .map(|(seq, record)| (seq, record.to_vec())))
    }

    /// How many records are older than `seq`, and where the first that is not starts.
    pub(super) fn older_than(&mut self, seq: u64) -> Result<(usize, u64)> {
        self.read_all(false)?;
        let file = self.handle()?;
        let mut frames = Frames::new(&file, &self.path, MAGIC.len() as u64, self.end);
        let mut older = 0;
        loop {
            let at = frames.offset();
            match frames.next()? {
                Some((s, _)) if s < seq => older += 1,
                _ => return Ok((older, at)),
            }
        }
    }

    /// The file's frames from `offset` to its end, for a segment made of its tail.
    pub(super) fn bytes_from(&self, offset: u64) -> Result<Vec<u8>> {
        let mut bytes = vec![0; usize::try_from(self.end.saturating_sub(offset)).unwrap_or(0)];
        self.handle()?
            .read_exact_at(&mut bytes, offset)
            .map_err(io_err(&self.path))?;
        Ok(bytes)
    }

    /// Every record.
    pub(super) fn all(&mut self) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        self.read(0, u64::MAX, usize::MAX, &mut out)?;
        Ok(out)
    }
}
