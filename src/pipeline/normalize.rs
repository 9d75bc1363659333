//! Phase 1: the request target becomes one canonical path, or the request is refused.
//!
//! The canonical path is what the policy judges and, byte for byte, what the upstream
//! receives: percent-escapes of unreserved characters are decoded, every other escape is
//! kept with upper-case hex, and characters outside RFC 3986 `pchar` are escaped.
//!
//! Refused (400), because servers behind a proxy disagree on what they mean and such
//! disagreements are how path-based access control is bypassed: dot segments (raw,
//! percent-encoded in any case, or before a `;` parameter), encoded `/` or `\`, raw
//! backslashes, control characters including NUL, empty segments (`//`), escapes that do
//! not decode to UTF-8, malformed escapes, the asterisk form, and absolute-form targets
//! whose host disagrees with `Host`. `CONNECT` is refused with 405: this is not a tunnel.
//!
//! The host is checked too (400): an HTTP/1.1 request without `Host` (RFC 9112 §3.2), a
//! request with more than one `Host` (each hop could pick a different one), and userinfo
//! (`user:pw@`) in `Host` or in the target's authority, which HTTP/2 forbids in
//! `:authority` (RFC 9113 §8.3.1) and which no `Host` may carry (RFC 9110 §7.2).

use std::fmt;

use http::{HeaderMap, Method, Uri, Version};

use crate::error::GatewayError;

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

/// The judged target: canonical path and the query as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: String,
    pub query: Option<String>,
}

impl Target {
    /// Path and query as the upstream receives them, after the upstream's own path
    /// `prefix` (empty for none), built in one string.
    pub fn path_and_query_under(&self, prefix: &str) -> String {
        let query_len = self.query.as_ref().map_or(0, |q| q.len() + 1);
        let mut out = String::with_capacity(prefix.len() + self.path.len() + query_len);
        out.push_str(prefix);
        out.push_str(&self.path);
        if let Some(q) = &self.query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// Checks method and target of a request and returns its canonical form.
pub fn normalize_request(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
) -> Result<Target, GatewayError> {
    if method == Method::CONNECT {
        return Err(GatewayError::MethodNotAllowed(method.clone()));
    }
    check_authority(uri, version, headers).map_err(GatewayError::BadTarget)?;
    let path = canonical_path(uri.path()).map_err(GatewayError::BadTarget)?;
    Ok(Target {
        path,
        query: uri.query().map(str::to_owned),
    })
}

/// One `Host` at most, required on HTTP/1.1, without userinfo; an absolute-form target
/// (or HTTP/2 `:authority`) must have no userinfo and agree with `Host`.
fn check_authority(uri: &Uri, version: Version, headers: &HeaderMap) -> Result<(), Refusal> {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::DuplicateHost);
    }
    if host.is_some_and(|h| h.as_bytes().contains(&b'@')) {
        return Err(Refusal::UserInfo);
    }
    let Some(authority) = uri.authority() else {
        if host.is_none() && version == Version::HTTP_11 {
            return Err(Refusal::MissingHost);
        }
        return Ok(());
    };
    if authority.as_str().contains('@') {
        return Err(Refusal::UserInfo);
    }
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(Refusal::ForeignAuthority);
    }
    let agrees = match headers.get(http::header::HOST) {
        Some(host) => host.as_bytes().eq_ignore_ascii_case(authority.as_str().as_bytes()),
        // HTTP/1.1 requires Host; HTTP/2 carries the host in `:authority` alone.
        None => version >= Version::HTTP_2,
    };
    if !agrees {
        return Err(Refusal::ForeignAuthority);
    }
    Ok(())
}

/// Canonicalizes a raw path, or says why it is refused.
pub fn canonical_path(raw: &str) -> Result<String, Refusal> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(Refusal::NotOriginForm);
    }
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

    fn req(uri: &str, host: Option<&str>, version: Version) -> Result<Target, GatewayError> {
        let mut headers = HeaderMap::new();
        if let Some(h) = host {
            headers.insert(http::header::HOST, h.parse().unwrap());
        }
        normalize_request(&Method::GET, &uri.parse().unwrap(), version, &headers)
    }

    // An absolute-form target is accepted only when it names the Host.
    #[test]
    fn absolute_form() {
        assert!(req("https://localhost:8443/api", Some("localhost:8443"), Version::HTTP_11).is_ok());
        assert!(matches!(
            req("https://evil.example/api", Some("localhost:8443"), Version::HTTP_11),
            Err(GatewayError::BadTarget(Refusal::ForeignAuthority))
        ));
        assert!(req("https://evil.example/api", None, Version::HTTP_11).is_err());
        assert!(req("https://localhost/api", None, Version::HTTP_2).is_ok());
        let t = req("/api/products?x=1&y=%2F", Some("localhost"), Version::HTTP_11).unwrap();
        assert_eq!(t.path_and_query_under(""), "/api/products?x=1&y=%2F");
        assert_eq!(t.path_and_query_under("/v1"), "/v1/api/products?x=1&y=%2F");
    }

    // HTTP/1.1 needs exactly one Host; no host carries userinfo, in Host or in the
    // target's authority (HTTP/2 `:authority`).
    #[test]
    fn host_rules() {
        assert!(matches!(
            req("/api", None, Version::HTTP_11),
            Err(GatewayError::BadTarget(Refusal::MissingHost))
        ));
        assert!(req("/api", None, Version::HTTP_10).is_ok());
        assert!(req("/api", None, Version::HTTP_2).is_ok());
        let mut two = HeaderMap::new();
        two.append(http::header::HOST, "localhost".parse().unwrap());
        two.append(http::header::HOST, "evil.example".parse().unwrap());
        for version in [Version::HTTP_11, Version::HTTP_2] {
            assert!(matches!(
                normalize_request(&Method::GET, &"/api".parse().unwrap(), version, &two),
                Err(GatewayError::BadTarget(Refusal::DuplicateHost))
            ));
        }
        assert!(matches!(
            req("/api", Some("user@localhost"), Version::HTTP_11),
            Err(GatewayError::BadTarget(Refusal::UserInfo))
        ));
        assert!(matches!(
            req("https://user:pw@evil.example/api", None, Version::HTTP_2),
            Err(GatewayError::BadTarget(Refusal::UserInfo))
        ));
    }

    // CONNECT is refused with 405.
    #[test]
    fn connect_refused() {
        let uri: Uri = "localhost:443".parse().unwrap();
        let r = normalize_request(&Method::CONNECT, &uri, Version::HTTP_11, &HeaderMap::new());
        assert!(matches!(r, Err(GatewayError::MethodNotAllowed(_))));
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
    }
}
