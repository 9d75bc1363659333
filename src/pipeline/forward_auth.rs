//! `/auth/verify`: forward-auth, the gateway deciding for another proxy (nginx
//! `auth_request`, Caddy `forward_auth`, Traefik `ForwardAuth`) without forwarding
//! anything.
//!
//! Only peers in `[forward_auth] trusted` are answered (403 otherwise). The method and
//! target asked about come from `X-Forwarded-Method` + `X-Forwarded-Uri`, or
//! `X-Original-Method` + `X-Original-URI`: exactly one pair, each header once (400
//! otherwise: a client could add the pair its proxy does not set). The target goes
//! through the gateway's normalizer, the credentials of the verify request through
//! [`credentials`], and the decision through the same [`authorize`] and route limits a
//! proxied request meets; the decision is audited and counted like one.
//!
//! Answers: 200 with the identity headers the upstream would get (`X-Auth-User`,
//! `X-Auth-Email`, `X-Auth-Roles`, `X-Auth-Attr-*`); 401 with `WWW-Authenticate` (and,
//! for a browser, `Location: /auth/login?next=PATH`); 403 for everything else the
//! gateway would refuse (no route, a refused target, a refused method, a rate limit).
//! The verify request's own method and body do not matter (nginx's subrequest keeps the
//! original method); the body is never read.

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, ACCEPT, LOCATION, RETRY_AFTER};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};

use super::authz::authorize;
use super::context::RequestContext;
use super::{audited::refusal_event, normalize, Pipeline};
use crate::auth::{AuthService, Verified};
use crate::error::{json_response, GatewayError};
use crate::upstream::body::GatewayBody;
use crate::upstream::request::RequestBody;

/// The path of the forward-auth endpoint.
pub const PATH: &str = "/auth/verify";

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");

/// The credentials of the question, as the authn phase finds them: the bearer token, or
/// else the session cookie the browser sent the other proxy (which passes the client's
/// headers on). A cookie caller asking about an unsafe method must pass the CSRF check
/// with the client's `Origin` or `X-CSRF-Token`, as at the gateway itself.
pub async fn credentials(
    auth: &AuthService,
    method: &Method,
    headers: &HeaderMap,
    public_url: &http::Uri,
) -> Result<Option<Arc<Verified>>, GatewayError> {
    let (caller, by_cookie) = super::authn::credentials(auth, headers).await?;
    if by_cookie {
        crate::auth::browser::check(method, headers, public_url)?;
    }
    Ok(caller)
}

/// Why the question itself is ill-formed (400); a fixed text, never the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadQuestion {
    /// Neither pair of headers.
    Missing,
    /// Headers of both pairs, half a pair, or one of them more than once.
    Ambiguous,
    /// The method is not a method, or the target not a path (origin form).
    Invalid,
}

impl BadQuestion {
    fn message(self) -> &'static str {
        match self {
            Self::Missing => {
                "forward-auth needs X-Forwarded-Method and X-Forwarded-Uri, or X-Original-Method and X-Original-URI"
            }
            Self::Ambiguous => {
                "send exactly one pair, each header once: X-Forwarded-Method and X-Forwarded-Uri, or X-Original-Method and X-Original-URI"
            }
            Self::Invalid => "the forwarded method must be an HTTP method and the forwarded URI a path, e.g. /api/orders?page=2",
        }
    }
}

/// The method and target another proxy asks about.
pub fn question(headers: &HeaderMap) -> Result<(Method, Uri), BadQuestion> {
    let one = |name: &HeaderName| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => Ok(Some(v)),
            (Some(_), Some(_)) => Err(BadQuestion::Ambiguous),
        }
    };
    let forwarded = (one(&X_FORWARDED_METHOD)?, one(&X_FORWARDED_URI)?);
    let original = (one(&X_ORIGINAL_METHOD)?, one(&X_ORIGINAL_URI)?);
    let (method, uri) = match (forwarded, original) {
        ((Some(m), Some(u)), (None, None)) | ((None, None), (Some(m), Some(u))) => (m, u),
        ((None, None), (None, None)) => return Err(BadQuestion::Missing),
        _ => return Err(BadQuestion::Ambiguous),
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| BadQuestion::Invalid)?;
    if uri.as_bytes().first() != Some(&b'/') {
        return Err(BadQuestion::Invalid);
    }
    let uri =
        Uri::from_maybe_shared(bytes::Bytes::copy_from_slice(uri.as_bytes())).map_err(|_| BadQuestion::Invalid)?;
    if uri.authority().is_some() || uri.scheme().is_some() {
        return Err(BadQuestion::Invalid);
    }
    Ok((method, uri))
}

