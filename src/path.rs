//! The canonical path and its refusal: what the policy judges and, byte for byte, what
//! the upstream receives. A leaf: the normalizer, the error map and the policy matcher
//! all import it, and it imports nothing of the crate.
//!
//! Percent-escapes of unreserved characters are decoded, every other escape is kept with
//! upper-case hex, and characters outside RFC 3986 `pchar` are escaped. Refused, because
//! servers behind a proxy disagree on what they mean: dot segments (raw, percent-encoded
//! in any case, or before a `;` parameter), encoded `/` or `\`, raw backslashes, control
//! characters including NUL, empty segments (`//`), escapes that do not decode to UTF-8,
//! malformed escapes, and anything but an origin-form path.

use std::fmt;

/// Why a target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotOriginForm,
    ForeignAuthority,
    DotSegment,
    EncodedSeparator,
    Backslash,
    ControlCharacter,
    EmptySegment,
    BadEscape,
    InvalidUtf8,
    MissingHost,
    DuplicateHost,
    UserInfo,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotOriginForm => "target is not a path",
            Self::ForeignAuthority => "absolute-form target names another host",
            Self::DotSegment => "dot segment",
            Self::EncodedSeparator => "encoded / or \\",
            Self::Backslash => "backslash",
            Self::ControlCharacter => "control character",
            Self::EmptySegment => "empty path segment",
            Self::BadEscape => "malformed percent-escape",
            Self::InvalidUtf8 => "invalid UTF-8 after decoding",
            Self::MissingHost => "HTTP/1.1 request without Host",
            Self::DuplicateHost => "more than one Host",
            Self::UserInfo => "userinfo in the host",
        })
    }
}

/// Canonicalizes a raw path, or says why it is refused.
pub fn canonical_path(raw: &str) -> Result<String, Refusal> {
    if raw.as_bytes().first() != Some(&b'/') {
        return Err(Refusal::NotOriginForm);
    }
    // Most paths are canonical as they come: copied in one go.
    if already_canonical(raw.as_bytes()) {
        return Ok(raw.to_owned());
    }
    canonicalize(raw)
}

/// Whether a path (`bytes` starts with `/`) is canonical and accepted as it is: every
/// byte a literal `pchar` or `/`, no empty segment but the last, no dot segment. Then
/// [`canonicalize`] would return it unchanged (a test holds the two to that); anything
/// else goes through it, byte by byte, which also says why a path is refused.
fn already_canonical(bytes: &[u8]) -> bool {
    let mut segments = bytes[1..].split(|b| *b == b'/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() && segments.peek().is_some() {
            return false;
        }
        let name = segment.split(|b| *b == b';').next().unwrap_or(segment);
        if name == b"." || name == b".." || !segment.iter().all(|b| is_pchar_literal(*b)) {
            return false;
        }
    }
    true
}

/// The byte-by-byte canonicalization of a path that starts with `/`.
fn canonicalize(raw: &str) -> Result<String, Refusal> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    // Decoded bytes of the current segment, for the dot-segment and UTF-8 checks.
    let mut segment: Vec<u8> = Vec::with_capacity(32);
    let mut i = 1;
    out.push('/');
    loop {
        let b = bytes.get(i).copied();
        match b {
            None | Some(b'/') => {
                check_segment(&segment)?;
                if b.is_none() {
                    break;
                }
                // An empty segment before a `/` is a `//`; only the last may be empty.
                if segment.is_empty() {
                    return Err(Refusal::EmptySegment);
                }
                segment.clear();
                out.push('/');
                i += 1;
            }
            Some(b'%') => {
                let hi = bytes.get(i + 1).and_then(|c| hex(*c));
                let lo = bytes.get(i + 2).and_then(|c| hex(*c));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(Refusal::BadEscape);
                };
                let d = hi << 4 | lo;
                match d {
                    b'/' | b'\\' => return Err(Refusal::EncodedSeparator),
                    0..=0x1f | 0x7f => return Err(Refusal::ControlCharacter),
                    _ => {}
                }
                segment.push(d);
                if is_unreserved(d) {
                    out.push(char::from(d));
                } else {
                    push_escape(&mut out, d);
                }
                i += 3;
            }
            Some(b'\\') => return Err(Refusal::Backslash),
            Some(0..=0x1f | 0x7f) => return Err(Refusal::ControlCharacter),
            Some(c) => {
                segment.push(c);
                if is_pchar_literal(c) {
                    out.push(char::from(c));
                } else {
                    push_escape(&mut out, c);
                }
                i += 1;
            }
        }
    }
    Ok(out)
}

