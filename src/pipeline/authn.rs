//! Phase 2: a bearer token becomes a [`Principal`](crate::policy::Principal), or the
//! caller is anonymous.
//!
//! The token is read and verified by the auth service ([`AuthService::authenticate`]).
//! A header that is present but not a valid, unrevoked access token is refused outright
//! (401 with `WWW-Authenticate: Bearer error="invalid_token"`), even on public routes: a
//! client holding a bad token should learn so rather than be served as anonymous.

use std::sync::Arc;

use http::HeaderMap;

use crate::auth::{AuthService, Verified};
use crate::error::GatewayError;

/// Verifies the bearer token of a request, when there is one.
#[inline]
pub fn authenticate(auth: &AuthService, headers: &HeaderMap) -> Result<Option<Arc<Verified>>, GatewayError> {
    auth.authenticate(headers)
}
