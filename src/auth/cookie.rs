//! Cookie sessions: `__Host-portcullis` holds an opaque random id (256 bits, never a
//! JWT) that stands for one session (refresh-token family), so a browser is the same
//! principal a bearer token of that session is, with the same revocations.
//!
//! Only a hash of the id is stored, as an entry of the refresh table under a key no
//! refresh token hashes to (`cookie:<sha-256>`): it runs out with the session and is
//! pruned like a refresh token, on every backend. Resolved ids are cached in memory,
//! bounded like the token cache, for at most the access-token lifetime; each request
//! checks the cached session against the in-memory revocation sets and the idle timeout,
//! so a cached cookie costs a map lookup and no store access. Past the cache's lifetime,
//! or once the account was revoked or changed, the id is looked up again, and the
//! account's roles and state read afresh.

use std::sync::Arc;

use http::header::COOKIE;
use http::HeaderMap;

use super::identity::IdentityHeaders;
use super::service::AuthService;
use super::state::Verified;
use super::tokens::{random_token, token_hash, Claims, LEEWAY_SECS};
use crate::error::GatewayError;
use crate::store::{RefreshEntry, StoreError};

/// The session cookie: `Secure; HttpOnly; SameSite=Lax; Path=/`.
pub const SESSION_COOKIE: &str = "__Host-portcullis";
/// The double-submit CSRF cookie, readable by scripts on purpose (`X-CSRF-Token`).
pub const CSRF_COOKIE: &str = "__Host-portcullis-csrf";
/// Every cookie the gateway sets starts with this; none of them goes upstream.
pub const COOKIE_PREFIX: &str = "__Host-portcullis";

/// The longest cookie value the gateway reads: its own are 43 characters.
const MAX_VALUE: usize = 64;

/// The value of cookie `name` in the request's `Cookie` headers, when it has the shape of
/// a value the gateway made (base64url, at most [`MAX_VALUE`] characters). Read as bytes,
/// in one pass: a header with other bytes than ASCII in another cookie's value is still
/// read.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let value = headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| pairs(v.as_bytes()))
        .find_map(|pair| pair.strip_prefix(name.as_bytes())?.strip_prefix(b"="))?
        .trim_ascii();
    let ours = !value.is_empty() && value.len() <= MAX_VALUE && value.iter().all(|&b| BASE64URL[usize::from(b)]);
    ours.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// Which bytes base64url (without padding) is made of.
static BASE64URL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b += 1;
    }
    table
};

/// The cookies of one `Cookie` header value, each `name=value` (or whatever stands
/// between two `;`) without the spaces around it; empty ones are skipped.
pub fn pairs(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || loop {
        let r = rest?;
        let pair = match memchr::memchr(b';', r) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                &r[..i]
            }
            None => {
                rest = None;
                r
            }
        };
        let pair = pair.trim_ascii();
        if !pair.is_empty() {
            return Some(pair);
        }
    })
}

/// The `Set-Cookie` value of a session cookie holding `id`.
pub fn session_set_cookie(id: &str) -> String {
    format!("{SESSION_COOKIE}={id}; Secure; HttpOnly; SameSite=Lax; Path=/")
}

/// The `Set-Cookie` value of a CSRF cookie holding `value`.
pub fn csrf_set_cookie(value: &str) -> String {
    format!("{CSRF_COOKIE}={value}; Secure; SameSite=Lax; Path=/")
}

/// The `Set-Cookie` values that clear both cookies.
pub fn cleared_cookies() -> [String; 2] {
    [
        format!("{SESSION_COOKIE}=; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"),
        format!("{CSRF_COOKIE}=; Secure; SameSite=Lax; Path=/; Max-Age=0"),
    ]
}

/// A new CSRF value (256 bits).
pub fn new_csrf() -> String {
    random_token()
}

/// The store key of cookie id `id`: no refresh token's hash has this shape.
fn key(id: &str) -> String {
    format!("cookie:{}", token_hash(id))
}

impl AuthService {
    /// A new cookie id for the session of `access_token` (a token this gateway just
    /// issued): what a form login or a completed second factor hands the browser.
    pub async fn open_cookie_session(&self, access_token: &str) -> Result<String, GatewayError> {
        let claims = self
            .keys
            .verify(access_token, self.clock.now())
            .map_err(GatewayError::TokenRefused)?;
        let session = self
            .store
            .session(&claims.sid)
            .await?
            .ok_or_else(|| GatewayError::Internal("a session just issued is gone".into()))?;
        let id = random_token();
        self.store
            .put_refresh(
                &key(&id),
                &RefreshEntry {
                    session_id: session.id,
                    expires: session.expires,
                },
            )
            .await?;
        self.store.flush().await?;
        Ok(id)
    }

    /// Ends cookie id `id` (its session lives on): at rotation.
    pub async fn close_cookie(&self, id: &str) -> Result<(), StoreError> {
        self.cookies.remove(id);
        let k = key(id);
        if let Some(mut entry) = self.store.refresh_entry(&k).await? {
            entry.expires = 0;
            self.store.put_refresh(&k, &entry).await?;
            self.store.flush().await?;
        }
        Ok(())
    }

