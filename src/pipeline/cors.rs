//! CORS in front of the API (`[cors]`): the gateway answers preflights itself and owns
//! the `Access-Control-*` headers of every answer.
//!
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) never
//!   reaches the upstream and needs no token. A path and method no route (or `/auth/`
//!   endpoint) serves gets the same 404 as the request itself would; an origin, method
//!   or header that is not allowed, or a route with `cors = false`, gets 403 without
//!   any CORS header; otherwise 204 with them.
//! - Any other answer to a request from an allowed origin (the upstream's, or the
//!   gateway's own errors and `/auth/` answers) carries `Access-Control-Allow-Origin`
//!   (the origin itself, or `*` when `"*"` is configured, never with credentials), and
//!   `Vary: Origin` goes on every answer to a request with an `Origin`.
//! - The upstream's own `Access-Control-*` headers are removed from every answer.
//!
//! Without `[cors]` none of this runs; with it, a request without `Origin` costs the
//! removal of those headers and one header lookup.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{Method, Request, Response, StatusCode};

use super::context::RequestContext;
use super::endpoints::Endpoint;
use crate::config::{Cors, CorsOrigins};
use crate::error::GatewayError;
use crate::policy::PolicySet;
use crate::upstream::body::GatewayBody;

/// The most headers one preflight may ask for.
const MAX_REQUESTED_HEADERS: usize = 64;

static ANY: HeaderValue = HeaderValue::from_static("*");
static TRUE: HeaderValue = HeaderValue::from_static("true");
static VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");
static VARY_PREFLIGHT: HeaderValue =
    HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers");

/// The headers an upstream may not set itself while the gateway owns CORS.
const OWNED: [HeaderName; 6] = [
    ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_ALLOW_CREDENTIALS,
    ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_EXPOSE_HEADERS,
    ACCESS_CONTROL_MAX_AGE,
];

/// `[cors]` with its answers' header values made once.
pub struct CorsPolicy {
    config: Cors,
    allow_methods: HeaderValue,
    allow_headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
    /// `[registration] enabled`: without it `/auth/register` and `/auth/confirm` are no
    /// endpoints, for preflights too.
    registration: bool,
}

/// `a, b, c`, or `None` for an empty list.
fn joined<'a>(items: impl Iterator<Item = &'a str>) -> Option<HeaderValue> {
    let s = items.collect::<Vec<_>>().join(", ");
    (!s.is_empty()).then(|| HeaderValue::from_str(&s).ok()).flatten()
}

impl CorsPolicy {
    pub fn new(config: &Cors, registration: bool) -> Self {
        if config.allows_null() {
            tracing::warn!(
                "[cors] allowed_origins lists \"null\": sandboxed frames and local files of any site share that origin"
            );
        }
        if !config.headers.contains(&http::header::AUTHORIZATION) {
            tracing::warn!(
                "[cors] allowed_headers leaves out authorization: pages on the allowed origins cannot send a token"
            );
        }
        Self {
            allow_methods: joined(config.methods.iter().map(Method::as_str)).unwrap_or_else(|| ANY.clone()),
            allow_headers: joined(config.headers.iter().map(HeaderName::as_str)),
            expose: joined(config.expose_headers.iter().map(HeaderName::as_str)),
            max_age: HeaderValue::from(config.max_age.as_secs()),
            registration,
            config: config.clone(),
        }
    }

    /// The gateway's CORS, when `[cors]` is set.
    pub fn of(config: &crate::config::Config) -> Option<Self> {
        config.cors.as_ref().map(|c| Self::new(c, config.registration.enabled))
    }

