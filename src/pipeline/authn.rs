//! Phase 2: a bearer token becomes a [`Principal`], or the caller is anonymous.
//!
//! Only `Authorization: Bearer` is read, never a token in the query string. A header that
//! is present but not a valid, unrevoked access token is refused outright (401 with
//! `WWW-Authenticate: Bearer error="invalid_token"`), even on public routes: a client
//! holding a bad token should learn so rather than be served as anonymous.

use http::header::AUTHORIZATION;
use http::HeaderMap;

use std::sync::Arc;

use crate::auth::service::{AuthService, Verified};
use crate::error::GatewayError;

/// The bearer token of a request, if it has one. More than one `Authorization` header,
/// or one that is not `Bearer <token>`, is refused.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, GatewayError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |reason: &str| GatewayError::Unauthenticated {
        reason: reason.to_owned(),
        invalid_token: true,
    };
    if values.next().is_some() {
        return Err(invalid("more than one Authorization header"));
    }
    let value = value.to_str().map_err(|_| invalid("Authorization is not text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| invalid("Authorization is not Bearer"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(invalid("Authorization is not Bearer"));
    }
    Ok(Some(token.trim()))
}

/// Verifies the bearer token of a request, when there is one.
pub fn authenticate(auth: &AuthService, headers: &HeaderMap) -> Result<Option<Arc<Verified>>, GatewayError> {
    let Some(token) = bearer(headers)? else {
        return Ok(None);
    };
    let verified = auth.verify_access(token).map_err(|e| GatewayError::Unauthenticated {
        reason: format!("token refused: {e}"),
        invalid_token: true,
    })?;
    Ok(Some(verified))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Only a single `Bearer <token>` header is a token; anything else is refused.
    #[test]
    fn bearer_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h).unwrap(), None);
        h.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h).unwrap(), Some("abc"));
        h.insert(AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h).unwrap(), Some("abc"));
        for bad in ["Basic dXNlcjpw", "Bearer", "Bearer ", "abc"] {
            h.insert(AUTHORIZATION, bad.parse().unwrap());
            assert!(bearer(&h).is_err(), "{bad}");
        }
        h.insert(AUTHORIZATION, "Bearer a".parse().unwrap());
        h.append(AUTHORIZATION, "Bearer b".parse().unwrap());
        assert!(bearer(&h).is_err());
    }
}
