//! What browsers need besides the pages: the CSRF check for cookie-authenticated
//! requests, the one function that decides where `next` may lead ([`safe_next`]), the
//! login redirect, and `application/x-www-form-urlencoded` decoding.

use http::{HeaderMap, Method, Uri};
use subtle::ConstantTimeEq;

use super::cookie::{cookie, CSRF_COOKIE};
use crate::error::GatewayError;

/// The header a script sends the CSRF cookie's value in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Where a refused or missing `next` leads.
pub const DEFAULT_NEXT: &str = "/auth/account";
/// The path of the login pages' stylesheet (cacheable, unlike the rest of `/auth/`).
pub const STYLESHEET: &str = "/auth/static/portcullis.css";
/// The longest `next` followed.
const MAX_NEXT: usize = 2048;

/// Whether a method changes state (and so needs the CSRF check with a cookie).
pub fn is_unsafe(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

/// `scheme://host[:port]` of `public_url`: what a same-origin `Origin` reads.
pub fn origin_of(public_url: &Uri) -> String {
    let scheme = public_url.scheme_str().unwrap_or("https");
    let authority = public_url.authority().map_or("", |a| a.as_str());
    format!("{scheme}://{authority}").to_ascii_lowercase()
}

/// Whether the request's single `Origin` is `public_url`'s origin.
pub fn same_origin(headers: &HeaderMap, public_url: &Uri) -> bool {
    let mut all = headers.get_all(http::header::ORIGIN).iter();
    match (all.next(), all.next()) {
        (Some(v), None) => v.to_str().is_ok_and(|v| v.eq_ignore_ascii_case(&origin_of(public_url))),
        _ => false,
    }
}

/// Whether `presented` equals the request's CSRF cookie, compared in constant time; no
/// cookie matches nothing.
pub fn matches_cookie(headers: &HeaderMap, presented: &str) -> bool {
    let Some(expected) = cookie(headers, CSRF_COOKIE) else {
        return false;
    };
    !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// The CSRF rule for a cookie-authenticated request: safe methods pass; unsafe ones need
/// `Origin` = `public_url`'s origin, or `X-CSRF-Token` (a single one) = the CSRF cookie.
/// 403 `csrf` otherwise.
pub fn check(method: &Method, headers: &HeaderMap, public_url: &Uri) -> Result<(), GatewayError> {
    if !is_unsafe(method) || same_origin(headers, public_url) {
        return Ok(());
    }
    let mut tokens = headers.get_all(CSRF_HEADER).iter();
    let token = match (tokens.next(), tokens.next()) {
        (Some(v), None) => v.to_str().unwrap_or(""),
        _ => "",
    };
    if matches_cookie(headers, token) {
        Ok(())
    } else {
        Err(GatewayError::Csrf)
    }
}

/// Where `next` may lead after a login: only a path on this gateway, canonical as the
/// normalizer makes it, with an optional plain query. Refused (`None`): anything not
/// starting with a single `/` (`//host`, `/\host`, `\\host`, `https:`, `javascript:`,
/// `%2F%2F...`), backslashes, control characters and spaces anywhere, fragments, paths the
/// normalizer refuses (dot segments, encoded `/` or `\`, empty segments), and values
/// longer than 2048 bytes.
pub fn safe_next(raw: &str) -> Option<String> {
    if raw.len() > MAX_NEXT || !raw.starts_with('/') || raw.starts_with("//") {
        return None;
    }
    if raw
        .bytes()
        .any(|b| b.is_ascii_control() || b == b'\\' || b == b' ' || b == b'#' || !b.is_ascii())
    {
        return None;
    }
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let canonical = crate::path::canonical_path(path).ok()?;
    if canonical.starts_with("//") {
        return None;
    }
    match query {
        Some(q) if !q.is_empty() => {
            let ok = q
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b));
            ok.then(|| format!("{canonical}?{q}"))
        }
        _ => Some(canonical),
    }
}

/// `next`, or [`DEFAULT_NEXT`] when it is missing or refused.
pub fn next_or_default(raw: Option<&str>) -> String {
    raw.and_then(safe_next).unwrap_or_else(|| DEFAULT_NEXT.to_owned())
}

/// The login page that returns to `path_and_query` (when it is a safe `next`).
pub fn login_location(path_and_query: &str) -> String {
    match safe_next(path_and_query) {
        Some(next) => format!("/auth/login?next={}", encode(&next)),
        None => "/auth/login".to_owned(),
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space); `None`
/// for malformed escapes or bytes that are not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The fields of a form body or query string, decoded; malformed pairs are dropped. At
/// most `max` pairs are read.
pub fn form_fields(s: &str, max: usize) -> Vec<(String, String)> {
    s.split('&')
        .take(max)
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_shapes() {
        for ok in ["/", "/orders", "/orders/7?x=1&y=%20z", "/a/b/"] {
            assert!(safe_next(ok).is_some(), "{ok}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil",
            "https://evil",
            "javascript:alert(1)",
            "%2F%2Fevil",
            "/%5Cevil",
            "/%2F/evil",
            "/..//evil",
            "/a/../../evil",
            "/%2e%2e/",
            "/a\r\nLocation: https://evil",
            "/a#frag",
            "",
            "orders",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(3000))), None);
        assert_eq!(next_or_default(Some("//evil")), DEFAULT_NEXT);
    }

    #[test]
    fn login_locations() {
        assert_eq!(login_location("/orders?id=7"), "/auth/login?next=/orders%3Fid%3D7");
        assert_eq!(login_location("//evil"), "/auth/login");
    }

    #[test]
    fn forms() {
        let f = form_fields("email=a%40b.example&password=p+w&next=%2Fx&bad=%zz", 10);
        assert_eq!(f[0], ("email".into(), "a@b.example".into()));
        assert_eq!(f[1], ("password".into(), "p w".into()));
        assert_eq!(f[2], ("next".into(), "/x".into()));
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn csrf_rule() {
        let url: Uri = "https://gw.example:8443/".parse().unwrap();
        let mut h = HeaderMap::new();
        assert!(check(&Method::GET, &h, &url).is_ok());
        assert!(check(&Method::POST, &h, &url).is_err());
        h.insert("origin", "https://gw.example:8443".parse().unwrap());
        assert!(check(&Method::DELETE, &h, &url).is_ok());
        h.insert("origin", "https://evil.example".parse().unwrap());
        assert!(check(&Method::PUT, &h, &url).is_err());
        h.insert("cookie", "__Host-portcullis-csrf=abc".parse().unwrap());
        h.insert(CSRF_HEADER, "abd".parse().unwrap());
        assert!(check(&Method::PATCH, &h, &url).is_err());
        h.insert(CSRF_HEADER, "abc".parse().unwrap());
        assert!(check(&Method::PATCH, &h, &url).is_ok());
    }
}
