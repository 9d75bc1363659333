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

/// A revocation map: its keys are ids the gateway made (token, session, user ids), never
/// chosen by a client, so it takes the fast hasher (three lookups on every request).
pub(super) type RevocationMap = DashMap<String, u64, foldhash::fast::RandomState>;

/// Revocations still in force, as the request path checks them.
#[derive(Default)]
pub(super) struct Revocations {
    /// Token id -> its expiry (Unix seconds).
    pub(super) jti: RevocationMap,
    /// Session id -> its expiry (Unix seconds).
    pub(super) sessions: RevocationMap,
    /// User id -> tokens issued at or before this second are refused.
    pub(super) users: RevocationMap,
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
