//! One error type for everything a request can meet, and the responses built from it.
//!
//! [`GatewayError::status`] maps every variant without a wildcard, so a new variant cannot
//! be added without deciding its status. The client gets a generic code and message with
//! the request id; the detail (sources, upstream names, addresses) goes to the log only.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

pub use crate::error_chain::chain;
use crate::path::Refusal;
pub use crate::refusal::{BodyProblem, FieldRefusal, TokenError};
use crate::upstream::body::GatewayBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("ambiguous request target: {0}")]
    BadTarget(Refusal),
    #[error("method not allowed: {0}")]
    MethodNotAllowed(http::Method),
    #[error("no route matches")]
    NoRoute,
    #[error("authentication required: {reason}")]
    Unauthenticated { reason: String, invalid_token: bool },
    /// A bearer token was presented and refused; the client learns why (RFC 6750
    /// `error_description`), since that tells it what to do next.
    #[error("token refused: {0}")]
    TokenRefused(TokenError),
    #[error("forbidden: {reason}")]
    Forbidden { reason: String },
    /// A cookie-authenticated unsafe request without a same-origin `Origin` or a matching
    /// `X-CSRF-Token` (or form field).
    #[error("csrf")]
    Csrf,
    /// RFC 9470: the route needs a second factor passed within `max_age` seconds.
    #[error("step-up required: {reason}")]
    InsufficientUserAuthentication { max_age: u64, reason: String },
    #[error("rate limited")]
    RateLimited { retry_after: Duration },
    #[error("route rate limit of {limit} reached")]
    RouteRateLimited { retry_after: Duration, limit: u64 },
    #[error("request body not received in time")]
    RequestTimeout,
    #[error("more than {limit} request headers")]
    HeadersTooLarge { limit: usize },
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("upstream {upstream} unreachable")]
    UpstreamUnreachable {
        upstream: String,
        #[source]
        source: BoxError,
    },
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    UpstreamTimeout { upstream: String, timeout: Duration },
    /// A route with `response_fields` got an answer it cannot filter (not JSON, too
    /// large, an unknown encoding): refused rather than passed through.
    #[error("upstream {upstream} answered what the route cannot filter: {reason}")]
    UnfilterableResponse { upstream: String, reason: String },
    #[error("malformed request body: {0}")]
    Malformed(String),
    /// A request body the client can fix: the message names the field, never its value.
    #[error("request body refused: {0}")]
    InvalidBody(BodyProblem),
    /// A body a route's `request_fields` refused: 415 when not JSON, 422 otherwise.
    #[error("request body refused by the route's field list: {0}")]
    RequestFields(FieldRefusal),
    #[error("password breaks the policy")]
    PasswordPolicy { rules: Vec<String> },
    #[error("confirmation token unknown, used or expired")]
    InvalidConfirmation,
    #[error("password reset token unknown, used, expired or no longer bound to the password")]
    InvalidResetToken,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("email not confirmed")]
    EmailUnconfirmed,
    /// `[registration] allowed_domains` does not hold the address's domain. Says nothing
    /// about accounts: it is decided on the address alone.
    #[error("email domain not allowed to register")]
    DomainNotAllowed,
    #[error("account disabled")]
    AccountDisabled,
    #[error("account locked")]
    Locked { retry_after: Duration },
    /// A wrong TOTP or recovery code. `login_again`: the code was sent to `/auth/mfa`,
    /// whose `mfa_token` a failure spends.
    #[error("invalid TOTP code")]
    InvalidCode { login_again: bool },
    /// A right TOTP code whose step was already accepted (RFC 6238 §5.2). `login_again`:
    /// the code was sent to `/auth/mfa`, whose `mfa_token` a failure spends.
    #[error("TOTP code already used")]
    CodeReused { login_again: bool },
    #[error("refresh or MFA token unknown, spent, revoked or expired")]
    InvalidGrant,
    #[error("password hashing queue full")]
    Busy { retry_after: Duration },
    #[error("storage failure")]
    Store(crate::store::StoreError),
    /// The shared store (PostgreSQL) cannot be reached: what needs it is refused at
    /// once, and works again by itself when the database is back.
    #[error("the store is unreachable: {0}")]
    StoreUnavailable(String),
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl From<crate::store::StoreError> for GatewayError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Unavailable(why) => Self::StoreUnavailable(why),
            other => Self::Store(other),
        }
    }
}

