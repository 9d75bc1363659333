//! Token verification: the bearer token of a request becomes a [`Verified`] caller.
//!
//! Revocations (token ids, sessions, and "every token of this user before T") are kept in
//! memory as well as in the store, so checking a token on the request path never touches
//! the disk; verified tokens are cached until they expire, so a repeat costs a map lookup.
//! Only `Authorization: Bearer` is read, never a token in the query string.

use std::sync::Arc;

use dashmap::DashMap;
use http::header::AUTHORIZATION;
use http::HeaderMap;

use super::identity::IdentityHeaders;
use super::service::AuthService;
use super::state::Verified;
use super::tokens::{Claims, TokenError, LEEWAY_SECS};
use crate::error::GatewayError;
use crate::policy::Principal;
use crate::store::StoreError;

/// The bearer token of a request, if it has one. More than one `Authorization` header,
/// or one that is not `Bearer <token>`, is refused.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, GatewayError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    // More than one header, not text, or not `Bearer <token>`: all "malformed".
    let invalid = || GatewayError::TokenRefused(TokenError::Malformed);
    if values.next().is_some() {
        return Err(invalid());
    }
    // `Bearer `, in any case, then the token, spaces and tabs around it dropped. (After
    // `to_str`, every byte is visible ASCII or a tab.)
    let value = value.to_str().map_err(|_| invalid())?;
    let (scheme, token) = value.split_at_checked(7).ok_or_else(invalid)?;
    let token = token.trim_ascii();
    if !scheme.eq_ignore_ascii_case("bearer ") || token.is_empty() {
        return Err(invalid());
    }
    Ok(Some(token))
}

impl AuthService {
    /// Verifies the bearer token of a request, when there is one: `None` for a request
    /// without `Authorization`, 401 (`invalid_token`, with why) for one whose token is
    /// refused.
    #[inline]
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Arc<Verified>>, GatewayError> {
        let Some(token) = bearer(headers)? else {
            return Ok(None);
        };
        let verified = self.verify_access(token).map_err(GatewayError::TokenRefused)?;
        Ok(Some(verified))
    }

    /// Verifies a bearer access token: signature (cached after first sight), times,
    /// and every revocation.
    pub fn verify_access(&self, token: &str) -> Result<Arc<Verified>, TokenError> {
        let now = self.clock.now();
        let cached = self.verified.get(token).map(|c| c.clone());
        let verified = match cached {
            Some(v) if now <= v.claims.exp + LEEWAY_SECS => v,
            _ => {
                let claims = self.keys.verify(token, now)?;
                let principal = Arc::new(Self::principal(&claims));
                let identity = IdentityHeaders::of(&principal);
                let activity = self.idle.attach(&claims);
                let v = Arc::new(Verified {
                    claims,
                    principal,
                    identity,
                    activity,
                });
                if self.verified.len() >= self.token_cache_max {
                    self.make_room(now);
                }
                self.verified.insert(token.to_owned(), v.clone());
                v
            }
        };
        let claims = &verified.claims;
        if self.revoked.jti.contains_key(&claims.jti) || self.revoked.sessions.contains_key(&claims.sid) {
            return Err(TokenError::Revoked);
        }
        if self
            .revoked
            .users
            .get(&claims.sub)
            .is_some_and(|after| claims.iat <= *after)
        {
            return Err(TokenError::Stale);
        }
        if let Some(activity) = &verified.activity {
            if !activity.touch(now, self.idle.timeout) {
                return Err(TokenError::Idle);
            }
        }
        Ok(verified)
    }

    /// Makes room in a full token cache; one request does it while the others go on.
    #[cold]
    fn make_room(&self, now: u64) {
        use std::sync::atomic::Ordering;
        if self.evicting.swap(true, Ordering::Acquire) {
            return;
        }
        evict(&self.verified, self.token_cache_max, |v| {
            v.claims.exp + LEEWAY_SECS >= now
        });
        self.evicting.store(false, Ordering::Release);
    }

