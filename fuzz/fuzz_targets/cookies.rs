//! The request's `Cookie` headers, read and stripped, on any bytes (up to three headers,
//! split at NUL): it never panics; a session value read is base64url of at most 64
//! characters, and the value of the first cookie of exactly that name; once stripped, no
//! header holds a cookie of the gateway's, and every other cookie is left, in order, byte
//! for byte, in at most one header (headers without any of the gateway's are left alone).

#![no_main]

use http::header::{HeaderValue, COOKIE};
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use portcullis::auth::cookie::{cookie, COOKIE_PREFIX, SESSION_COOKIE};
use portcullis::pipeline::forward::cookies::strip_gateway_cookies;

/// Every cookie of `headers` as this target reads them: split at `;`, trimmed, non-empty.
fn all(headers: &HeaderMap) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for v in headers.get_all(COOKIE) {
        for p in v.as_bytes().split(|&b| b == b';') {
            let p = p.trim_ascii();
            if !p.is_empty() {
                out.push(p.to_vec());
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for part in data.split(|&b| b == 0).take(3) {
        if let Ok(v) = HeaderValue::from_bytes(part) {
            headers.append(COOKIE, v);
        }
    }
    let before = all(&headers);
    if let Some(v) = cookie(&headers, SESSION_COOKIE) {
        assert!(!v.is_empty() && v.len() <= 64, "{v:?}");
        assert!(v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{v:?}");
        let name = format!("{SESSION_COOKIE}=");
        let first = before.iter().find_map(|p| p.strip_prefix(name.as_bytes())).unwrap();
        assert_eq!(first.trim_ascii(), v.as_bytes());
    }
    let ours = before.iter().any(|p| p.starts_with(COOKIE_PREFIX.as_bytes()));
    let headers_before = headers.get_all(COOKIE).iter().count();
    strip_gateway_cookies(&mut headers);
    let after = all(&headers);
    assert!(after.iter().all(|p| !p.starts_with(COOKIE_PREFIX.as_bytes())), "{after:?}");
    let others: Vec<Vec<u8>> = before
        .into_iter()
        .filter(|p| !p.starts_with(COOKIE_PREFIX.as_bytes()))
        .collect();
    assert_eq!(after, others);
    let headers_after = headers.get_all(COOKIE).iter().count();
    if ours {
        assert!(headers_after <= 1);
    } else {
        assert_eq!(headers_after, headers_before, "left as they came");
    }
});
