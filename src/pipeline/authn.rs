//! Phase 2: a bearer token, or else the session cookie, becomes a
//! [`Principal`](crate::policy::Principal), or the caller is anonymous.
//!
//! The token is read and verified by the auth service ([`AuthService::authenticate`]).
//! A header that is present but not a valid, unrevoked access token is refused outright
//! (401 with `WWW-Authenticate: Bearer error="invalid_token"`), even on public routes: a
//! client holding a bad token should learn so rather than be served as anonymous.
//! Without `Authorization`, the `__Host-portcullis` cookie is resolved
//! ([`AuthService::authenticate_cookie`]); a stale cookie leaves the caller anonymous, so
//! a browser is sent to log in again. With both, the bearer token wins.

use std::sync::Arc;

use http::header::{HeaderValue, ACCEPT, LOCATION};
use http::{HeaderMap, Method, Request, Response, StatusCode};

use crate::auth::cookie::{cookie, SESSION_COOKIE};
use crate::auth::{AuthService, Verified};
use crate::error::GatewayError;
use crate::upstream::body::GatewayBody;

/// Verifies the bearer token of a request, when there is one.
#[inline]
pub fn authenticate(auth: &AuthService, headers: &HeaderMap) -> Result<Option<Arc<Verified>>, GatewayError> {
    auth.authenticate(headers)
}

/// The caller of a request, and whether the session cookie (not a bearer token) made it
/// one: the bearer token when there is one, else the session cookie.
#[inline]
pub async fn credentials(
    auth: &AuthService,
    headers: &HeaderMap,
) -> Result<(Option<Arc<Verified>>, bool), GatewayError> {
    if let Some(caller) = auth.authenticate(headers)? {
        return Ok((Some(caller), false));
    }
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok((None, false));
    };
    let caller = auth.authenticate_cookie(id).await?;
    let by_cookie = caller.is_some();
    Ok((caller, by_cookie))
}

/// Whether an anonymous request is a browser's navigation: a `GET` whose `Accept`
/// includes `text/html`.
pub fn wants_login_page<B>(req: &Request<B>) -> bool {
    req.method() == Method::GET
        && req
            .headers()
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| {
                t.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/html"))
            })
}

/// `302 Found` to the login page at `location` (made by
/// [`login_location`](crate::auth::browser::login_location)).
pub fn login_redirect(location: &str) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::empty());
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp.headers_mut()
        .insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
