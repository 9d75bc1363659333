//! Errors that point into a TOML file: file, line, column and the key they concern.
//!
//! Configuration and policy files share this, so an operator reads every start-up or
//! reload failure the same way: `gateway.toml:22:11: [login] lockout: invalid duration`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The key path, e.g. `[login] lockout` or `route[2].path`.
    pub key: Option<String>,
    pub message: String,
}

impl SourceError {
    /// An error about the file as a whole (it cannot be read, say).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message: message.into(),
        }
    }

    /// An error at a byte span of `src`; the key is read off the file when not given.
    pub fn at(
        file: &Path,
        src: &str,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column, found_key) = match span {
            Some(span) => {
                let (line, column) = line_col(src, span.start);
                (Some(line), Some(column), key_at(src, span.start))
            }
            None => (None, None, None),
        };
        Self {
            file: file.to_path_buf(),
            line,
            column,
            key: key.or(found_key),
            message: message.into(),
        }
    }

    /// Converts a TOML deserialization error, keeping its place.
    pub fn from_toml(file: &Path, src: &str, err: &toml::de::Error) -> Self {
        Self::at(file, src, err.span(), None, err.message().trim().to_owned())
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for SourceError {}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..floor_char_boundary(src, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The key written on the line holding `offset`, prefixed by the table it sits in:
/// `[login] lockout`. `None` when the line holds no `key =`.
fn key_at(src: &str, offset: usize) -> Option<String> {
    let offset = floor_char_boundary(src, offset.min(src.len()));
    let line_start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[offset..].find('\n').map_or(src.len(), |i| offset + i);
    let line = &src[line_start..line_end];
    let trimmed = line.trim_start();
    let table = src[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.split('#').next().unwrap_or(l).trim().to_owned());
    if trimmed.starts_with('[') {
        return Some(trimmed.split('#').next().unwrap_or(trimmed).trim().to_owned());
    }
    let key = trimmed.split_once('=').map(|(k, _)| k.trim().to_owned())?;
    if key.is_empty() || key.starts_with('#') {
        return None;
    }
    Some(match table {
        Some(t) => format!("{t} {key}"),
        None => key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines and columns are 1-based and count characters.
    #[test]
    fn line_and_column() {
        let src = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, src.find('"').unwrap()), (2, 6));
    }

    // The key of an error is named with its table.
    #[test]
    fn key_with_table() {
        let src = "[server]\nlisten = \"x\"\n\n[login] # comment\nlockout = \"15x\"\n";
        let at = src.find("\"15x").unwrap();
        assert_eq!(key_at(src, at).as_deref(), Some("[login] lockout"));
        let err = SourceError::at(Path::new("g.toml"), src, Some(at..at + 5), None, "bad");
        assert_eq!(err.to_string(), "g.toml:5:11: [login] lockout: bad");
    }
}
