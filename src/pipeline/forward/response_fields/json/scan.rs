//! A strict scan of JSON text (RFC 8259, read as serde_json reads it): where each value
//! ends, with nothing built. Strings may hold no control character and only the escapes
//! JSON defines (`\u` with four hex digits, a lone surrogate's among them, as serde_json
//! lets a value it skips hold one); numbers follow the grammar (no leading zero, digits
//! after `.` and in the exponent); the literals are `true`, `false` and `null`; brackets
//! match. The text is UTF-8 already: the caller checks it whole.

use smallvec::SmallVec;

use crate::json_text::special;

/// Why bytes are not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub at: usize,
    pub what: &'static str,
}

impl Broken {
    pub fn at(at: usize, what: &'static str) -> Self {
        Self { at, what }
    }
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for Broken {}

/// The index of the first byte from `i` on that is not JSON whitespace.
pub fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index just past the string that opens at `i`, and whether it holds an escape.
pub fn string(b: &[u8], i: usize) -> Result<(usize, bool), Broken> {
    if b.get(i) != Some(&b'"') {
        return Err(Broken::at(i, "expected a string"));
    }
    let mut i = i + 1;
    let mut escaped = false;
    loop {
        i += special(&b[i..]).ok_or(Broken::at(b.len(), "an unterminated string"))?;
        match b[i] {
            b'"' => return Ok((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                i = escape(b, i)?;
            }
            _ => return Err(Broken::at(i, "a control character in a string")),
        }
    }
}

/// The index just past the escape at `i` (a `\`).
fn escape(b: &[u8], i: usize) -> Result<usize, Broken> {
    match b.get(i + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
        Some(b'u') if b.get(i + 2..i + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => Ok(i + 6),
        _ => Err(Broken::at(i, "an invalid escape")),
    }
}

/// The index just past the JSON value that starts at `i`. Containers are followed with
/// a stack of their closing brackets, not by recursion: nesting is bounded by the text
/// alone.
pub fn value(b: &[u8], mut i: usize) -> Result<usize, Broken> {
    let mut open: SmallVec<[u8; 32]> = SmallVec::new();
    loop {
        i = match b.get(i) {
            Some(b'"') => string(b, i)?.0,
            Some(b'{') => {
                let j = ws(b, i + 1);
                if b.get(j) != Some(&b'}') {
                    open.push(b'}');
                    i = member(b, j)?.2;
                    continue;
                }
                j + 1
            }
            Some(b'[') => {
                let j = ws(b, i + 1);
                if b.get(j) != Some(&b']') {
                    open.push(b']');
                    i = j;
                    continue;
                }
                j + 1
            }
            Some(b't') => literal(b, i, b"true")?,
            Some(b'f') => literal(b, i, b"false")?,
            Some(b'n') => literal(b, i, b"null")?,
            Some(b'-' | b'0'..=b'9') => number(b, i)?,
            _ => return Err(Broken::at(i, "expected a value")),
        };
        // After a value: close what it ends, then go on to the next element or member.
        loop {
            let Some(&close) = open.last() else {
                return Ok(i);
            };
            i = ws(b, i);
            match b.get(i) {
                Some(b',') if close == b'}' => {
                    i = member(b, ws(b, i + 1))?.2;
                    break;
                }
                Some(b',') => {
                    i = ws(b, i + 1);
                    break;
                }
                Some(&c) if c == close => {
                    open.pop();
                    i += 1;
                }
                _ => return Err(Broken::at(i, "expected `,` or a closing bracket")),
            }
        }
    }
}

/// The member whose name starts at `i`: the index just past its name, whether the name
/// holds an escape, and where its value starts (past the colon and whitespace).
pub fn member(b: &[u8], i: usize) -> Result<(usize, bool, usize), Broken> {
    let (end, escaped) = string(b, i)?;
    let colon = ws(b, end);
    if b.get(colon) != Some(&b':') {
        return Err(Broken::at(colon, "expected `:`"));
    }
    Ok((end, escaped, ws(b, colon + 1)))
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize, Broken> {
    match b.get(i..i + word.len()) {
        Some(found) if found == word => Ok(i + word.len()),
        _ => Err(Broken::at(i, "an invalid literal")),
    }
}

/// The index just past the number at `i`: `-`, then `0` or digits not starting with
/// `0`, then `.` and digits, then `e` or `E`, a sign and digits, the last two optional.
fn number(b: &[u8], mut i: usize) -> Result<usize, Broken> {
    let digits = |from: usize| from + b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let broken = |at| Err(Broken::at(at, "an invalid number"));
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match b.get(i) {
        Some(b'0') => i + 1,
        Some(b'1'..=b'9') => digits(i + 1),
        _ => return broken(i),
    };
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return broken(end);
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return broken(end);
        }
        i = end;
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_end_where_json_says() {
        for (text, end) in [
            ("0", 1),
            ("-0.5e+10,", 8),
            ("12]", 2),
            ("\"a\\\"b\\u00e9\" ", 12),
            ("true}", 4),
            ("[1, [2, {\"a\": [3]}], {}] x", 24),
            ("{ \"a\" : { \"b\" : null } , \"c\" : [ ] }", 36),
        ] {
            assert_eq!(value(text.as_bytes(), 0), Ok(end), "{text}");
        }
    }

    #[test]
    fn broken_values_are_refused() {
        for text in [
            "",
            "01x",
            "-",
            "1.",
            "1.e5",
            "1e",
            "1e+",
            "+1",
            ".5",
            "tru",
            "nul",
            "\"a",
            "\"\\x\"",
            "\"\\u12g4\"",
            "\"a\tb\"",
            "[1,]",
            "[1 2]",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "{1:2}",
            "[}",
            "{]",
            "[[1]",
            "{\"a\":}",
        ] {
            let end = value(text.as_bytes(), 0);
            // "01x" scans as "0", and the caller refuses what follows.
            if text == "01x" {
                assert_eq!(end, Ok(1));
                continue;
            }
            assert!(end.is_err(), "{text:?} gave {end:?}");
        }
    }
}