impl GatewayError {
    /// The status the client sees.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadTarget(_) => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::Unauthenticated { .. } | Self::TokenRefused(_) | Self::InsufficientUserAuthentication { .. } => {
                StatusCode::UNAUTHORIZED
            }
            Self::Forbidden { .. } | Self::Csrf => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } | Self::RouteRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UpstreamUnreachable { .. } => StatusCode::BAD_GATEWAY,
            Self::UnfilterableResponse { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Malformed(_) | Self::InvalidBody(_) | Self::InvalidConfirmation | Self::InvalidResetToken => {
                StatusCode::BAD_REQUEST
            }
            Self::PasswordPolicy { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RequestFields(FieldRefusal::NotJson) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestFields(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InvalidCredentials | Self::InvalidCode { .. } | Self::CodeReused { .. } | Self::InvalidGrant => {
                StatusCode::UNAUTHORIZED
            }
            Self::EmailUnconfirmed | Self::AccountDisabled | Self::DomainNotAllowed => StatusCode::FORBIDDEN,
            Self::Locked { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Busy { .. } | Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable error code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadTarget(_) => "bad_request",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::NoRoute => "not_found",
            Self::Unauthenticated {
                invalid_token: true, ..
            } => "invalid_token",
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::TokenRefused(_) => "invalid_token",
            Self::InsufficientUserAuthentication { .. } => "insufficient_user_authentication",
            Self::Forbidden { .. } => "forbidden",
            Self::Csrf => "csrf",
            Self::RateLimited { .. } | Self::RouteRateLimited { .. } => "rate_limited",
            Self::RequestTimeout => "request_timeout",
            Self::HeadersTooLarge { .. } => "headers_too_large",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UpstreamUnreachable { .. } => "bad_gateway",
            Self::UnfilterableResponse { .. } => "bad_gateway",
            Self::UpstreamTimeout { .. } => "gateway_timeout",
            Self::Malformed(_) | Self::InvalidBody(_) => "bad_request",
            Self::PasswordPolicy { .. } => "password_policy",
            Self::RequestFields(why) => why.code(),
            Self::InvalidConfirmation | Self::InvalidResetToken | Self::InvalidGrant => "invalid_token",
            Self::InvalidCredentials => "invalid_credentials",
            Self::EmailUnconfirmed => "email_unconfirmed",
            Self::DomainNotAllowed => "domain_not_allowed",
            Self::AccountDisabled => "account_disabled",
            Self::Locked { .. } => "locked",
            Self::InvalidCode { .. } | Self::CodeReused { .. } => "invalid_code",
            Self::Busy { .. } => "busy",
            Self::StoreUnavailable(_) => "unavailable",
            Self::Store(_) | Self::Internal(_) => "internal_error",
        }
    }

    /// The client-facing message (see `public_message`), for the login pages, which show
    /// the same words the JSON API answers with.
    pub fn message(&self) -> Cow<'static, str> {
        self.public_message()
    }

    /// The client-facing message: generic, never the internal detail; where the client
    /// can do something about the error, what to do.
    fn public_message(&self) -> Cow<'static, str> {
        let text = match self {
            Self::BadTarget(_) => "the request target is malformed or ambiguous",
            Self::MethodNotAllowed(_) => "this method is not allowed",
            Self::NoRoute => "no such resource",
            Self::Unauthenticated { .. } => {
                "authentication is required: log in (POST /auth/login) and send the access token as Authorization: Bearer TOKEN"
            }
            Self::TokenRefused(why) => why.advice(),
            Self::InsufficientUserAuthentication { .. } => {
                "pass the second factor again (POST /auth/step-up), then retry"
            }
            Self::Forbidden { .. } => "you are not allowed to do this",
            Self::Csrf => "cross-site request refused: send X-CSRF-Token with the value of the __Host-portcullis-csrf cookie",
            Self::RateLimited { .. } | Self::RouteRateLimited { .. } => "too many requests; try again later",
            Self::RequestTimeout => "the request body did not arrive in time",
            Self::HeadersTooLarge { .. } => "the request headers are too large",
            Self::PayloadTooLarge { limit } => {
                return format!("the request body is too large (at most {limit} bytes)").into();
            }
            Self::UpstreamUnreachable { .. } => "the service is unavailable",
            Self::UnfilterableResponse { .. } => "the service gave an answer the gateway could not check",
            Self::UpstreamTimeout { .. } => "the service did not answer in time",
            Self::Malformed(_) => "the request body is malformed",
            Self::InvalidBody(problem) => return problem.to_string().into(),
            Self::RequestFields(why) => return why.to_string().into(),
            Self::PasswordPolicy { .. } => "the password does not meet the policy",
            Self::InvalidConfirmation | Self::InvalidResetToken | Self::InvalidGrant => {
                "the token is invalid or expired"
            }
            Self::InvalidCredentials => "invalid email or password",
            Self::EmailUnconfirmed => "confirm your email address first",
            Self::DomainNotAllowed => "registration is not open to addresses of this domain",
            Self::AccountDisabled => "this account is disabled",
            Self::Locked { .. } => "too many failed attempts; try again later",
            Self::InvalidCode { login_again: true } => "invalid code; log in again",
            Self::InvalidCode { login_again: false } => "invalid code; send the current code from your authenticator",
            Self::CodeReused { login_again: true } => {
                "this code was already used; wait for the next code from your authenticator, then log in again (the mfa_token is spent)"
            }
            Self::CodeReused { login_again: false } => {
                "this code was already used; wait for the next code from your authenticator and try again"
            }
            Self::Busy { .. } => "the service is busy; try again shortly",
            Self::StoreUnavailable(_) => "the service is briefly unavailable; try again shortly",
            Self::Store(_) | Self::Internal(_) => "an internal error occurred",
        };
        Cow::Borrowed(text)
    }

    /// Builds the response the client sees.
    pub fn to_response(&self, request_id: &str) -> Response<GatewayBody> {
        let mut body = serde_json::json!({
            "error": self.code(),
            "message": self.public_message(),
            "request_id": request_id,
        });
        if let Self::PasswordPolicy { rules } = self {
            body["rules"] = rules.clone().into();
        }
        if let Self::TokenRefused(why) = self {
            body["error_description"] = why.description().into();
        }
        let mut resp = json_response(self.status(), &body);
        let headers = resp.headers_mut();
        match self {
            Self::Unauthenticated { invalid_token, .. } => {
                let value = if *invalid_token {
                    HeaderValue::from_static("Bearer error=\"invalid_token\"")
                } else {
                    HeaderValue::from_static("Bearer")
                };
                headers.insert(WWW_AUTHENTICATE, value);
            }
            Self::TokenRefused(why) => {
                // RFC 6750 §3: the description is a fixed ASCII word, safe in a quoted-string.
                let value = format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    why.description()
                );
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(WWW_AUTHENTICATE, value);
                }
            }
            Self::InsufficientUserAuthentication { max_age, .. } => {
                let value = format!("Bearer error=\"insufficient_user_authentication\", max_age={max_age}");
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(WWW_AUTHENTICATE, value);
                }
            }
            Self::RateLimited { retry_after } | Self::Locked { retry_after } | Self::Busy { retry_after } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(ceil_secs(*retry_after)));
            }
            Self::RouteRateLimited { retry_after, limit } => {
                let secs = ceil_secs(*retry_after);
                headers.insert(RETRY_AFTER, HeaderValue::from(secs));
                headers.insert("ratelimit-limit", HeaderValue::from(*limit));
                headers.insert("ratelimit-remaining", HeaderValue::from(0));
                headers.insert("ratelimit-reset", HeaderValue::from(secs));
            }
            Self::MethodNotAllowed(_) => {
                headers.insert(
                    http::header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
                );
            }
            Self::BadTarget(_)
            | Self::NoRoute
            | Self::Forbidden { .. }
            | Self::Csrf
            | Self::RequestTimeout
            | Self::HeadersTooLarge { .. }
            | Self::PayloadTooLarge { .. }
            | Self::UpstreamUnreachable { .. }
            | Self::UpstreamTimeout { .. }
            | Self::UnfilterableResponse { .. }
            | Self::Malformed(_)
            | Self::InvalidBody(_)
            | Self::RequestFields(_)
            | Self::PasswordPolicy { .. }
            | Self::InvalidConfirmation
            | Self::InvalidResetToken
            | Self::InvalidCredentials
            | Self::EmailUnconfirmed
            | Self::DomainNotAllowed
            | Self::AccountDisabled
            | Self::InvalidCode { .. }
            | Self::CodeReused { .. }
            | Self::InvalidGrant
            | Self::Store(_)
            | Self::StoreUnavailable(_)
            | Self::Internal(_) => {}
        }
        resp
    }
}

/// What a client's request body error says, when `err` or one of its sources is one:
/// the body was too long for `limit`, arrived too slowly, or was malformed.
pub fn client_body_error(err: &(dyn std::error::Error + 'static), limit: u64) -> Option<GatewayError> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<http_body_util::LengthLimitError>() {
            return Some(GatewayError::PayloadTooLarge { limit });
        }
        if let Some(body) = e.downcast_ref::<crate::upstream::request::BodyError>() {
            return Some(match body {
                crate::upstream::request::BodyError::TimedOut => GatewayError::RequestTimeout,
                crate::upstream::request::BodyError::Malformed(_) => {
                    GatewayError::Malformed(format!("request body unreadable: {body}"))
                }
            });
        }
        cur = e.source();
    }
    None
}

/// Whole seconds, rounded up, at least 1: for `Retry-After` and `RateLimit-Reset`.
pub fn ceil_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// A JSON response the gateway makes itself. Nothing it makes is cacheable.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<GatewayBody> {
    let bytes = Bytes::from(serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()));
    let mut resp = Response::new(GatewayBody::full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests;
