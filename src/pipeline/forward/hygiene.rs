//! Header hygiene, as data: every client header the gateway removes before forwarding,
//! each with its reason and RFC reference, and the one-scan, allocation-free check that
//! applies the list. Names are compared lower-case with `_` read as `-`, so an
//! underscore twin (`Transfer_Encoding`) goes too. Also the check that a client's host
//! is fit to forward as `X-Forwarded-Host`.

use http::header::{self, HeaderMap, HeaderName};

pub use crate::upstream::HOP_BY_HOP;

/// Which spellings of a name in [`STRIPPED`] are removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    /// Every spelling: the name itself and any with `_` for `-`.
    Any,
    /// Only spellings with `_` for `-`: the name itself is the request's own framing,
    /// which hyper reads and rewrites; an underscore twin would be read as it by an
    /// upstream that folds `_` into `-` (CGI-style servers do), and mis-frame the request.
    Underscored,
}

/// One client header the gateway removes, and why.
#[derive(Debug, Clone, Copy)]
pub struct Stripped {
    /// Lower-case, with `-` as the separator: every name is compared with `_` read as `-`.
    pub name: &'static str,
    pub spelling: Spelling,
    pub reason: &'static str,
}

const fn any(name: &'static str, reason: &'static str) -> Stripped {
    Stripped {
        name,
        spelling: Spelling::Any,
        reason,
    }
}

/// Every client header removed before forwarding (besides `x-auth-*`, see
/// [`is_identity_header`], and the headers `Connection` names). A header name is compared
/// lower-cased and with `_` read as `-`, so `Transfer_Encoding` is removed like
/// `Transfer-Encoding`: upstreams that fold `_` into `-` must not see a twin of a header
/// the gateway removed or set.
pub const STRIPPED: [Stripped; 39] = [
    // Hop-by-hop (RFC 9110 §7.6.1): meaningful for one connection only.
    any("connection", "hop-by-hop (RFC 9110 §7.6.1)"),
    any(
        "keep-alive",
        "hop-by-hop (legacy HTTP/1.0 keep-alive, RFC 2068 §19.7.1)",
    ),
    any("proxy-connection", "hop-by-hop (legacy, never standard)"),
    any("proxy-authenticate", "hop-by-hop (RFC 9110 §11.7.1)"),
    any(
        "proxy-authorization",
        "credentials for this proxy (RFC 9110 §11.7.2), not the upstream's",
    ),
    any("te", "hop-by-hop (RFC 9110 §10.1.4)"),
    any("trailer", "hop-by-hop (RFC 9110 §6.6.2)"),
    any(
        "transfer-encoding",
        "framing of this connection (RFC 9112 §6.1); hyper re-frames the body",
    ),
    any("upgrade", "hop-by-hop (RFC 9110 §7.8); this is not a tunnel"),
    // Framing the gateway sets itself; only a twin spelled with `_` is removed.
    Stripped {
        name: "content-length",
        spelling: Spelling::Underscored,
        reason: "a `Content_Length` twin would re-frame the body at an upstream folding `_` into `-`",
    },
    // The gateway's own: the token stays here, and the gateway alone says who the
    // client is and where the request went.
    any("authorization", "the token stays at the gateway"),
    any("host", "the gateway addresses the upstream by its own authority"),
    any("forwarded", "the gateway alone says who the client is (RFC 7239)"),
    any("x-forwarded-for", "the gateway alone says who the client is"),
    any("x-forwarded-proto", "the gateway alone says how the client connected"),
    any("x-forwarded-host", "the gateway alone says which host was asked for"),
    any("x-forwarded-port", "the gateway alone says how the client connected"),
    any(
        "x-forwarded-server",
        "the gateway alone says which server took the request",
    ),
    any("x-request-id", "the gateway names its requests"),
    // Method overrides: the policy judged the request's own method.
    any("x-http-method-override", "would change the method the policy judged"),
    any("x-http-method", "would change the method the policy judged"),
    any("x-method-override", "would change the method the policy judged"),
    any("x-original-method", "read as the request's method by some frameworks"),
    any("x-forwarded-method", "read as the request's method by some frameworks"),
    // Path rewrites: the policy judged the request's own path.
    any(
        "x-original-url",
        "read as the request's path (IIS URL Rewrite, Symfony): bypasses the path judged",
    ),
    any(
        "x-rewrite-url",
        "read as the request's path (IIS, old Symfony): bypasses the path judged",
    ),
    any(
        "x-forwarded-prefix",
        "prepended to paths and redirects by Spring and others",
    ),
    any("x-forwarded-uri", "read as the request's path by forward-auth setups"),
    // Client-IP claims: upstreams key rate limits, allow-lists and logs on them.
    any(
        "x-real-ip",
        "a client-IP claim (nginx); the gateway sends X-Forwarded-For",
    ),
    any("x-client-ip", "a client-IP claim; the gateway sends X-Forwarded-For"),
    any("client-ip", "a client-IP claim; the gateway sends X-Forwarded-For"),
    any(
        "true-client-ip",
        "a client-IP claim (Akamai, Cloudflare); the gateway sends X-Forwarded-For",
    ),
    any(
        "cf-connecting-ip",
        "a client-IP claim (Cloudflare); the gateway sends X-Forwarded-For",
    ),
    any(
        "x-cluster-client-ip",
        "a client-IP claim (load balancers); the gateway sends X-Forwarded-For",
    ),
    any(
        "x-proxyuser-ip",
        "a client-IP claim (Google proxies); the gateway sends X-Forwarded-For",
    ),
    // Remote-user claims: trusted as the authenticated user by many frameworks.
    any(
        "x-forwarded-user",
        "an identity claim (oauth2-proxy style); the gateway sends X-Auth-User",
    ),
    any("x-remote-user", "an identity claim; the gateway sends X-Auth-User"),
    any(
        "remote-user",
        "an identity claim (CGI REMOTE_USER); the gateway sends X-Auth-User",
    ),
    // httpoxy (CVE-2016-5385): CGI turns it into HTTP_PROXY, the upstream's outbound proxy.
    any("proxy", "httpoxy: becomes HTTP_PROXY in CGI-style upstreams"),
];