impl Pipeline {
    /// Answers `/auth/verify` (see the module's documentation).
    pub(super) async fn forward_auth(
        &self,
        req: Request<RequestBody>,
        ctx: &mut RequestContext,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        ctx.endpoint = Some(crate::metrics::ROUTE_FORWARD_AUTH);
        if !self.config.forward_auth.trusted.contains(ctx.conn.peer.ip()) {
            return Err(GatewayError::Forbidden {
                reason: format!(
                    "forward-auth: peer {} is not in [forward_auth] trusted",
                    ctx.conn.peer.ip()
                ),
            });
        }
        let (method, uri) = match question(req.headers()) {
            Ok(q) => q,
            Err(bad) => {
                tracing::info!(request_id = %ctx.id, reason = ?bad, "forward-auth: ill-formed question");
                let body =
                    serde_json::json!({ "error": "bad_request", "message": bad.message(), "request_id": ctx.id });
                return Ok(json_response(StatusCode::BAD_REQUEST, &body));
            }
        };
        ctx.method = method;
        match self.decide(&req, &uri, ctx).await {
            Ok(caller) => {
                let mut resp = Response::new(GatewayBody::empty());
                if let Some(caller) = caller {
                    caller.identity.insert_into(resp.headers_mut());
                }
                Ok(resp)
            }
            Err(err) => self.refuse(err, &req, &uri, ctx),
        }
    }

    /// The decision a proxied request with this method and target would meet, up to
    /// (not including) forwarding it: the caller it is allowed for, if any.
    async fn decide(
        &self,
        req: &Request<RequestBody>,
        uri: &Uri,
        ctx: &mut RequestContext,
    ) -> Result<Option<Arc<Verified>>, GatewayError> {
        // A refusal from here on is audited, naming the target asked about.
        ctx.proxied = true;
        let target = normalize::normalize_request(&ctx.method, uri, req.version(), req.headers())
            .inspect_err(|_| ctx.canonical = Some(uri.path().to_owned()))?;
        ctx.canonical = Some(target.path.clone());
        ctx.caller = credentials(&self.auth, &ctx.method, req.headers(), &self.config.server.public_url).await?;
        let now = if ctx.caller.is_some() {
            self.auth.clock().now()
        } else {
            0
        };
        let mut probe = Request::new(());
        *probe.method_mut() = ctx.method.clone();
        let judgement = authorize(
            self.policy.load_full(),
            probe,
            target,
            ctx.caller.clone(),
            now,
            self.config.shadow,
        )?;
        let authorized = self.admit(judgement, ctx);
        self.route_limits
            .check(authorized.route(), authorized.principal(), ctx.client)
            .await?;
        Ok(ctx.caller.clone())
    }

