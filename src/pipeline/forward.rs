//! Phase 5: forward an [`Authorized`] request to its upstream.
//!
//! Header hygiene is done here and only here, as data: [`STRIPPED`] lists every client
//! header removed, each with its reason (hop-by-hop headers, RFC 9110 §7.6.1, and those
//! named in `Connection`; `Authorization`; method overrides; path rewrites; client-IP and
//! remote-user claims; httpoxy's `Proxy`; forwarding headers), plus every header that
//! reads as `x-auth-*`. Names are compared case-insensitively with `_` read as `-`, in
//! one scan and without allocating, so an underscore twin (`Transfer_Encoding`) goes
//! too. Then the gateway adds its own `X-Forwarded-*` (`X-Forwarded-Host` only when the
//! client's host is a valid host[:port]), `X-Request-Id` and identity headers. Bodies
//! stream both ways; the request body is bounded by `max_body`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body_util::Limited;

use super::authz::Authorized;
use super::pool::Pool;
pub use crate::auth::identity::{IdentityHeaders, X_AUTH_EMAIL, X_AUTH_ROLES, X_AUTH_USER};
use crate::body::{GatewayBody, RequestBody};
use crate::config::{Config, Upstream};
use crate::error::GatewayError;

/// The request body sent upstream: the client's, cut off at `max_body`.
pub type UpstreamBody = Limited<RequestBody>;

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy `Keep-Alive` and
/// `Proxy-Connection`): meaningful for one connection only, never forwarded.
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

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

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

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
fn strip(headers: &mut HeaderMap, unwanted: impl Fn(&HeaderName) -> bool) {
    let mut doomed: smallvec::SmallVec<[HeaderName; 8]> = smallvec::SmallVec::new();
    for name in headers.keys() {
        if unwanted(name) && !doomed.contains(name) {
            doomed.push(name.clone());
        }
    }
    if headers.contains_key(header::CONNECTION) {
        let named = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok());
        doomed.extend(named);
    }
    for name in &doomed {
        headers.remove(name);
    }
}

/// Whether a `Host` (or `:authority`) is a plain host[:port] fit to forward as
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

/// What the gateway knows about the client connection, for the forwarding headers.
#[derive(Debug, Clone)]
pub struct ClientInfo<'a> {
    pub peer_ip: IpAddr,
    pub tls: bool,
    /// The host the client asked for (`Host` or `:authority`).
    pub host: Option<&'a HeaderValue>,
    pub request_id: &'a str,
    /// The connection worker the request runs on: it picks that worker's upstream pool.
    pub worker: usize,
    /// The caller's identity headers, made when its token was first verified; without
    /// them they are made from the authorized principal.
    pub identity: Option<&'a IdentityHeaders>,
}

/// Rewrites a client's request headers into what the upstream receives.
pub fn rewrite_request_headers(headers: &mut HeaderMap, client: &ClientInfo<'_>, authorized: &Authorized) {
    strip(headers, is_stripped);

    headers.insert(X_FORWARDED_FOR, ip_header(client.peer_ip));
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if client.tls { "https" } else { "http" }),
    );
    // Only a well-formed host: the client's Host is otherwise passed on verbatim.
    if let Some(host) = client.host.filter(|h| is_valid_host(h.as_bytes())) {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    if let Ok(id) = HeaderValue::from_str(client.request_id) {
        headers.insert(X_REQUEST_ID, id);
    }
    if let Some(p) = authorized.principal() {
        match client.identity {
            Some(identity) => identity.insert_into(headers),
            None => IdentityHeaders::of(p).insert_into(headers),
        }
    }
}

fn ip_header(ip: IpAddr) -> HeaderValue {
    use std::io::Write;
    // Formatted on the stack: the longest IPv6 text is 45 bytes. An IP address always
    // formats as a valid header value.
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let len = usize::try_from(cursor.position()).unwrap_or(0);
    HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static("unknown"))
}

