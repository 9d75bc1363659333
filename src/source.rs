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

/// Every error found in a file (or a directory of them), in file order: what start-up
/// and `policy check` print, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceErrors(pub Vec<SourceError>);

impl fmt::Display for SourceErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        if self.0.len() > 1 {
            write!(f, "\n{} errors", self.0.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for SourceErrors {}

impl From<SourceError> for SourceErrors {
    fn from(e: SourceError) -> Self {
        Self(vec![e])
    }
}

/// Sorts errors into file order (by file, then place; errors about a whole file last)
/// and drops repeats.
pub fn in_file_order(errors: &mut Vec<SourceError>) {
    errors.sort_by(|a, b| {
        let place = |e: &SourceError| (e.line.is_none(), e.line, e.column);
        a.file.cmp(&b.file).then(place(a).cmp(&place(b)))
    });
    errors.dedup();
}

/// Deserializes TOML text, and when that fails, finds every error it can, not just the
/// first one the parser stops at.
///
/// The toml crate stops at its first error, syntax or type. To find more, the text is cut
/// into sections at its top-level table headers (`[x]`; each `[[x]]` entry is a section of
/// its own; `[x.y]` goes with `[x]`), and each section is parsed again alone, with the
/// root keys before the first header, while every other section is blanked out: each
/// character but the newlines becomes a space, so byte offsets, lines and columns stay
/// those of the real file. An error a section shows on its own is reported if it lies
/// inside that section (a field missing elsewhere is not its error).
pub fn parse_toml_all<T: serde::de::DeserializeOwned>(file: &Path, src: &str) -> Result<T, Vec<SourceError>> {
    let first = match toml::from_str::<T>(src) {
        Ok(v) => return Ok(v),
        Err(e) => SourceError::from_toml(file, src, &e),
    };
    let mut errors = vec![first];
    let sections = sections(src);
    let only = |section: Option<&Range<usize>>| -> String {
        src.char_indices()
            .map(|(i, c)| {
                let keep = c == '\n' || i < sections[0].1.end || section.is_some_and(|s| s.contains(&i));
                if keep {
                    c
                } else {
                    ' '
                }
            })
            .collect()
    };
    // What the root keys alone give (a section missing elsewhere, say): no section's own.
    let baseline = toml::from_str::<T>(&only(None))
        .err()
        .map(|e| (e.message().to_owned(), e.span()));
    for (_, range) in sections.iter().skip(1) {
        if let Err(e) = toml::from_str::<T>(&only(Some(range))) {
            let inside = e.span().is_some_and(|s| range.start <= s.start && s.end <= range.end);
            if inside && baseline != Some((e.message().to_owned(), e.span())) {
                errors.push(SourceError::from_toml(file, src, &e));
            }
        }
    }
    in_file_order(&mut errors);
    Err(errors)
}

/// The top-level sections of TOML text after its root keys: (name, byte range), where
/// `[x.y]` extends the section of `[x]` when it follows it directly.
fn sections(src: &str) -> Vec<(String, Range<usize>)> {
    let mut out: Vec<(String, Range<usize>)> = Vec::new();
    let mut offset = 0;
    let mut root_end = src.len();
    for line in src.split_inclusive('\n') {
        if let Some((name, array)) = header(line) {
            let top = name.split('.').next().unwrap_or(&name).trim().to_owned();
            if out.is_empty() {
                root_end = offset;
            }
            let extends = !array && out.last().is_some_and(|(t, _)| *t == top && name.contains('.'));
            if !extends {
                if let Some(last) = out.last_mut() {
                    last.1.end = offset;
                }
                out.push((top, offset..src.len()));
            }
        }
        offset += line.len();
    }
    let mut all = vec![(String::new(), 0..root_end)];
    all.extend(out);
    all
}

/// A table header line: its dotted name and whether it is `[[...]]`.
fn header(line: &str) -> Option<(String, bool)> {
    let t = line.split('#').next().unwrap_or(line).trim();
    let (inner, array) = if let Some(i) = t.strip_prefix("[[").and_then(|i| i.strip_suffix("]]")) {
        (i, true)
    } else {
        (t.strip_prefix('[')?.strip_suffix(']')?, false)
    };
    let ok = !inner.trim().is_empty()
        && inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '"' | '\''));
    ok.then(|| (inner.trim().to_owned(), array))
}

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

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: Option<String>,
        a: Option<Table>,
        b: Option<Table>,
        #[serde(default)]
        item: Vec<Table>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Table {
        n: u32,
        s: Option<String>,
    }

    fn errors(src: &str) -> Vec<(usize, String)> {
        parse_toml_all::<Doc>(Path::new("f.toml"), src)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.line.unwrap_or(0), e.message))
            .collect()
    }

    // A syntax error in each of two tables: both are reported, at their own lines.
    #[test]
    fn two_syntax_errors() {
        let e = errors("name = \"x\"\n[a]\nn = = 1\n[b]\nn = 2\ns = \"unterminated\n");
        assert_eq!(e.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [3, 6], "{e:?}");
    }

    // Type errors and unknown keys in different tables and array entries: all of them.
    #[test]
    fn errors_in_three_sections() {
        let src = "[a]\nn = \"one\"\n[b]\nn = 1\nextra = 2\n[[item]]\nn = 1\n[[item]]\nn = -1\n";
        let e = errors(src);
        assert_eq!(e.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [2, 5, 9], "{e:?}");
    }

    // A good file parses; a missing field is reported once, where its table is.
    #[test]
    fn good_and_missing() {
        assert!(parse_toml_all::<Doc>(Path::new("f"), "[a]\nn = 1\n[[item]]\nn = 2\n").is_ok());
        let e = errors("[a]\ns = \"x\"\n[b]\nn = 1\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, 1);
    }

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