    /// The answer to a refused decision: 401 or 403, audited like the proxied request's
    /// refusal; the gateway's own failures (store, internal) are passed on as they are.
    fn refuse(
        &self,
        err: GatewayError,
        req: &Request<RequestBody>,
        uri: &Uri,
        ctx: &mut RequestContext,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let mut resp = match &err {
            GatewayError::Unauthenticated { .. }
            | GatewayError::TokenRefused(_)
            | GatewayError::InsufficientUserAuthentication { .. } => {
                let mut resp = err.to_response(&ctx.id);
                if wants_html(req.headers()) {
                    if let Some(location) = login_location(ctx.canonical.as_deref().unwrap_or(uri.path())) {
                        resp.headers_mut().insert(LOCATION, location);
                    }
                }
                resp
            }
            GatewayError::Forbidden { .. } => err.to_response(&ctx.id),
            GatewayError::NoRoute
            | GatewayError::BadTarget(_)
            | GatewayError::MethodNotAllowed(_)
            | GatewayError::RateLimited { .. }
            | GatewayError::RouteRateLimited { .. } => {
                let mut resp = GatewayError::Forbidden {
                    reason: err.to_string(),
                }
                .to_response(&ctx.id);
                if let GatewayError::RateLimited { retry_after } | GatewayError::RouteRateLimited { retry_after, .. } =
                    &err
                {
                    // Whole seconds, rounded up, as the gateway's own 429 says it.
                    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                    resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
                }
                resp
            }
            _ => return Err(err),
        };
        *resp.status_mut() = match resp.status() {
            StatusCode::UNAUTHORIZED => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        };
        // Refused: no `request` record even on a route with `audit = true`.
        ctx.audit_route = false;
        tracing::info!(request_id = %ctx.id, reason = %err, status = resp.status().as_u16(), "forward-auth refused");
        if let Some(event) = refusal_event(&err, ctx.proxied) {
            self.audit_request(ctx, PATH, event, resp.status().as_u16(), Some(err.to_string()));
        }
        Ok(resp)
    }
}

/// Whether the request is a browser's: its `Accept` names `text/html`.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("text/html")))
}

/// `/auth/login?next=PATH`, `PATH` (a canonical path, never a query or a host)
/// percent-encoded: only unreserved characters and `/` are left as they are.
pub fn login_location(path: &str) -> Option<HeaderValue> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(18 + path.len() * 3);
    out.push_str("/auth/login?next=");
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    HeaderValue::from_str(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    // Either pair, each once; neither, both, half a pair or a repeated header is refused;
    // the target must be a path.
    #[test]
    fn the_question() {
        let (m, u) = question(&headers(&[
            ("x-forwarded-method", "POST"),
            ("x-forwarded-uri", "/api/x?y=1"),
        ]))
        .unwrap();
        assert_eq!((m, u.path(), u.query()), (Method::POST, "/api/x", Some("y=1")));
        let (m, u) = question(&headers(&[("x-original-method", "GET"), ("x-original-uri", "/a/../b")])).unwrap();
        assert_eq!((m, u.path()), (Method::GET, "/a/../b"));
        let bad = |pairs: &[(&str, &str)]| question(&headers(pairs)).unwrap_err();
        assert_eq!(bad(&[]), BadQuestion::Missing);
        assert_eq!(bad(&[("x-forwarded-method", "GET")]), BadQuestion::Ambiguous);
        assert_eq!(
            bad(&[("x-forwarded-method", "GET"), ("x-original-uri", "/a")]),
            BadQuestion::Ambiguous
        );
        assert_eq!(
            bad(&[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/public"),
                ("x-original-method", "GET"),
                ("x-original-uri", "/admin"),
            ]),
            BadQuestion::Ambiguous
        );
        assert_eq!(
            bad(&[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/a"),
                ("x-forwarded-uri", "/b")
            ]),
            BadQuestion::Ambiguous
        );
        for uri in ["api", "https://evil.example/api", "*", ""] {
            assert_eq!(
                bad(&[("x-forwarded-method", "GET"), ("x-forwarded-uri", uri)]),
                BadQuestion::Invalid,
                "{uri}"
            );
        }
        assert_eq!(
            bad(&[("x-forwarded-method", "G T"), ("x-forwarded-uri", "/")]),
            BadQuestion::Invalid
        );
    }

    // The login redirect names the path only, percent-encoded.
    #[test]
    fn login_redirect() {
        assert_eq!(login_location("/api/orders").unwrap(), "/auth/login?next=/api/orders");
        assert_eq!(
            login_location("/a%20b/c&d=e?f#g").unwrap(),
            "/auth/login?next=/a%2520b/c%26d%3De%3Ff%23g"
        );
    }
}