struct UpstreamTarget {
    upstream: Upstream,
    /// `Host` for this upstream, made once (clones share the bytes).
    host: HeaderValue,
    /// One keep-alive pool per connection worker. A request uses its worker's pool, so
    /// the upstream connection it gets runs on the same thread as the request.
    pools: Vec<Arc<Pool>>,
}

/// The upstreams of the configuration, each with keep-alive pools per connection worker.
pub struct Upstreams {
    targets: HashMap<String, UpstreamTarget>,
    timeout: Duration,
    max_body: u64,
}

impl Upstreams {
    pub fn new(config: &Config) -> Self {
        let targets = config
            .upstreams
            .iter()
            .map(|(name, upstream)| {
                let addr = format!(
                    "{}:{}",
                    upstream.authority.host(),
                    upstream.authority.port_u16().unwrap_or(80)
                );
                let connect_timeout = config.limits.upstream_timeout.min(Duration::from_secs(10));
                let pools = (0..config.server.workers.max(1))
                    .map(|_| Arc::new(Pool::new(addr.clone(), connect_timeout, &config.limits)))
                    .collect();
                (
                    name.clone(),
                    UpstreamTarget {
                        upstream: upstream.clone(),
                        host: HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(
                            upstream.authority.as_str().as_bytes(),
                        ))
                        .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
                        pools,
                    },
                )
            })
            .collect();
        Self {
            targets,
            timeout: config.limits.upstream_timeout,
            max_body: config.limits.max_body,
        }
    }

    /// Closes the upstream connections idle for longer than the upstream idle timeout.
    pub fn reap(&self) {
        for target in self.targets.values() {
            for pool in &target.pools {
                pool.reap();
            }
        }
    }

    pub fn max_body(&self) -> u64 {
        self.max_body
    }

    /// Sends an authorized request upstream and returns the upstream's response, with
    /// its hop-by-hop headers removed and its body streamed.
    pub async fn forward(
        &self,
        authorized: &Authorized,
        req: Request<RequestBody>,
        client: &ClientInfo<'_>,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let name = &authorized.route().upstream;
        let target = self.targets.get(name).ok_or_else(|| {
            // Policies are validated against the configured upstreams; reaching this is a bug.
            GatewayError::Internal(format!("route names unknown upstream {name:?}").into())
        })?;

        let (mut parts, mut body) = req.into_parts();
        let progress = body.progress();
        if let Some(len) = parts.headers.get(header::CONTENT_LENGTH) {
            let len = len.to_str().ok().and_then(|s| s.parse::<u64>().ok());
            if len.is_some_and(|n| n > self.max_body) {
                return Err(GatewayError::PayloadTooLarge { limit: self.max_body });
            }
        }
        rewrite_request_headers(&mut parts.headers, client, authorized);
        // The upstream's own authority, as the client would set it (it is told not to).
        parts.headers.insert(header::HOST, target.host.clone());

        let up = &target.upstream;
        let path = authorized.target().path_and_query_under(&up.base_path);
        // Origin form: the connection already is to the upstream.
        let mut uri = http::uri::Parts::default();
        uri.path_and_query =
            Some(http::uri::PathAndQuery::try_from(path).map_err(|e| GatewayError::Internal(e.into()))?);
        parts.uri = Uri::from_parts(uri).map_err(|e| GatewayError::Internal(e.into()))?;
        parts.version = Version::HTTP_11;
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        let upstream_req = Request::from_parts(parts, Limited::new(body, limit));

        let pool = &target.pools[client.worker % target.pools.len()];
        // The upstream's time runs while the gateway waits on the upstream, not while
        // it waits on a client still sending the body (the body's own deadlines bound
        // that): the timer is re-armed whenever it finds the client the one awaited.
        let send = pool.send(upstream_req);
        tokio::pin!(send);
        let timer = tokio::time::sleep(self.timeout);
        tokio::pin!(timer);
        let sent = loop {
            tokio::select! {
                sent = &mut send => break sent,
                () = &mut timer => {
                    if progress.as_ref().is_some_and(crate::body::BodyProgress::waiting_on_client) {
                        timer.as_mut().reset(tokio::time::Instant::now() + self.timeout);
                        continue;
                    }
                    return Err(GatewayError::UpstreamTimeout {
                        upstream: name.clone(),
                        timeout: self.timeout,
                    });
                }
            }
        };
        let response = match sent {
            Err(e) => {
                // The client's body failing (too long, too slow, malformed) is the
                // client's fault, not the upstream's.
                if let Some(client_fault) = crate::error::client_body_error(&*e, self.max_body) {
                    return Err(client_fault);
                }
                return Err(GatewayError::UpstreamUnreachable {
                    upstream: name.clone(),
                    source: e,
                });
            }
            Ok(r) => r,
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, GatewayBody::Upstream(body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::authz::authorize;
    use crate::pipeline::normalize::Target;
    use crate::policy::{PolicySet, Principal};
    use http::Method;
    use std::path::Path;
    use std::sync::Arc;

    fn authorized(principal: Option<Principal>) -> Authorized {
        let src = "upstream = \"shop\"\n[[route]]\nmethods = [\"GET\"]\npath = \"/x\"\nroles = [\"customer\"]\n[[route]]\nmethods = [\"GET\"]\npath = \"/p\"\npublic = true\n";
        let set = Arc::new(PolicySet::from_source(Path::new("t.toml"), src, &|_| true).unwrap());
        let path = if principal.is_some() { "/x" } else { "/p" };
        let target = Target {
            path: path.into(),
            query: None,
        };
        authorize(set, &Method::GET, target, principal.map(Arc::new), false).unwrap()
    }

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

    // Spoofed identity, credentials, overrides and hop-by-hop headers are removed, and
    // the gateway's own forwarding and identity headers replace the client's.
    #[test]
    fn rewrite_removes_and_sets() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-auth-user", "admin"),
            ("x_auth_roles", "admin"),
            ("X-AUTH-EMAIL", "a@b"),
            ("authorization", "Bearer secret"),
            ("x-http-method-override", "DELETE"),
            ("x-forwarded-for", "1.2.3.4"),
            ("connection", "close, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("accept", "application/json"),
        ] {
            h.append(
                HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let host: HeaderValue = "localhost:8443".parse().unwrap();
        let client = ClientInfo {
            peer_ip: "127.0.0.7".parse().unwrap(),
            tls: true,
            host: Some(&host),
            request_id: "req-9",
            worker: 0,
            identity: None,
        };
        let who = Principal {
            id: "u-1".into(),
            email: "c@example.com".into(),
            roles: vec!["customer".into()],
            mfa: false,
        };
        rewrite_request_headers(&mut h, &client, &authorized(Some(who)));
        for gone in [
            "authorization",
            "x-http-method-override",
            "connection",
            "x-custom-hop",
            "keep-alive",
            "te",
            "upgrade",
        ] {
            assert!(!h.contains_key(gone), "{gone} kept");
        }
        assert_eq!(h["x-auth-user"], "u-1");
        assert_eq!(h["x-auth-email"], "c@example.com");
        assert_eq!(h["x-auth-roles"], "customer");
        assert!(!h.contains_key("x_auth_roles"));
        assert_eq!(h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), ["127.0.0.7"]);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "localhost:8443");
        assert_eq!(h["x-request-id"], "req-9");
        assert_eq!(h["accept"], "application/json");
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

    // An anonymous request on a public route carries no identity headers at all.
    #[test]
    fn anonymous_has_no_identity() {
        let mut h = HeaderMap::new();
        h.insert("x-auth-user", "admin".parse().unwrap());
        let client = ClientInfo {
            peer_ip: "127.0.0.1".parse().unwrap(),
            tls: false,
            host: None,
            request_id: "r",
            worker: 0,
            identity: None,
        };
        rewrite_request_headers(&mut h, &client, &authorized(None));
        assert!(h.keys().all(|k| !k.as_str().starts_with("x-auth")));
        assert_eq!(h["x-forwarded-proto"], "http");
    }
}
