//! What the fuzz targets share: the invariants of a canonical path, and fixed signing keys
//! with the tokens they issue (the keys in `keys/` are fuzzing fixtures, used nowhere else).

use portcullis::auth::tokens::{Claims, KeyAlg, KeyRing};
use portcullis::path::canonical_path;

/// The issuer the fixed key rings sign for.
pub const ISSUER: &str = "https://localhost:8443";

/// The time (Unix seconds) at which the fuzz targets verify tokens.
pub const NOW: u64 = 1_800_000_000;

/// RFC 3986 unreserved characters: never escaped in a canonical path.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters a canonical path carries literally: `pchar` less `%`, and `/`.
fn is_literal(b: u8) -> bool {
    is_unreserved(b) || b"!$&'()*+,;=:@/".contains(&b)
}

fn upper_hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes every well-formed `%XX` escape (either case) and keeps every other byte.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let hex = |b: u8| upper_hex(b.to_ascii_uppercase());
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Panics unless `path` is canonical: origin form, only literal `pchar`s and upper-case
/// escapes of bytes that must stay escaped, no empty inner segment, no dot segment (also
/// before a `;` parameter), no encoded separator or control character, UTF-8 once
/// decoded, and a fixed point of [`canonical_path`].
pub fn check_canonical(path: &str) {
    let bytes = path.as_bytes();
    assert_eq!(bytes.first(), Some(&b'/'), "{path:?} is not origin form");
    assert!(!path.contains("//"), "{path:?} has an empty segment");
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(upper_hex);
            let lo = bytes.get(i + 2).copied().and_then(upper_hex);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                panic!("{path:?}: escape at {i} is not upper-case hex");
            };
            let d = hi << 4 | lo;
            assert!(!is_unreserved(d), "{path:?}: unreserved byte {d:#04x} left escaped");
            assert!(
                !matches!(d, b'/' | b'\\' | 0..=0x1f | 0x7f),
                "{path:?}: escaped separator or control byte {d:#04x}"
            );
            i += 3;
        } else {
            assert!(is_literal(b), "{path:?}: byte {b:#04x} is not escaped");
            i += 1;
        }
    }
    for segment in path[1..].split('/') {
        let decoded = percent_decode(segment);
        assert!(std::str::from_utf8(&decoded).is_ok(), "{path:?}: segment is not UTF-8");
        let name = decoded.split(|b| *b == b';').next().unwrap_or(&decoded);
        assert!(name != b"." && name != b"..", "{path:?} has a dot segment");
    }
    assert_eq!(
        canonical_path(path).as_deref(),
        Ok(path),
        "normalizing is not idempotent"
    );
}

/// A key ring over one of the fixed keys.
pub fn key_ring(alg: KeyAlg) -> KeyRing {
    let der: &[u8] = match alg {
        KeyAlg::EdDsa => include_bytes!("../keys/ed25519.pk8"),
        KeyAlg::Es256 => include_bytes!("../keys/es256.pk8"),
    };
    KeyRing::from_pkcs8(alg, der, ISSUER).expect("the fixed fuzzing key is valid")
}

/// Claims as the gateway issues them, valid at [`NOW`].
pub fn claims(sub: &str, roles: &[&str], amr: &[&str]) -> Claims {
    Claims {
        iss: ISSUER.to_owned(),
        aud: ISSUER.to_owned(),
        sub: sub.to_owned(),
        email: format!("{sub}@example.com"),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        attrs: Default::default(),
        amr: amr.iter().map(|r| (*r).to_owned()).collect(),
        iat: NOW - 10,
        nbf: NOW - 10,
        exp: NOW + 290,
        jti: format!("jti-{sub}"),
        sid: format!("sid-{sub}"),
        auth_time: NOW - 10,
    }
}

/// Every token the fixed keys issue in the fuzz targets (the only tokens that may verify).
pub fn issued_tokens(ring: &KeyRing) -> Vec<String> {
    [
        claims("u-1", &["customer"], &["pwd"]),
        claims("u-2", &["admin", "support"], &["pwd", "otp"]),
        claims("u-3", &[], &[]),
    ]
    .iter()
    .map(|c| ring.sign(c).expect("signing with the fixed key"))
    .collect()
}