    /// Drops the expired revocations and cached tokens (part of [`AuthService::sweep`]).
    pub(super) fn sweep_verification(&self, now: u64) {
        self.revoked.jti.retain(|_, exp| *exp > now);
        self.revoked.sessions.retain(|_, exp| *exp > now);
        let span = self.user_revocation_span();
        self.revoked.users.retain(|_, after| after.saturating_add(span) >= now);
        self.verified.retain(|_, v| v.claims.exp + LEEWAY_SECS >= now);
    }

    /// Loads the revocations still in force from the store (at start-up).
    pub(super) async fn load_revocations(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        for (jti, exp) in self.store.revoked_jtis(now).await? {
            self.revoked.jti.insert(jti, exp);
        }
        for (sid, exp) in self.store.revoked_sessions(now).await? {
            self.revoked.sessions.insert(sid, exp);
        }
        for (id, after) in self
            .store
            .revoked_users(now.saturating_sub(self.user_revocation_span()))
            .await?
        {
            self.revoked.users.insert(id, after);
        }
        Ok(())
    }

    /// How long after `revoke_user` a token issued before it can still be unexpired; past
    /// that, the refusal needs no memory (refresh checks the account itself).
    pub(super) fn user_revocation_span(&self) -> u64 {
        self.config.tokens.access_ttl.as_secs() + LEEWAY_SECS
    }

    /// The principal a verified token stands for.
    pub fn principal(claims: &Claims) -> Principal {
        Principal {
            id: claims.sub.clone(),
            email: claims.email.clone(),
            roles: claims.roles.clone(),
            mfa: claims.amr.iter().any(|a| a == "otp"),
            auth_time: claims.auth_time,
            attributes: claims.attrs.clone(),
        }
    }
}

