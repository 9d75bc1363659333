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
//!
//! An HTTP/2 request with more than `[limits] max_headers` headers is refused here with
//! 431 (hyper holds HTTP/1.1 to the count itself). The path rules are [`crate::path`]'s.

use http::{HeaderMap, Method, Uri, Version};

use crate::error::GatewayError;
/// The path rules live in the leaf [`crate::path`]; re-exported for the normalizer's callers.
pub use crate::path::{canonical_path, Refusal};

/// The judged target: canonical path and the query as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: String,
    pub query: Option<String>,
}

impl Target {
    /// Whether `received` (the request's own path and query) is already this target
    /// byte for byte, as it is for most requests: then it is forwarded as it came,
    /// with no new string built and checked.
    pub fn is_verbatim(&self, received: &http::uri::PathAndQuery) -> bool {
        received.path() == self.path && received.query() == self.query.as_deref()
    }

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

/// The normalize phase: holds HTTP/2 requests to `max_headers` (hyper holds HTTP/1.1 to
/// the header count with its own 431), then checks method and target.
pub fn normalize<B>(req: &http::Request<B>, max_headers: usize) -> Result<Target, GatewayError> {
    if req.headers().len() > max_headers {
        return Err(GatewayError::HeadersTooLarge { limit: max_headers });
    }
    normalize_request(req.method(), req.uri(), req.version(), req.headers())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::Refusal;

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
}