/// Whether a header name reads as an identity header: lower-cased and with `_` read as
/// `-`, it starts with `x-auth-`. (Header names arrive lower-cased from hyper.)
pub fn is_identity_header(name: &HeaderName) -> bool {
    let n = name.as_str().as_bytes();
    n.len() >= 7 && folded_eq(&n[..7], b"x-auth-")
}

/// Whether a header name equals `want` (lower-case, `-` separated) with `_` read as `-`.
/// `HeaderName`s are always lower-case (hyper folds HTTP/1.1 names; HTTP/2 refuses
/// upper-case ones), so no case folding is needed. No allocation, and most names differ
/// in length: this runs for every request header.
fn folded_eq(name: &[u8], want: &[u8]) -> bool {
    name.len() == want.len() && name.iter().zip(want).all(|(a, b)| a == b || (*a == b'_' && *b == b'-'))
}

/// Whether a client header is one the gateway removes (see [`STRIPPED`]).
pub fn is_stripped(name: &HeaderName) -> bool {
    let n = name.as_str().as_bytes();
    STRIPPED
        .iter()
        .any(|s| folded_eq(n, s.name.as_bytes()) && (s.spelling == Spelling::Any || n.contains(&b'_')))
        || is_identity_header(name)
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip(headers, |name| HOP_BY_HOP.contains(name));
}

/// Removes every header `unwanted` picks, and every header the `Connection` header
/// names. One scan over the headers present (a handful, usually) rather than one map
/// lookup per name that might be there.
pub fn strip(headers: &mut HeaderMap, unwanted: impl Fn(&HeaderName) -> bool) {
    let mut doomed: smallvec::SmallVec<[HeaderName; 8]> = smallvec::SmallVec::new();
    let mut connection = false;
    for name in headers.keys() {
        connection |= name == header::CONNECTION;
        if unwanted(name) && !doomed.contains(name) {
            doomed.push(name.clone());
        }
    }
    // The names `Connection` lists, matched against the headers present (a name is
    // lowercase there, and compared without case) rather than parsed into header names:
    // the usual `keep-alive` and `close` name no header and cost no allocation. Without a
    // `Connection` header (most requests and responses) there is no lookup for it.
    let listed = connection.then(|| headers.get_all(header::CONNECTION));
    for value in listed.iter().flatten() {
        for token in crate::upstream::connection_options(value.as_bytes()) {
            for name in headers.keys() {
                if name.as_str().as_bytes().eq_ignore_ascii_case(token) && !doomed.contains(name) {
                    doomed.push(name.clone());
                }
            }
        }
    }
    for name in &doomed {
        headers.remove(name);
    }
}