    /// The request is a CORS preflight.
    pub fn is_preflight<B>(req: &Request<B>) -> bool {
        req.method() == Method::OPTIONS
            && req.headers().contains_key(ORIGIN)
            && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// Answers a preflight for the canonical `path` (see the module's rules). The error's
    /// reason is for the log line; the client sees only the generic 403 or 404.
    pub fn preflight(
        &self,
        headers: &HeaderMap,
        path: &str,
        policy: &PolicySet,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let refused = |reason: &str| GatewayError::Forbidden {
            reason: format!("CORS preflight refused: {reason}"),
        };
        let method = headers
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .ok_or_else(|| refused("Access-Control-Request-Method is not a method"))?;
        // The same 404 as the request itself would get: CORS tells no more about paths.
        let route_cors = match Endpoint::of(path) {
            Some(Endpoint::Auth) => crate::auth::http::endpoint_method(path, self.registration)
                .filter(|m| *m == method)
                .map(|_| true),
            Some(
                Endpoint::Health | Endpoint::Ready | Endpoint::Jwks | Endpoint::OpenIdConfiguration | Endpoint::Metrics,
            ) => (method == Method::GET || method == Method::HEAD).then_some(true),
            None => policy.routed(&method, path),
        };
        let route_cors = route_cors.ok_or(GatewayError::NoRoute)?;
        let origin = headers.get(ORIGIN).map(HeaderValue::as_bytes).unwrap_or_default();
        if !self.config.allows(origin) {
            return Err(refused("origin not allowed"));
        }
        if !route_cors {
            return Err(refused("the route has cors = false"));
        }
        if !self.config.methods.contains(&method) {
            return Err(refused("method not in [cors] allowed_methods"));
        }
        let mut asked = 0;
        for value in headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS) {
            let list = value
                .to_str()
                .map_err(|_| refused("unreadable Access-Control-Request-Headers"))?;
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                asked += 1;
                if asked > MAX_REQUESTED_HEADERS
                    || !self
                        .config
                        .headers
                        .iter()
                        .any(|h| h.as_str().eq_ignore_ascii_case(name))
                {
                    return Err(refused("header not in [cors] allowed_headers"));
                }
            }
        }

        let mut resp = Response::new(GatewayBody::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        self.allow_origin(h, origin);
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, self.allow_methods.clone());
        if let Some(v) = &self.allow_headers {
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        h.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        h.insert(VARY, VARY_PREFLIGHT.clone());
        Ok(resp)
    }

    /// `Access-Control-Allow-Origin` (and `-Credentials`) for an allowed origin.
    fn allow_origin(&self, h: &mut HeaderMap, origin: &[u8]) {
        let value = match &self.config.origins {
            CorsOrigins::Any => ANY.clone(),
            CorsOrigins::List(_) => match HeaderValue::from_bytes(origin) {
                Ok(v) => v,
                Err(_) => return,
            },
        };
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, value);
        if self.config.allow_credentials {
            h.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
        }
    }

    /// Sets the CORS headers of an answer. `origin`: the request's `Origin`;
    /// `route_cors`: the route that served it (if any) allows CORS; `preflight`: the
    /// answer is to a preflight (already complete when it was accepted).
    pub fn finish(
        &self,
        resp: &mut Response<GatewayBody>,
        origin: Option<&HeaderValue>,
        route_cors: bool,
        preflight: bool,
    ) {
        let h = resp.headers_mut();
        if preflight && h.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
            return;
        }
        for name in &OWNED {
            h.remove(name);
        }
        let Some(origin) = origin else { return };
        h.append(VARY, VARY_ORIGIN.clone());
        if preflight || !route_cors || !self.config.allows(origin.as_bytes()) {
            return;
        }
        self.allow_origin(h, origin.as_bytes());
        if let Some(v) = &self.expose {
            h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
        }
    }
}

/// The request's `Origin`, kept for [`finish`] when `[cors]` is set (a shared copy of
/// the header's bytes, no allocation); `None` at once without `[cors]`.
pub fn origin(cors: Option<&CorsPolicy>, headers: &HeaderMap) -> Option<HeaderValue> {
    cors.and_then(|_| headers.get(ORIGIN).cloned())
}

/// Answers `req` when it is a CORS preflight and `[cors]` is set (`path`: its canonical
/// path); `None` lets the request go on.
pub fn preflight<B>(
    cors: Option<&CorsPolicy>,
    req: &Request<B>,
    path: &str,
    policy: &arc_swap::ArcSwap<PolicySet>,
    ctx: &mut RequestContext,
) -> Option<Result<Response<GatewayBody>, GatewayError>> {
    let cors = cors.filter(|_| CorsPolicy::is_preflight(req))?;
    ctx.preflight = true;
    ctx.endpoint = Some(crate::metrics::ROUTE_GATEWAY);
    Some(cors.preflight(req.headers(), path, &policy.load()))
}

/// Sets the CORS headers of the answer to a request with `origin` when `[cors]` is set
/// (see [`CorsPolicy::finish`]); a route with `cors = false` gets none.
pub fn finish(
    cors: Option<&CorsPolicy>,
    resp: &mut Response<GatewayBody>,
    origin: Option<&HeaderValue>,
    ctx: &RequestContext,
) {
    if let Some(cors) = cors {
        let route_cors = ctx.route.as_ref().is_none_or(|r| r.route().cors);
        cors.finish(resp, origin, route_cors, ctx.preflight);
    }
}
