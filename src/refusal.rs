//! Why a bearer token or a request body was refused, in words a client can act on: the
//! leaf types that [`GatewayError`](crate::error::GatewayError) carries for those refusals.

/// Why a bearer token was refused. The log gets the Display text; the client gets
/// [`TokenError::description`] (RFC 6750 `error_description`) and [`TokenError::advice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT: not three base64url parts, bad JSON, too long, or an `Authorization`
    /// header that is not one `Bearer <token>`.
    #[error("malformed token")]
    Malformed,
    #[error("unknown key or algorithm")]
    UnknownKey,
    #[error("bad signature or claims")]
    BadSignature,
    #[error("wrong issuer")]
    WrongIssuer,
    /// No `aud`, or not `[tokens] audience`. Told to the client as `bad_signature`: the
    /// detail is for the log.
    #[error("wrong or missing audience")]
    WrongAudience,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    /// The token or its session was revoked (logout, a spent refresh token replayed), or
    /// its account is gone or disabled.
    #[error("revoked")]
    Revoked,
    /// Issued before every token of the account was revoked (a role change, `user
    /// revoke`, a password reset or change).
    #[error("issued before the account's tokens were revoked")]
    Stale,
    #[error("session idle too long")]
    Idle,
}

impl TokenError {
    /// The RFC 6750 `error_description`: one fixed word per kind of refusal.
    pub fn description(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownKey | Self::BadSignature | Self::WrongAudience => "bad_signature",
            Self::WrongIssuer => "wrong_issuer",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Revoked => "revoked",
            Self::Stale => "stale",
            Self::Idle => "idle",
        }
    }

    /// What the client should do, as the JSON body's `message`.
    pub fn advice(self) -> &'static str {
        match self {
            Self::Malformed => {
                "the access token is malformed; send the access_token from POST /auth/login as `Authorization: Bearer TOKEN`"
            }
            Self::UnknownKey | Self::BadSignature | Self::WrongAudience => {
                "the access token was not signed by this gateway's current key; log in again"
            }
            Self::WrongIssuer => "the access token was issued by another gateway; log in here",
            Self::Expired => "the access token has expired; refresh it with POST /auth/refresh or log in again",
            Self::NotYetValid => "the access token is not valid yet; check the clocks, or log in again",
            Self::Revoked => "the access token's session was ended (logged out or revoked); log in again",
            Self::Stale => {
                "the access token predates a change to the account (roles, password or a revocation); log in again"
            }
            Self::Idle => "the session expired after a period of inactivity; log in again",
        }
    }
}

/// A request body the client can fix. Every text is built from the endpoint's own field
/// names (`&'static str`), never from what the client sent, so no value is echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyProblem {
    #[error("the body is empty; send a JSON object (Content-Type: application/json)")]
    Empty,
    #[error("the body must be JSON (Content-Type: application/json), not a form")]
    Form,
    #[error("the body must be JSON (Content-Type: application/json)")]
    NotJson,
    #[error("the body must be a JSON object")]
    NotObject,
    #[error("the field `{0}` is required")]
    Missing(&'static str),
    #[error("the field `{0}` must be a string")]
    NotString(&'static str),
    #[error("the field `{0}` is too long (at most {1} bytes)")]
    TooLong(&'static str, usize),
    #[error("send either `{0}` or `{1}`, not both and not neither")]
    OneOf(&'static str, &'static str),
    #[error("the field `{0}` is not valid: {1}")]
    Invalid(&'static str, &'static str),
}

/// Why a body was refused by a route's `request_fields` (contract §13). A field name is
/// the client's own text: it is kept only as [`shown`] makes it (bounded, no control
/// characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldRefusal {
    /// No JSON `Content-Type`, or bytes that are not JSON: 415.
    #[error("this route takes a JSON body (Content-Type: application/json)")]
    NotJson,
    /// JSON, but not an object: there is no field the list could allow.
    #[error("this route takes a JSON object")]
    NotObject,
    #[error("the field \"{0}\" is not accepted here")]
    Unknown(String),
    #[error("the field \"{0}\" is given twice")]
    Duplicate(String),
}

/// The longest field name a refusal repeats, in characters.
pub const SHOWN_FIELD_CHARS: usize = 64;

/// A client's field name as a refusal may repeat it: at most [`SHOWN_FIELD_CHARS`]
/// characters (then `…`), each control character replaced by `?`.
pub fn shown(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(SHOWN_FIELD_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if name.chars().nth(SHOWN_FIELD_CHARS).is_some() {
        out.push('…');
    }
    out
}

impl FieldRefusal {
    /// The stable error code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotJson => "unsupported_media_type",
            Self::NotObject => "not_an_object",
            Self::Unknown(_) => "unknown_field",
            Self::Duplicate(_) => "duplicate_field",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::GatewayError;
    use http::header::WWW_AUTHENTICATE;
    use http::StatusCode;

    // A refused token says why, in the body and in the challenge (RFC 6750 §3), and what to do.
    #[tokio::test]
    async fn token_refusal_says_why() {
        use http_body_util::BodyExt;
        let resp = GatewayError::TokenRefused(TokenError::Expired).to_response("r");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            resp.headers()[WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\", error_description=\"expired\""
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "invalid_token");
        assert_eq!(v["error_description"], "expired");
        assert!(v["message"].as_str().unwrap().contains("POST /auth/refresh"));
    }
}
