//! Reading what a page's request carries: its form (bounded), its query, the CSRF value
//! it must echo, and the session cookie's caller; and recording a flow's event.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Limited};

use crate::audit::EventKind;
use crate::auth::browser::{form_fields, matches_cookie, same_origin, CSRF_HEADER};
use crate::auth::cookie::{cookie, csrf_set_cookie, new_csrf, CSRF_COOKIE, SESSION_COOKIE};
use crate::auth::flow::{AuthEvent, Flow};
use crate::auth::service::AuthService;
use crate::auth::Verified;
use crate::error::GatewayError;
use crate::upstream::request::RequestBody;

/// The most fields a form's body or a page's query is read for.
const MAX_FIELDS: usize = 16;

/// A form body or query string, decoded.
pub struct Form(Vec<(String, String)>);

impl Form {
    /// The first value of field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The value of field `name`, or empty.
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }
}

/// Whether a request's body is a form (`application/x-www-form-urlencoded`).
pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// The query string of a request, decoded.
pub fn query<B>(req: &Request<B>) -> Form {
    Form(form_fields(req.uri().query().unwrap_or(""), MAX_FIELDS))
}

/// Reads a form body of at most [`MAX_AUTH_BODY`](crate::auth::body::MAX_AUTH_BODY)
/// bytes (413 past it, 408 when it stalls).
pub async fn read_form(req: Request<RequestBody>) -> Result<Form, GatewayError> {
    let limit = crate::auth::body::MAX_AUTH_BODY;
    let bytes: Bytes = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            crate::error::client_body_error(&*e, limit as u64)
                .unwrap_or_else(|| GatewayError::Malformed("body unreadable".into()))
        })?
        .to_bytes();
    let text = std::str::from_utf8(&bytes).map_err(|_| GatewayError::Malformed("form is not UTF-8".into()))?;
    Ok(Form(form_fields(text, MAX_FIELDS)))
}

/// The CSRF value a page's forms carry: the browser's cookie, or a new one with the
/// `Set-Cookie` that gives it to the browser.
pub fn csrf_value(headers: &HeaderMap) -> (String, Vec<String>) {
    match cookie(headers, CSRF_COOKIE) {
        Some(v) => (v.to_owned(), Vec::new()),
        None => {
            let v = new_csrf();
            let set = csrf_set_cookie(&v);
            (v, vec![set])
        }
    }
}

/// Whether a form post passes the CSRF check: its `csrf` field (or `X-CSRF-Token`)
/// equals the CSRF cookie, or its `Origin` is the gateway's.
pub fn csrf_ok(auth: &AuthService, headers: &HeaderMap, form: Option<&Form>) -> bool {
    if same_origin(headers, &auth.config.server.public_url) {
        return true;
    }
    let field = form.and_then(|f| f.get("csrf"));
    let header = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    field.or(header).is_some_and(|v| matches_cookie(headers, v))
}

/// The refusal of a form post that fails the CSRF check, audited as `access_denied`.
pub async fn csrf_refused(
    auth: &AuthService,
    request_id: &str,
    peer: IpAddr,
    caller: Option<&Verified>,
) -> GatewayError {
    let event = AuthEvent {
        event: EventKind::AccessDenied,
        user_id: caller.map(|c| c.principal.id.clone()),
        email: caller.map(|c| c.principal.email.clone()),
        reason: Some("csrf".into()),
    };
    crate::auth::http::record(auth, request_id, peer, &event).await;
    GatewayError::Csrf
}

/// The caller the request's session cookie stands for, if any.
pub async fn cookie_caller(auth: &AuthService, headers: &HeaderMap) -> Result<Option<Arc<Verified>>, GatewayError> {
    match cookie(headers, SESSION_COOKIE) {
        Some(id) => auth.authenticate_cookie(id).await,
        None => Ok(None),
    }
}

/// Records a flow's event, as the JSON API does, and hands on its result.
pub async fn finish<T>(auth: &AuthService, request_id: &str, peer: IpAddr, flow: Flow<T>) -> Result<T, GatewayError> {
    if let Some(event) = &flow.event {
        crate::auth::http::record(auth, request_id, peer, event).await;
    }
    flow.result
}