/// Whether a `Host` (or `:authority`) is a plain `host[:port]` fit to forward as
/// `X-Forwarded-Host`: a DNS name or IPv4 address (letters, digits, `-`, `.`, `_`), or an
/// IPv6 address in brackets, then optionally `:` and a port of 1 to 5 digits up to 65535.
/// Userinfo (`evil@x`), paths, lists and spaces are not hosts, and are not forwarded.
pub fn is_valid_host(value: &[u8]) -> bool {
    if value.is_empty() || value.len() > 255 {
        return false;
    }
    let (host, port) = if value[0] == b'[' {
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = std::str::from_utf8(&value[1..close]).ok();
        if inner.and_then(|s| s.parse::<std::net::Ipv6Addr>().ok()).is_none() {
            return false;
        }
        match &value[close + 1..] {
            [] => (&value[..=close], None),
            [b':', port @ ..] => (&value[..=close], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        }
    };
    let host_ok = host.first() == Some(&b'[')
        || (!host.is_empty()
            && host
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(p)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .is_some()
    });
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    // Identity headers are recognized whatever their case or separator.
    #[test]
    fn identity_header_forms() {
        for n in ["x-auth-user", "x_auth_user", "x-auth_roles", "x_auth-anything"] {
            assert!(
                is_identity_header(&HeaderName::from_bytes(n.as_bytes()).unwrap()),
                "{n}"
            );
        }
        for n in ["x-authority", "x-auth", "authorization", "x-autho-user"] {
            assert!(
                !is_identity_header(&HeaderName::from_bytes(n.as_bytes()).unwrap()),
                "{n}"
            );
        }
    }

    // Every listed name is in the folded form it is compared in, and listed once.
    #[test]
    fn stripped_list_is_folded() {
        for (i, s) in STRIPPED.iter().enumerate() {
            assert!(
                s.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit()),
                "{}",
                s.name
            );
            assert!(!s.reason.is_empty(), "{} has no reason", s.name);
            assert!(STRIPPED[i + 1..].iter().all(|o| o.name != s.name), "{} twice", s.name);
        }
        for h in &HOP_BY_HOP {
            assert!(is_stripped(h), "{h} is hop-by-hop but not stripped");
        }
        // Every entry is found, in every spelling it covers.
        for s in &STRIPPED {
            if s.name.contains('-') {
                let twin = HeaderName::from_bytes(s.name.replace('-', "_").as_bytes()).unwrap();
                assert!(is_stripped(&twin), "{twin}");
            }
            let own = HeaderName::from_bytes(s.name.as_bytes()).unwrap();
            assert_eq!(is_stripped(&own), s.spelling == Spelling::Any, "{own}");
        }
    }

    // Names are compared with `_` read as `-`; `Content-Length` itself is kept, only
    // its underscore twin goes; ordinary headers with `_` are kept.
    #[test]
    fn stripped_spellings() {
        let name = |n: &str| HeaderName::from_bytes(n.as_bytes()).unwrap();
        for n in [
            "transfer_encoding",
            "transfer-encoding",
            "content_length",
            "keep_alive",
            "proxy_connection",
            "x_original_url",
            "x-original-url",
            "x_forwarded_for",
            "x-proxyuser-ip",
            "proxy",
            "host",
            "x_auth_user",
        ] {
            assert!(is_stripped(&name(n)), "{n} kept");
        }
        for n in [
            "content-length",
            "content-type",
            "accept",
            "x-custom_thing",
            "proxyx",
            "x-forwarded",
        ] {
            assert!(!is_stripped(&name(n)), "{n} stripped");
        }
    }

    // Only a plain host[:port] is forwarded as X-Forwarded-Host.
    #[test]
    fn valid_hosts() {
        for h in [
            "localhost",
            "localhost:8443",
            "shop.example",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:443",
            "a_b.c:65535",
        ] {
            assert!(is_valid_host(h.as_bytes()), "{h}");
        }
        for h in [
            "", "evil@x", "u:p@x", "x/y", "x y", "x:", ":80", "x:0x1", "x:65536", "x:123456", "a,b", "[::1", "[nope]",
            "[::1]x", "[::1]:", "x:80:80", "x?y", "x#y",
        ] {
            assert!(!is_valid_host(h.as_bytes()), "{h:?}");
        }
    }
}
