//! The `/auth/*` endpoints over [`AuthService`]: read the request, run one flow, record
//! its event (`finish`), answer.
//!
//! Bodies are JSON and bounded ([`MAX_AUTH_BODY`]); the gateway marks every answer
//! `no-store`. Secrets (passwords, tokens, codes) never reach a log line: events carry
//! ids, emails and reasons only.

use http::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::body::read_json;
use super::flow::{AuthEvent, Flow};
use super::login::LoginOutcome;
use super::mfa::MfaCode;
use super::service::AuthService;
use super::sessions::TokenPair;
use crate::error::{json_response, BodyProblem, GatewayError};
use crate::upstream::body::GatewayBody;
use crate::upstream::request::RequestBody;

pub use super::body::MAX_AUTH_BODY;

/// Records a security event in the audit trail (on disk before the response goes out),
/// in the metrics and in the log.
pub async fn record(auth: &AuthService, request_id: &str, peer: std::net::IpAddr, e: &AuthEvent) {
    auth.audit.durable(e.to_audit(Some(peer), Some(request_id))).await;
    auth.events.count(e.event);
    tracing::info!(
        target: "portcullis::audit",
        request_id,
        event = e.event.name(),
        user = e.user_id.as_deref().unwrap_or("-"),
        email = ?e.email.as_deref().unwrap_or("-"),
        reason = e.reason.as_deref().unwrap_or("-"),
        %peer,
        "security event"
    );
}

/// How every flow's end is handled: its event, if it has one, is recorded, then its
/// result is passed on to be answered.
async fn finish<T>(
    auth: &AuthService,
    request_id: &str,
    peer: std::net::IpAddr,
    flow: Flow<T>,
) -> Result<T, GatewayError> {
    if let Some(event) = &flow.event {
        record(auth, request_id, peer, event).await;
    }
    flow.result
}

/// 200 with a JSON body.
fn ok(value: serde_json::Value) -> Response<GatewayBody> {
    json_response(StatusCode::OK, &value)
}

/// 200 with a token pair.
fn tokens(pair: &TokenPair) -> Response<GatewayBody> {
    ok(serde_json::to_value(pair).unwrap_or_default())
}

/// 405 unless the request's method is `m`.
fn method_is(req: &Request<RequestBody>, m: Method) -> Result<(), GatewayError> {
    if req.method() == m {
        Ok(())
    } else {
        Err(GatewayError::MethodNotAllowed(req.method().clone()))
    }
}

/// `POST /auth/register`.
#[derive(Deserialize)]
pub struct RegisterBody {
    email: String,
    password: String,
    name: String,
}

/// `POST /auth/login`.
#[derive(Deserialize)]
pub struct LoginBody {
    email: String,
    password: String,
}

/// `POST /auth/totp/enroll`: a challenge, or nothing from a signed-in caller.
#[derive(Deserialize, Default)]
pub struct EnrollBody {
    mfa_token: Option<String>,
}

/// `POST /auth/mfa`: a TOTP code or a recovery code, exactly one of them.
#[derive(Deserialize)]
pub struct MfaBody {
    mfa_token: String,
    code: Option<String>,
    recovery_code: Option<String>,
}

/// `POST /auth/step-up`: a TOTP code or a recovery code.
#[derive(Deserialize)]
pub struct StepUpBody {
    code: Option<String>,
}

/// `POST /auth/refresh`.
#[derive(Deserialize)]
pub struct RefreshBody {
    refresh_token: String,
}

/// `POST /auth/logout`: optionally the refresh token to revoke with the session.
#[derive(Deserialize, Default)]
pub struct LogoutBody {
    refresh_token: Option<String>,
}

/// `POST /auth/password/forgot`.
#[derive(Deserialize)]
pub struct ForgotBody {
    email: String,
}

/// `POST /auth/password/reset`.
#[derive(Deserialize)]
pub struct ResetBody {
    token: String,
    password: String,
}

/// `POST /auth/password/change`.
#[derive(Deserialize)]
pub struct ChangeBody {
    current_password: String,
    new_password: String,
}

