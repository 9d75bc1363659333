//! The login pages: the password form, the TOTP step, TOTP enrolment with its QR code,
//! and the recovery codes shown once. Each post runs the same flow as the JSON API
//! (`login`, `enroll`, `mfa`) and records the same events; a completed login opens a
//! cookie session and sends the browser to `next`.

use std::net::IpAddr;

use http::{HeaderMap, Response, StatusCode};
use maud::{html, Markup};

use super::form::{csrf_value, finish, Form};
use super::html::{csrf_field, message, page, respond, see_other};
use crate::auth::browser::next_or_default;
use crate::auth::cookie::{cookie, csrf_set_cookie, new_csrf, session_set_cookie, SESSION_COOKIE};
use crate::auth::login::LoginOutcome;
use crate::auth::mfa::{Enrollment, MfaCode};
use crate::auth::service::AuthService;
use crate::error::GatewayError;
use crate::upstream::body::GatewayBody;

/// The password form.
fn login_form(csrf: &str, next: &str, email: &str, error: Option<&str>) -> Markup {
    page(
        "Log in",
        html! {
            (message(error))
            form method="post" action="/auth/login" {
                (csrf_field(csrf))
                input type="hidden" name="next" value=(next);
                label for="email" { "Email" }
                input id="email" type="email" name="email" value=(email) autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input id="password" type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Log in" }
            }
            p.links {
                a href="/auth/password/forgot" { "Forgot your password?" }
                a href="/auth/register" { "Create an account" }
            }
        },
    )
}

/// The TOTP form (also the second half of the enrolment page).
fn code_form(csrf: &str, mfa_token: &str, next: &str) -> Markup {
    html! {
        form method="post" action="/auth/mfa" {
            (csrf_field(csrf))
            input type="hidden" name="mfa_token" value=(mfa_token);
            input type="hidden" name="next" value=(next);
            label for="code" { "Code from your authenticator (or a recovery code)" }
            input id="code" type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required autofocus;
            button type="submit" { "Continue" }
        }
    }
}

/// The TOTP step.
fn totp_page(csrf: &str, mfa_token: &str, next: &str, error: Option<&str>) -> Markup {
    page(
        "Second factor",
        html! {
            (message(error))
            (code_form(csrf, mfa_token, next))
        },
    )
}

/// TOTP enrolment: the QR code, the secret as text, then the code form.
fn enrol_page(csrf: &str, e: &Enrollment, next: &str) -> Markup {
    page(
        "Set up your authenticator",
        html! {
            p.note { "Your account needs a second factor. Scan this code with an authenticator app, then enter the code it shows." }
            img.qr src=(format!("data:image/png;base64,{}", e.qr_png)) alt="QR code of the TOTP secret";
            p { "Or enter this secret by hand: " span.secret { (e.secret) } }
            (code_form(csrf, &e.mfa_token, next))
        },
    )
}

/// The recovery codes of a completed enrolment, shown this once.
fn recovery_page(codes: &[String], next: &str) -> Markup {
    page(
        "Your recovery codes",
        html! {
            p.note { "Keep these codes somewhere safe: each one signs you in once without your authenticator. They are shown only now." }
            ul.codes { @for c in codes { li { (c) } } }
            a.button href=(next) { "Continue" }
        },
    )
}

/// `GET /auth/login?next=PATH`.
pub fn get(headers: &HeaderMap, query: &Form) -> Response<GatewayBody> {
    let (csrf, cookies) = csrf_value(headers);
    let next = next_or_default(query.get("next"));
    respond(StatusCode::OK, login_form(&csrf, &next, "", None), &cookies)
}

/// The cookies of a completed login: a new session id (the old one, if any, is ended)
/// and a new CSRF value.
async fn sign_in(auth: &AuthService, headers: &HeaderMap, access_token: &str) -> Result<Vec<String>, GatewayError> {
    if let Some(old) = cookie(headers, SESSION_COOKIE) {
        auth.close_cookie(old).await?;
    }
    let id = auth.open_cookie_session(access_token).await?;
    Ok(vec![session_set_cookie(&id), csrf_set_cookie(&new_csrf())])
}

/// `POST /auth/login` (form).
pub async fn post(
    auth: &AuthService,
    headers: &HeaderMap,
    form: &Form,
    request_id: &str,
    peer: IpAddr,
) -> Result<Response<GatewayBody>, GatewayError> {
    let (csrf, _) = csrf_value(headers);
    let next = next_or_default(form.get("next"));
    let (email, password) = (form.text("email"), form.text("password"));
    let again = |err: GatewayError| {
        let shown = if email.len() > 254 { "" } else { email };
        respond(err.status(), login_form(&csrf, &next, shown, Some(&err.message())), &[])
    };
    if email.len() > 254 || password.len() > 1024 {
        return Ok(again(GatewayError::InvalidCredentials));
    }
    let flow = auth.login(email, password.to_owned()).await;
    let outcome = match finish(auth, request_id, peer, flow).await {
        Ok(outcome) => outcome,
        Err(err) => return Ok(again(err)),
    };
    Ok(match outcome {
        LoginOutcome::Tokens(pair) => see_other(&next, &sign_in(auth, headers, &pair.access_token).await?),
        LoginOutcome::MfaRequired { mfa_token, .. } => {
            respond(StatusCode::OK, totp_page(&csrf, &mfa_token, &next, None), &[])
        }
        LoginOutcome::EnrollmentRequired { mfa_token, .. } => {
            let flow = auth.enroll(Some(&mfa_token), None).await;
            match finish(auth, request_id, peer, flow).await {
                Ok(enrollment) => respond(StatusCode::OK, enrol_page(&csrf, &enrollment, &next), &[]),
                Err(err) => again(err),
            }
        }
    })
}

/// `POST /auth/mfa` (form): a TOTP code, or a recovery code.
pub async fn post_mfa(
    auth: &AuthService,
    headers: &HeaderMap,
    form: &Form,
    request_id: &str,
    peer: IpAddr,
) -> Result<Response<GatewayBody>, GatewayError> {
    let (csrf, _) = csrf_value(headers);
    let next = next_or_default(form.get("next"));
    let mfa_token = form.text("mfa_token");
    let code = form.text("code").trim();
    if mfa_token.len() > 128 || code.len() > 64 || mfa_token.is_empty() {
        let err = GatewayError::InvalidCode { login_again: true };
        return Ok(respond(
            err.status(),
            totp_page(&csrf, "", &next, Some(&err.message())),
            &[],
        ));
    }
    let code = if crate::auth::recovery::looks_like_recovery(code) {
        MfaCode::Recovery(code)
    } else {
        MfaCode::Totp(code)
    };
    let flow = auth.mfa(mfa_token, code).await;
    let grant = match finish(auth, request_id, peer, flow).await {
        Ok(grant) => grant,
        Err(err) => {
            return Ok(respond(
                err.status(),
                totp_page(&csrf, mfa_token, &next, Some(&err.message())),
                &[],
            ))
        }
    };
    let cookies = sign_in(auth, headers, &grant.tokens.access_token).await?;
    Ok(match grant.recovery_codes {
        Some(codes) => respond(StatusCode::OK, recovery_page(&codes, &next), &cookies),
        None => see_other(&next, &cookies),
    })
}
