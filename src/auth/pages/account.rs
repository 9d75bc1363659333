//! The signed-in page, logging out, and step-up with a cookie session: the same flows as
//! the JSON API (`logout`, `step_up`), over the session cookie.

use std::net::IpAddr;

use http::{HeaderMap, Request, Response, StatusCode};
use maud::html;
use serde::Deserialize;

use super::form::{cookie_caller, csrf_ok, csrf_refused, csrf_value, finish, Form};
use super::html::{csrf_field, no_content, page, respond, see_other};
use crate::auth::body::read_json;
use crate::auth::cookie::{cleared_cookies, cookie, session_set_cookie, SESSION_COOKIE};
use crate::auth::service::AuthService;
use crate::error::{BodyProblem, GatewayError};
use crate::upstream::body::GatewayBody;
use crate::upstream::request::RequestBody;

/// `GET /auth/account`: who is signed in, and the logout button; without a session,
/// 303 to the login page.
pub async fn get(auth: &AuthService, headers: &HeaderMap) -> Result<Response<GatewayBody>, GatewayError> {
    let Some(caller) = cookie_caller(auth, headers).await? else {
        return Ok(see_other("/auth/login", &[]));
    };
    let (csrf, cookies) = csrf_value(headers);
    let p = &caller.principal;
    let markup = page(
        "Signed in",
        html! {
            p { "Signed in as " strong { (p.email) } }
            p { "Roles: "
                @if p.roles.is_empty() { em { "none" } }
                @for (i, r) in p.roles.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (r) }
                }
            }
            p { "Second factor: " (if p.mfa { "passed" } else { "not used in this session" }) }
            form method="post" action="/auth/logout" {
                (csrf_field(&csrf))
                button type="submit" { "Log out" }
            }
        },
    );
    Ok(respond(StatusCode::OK, markup, &cookies))
}

/// `POST /auth/logout` with the session cookie (a form, or a script's request): ends the
/// session, clears both cookies; a form is sent to the login page, a script gets 204.
pub async fn logout(
    auth: &AuthService,
    headers: &HeaderMap,
    form: Option<&Form>,
    request_id: &str,
    peer: IpAddr,
) -> Result<Response<GatewayBody>, GatewayError> {
    let caller = cookie_caller(auth, headers).await?;
    if !csrf_ok(auth, headers, form) {
        return Err(csrf_refused(auth, request_id, peer, caller.as_deref()).await);
    }
    if let Some(caller) = &caller {
        let flow = auth.logout(caller, None).await;
        finish(auth, request_id, peer, flow).await?;
    }
    if let Some(id) = cookie(headers, SESSION_COOKIE) {
        auth.close_cookie(id).await?;
    }
    let cleared = cleared_cookies();
    Ok(if form.is_some() {
        see_other("/auth/login", &cleared)
    } else {
        no_content(&cleared)
    })
}

/// `POST /auth/step-up` body.
#[derive(Deserialize)]
pub struct StepUpBody {
    code: Option<String>,
}

/// `POST /auth/step-up` with the session cookie (JSON `{"code": ...}`, with the CSRF
/// header): the same flow as with a token; the cookie id rotates.
pub async fn step_up(
    auth: &AuthService,
    req: Request<RequestBody>,
    request_id: &str,
    peer: IpAddr,
) -> Result<Response<GatewayBody>, GatewayError> {
    let headers = req.headers().clone();
    let caller = cookie_caller(auth, &headers)
        .await?
        .ok_or(GatewayError::Unauthenticated {
            reason: "step-up needs a session".into(),
            invalid_token: false,
        })?;
    if !csrf_ok(auth, &headers, None) {
        return Err(csrf_refused(auth, request_id, peer, Some(&caller)).await);
    }
    let b: StepUpBody = read_json(req).await?;
    let code = b
        .code
        .filter(|c| !c.trim().is_empty())
        .ok_or(GatewayError::InvalidBody(BodyProblem::Missing("code")))?;
    let flow = auth.step_up(&caller, code.trim()).await;
    let pair = finish(auth, request_id, peer, flow).await?;
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        auth.close_cookie(old).await?;
    }
    let id = auth.open_cookie_session(&pair.access_token).await?;
    Ok(no_content(&[session_set_cookie(&id)]))
}
