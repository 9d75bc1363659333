//! What the flows share besides the store: the verified-token cache and the
//! revocations still in force, as the request path reads them.

use std::sync::Arc;

use dashmap::DashMap;

use super::identity::IdentityHeaders;
use super::tokens::Claims;
use crate::policy::Principal;

/// Most verified tokens remembered; past it, expired entries and then an arbitrary
/// eighth of the rest make room (see `AuthService::evict`).
pub(super) const TOKEN_CACHE_MAX: usize = 50_000;

/// Verified tokens by the whole token, with a fast hasher.
pub(super) type TokenCache = DashMap<String, Arc<Verified>, foldhash::fast::RandomState>;

/// Revocations still in force, as the request path checks them.
#[derive(Default)]
pub(super) struct Revocations {
    /// Token id -> its expiry (Unix seconds).
    pub(super) jti: DashMap<String, u64>,
    /// Session id -> its expiry (Unix seconds).
    pub(super) sessions: DashMap<String, u64>,
    /// User id -> tokens issued at or before this second are refused.
    pub(super) users: DashMap<String, u64>,
}

/// A verified access token and what requests need from it, made once per token and
/// shared by every request that presents it.
pub struct Verified {
    pub claims: Claims,
    pub principal: Arc<Principal>,
    /// The identity headers the upstream receives for this caller.
    pub identity: IdentityHeaders,
    /// When its session was last used, with `[tokens] idle_timeout` on.
    pub activity: Option<Arc<super::activity::Activity>>,
}
