//! The gateway's own cookies (`__Host-portcullis*`) never reach an upstream: they are
//! removed from the `Cookie` header, and the other cookies pass unchanged.

use http::header::{HeaderValue, COOKIE};
use http::HeaderMap;

use crate::auth::cookie::{pairs, COOKIE_PREFIX};

/// Removes the gateway's cookies from the `Cookie` headers; a header left empty goes.
/// Requests without them (most) are only scanned. Read as bytes: a header whose other
/// cookies hold bytes other than ASCII is no way past the check.
pub fn strip_gateway_cookies(headers: &mut HeaderMap) {
    let ours = |p: &[u8]| p.starts_with(COOKIE_PREFIX.as_bytes());
    let (mut any_ours, mut any_other) = (false, false);
    for p in headers.get_all(COOKIE).iter().flat_map(|v| pairs(v.as_bytes())) {
        if ours(p) {
            any_ours = true;
        } else {
            any_other = true;
        }
    }
    if !any_ours {
        return;
    }
    let mut kept = Vec::new();
    if any_other {
        for p in headers.get_all(COOKIE).iter().flat_map(|v| pairs(v.as_bytes())) {
            if !ours(p) {
                if !kept.is_empty() {
                    kept.extend_from_slice(b"; ");
                }
                kept.extend_from_slice(p);
            }
        }
    }
    headers.remove(COOKIE);
    if let Ok(v) = HeaderValue::from_bytes(&kept) {
        if !kept.is_empty() {
            headers.insert(COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ours_go() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; __Host-portcullis=x; b=2".parse().unwrap());
        h.append(COOKIE, "__Host-portcullis-csrf=y".parse().unwrap());
        strip_gateway_cookies(&mut h);
        assert_eq!(h.get_all(COOKIE).iter().count(), 1);
        assert_eq!(h.get(COOKIE).unwrap(), "a=1; b=2");
        let mut h = HeaderMap::new();
        h.append(COOKIE, "__Host-portcullis=x".parse().unwrap());
        strip_gateway_cookies(&mut h);
        assert!(h.get(COOKIE).is_none());
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1".parse().unwrap());
        strip_gateway_cookies(&mut h);
        assert_eq!(h.get(COOKIE).unwrap(), "a=1");
    }

    // Another cookie's value in UTF-8 (bytes past ASCII, which `to_str` refuses) does not
    // carry the gateway's cookie upstream; the other cookies pass byte for byte.
    #[test]
    fn bytes_past_ascii_do_not_hide_ours() {
        let mut h = HeaderMap::new();
        let value = "__Host-portcullis=abc; name=caf\u{e9}".as_bytes();
        h.append(COOKIE, HeaderValue::from_bytes(value).unwrap());
        h.append(
            COOKIE,
            HeaderValue::from_bytes("x=\u{fc}; __Host-portcullis-csrf=y".as_bytes()).unwrap(),
        );
        strip_gateway_cookies(&mut h);
        let left: Vec<&[u8]> = h.get_all(COOKIE).iter().map(HeaderValue::as_bytes).collect();
        assert_eq!(left, ["name=caf\u{e9}; x=\u{fc}".as_bytes()]);
    }
}
