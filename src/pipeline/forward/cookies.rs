//! The gateway's own cookies (`__Host-portcullis*`) never reach an upstream: they are
//! removed from the `Cookie` header, and the other cookies pass unchanged.

use http::header::{HeaderValue, COOKIE};
use http::HeaderMap;

use crate::auth::cookie::COOKIE_PREFIX;

/// Removes the gateway's cookies from the `Cookie` headers; a header left empty goes.
/// Requests without them (most) are only scanned.
pub fn strip_gateway_cookies(headers: &mut HeaderMap) {
    let ours = |v: &HeaderValue| {
        v.to_str()
            .is_ok_and(|s| s.split(';').any(|p| p.trim_start().starts_with(COOKIE_PREFIX)))
    };
    if !headers.get_all(COOKIE).iter().any(ours) {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with(COOKIE_PREFIX))
        .map(str::to_owned)
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
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
}
