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

/// Verified tokens by the whole token, hashed by its end (see [`TailHash`]).
pub(super) type TokenCache = DashMap<String, Arc<Verified>, TailHash>;

/// How many bytes at the end of a key [`TailHash`] hashes.
const HASHED_TAIL: usize = 16;

/// Hashes a key by its last [`HASHED_TAIL`] bytes and its length, with the fast seeded
/// hasher. A cache key is a whole token (hundreds of bytes) or a cookie id, and still
/// compared whole: only the hash is cut short. A token ends in its signature, which
/// differs between any two tokens the gateway issued, so their hashes spread as well as
/// if all of it were hashed; and only tokens that verified are ever kept, so a client
/// cannot fill the map with keys of one hash. Hashing all of a bearer token cost more
/// than the rest of its lookup.
#[derive(Clone, Default)]
pub(super) struct TailHash(foldhash::fast::RandomState);

impl std::hash::BuildHasher for TailHash {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

pub(super) struct TailHasher(foldhash::fast::FoldHasher<'static>);

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..]);
        self.0.write_usize(bytes.len());
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

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

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    // Keys that share their hashed tail and length hash alike, and are still told
    // apart: the map compares them whole.
    #[test]
    fn tail_hash_keeps_keys_whole() {
        let hash = TailHash::default();
        let tail = "s".repeat(HASHED_TAIL);
        let (a, b) = (format!("header.claims-a.{tail}"), format!("header.claims-b.{tail}"));
        assert_eq!(hash.hash_one(&a), hash.hash_one(&b));
        assert_ne!(hash.hash_one(&a), hash.hash_one(format!("{a}x")));
        let map: DashMap<String, u8, TailHash> = DashMap::default();
        map.insert(a.clone(), 1);
        map.insert(b.clone(), 2);
        assert_eq!((map.len(), *map.get(&a).unwrap(), *map.get(&b).unwrap()), (2, 1, 2));
        assert!(map.get(&format!("header.claims-c.{tail}")).is_none());
    }
}
