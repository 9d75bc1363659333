//! The pages before a session: registration, and the forgotten-password pair (ask for a
//! link, set a new password with it). Each post runs the JSON API's flow and records its
//! events; the answers are as generic as the API's (no enumeration through a page).

use std::net::IpAddr;

use http::{HeaderMap, Response, StatusCode};
use maud::{html, Markup};

use super::form::{csrf_value, finish, Form};
use super::html::{csrf_field, message, page, respond};
use crate::auth::service::AuthService;
use crate::error::GatewayError;
use crate::upstream::body::GatewayBody;

/// The registration form.
fn register_form(csrf: &str, email: &str, name: &str, error: Option<&str>) -> Markup {
    page(
        "Create an account",
        html! {
            (message(error))
            form method="post" action="/auth/register" {
                (csrf_field(csrf))
                label for="email" { "Email" }
                input id="email" type="email" name="email" value=(email) autocomplete="username" required;
                label for="name" { "Name" }
                input id="name" type="text" name="name" value=(name) autocomplete="name" required;
                label for="password" { "Password" }
                input id="password" type="password" name="password" autocomplete="new-password" required;
                button type="submit" { "Create account" }
            }
            p.links { a href="/auth/login" { "Log in" } }
        },
    )
}

/// The form that asks for a reset link.
fn forgot_form(csrf: &str, email: &str, error: Option<&str>) -> Markup {
    page(
        "Forgot your password?",
        html! {
            (message(error))
            form method="post" action="/auth/password/forgot" {
                (csrf_field(csrf))
                label for="email" { "Email" }
                input id="email" type="email" name="email" value=(email) autocomplete="username" required;
                button type="submit" { "Send a reset link" }
            }
            p.links { a href="/auth/login" { "Log in" } }
        },
    )
}

/// The form that sets a new password with a reset link's token.
fn reset_form(csrf: &str, token: &str, error: Option<&str>) -> Markup {
    page(
        "Choose a new password",
        html! {
            (message(error))
            form method="post" action="/auth/password/reset" {
                (csrf_field(csrf))
                input type="hidden" name="token" value=(token);
                label for="password" { "New password" }
                input id="password" type="password" name="password" autocomplete="new-password" required;
                button type="submit" { "Set password" }
            }
        },
    )
}

/// A page with one note and a link to log in.
fn done(title: &str, note: &str) -> Markup {
    page(
        title,
        html! {
            p.note { (note) }
            p.links { a href="/auth/login" { "Log in" } }
        },
    )
}

/// `GET /auth/register`.
pub fn get_register(headers: &HeaderMap) -> Response<GatewayBody> {
    let (csrf, cookies) = csrf_value(headers);
    respond(StatusCode::OK, register_form(&csrf, "", "", None), &cookies)
}

/// `POST /auth/register` (form).
pub async fn post_register(
    auth: &AuthService,
    headers: &HeaderMap,
    form: &Form,
    request_id: &str,
    peer: IpAddr,
) -> Result<Response<GatewayBody>, GatewayError> {
    let (csrf, _) = csrf_value(headers);
    let (email, name, password) = (form.text("email"), form.text("name"), form.text("password"));
    let flow = auth.register(email, password.to_owned(), name).await;
    Ok(match finish(auth, request_id, peer, flow).await {
        Ok(()) => respond(
            StatusCode::ACCEPTED,
            done(
                "Check your mail",
                "We sent a confirmation link to the address you gave: follow it, then log in.",
            ),
            &[],
        ),
        Err(err) => respond(
            err.status(),
            register_form(&csrf, email, name, Some(&err.message())),
            &[],
        ),
    })
}

/// `GET /auth/password/forgot`.
pub fn get_forgot(headers: &HeaderMap) -> Response<GatewayBody> {
    let (csrf, cookies) = csrf_value(headers);
    respond(StatusCode::OK, forgot_form(&csrf, "", None), &cookies)
}

/// `POST /auth/password/forgot` (form): the same answer whether the account exists.
pub async fn post_forgot(
    auth: &AuthService,
    headers: &HeaderMap,
    form: &Form,
    request_id: &str,
    peer: IpAddr,
) -> Result<Response<GatewayBody>, GatewayError> {
    let (csrf, _) = csrf_value(headers);
    let email = form.text("email");
    if email.len() > 254 {
        let err = GatewayError::InvalidBody(crate::error::BodyProblem::TooLong("email", 254));
        return Ok(respond(err.status(), forgot_form(&csrf, "", Some(&err.message())), &[]));
    }
    let flow = auth.forgot_password(email).await;
    Ok(match finish(auth, request_id, peer, flow).await {
        Ok(()) => respond(
            StatusCode::ACCEPTED,
            done(
                "Check your mail",
                "If an account has this address, a link to reset its password is on its way.",
            ),
            &[],
        ),
        Err(err) => respond(err.status(), forgot_form(&csrf, email, Some(&err.message())), &[]),
    })
}

/// `GET /auth/password/reset?token=...`.
pub fn get_reset(headers: &HeaderMap, query: &Form) -> Response<GatewayBody> {
    let (csrf, cookies) = csrf_value(headers);
    let token = query.text("token");
    let token = if token.len() > 128 { "" } else { token };
    respond(StatusCode::OK, reset_form(&csrf, token, None), &cookies)
}

/// `POST /auth/password/reset` (form).
pub async fn post_reset(
    auth: &AuthService,
    headers: &HeaderMap,
    form: &Form,
    request_id: &str,
    peer: IpAddr,
) -> Result<Response<GatewayBody>, GatewayError> {
    let (csrf, _) = csrf_value(headers);
    let (token, password) = (form.text("token"), form.text("password"));
    let flow = auth.reset_password(token, password.to_owned()).await;
    Ok(match finish(auth, request_id, peer, flow).await {
        Ok(()) => respond(
            StatusCode::OK,
            done(
                "Password changed",
                "Your password is changed, and every session of the account has ended.",
            ),
            &[],
        ),
        Err(err) => {
            let token = if token.len() > 128 { "" } else { token };
            respond(err.status(), reset_form(&csrf, token, Some(&err.message())), &[])
        }
    })
}