/// 204, no body.
fn no_content() -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// The method the `/auth/*` endpoint at `path` (canonical) answers, if there is one
/// there: what a CORS preflight for it is checked against.
pub fn endpoint_method(path: &str, registration: bool) -> Option<Method> {
    match path {
        "/auth/register" | "/auth/confirm" if !registration => None,
        "/auth/confirm" | "/auth/me" => Some(Method::GET),
        "/auth/register"
        | "/auth/login"
        | "/auth/totp/enroll"
        | "/auth/mfa"
        | "/auth/totp/recovery-codes"
        | "/auth/step-up"
        | "/auth/refresh"
        | "/auth/logout"
        | "/auth/password/forgot"
        | "/auth/password/reset"
        | "/auth/password/change" => Some(Method::POST),
        _ => None,
    }
}

/// Answers one `/auth/*` request (`path` is canonical).
pub async fn handle(
    auth: &AuthService,
    path: &str,
    req: Request<RequestBody>,
    request_id: &str,
    peer: std::net::IpAddr,
) -> Result<Response<GatewayBody>, GatewayError> {
    match path {
        // With registration off, both answer exactly as a path without a route does.
        "/auth/register" | "/auth/confirm" if !auth.registration_enabled() => Err(GatewayError::NoRoute),
        "/auth/register" => {
            method_is(&req, Method::POST)?;
            let b: RegisterBody = read_json(req).await?;
            let flow = auth.register(&b.email, b.password, &b.name).await;
            finish(auth, request_id, peer, flow).await?;
            Ok(json_response(
                StatusCode::ACCEPTED,
                &json!({ "status": "confirmation_sent" }),
            ))
        }
        "/auth/confirm" => {
            method_is(&req, Method::GET)?;
            let token = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .ok_or(GatewayError::InvalidConfirmation)?;
            let flow = auth.confirm(token).await;
            finish(auth, request_id, peer, flow).await?;
            Ok(ok(json!({ "status": "confirmed" })))
        }
        "/auth/login" => {
            method_is(&req, Method::POST)?;
            let b: LoginBody = read_json(req).await?;
            if b.email.len() > 254 {
                return Err(GatewayError::InvalidBody(BodyProblem::TooLong("email", 254)));
            }
            if b.password.len() > 1024 {
                return Err(GatewayError::InvalidBody(BodyProblem::TooLong("password", 1024)));
            }
            let flow = auth.login(&b.email, b.password).await;
            Ok(match finish(auth, request_id, peer, flow).await? {
                LoginOutcome::Tokens(pair) => tokens(&pair),
                LoginOutcome::MfaRequired { mfa_token, expires_in } => {
                    ok(json!({ "mfa_required": true, "mfa_token": mfa_token, "expires_in": expires_in }))
                }
                LoginOutcome::EnrollmentRequired { mfa_token, expires_in } => {
                    ok(json!({ "mfa_enrollment_required": true, "mfa_token": mfa_token, "expires_in": expires_in }))
                }
            })
        }
        "/auth/totp/enroll" => {
            method_is(&req, Method::POST)?;
            let caller = auth.authenticate(req.headers())?;
            let b: EnrollBody = if caller.is_some() {
                read_json(req).await.unwrap_or_default()
            } else {
                read_json(req).await?
            };
            let principal = caller.as_ref().map(|v| &*v.principal);
            let flow = auth.enroll(b.mfa_token.as_deref(), principal).await;
            let enrollment = finish(auth, request_id, peer, flow).await?;
            Ok(ok(serde_json::to_value(&enrollment).unwrap_or_default()))
        }
        "/auth/mfa" => {
            method_is(&req, Method::POST)?;
            let b: MfaBody = read_json(req).await?;
            let code = match (&b.code, &b.recovery_code) {
                (Some(c), None) => MfaCode::Totp(c.trim()),
                (None, Some(c)) => MfaCode::Recovery(c.trim()),
                (Some(_), Some(_)) | (None, None) => {
                    return Err(GatewayError::InvalidBody(BodyProblem::OneOf("code", "recovery_code")));
                }
            };
            let flow = auth.mfa(&b.mfa_token, code).await;
            let grant = finish(auth, request_id, peer, flow).await?;
            Ok(ok(serde_json::to_value(&grant).unwrap_or_default()))
        }
        "/auth/totp/recovery-codes" => {
            method_is(&req, Method::POST)?;
            let caller = auth.authenticate(req.headers())?.ok_or(GatewayError::Unauthenticated {
                reason: "recovery codes need a token".into(),
                invalid_token: false,
            })?;
            let flow = auth.regenerate_recovery_codes(&caller).await;
            let codes = finish(auth, request_id, peer, flow).await?;
            Ok(ok(json!({ "recovery_codes": codes })))
        }
        "/auth/step-up" => {
            method_is(&req, Method::POST)?;
            let caller = auth.authenticate(req.headers())?.ok_or(GatewayError::Unauthenticated {
                reason: "step-up needs a token".into(),
                invalid_token: false,
            })?;
            let b: StepUpBody = read_json(req).await?;
            let code = b
                .code
                .filter(|c| !c.trim().is_empty())
                .ok_or(GatewayError::InvalidBody(BodyProblem::Missing("code")))?;
            let flow = auth.step_up(&caller, code.trim()).await;
            let pair = finish(auth, request_id, peer, flow).await?;
            Ok(tokens(&pair))
        }
        "/auth/refresh" => {
            method_is(&req, Method::POST)?;
            let b: RefreshBody = read_json(req).await?;
            let flow = auth.refresh(&b.refresh_token).await;
            let pair = finish(auth, request_id, peer, flow).await?;
            Ok(tokens(&pair))
        }
        "/auth/logout" => {
            method_is(&req, Method::POST)?;
            let caller = auth.authenticate(req.headers())?.ok_or(GatewayError::Unauthenticated {
                reason: "logout needs a token".into(),
                invalid_token: false,
            })?;
            let b: LogoutBody = read_json(req).await.unwrap_or_default();
            let flow = auth.logout(&caller, b.refresh_token.as_deref()).await;
            finish(auth, request_id, peer, flow).await?;
            let mut resp = Response::new(GatewayBody::empty());
            *resp.status_mut() = StatusCode::NO_CONTENT;
            Ok(resp)
        }
        "/auth/me" => {
            method_is(&req, Method::GET)?;
            let caller = auth.authenticate(req.headers())?.ok_or(GatewayError::Unauthenticated {
                reason: "me needs a token".into(),
                invalid_token: false,
            })?;
            let user = auth.account(&caller).await?;
            Ok(ok(json!({
                "id": user.id,
                "email": user.email,
                "roles": user.roles,
                "mfa_enabled": user.mfa_enabled(),
            })))
        }
        "/auth/password/forgot" => {
            method_is(&req, Method::POST)?;
            let b: ForgotBody = read_json(req).await?;
            if b.email.len() > 254 {
                return Err(GatewayError::InvalidBody(BodyProblem::TooLong("email", 254)));
            }
            let flow = auth.forgot_password(&b.email).await;
            finish(auth, request_id, peer, flow).await?;
            Ok(json_response(StatusCode::ACCEPTED, &json!({ "status": "reset_sent" })))
        }
        "/auth/password/reset" => {
            method_is(&req, Method::POST)?;
            let b: ResetBody = read_json(req).await?;
            let flow = auth.reset_password(&b.token, b.password).await;
            finish(auth, request_id, peer, flow).await?;
            Ok(ok(json!({ "status": "password_changed" })))
        }
        "/auth/password/change" => {
            method_is(&req, Method::POST)?;
            let caller = auth.authenticate(req.headers())?.ok_or(GatewayError::Unauthenticated {
                reason: "a password change needs a token".into(),
                invalid_token: false,
            })?;
            let b: ChangeBody = read_json(req).await?;
            let flow = auth.change_password(&caller, b.current_password, b.new_password).await;
            finish(auth, request_id, peer, flow).await?;
            Ok(no_content())
        }
        _ => Err(GatewayError::NoRoute),
    }
}