    /// The caller a session cookie id stands for; `None` when the id is unknown, or its
    /// session has ended (revoked, logged out, idle, expired) or its account is disabled:
    /// a browser with a stale cookie is anonymous, and is sent to log in again.
    pub async fn authenticate_cookie(&self, id: &str) -> Result<Option<Arc<Verified>>, GatewayError> {
        let now = self.clock.now();
        let cached = self.cookies.get(id).map(|c| c.clone());
        let verified = match cached {
            Some(v) if now <= v.claims.exp && !self.account_changed_since(&v.claims) => v,
            _ => {
                self.cookies.remove(id);
                // Boxed: the store's future stays out of the request's on a cache hit.
                let Some(v) = Box::pin(self.load_cookie(id, now)).await? else {
                    return Ok(None);
                };
                if self.cookies.len() >= self.token_cache_max {
                    super::verify::evict(&self.cookies, self.token_cache_max, |v| v.claims.exp >= now);
                }
                self.cookies.insert(id.to_owned(), v.clone());
                v
            }
        };
        let claims = &verified.claims;
        if self.revoked.jti.contains_key(&claims.jti) || self.revoked.sessions.contains_key(&claims.sid) {
            return Ok(None);
        }
        if let Some(activity) = &verified.activity {
            if !activity.touch(now, self.idle.timeout) {
                return Ok(None);
            }
        }
        Ok(Some(verified))
    }

    /// Whether the account of a cached cookie session was revoked or changed since it was
    /// read (`nbf`): it is then read again, and the store says whether the session lives
    /// on (an attribute change) or not (`user revoke`).
    fn account_changed_since(&self, claims: &Claims) -> bool {
        self.revoked
            .users
            .get(&claims.sub)
            .is_some_and(|after| claims.nbf <= *after)
    }

    /// Looks cookie id `id` up in the store: its session, then its account.
    async fn load_cookie(&self, id: &str, now: u64) -> Result<Option<Arc<Verified>>, GatewayError> {
        let k = key(id);
        let Some(entry) = self.store.refresh_entry(&k).await?.filter(|e| e.expires > now) else {
            return Ok(None);
        };
        let Some(session) = self
            .store
            .session(&entry.session_id)
            .await?
            .filter(|s| !s.revoked && s.expires > now)
        else {
            return Ok(None);
        };
        let Some(user) = self
            .store
            .user(&session.user_id)
            .await?
            .filter(|u| !u.disabled && u.tokens_valid_after < session.created)
        else {
            return Ok(None);
        };
        let loaded = self.issued_at(&user.id, now);
        let claims = Claims {
            iss: self.keys.issuer().to_owned(),
            aud: self.keys.audience().to_owned(),
            sub: user.id,
            email: user.email,
            roles: user.roles,
            attrs: user.attributes,
            amr: session.amr.clone(),
            iat: session.created,
            // When the account was read; past a revocation in this second, like `iat` of
            // an access token, so that a reload after one is not reloaded again.
            nbf: loaded,
            // Read again from the store after an access token's lifetime, like a refresh.
            exp: (now + self.config.tokens.access_ttl.as_secs() + LEEWAY_SECS).min(session.expires),
            jti: format!("c-{}", &k[7..39]),
            sid: session.id.clone(),
            auth_time: session.last_auth(),
        };
        let principal = Arc::new(Self::principal(&claims));
        let identity = IdentityHeaders::of(&principal);
        let activity = self.idle.attach(&claims);
        Ok(Some(Arc::new(Verified {
            claims,
            principal,
            identity,
            activity,
        })))
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn cookie_values() {
        let mut h = HeaderMap::new();
        assert_eq!(cookie(&h, SESSION_COOKIE), None);
        h.append(
            COOKIE,
            "a=1; __Host-portcullis-csrf=xyz; __Host-portcullis=abc_-9"
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc_-9"));
        assert_eq!(cookie(&h, CSRF_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "a"), Some("1"));
        let mut h = HeaderMap::new();
        h.append(COOKIE, "__Host-portcullis=a%20b".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), None, "not a value the gateway made");
        let mut h = HeaderMap::new();
        h.append(COOKIE, format!("__Host-portcullis={}", "a".repeat(65)).parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), None, "overlong");
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_bytes("n=caf\u{e9};\t__Host-portcullis= id-1 ;;".as_bytes()).unwrap(),
        );
        assert_eq!(
            cookie(&h, SESSION_COOKIE),
            Some("id-1"),
            "another cookie past ASCII, spaces, tabs"
        );
        assert_eq!(cookie(&h, "n"), None, "not a value the gateway made");
        let mut h = HeaderMap::new();
        h.append(COOKIE, "__Host-portcullis =x; __Host-portcullis".parse().unwrap());
        h.append(COOKIE, "b=2; __Host-portcullis=second".parse().unwrap());
        assert_eq!(
            cookie(&h, SESSION_COOKIE),
            Some("second"),
            "the first of the right name, in any header"
        );
    }
}
