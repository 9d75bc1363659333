//! The data directory holds password hashes, signing keys, TOTP secrets and mail with
//! links in it: only the gateway's own user may read any of it.
//!
//! sled creates its files with the process's umask (0644 on most systems), so the
//! directory's mode is what protects them. At start, the data directory is created 0700
//! or, when it already exists, tightened to 0700 with every file and directory below it
//! losing its group and other bits; where that is not possible (another user owns it),
//! the gateway refuses to start and names the path.

use std::fs;
use std::io;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How deep below the data directory modes are tightened (`db/blobs/...` is the deepest).
const MAX_DEPTH: usize = 4;

/// A path whose mode could not be made private.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot make it private to the gateway's user: {source}", .path.display())]
pub struct DirError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Writes key material readable by the owner only (directory 0700, file 0600), synced;
/// never over an existing file.
pub fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Creates `data_dir` (mode 0700) or tightens it and everything in it; returns how many
/// modes were changed.
pub fn secure(data_dir: &Path) -> Result<usize, DirError> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DirError { path, source }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(at(data_dir))?;
    // The data directory itself may be a link an operator made; what lies below is not
    // followed.
    let meta = fs::metadata(data_dir).map_err(at(data_dir))?;
    let mut changed = 0;
    tighten(data_dir, &meta, 0, &mut changed)?;
    Ok(changed)
}

fn tighten(path: &Path, meta: &fs::Metadata, depth: usize, changed: &mut usize) -> Result<(), DirError> {
    let err = |source| DirError {
        path: path.to_path_buf(),
        source,
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & !0o077)).map_err(err)?;
        *changed += 1;
    }
    if meta.is_dir() && depth < MAX_DEPTH {
        for entry in fs::read_dir(path).map_err(err)? {
            let entry = entry.map_err(err)?;
            let meta = fs::symlink_metadata(entry.path()).map_err(err)?;
            if !meta.file_type().is_symlink() {
                tighten(&entry.path(), &meta, depth + 1, changed)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // An existing world-readable data directory and its files are made private.
    #[test]
    fn tightens_existing() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fs::create_dir_all(data.join("db")).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(data.join("db/conf"), "x").unwrap();
        fs::set_permissions(data.join("db/conf"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(secure(&data).unwrap() >= 2);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("db/conf")), 0o600);
        assert_eq!(secure(&data).unwrap(), 0, "nothing left to change");
        // A new one is created private.
        let fresh = tmp.path().join("fresh/data");
        secure(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
    }
}
