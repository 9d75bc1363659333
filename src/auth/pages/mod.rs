//! The login pages: HTML forms over the same flows as the JSON API on the same paths
//! (maud templates compiled in, escaping by construction; no JavaScript needed).
//!
//! A `GET` of a page path, or a browser's `POST` whose body is a form
//! (`application/x-www-form-urlencoded`, with `Origin` or the gateway's cookies), is a
//! page's; `application/json` stays the API.
//! `POST /auth/logout` and `POST /auth/step-up` with the session cookie and no bearer
//! token are the cookie session's too. `html` is the layout and the responses, `form` the
//! request side (forms, CSRF, the cookie's caller); `login`, `account` and `recover` are
//! the pages, one group each.

pub mod account;
pub mod form;
pub mod html;
pub mod login;
pub mod recover;

use std::net::IpAddr;

use http::header::{AUTHORIZATION, ORIGIN};
use http::{Method, Request, Response};

use crate::auth::cookie::{cookie, CSRF_COOKIE, SESSION_COOKIE};
use crate::auth::service::AuthService;
use crate::error::GatewayError;
use crate::upstream::body::GatewayBody;
use crate::upstream::request::RequestBody;
use form::{csrf_ok, csrf_refused, is_form, query, read_form};

pub use html::STYLESHEET;

/// Whether the request at `path` (canonical) is a page's rather than the JSON API's.
pub fn serves<B>(auth: &AuthService, path: &str, req: &Request<B>) -> bool {
    let registration = auth.registration_enabled();
    let page_path = |p: &str| {
        matches!(
            p,
            "/auth/login" | "/auth/mfa" | "/auth/logout" | "/auth/password/forgot" | "/auth/password/reset"
        ) || (p == "/auth/register" && registration)
    };
    let headers = req.headers();
    let cookie_session = cookie(headers, SESSION_COOKIE).is_some() && !headers.contains_key(AUTHORIZATION);
    // A browser's form carries `Origin` or the gateway's cookies; a form-typed body
    // without either (curl's `-d` with JSON) stays the API's, as before: it could not
    // pass the CSRF check anyway.
    let browser = headers.contains_key(ORIGIN) || cookie(headers, CSRF_COOKIE).is_some() || cookie_session;
    match *req.method() {
        Method::GET => {
            matches!(
                path,
                "/auth/login" | "/auth/account" | "/auth/password/forgot" | "/auth/password/reset" | STYLESHEET
            ) || (path == "/auth/register" && registration)
        }
        Method::POST => {
            (is_form(headers) && browser && page_path(path))
                || (cookie_session && matches!(path, "/auth/logout" | "/auth/step-up"))
        }
        _ => false,
    }
}

/// Answers a page request ([`serves`] said yes).
pub async fn serve(
    auth: &AuthService,
    path: &str,
    req: Request<RequestBody>,
    request_id: &str,
    peer: IpAddr,
) -> Result<Response<GatewayBody>, GatewayError> {
    if req.method() == Method::GET {
        let headers = req.headers();
        return match path {
            "/auth/login" => Ok(login::get(headers, &query(&req))),
            "/auth/account" => account::get(auth, headers).await,
            "/auth/register" => Ok(recover::get_register(headers)),
            "/auth/password/forgot" => Ok(recover::get_forgot(headers)),
            "/auth/password/reset" => Ok(recover::get_reset(headers, &query(&req))),
            _ => Ok(html::stylesheet()),
        };
    }
    if !is_form(req.headers()) {
        return match path {
            "/auth/step-up" => account::step_up(auth, req, request_id, peer).await,
            _ => account::logout(auth, &req.headers().clone(), None, request_id, peer).await,
        };
    }
    let headers = req.headers().clone();
    let form = read_form(req).await?;
    if path == "/auth/logout" {
        return account::logout(auth, &headers, Some(&form), request_id, peer).await;
    }
    if !csrf_ok(auth, &headers, Some(&form)) {
        return Err(csrf_refused(auth, request_id, peer, None).await);
    }
    match path {
        "/auth/login" => login::post(auth, &headers, &form, request_id, peer).await,
        "/auth/mfa" => login::post_mfa(auth, &headers, &form, request_id, peer).await,
        "/auth/register" => recover::post_register(auth, &headers, &form, request_id, peer).await,
        "/auth/password/forgot" => recover::post_forgot(auth, &headers, &form, request_id, peer).await,
        _ => recover::post_reset(auth, &headers, &form, request_id, peer).await,
    }
}
