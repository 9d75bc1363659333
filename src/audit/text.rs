//! Records shown as text: escaped, quoted, one line each.

use super::*;

/// Whether a character must not reach a terminal raw: control characters (Cc), line
/// and paragraph separators (Zl, Zp), format characters (Cf: bidi overrides and
/// isolates, zero-width characters, the BOM, soft hyphen...), and whitespace other than
/// the plain space (which could pass for a field separator).
fn must_escape(c: char) -> bool {
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(
            c,
            // Cf, as of Unicode 16.
            '\u{00ad}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061c}'
                | '\u{06dd}'
                | '\u{070f}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08e2}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{110bd}'
                | '\u{110cd}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0001}'
                | '\u{e0020}'..='\u{e007f}'
        )
}

/// Escapes backslashes, control characters, Unicode line and paragraph separators and
/// format characters, so text output shows data as data: a newline or U+2028 in an
/// email cannot fake a second record, and U+202E cannot reorder what follows it.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if must_escape(c) => out.push_str(&format!("\\u{{{:04x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// One record as one line of JSON (`audit list --json`), with every character that
/// [`escape`] escapes written as a JSON `\uXXXX` escape: JSON leaves U+2028, U+202E and
/// the like raw, which a terminal or a line-based reader would act on. The line parses
/// to exactly the stored record.
pub fn json_line(r: &Record) -> String {
    let raw = serde_json::to_string(r).unwrap_or_default();
    let mut out = String::with_capacity(raw.len());
    // Such characters only occur inside JSON strings: the structure is ASCII.
    for c in raw.chars() {
        if must_escape(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A field value of `audit list`'s text: bare when it is plain (letters, digits and
/// `@ . _ : / % + -`), otherwise in double quotes with `"` escaped as well as what
/// [`escape`] escapes. A space, `=` or quote in user-supplied text cannot start a field
/// of its own. Absent values are `-`; a value that is itself `-` is quoted.
pub fn field(value: Option<&str>) -> String {
    let Some(v) = value else {
        return "-".to_owned();
    };
    let plain = !v.is_empty()
        && v != "-"
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | ':' | '/' | '%' | '+' | '-'));
    if plain {
        v.to_owned()
    } else {
        format!("\"{}\"", escape(v).replace('"', "\\\""))
    }
}

/// One line of `audit list`'s table. Every value that a client or the policy supplied
/// (email, user, method, path, route, reason) goes through [`field`].
pub fn format_line(r: &Record) -> String {
    let e = &r.event;
    let f = |v: &Option<String>| field(v.as_deref());
    let mut line = format!(
        "{:>6} {} {:<22} {:<8} user={} email={} ip={}",
        r.seq,
        r.time,
        field(Some(&e.event)),
        field(Some(&e.outcome)),
        f(&e.user_id),
        f(&e.email),
        f(&e.ip),
    );
    if e.method.is_some() || e.path.is_some() {
        line.push_str(&format!(" {} {}", f(&e.method), f(&e.path)));
    }
    if let Some(route) = &e.route {
        line.push_str(&format!(" route=\"{}\"", escape(route).replace('"', "\\\"")));
    }
    if let Some(status) = e.status {
        line.push_str(&format!(" status={status}"));
    }
    if let Some(ms) = e.latency_ms {
        line.push_str(&format!(" latency={ms}ms"));
    }
    if let Some(reason) = &e.reason {
        line.push_str(&format!(" reason=\"{}\"", escape(reason).replace('"', "\\\"")));
    }
    if let Some(id) = &e.request_id {
        line.push_str(&format!(" request={}", field(Some(id))));
    }
    line
}