/// A decoded segment must be UTF-8 and must not be `.` or `..`, alone or before a `;`
/// parameter (servers that strip path parameters would read `..;` as `..`).
fn check_segment(segment: &[u8]) -> Result<(), Refusal> {
    if std::str::from_utf8(segment).is_err() {
        return Err(Refusal::InvalidUtf8);
    }
    let name = segment.split(|b| *b == b';').next().unwrap_or(segment);
    if name == b"." || name == b".." {
        return Err(Refusal::DotSegment);
    }
    Ok(())
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// RFC 3986 unreserved characters.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters a path segment may carry literally (RFC 3986 `pchar` less `%`).
fn is_pchar_literal(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Ordinary paths come out unchanged.
    #[test]
    fn plain_paths_unchanged() {
        for p in [
            "/",
            "/api/products",
            "/api/products/12",
            "/api/customers/u-42/orders",
            "/a/",
            "/a;b=c",
            "/%C3%A9t%C3%A9",
        ] {
            assert_eq!(canonical_path(p).as_deref(), Ok(p), "{p}");
        }
    }

    // Escapes of unreserved characters are decoded; others keep upper-case hex.
    #[test]
    fn escapes_canonicalized() {
        assert_eq!(canonical_path("/api/%70roducts").as_deref(), Ok("/api/products"));
        assert_eq!(canonical_path("/a%3fb").as_deref(), Ok("/a%3Fb"));
        assert_eq!(canonical_path("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(canonical_path("/a%2Db").as_deref(), Ok("/a-b"));
    }

    // Every ambiguous form is refused with its reason.
    #[test]
    fn ambiguous_refused() {
        let cases = [
            ("/api/../admin", Refusal::DotSegment),
            ("/api/./products", Refusal::DotSegment),
            ("/api/..", Refusal::DotSegment),
            ("/api/%2e%2e/admin", Refusal::DotSegment),
            ("/api/%2E%2e/admin", Refusal::DotSegment),
            ("/api/.%2E/admin", Refusal::DotSegment),
            ("/api/%2e/admin", Refusal::DotSegment),
            ("/api/..;/admin", Refusal::DotSegment),
            ("/api/.;x=1/admin", Refusal::DotSegment),
            ("/api%2fadmin", Refusal::EncodedSeparator),
            ("/api%2Fadmin", Refusal::EncodedSeparator),
            ("/api%5cadmin", Refusal::EncodedSeparator),
            ("/api%5Cadmin", Refusal::EncodedSeparator),
            ("/api\\admin", Refusal::Backslash),
            ("/api%00admin", Refusal::ControlCharacter),
            ("/api%0aadmin", Refusal::ControlCharacter),
            ("/api//admin", Refusal::EmptySegment),
            ("//api", Refusal::EmptySegment),
            ("/api%zz", Refusal::BadEscape),
            ("/api%2", Refusal::BadEscape),
            ("/api%", Refusal::BadEscape),
            ("/api/%ff%fe", Refusal::InvalidUtf8),
            ("/api/%c3", Refusal::InvalidUtf8),
            ("*", Refusal::NotOriginForm),
            ("", Refusal::NotOriginForm),
        ];
        for (p, why) in cases {
            assert_eq!(canonical_path(p), Err(why), "{p}");
        }
    }

    // Dots that are part of a name are not dot segments.
    #[test]
    fn dots_in_names_allowed() {
        for p in ["/file.json", "/...", "/.well-known/jwks.json", "/a/..b", "/a/b.."] {
            assert!(canonical_path(p).is_ok(), "{p}");
        }
    }

    proptest! {
        // No accepted path holds a dot segment, an encoded separator, a control
        // character or an empty inner segment, and canonicalizing is idempotent.
        #[test]
        fn accepted_paths_are_unambiguous(raw in "/([a-zA-Z0-9._~;=-]|%[0-9a-fA-F]{2}|/|\\\\|%2[eEfF]|%5[cC]){0,24}") {
            if let Ok(c) = canonical_path(&raw) {
                for seg in c.split('/').skip(1) {
                    let name = seg.split(';').next().unwrap();
                    prop_assert!(name != "." && name != "..", "{c}");
                }
                let lower = c.to_ascii_lowercase();
                prop_assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%2e"), "{c}");
                prop_assert!(!c.contains('\\') && !c.contains("//"), "{c}");
                prop_assert!(!lower.contains("%00") && !lower.contains("%0a"), "{c}");
                prop_assert_eq!(canonical_path(&c), Ok(c.clone()));
            }
        }

        // Any byte string either canonicalizes or is refused; it never panics.
        #[test]
        fn never_panics(raw in "\\PC{0,40}") {
            let _ = canonical_path(&raw);
        }

        // The one-go copy of an already canonical path is what the byte-by-byte way
        // returns for it, over paths made of every kind of byte that matters to either.
        #[test]
        fn shortcut_agrees(raw in "/([a-zA-Z0-9._~;=:@!$&'()*+,-]|%[0-9a-fA-F]{2}|/|\\\\|%2[eEfF]|\\.\\.|\\.|[ \"<>^`{}|]|\\PC){0,24}") {
            prop_assert_eq!(canonical_path(&raw), canonicalize(&raw));
        }
    }
}