/// Makes room in a cache that has reached `max`: drops the entries that are no longer
/// `live`, then, if that freed less than an eighth, an arbitrary eighth of the rest (the
/// map's order follows a random hash). Past `max`, inserting stays cheap on average: one
/// pass over the map per `max / 8` insertions, and the entries in use stay.
pub(super) fn evict<K, V, S>(map: &DashMap<K, V, S>, max: usize, live: impl Fn(&V) -> bool)
where
    K: Eq + std::hash::Hash,
    S: std::hash::BuildHasher + Clone,
{
    map.retain(|_, v| live(v));
    let target = max - max / 8;
    let mut excess = map.len().saturating_sub(target);
    if excess > 0 {
        map.retain(|_, _| {
            if excess == 0 {
                return true;
            }
            excess -= 1;
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::SharedClock;
    use crate::config::Config;
    use crate::store::Store;

    /// A service on a temporary database, with a fake clock.
    async fn service(dir: &std::path::Path, clock: &crate::clock::ManualClock) -> AuthService {
        let src = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://localhost\"\ndata_dir = \"{}\"\npolicies = \"p\"\n",
            dir.display()
        );
        let config = Arc::new(Config::parse(&dir.join("g.toml"), &src).unwrap());
        let store = Store::temporary().unwrap();
        let clock: SharedClock = Arc::new(clock.clone());
        let (audit, _task) = crate::audit::Audit::start(&store, clock.clone()).unwrap();
        AuthService::new(config, store, clock, audit).await.unwrap()
    }

    fn token(auth: &AuthService, n: usize, ttl: u64) -> String {
        token_at(auth, n, ttl, auth.clock.now())
    }

    /// A token issued with `iat` (and `nbf`) at `iat`.
    fn token_at(auth: &AuthService, n: usize, ttl: u64, iat: u64) -> String {
        let now = auth.clock.now();
        auth.keys
            .sign(&Claims {
                iss: "https://localhost".into(),
                aud: "https://localhost".into(),
                sub: "u-1".into(),
                email: "a@example.com".into(),
                roles: vec!["customer".into()],
                amr: vec!["pwd".into()],
                iat,
                nbf: iat,
                exp: now + ttl,
                jti: format!("jti-{n}"),
                sid: "s-1".into(),
                auth_time: now,
                attrs: Default::default(),
            })
            .unwrap()
    }

    // A full token cache makes room by dropping expired tokens, then a few others; the
    // tokens in use stay cached (it used to empty itself).
    #[tokio::test]
    async fn token_cache_evicts_instead_of_clearing() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::ManualClock::new();
        let mut auth = service(dir.path(), &clock).await;
        auth.token_cache_max = 16;
        let short: Vec<String> = (0..8).map(|n| token(&auth, n, 10)).collect();
        let long: Vec<String> = (8..16).map(|n| token(&auth, n, 300)).collect();
        for t in short.iter().chain(&long) {
            auth.verify_access(t).unwrap();
        }
        assert_eq!(auth.verified.len(), 16);
        clock.advance(Duration::from_secs(60));
        auth.verify_access(&token(&auth, 16, 300)).unwrap();
        assert_eq!(auth.verified.len(), 9, "the expired tokens go first, and only they");
        assert!(long.iter().all(|t| auth.verified.contains_key(t)));
        for n in 17..24 {
            auth.verify_access(&token(&auth, n, 300)).unwrap();
        }
        assert_eq!(auth.verified.len(), 16);
        auth.verify_access(&token(&auth, 24, 300)).unwrap();
        assert_eq!(auth.verified.len(), 15, "an eighth goes when nothing has expired");
    }

    // Tokens issued in the second of an attribute change carry the next second, so the
    // change does not refuse them; a second change within that second refuses them too.
    #[tokio::test]
    async fn a_second_staling_in_the_same_second_covers_the_tokens_of_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::ManualClock::new();
        clock.set_ms(1_800_000_000_000);
        let auth = service(dir.path(), &clock).await;
        let now = auth.clock.now();
        let old = token_at(&auth, 1, 300, now);
        auth.stale_access_tokens("u-1").await.unwrap();
        assert!(matches!(auth.verify_access(&old), Err(TokenError::Stale)));
        let iat = auth.issued_at("u-1", now);
        assert_eq!(iat, now + 1);
        let refreshed = token_at(&auth, 2, 300, iat);
        auth.verify_access(&refreshed).unwrap();
        auth.stale_access_tokens("u-1").await.unwrap();
        assert!(
            matches!(auth.verify_access(&refreshed), Err(TokenError::Stale)),
            "the token issued after the first change survived the second"
        );
        assert_eq!(auth.issued_at("u-1", now), now + 2);
        clock.advance(Duration::from_secs(5));
        assert_eq!(auth.issued_at("u-1", auth.clock.now()), now + 5);
    }

    // A full cache drops expired entries first and never empties itself.
    #[test]
    fn eviction_keeps_most() {
        let map: DashMap<u32, bool> = DashMap::new();
        for i in 0..800 {
            map.insert(i, i % 8 != 0);
        }
        evict(&map, 800, |live| *live);
        assert_eq!(map.len(), 700, "only the 100 expired entries go");
        assert!(map.iter().all(|e| *e.value()));
        for i in 800..900 {
            map.insert(i, true);
        }
        evict(&map, 800, |live| *live);
        assert_eq!(map.len(), 700, "an eighth goes when nothing has expired");
    }

    // Only a single `Bearer <token>` header is a token; anything else is refused.
    #[test]
    fn bearer_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h).unwrap(), None);
        h.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h).unwrap(), Some("abc"));
        h.insert(AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h).unwrap(), Some("abc"));
        h.insert(AUTHORIZATION, "BEARER \t abc\t ".parse().unwrap());
        assert_eq!(bearer(&h).unwrap(), Some("abc"));
        for bad in [
            "Basic dXNlcjpw",
            "Bearer",
            "Bearer ",
            "Bearer \t ",
            "Bearerx abc",
            "Bearer\tabc",
            " Bearer abc",
            "abc",
        ] {
            h.insert(AUTHORIZATION, bad.parse().unwrap());
            assert!(bearer(&h).is_err(), "{bad}");
        }
        // Bytes past ASCII (obs-text, which a header value may carry) are no token.
        h.insert(AUTHORIZATION, http::HeaderValue::from_bytes(b"Bearer ab\xffc").unwrap());
        assert!(bearer(&h).is_err());
        h.insert(AUTHORIZATION, "Bearer a".parse().unwrap());
        h.append(AUTHORIZATION, "Bearer b".parse().unwrap());
        assert!(bearer(&h).is_err());
    }
}
