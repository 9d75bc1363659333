//! The frames of the audit trail's files ([`super::trail`]): one record each, its
//! sequence number (`u64`), length (`u32`) and the CRC-32 of those and the record
//! (`u32`), big-endian, then the record; written into a buffer, read a chunk at a time.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::store::{Result, StoreError};

/// Bytes before a record's own in its frame.
pub(super) const HEADER: usize = 16;
/// How much a scan reads at a time.
pub(super) const CHUNK: usize = 256 * 1024;

/// Appends the frame of record `seq` to `out`.
pub(super) fn frame(out: &mut Vec<u8>, seq: u64, record: &[u8]) {
    let len = u32::try_from(record.len()).unwrap_or(u32::MAX);
    let record = &record[..len as usize];
    let mut head = [0u8; 12];
    head[..8].copy_from_slice(&seq.to_be_bytes());
    head[8..].copy_from_slice(&len.to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(record);
    out.extend_from_slice(&head);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out.extend_from_slice(record);
}

/// The sequence number of the first frame in `bytes`.
pub(super) fn first_seq(bytes: &[u8]) -> Option<u64> {
    bytes.first_chunk::<8>().map(|b| u64::from_be_bytes(*b))
}

/// Frames read from `offset` up to `end`, a chunk at a time.
pub(super) struct Frames<'a> {
    file: &'a File,
    /// The file's path, for errors.
    path: &'a Path,
    /// The file offset of `buf[0]`.
    at: u64,
    end: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a> Frames<'a> {
    pub(super) fn new(file: &'a File, path: &'a Path, offset: u64, end: u64) -> Self {
        Self {
            file,
            path,
            at: offset,
            end,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Where the next frame starts.
    pub(super) fn offset(&self) -> u64 {
        self.at + self.pos as u64
    }

    /// Makes `n` bytes from `pos` available; false at the end.
    fn fill(&mut self, n: usize) -> Result<bool> {
        if self.buf.len() - self.pos >= n {
            return Ok(true);
        }
        let offset = self.offset();
        let left = self.end.saturating_sub(offset);
        if (left as usize) < n {
            return Ok(false);
        }
        let want = n.max(CHUNK).min(usize::try_from(left).unwrap_or(usize::MAX));
        self.buf.drain(..self.pos);
        self.at = offset;
        self.pos = 0;
        let have = self.buf.len();
        self.buf.resize(want, 0);
        self.file
            .read_exact_at(&mut self.buf[have..], offset + have as u64)
            .map_err(io_err(self.path))?;
        Ok(true)
    }

    /// The next frame's sequence number and record; `None` at the end; an error for a
    /// frame cut short or failing its CRC.
    pub(super) fn next(&mut self) -> Result<Option<(u64, &[u8])>> {
        if self.offset() >= self.end {
            return Ok(None);
        }
        if !self.fill(HEADER)? {
            return Err(corrupt("a record's frame is cut short"));
        }
        let head = &self.buf[self.pos..self.pos + HEADER];
        let seq = u64::from_be_bytes(head[..8].try_into().unwrap_or_default());
        let len = u32::from_be_bytes(head[8..12].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_be_bytes(head[12..16].try_into().unwrap_or_default());
        if !self.fill(HEADER + len)? {
            return Err(corrupt("a record is cut short"));
        }
        let start = self.pos;
        self.pos += HEADER + len;
        let mut check = crc32fast::Hasher::new();
        check.update(&self.buf[start..start + 12]);
        check.update(&self.buf[start + HEADER..self.pos]);
        if check.finalize() != crc {
            return Err(corrupt("a record fails its CRC"));
        }
        Ok(Some((seq, &self.buf[start + HEADER..self.pos])))
    }
}

/// A damaged or misplaced record, as the store reports corruption.
pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt {
        tree: "audit",
        source: serde::de::Error::custom(format!("the audit trail's files: {what}")),
    }
}

/// An I/O error on `path`, as the store reports it.
pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}
