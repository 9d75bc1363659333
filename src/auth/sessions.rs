//! Sessions: a refresh-token family per sign-in, token issue, refresh rotation (with
//! reuse detection), logout and revocation of a user's every token.

use super::attributes::past;
use super::flow::{AuthEvent, Flow};
use super::service::AuthService;
use super::state::Verified;
use super::tokens::{random_token, token_hash, Claims};
use crate::audit::EventKind;
use crate::error::{GatewayError, TokenError};
use crate::store::{RefreshEntry, Session, StoreError, User};

/// What a successful login or refresh hands the client.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

impl AuthService {
    /// A signed access token for `user` in session `sid`, whose second factor (or
    /// password) was passed at `auth_time`.
    pub(super) fn access_token(
        &self,
        user: &User,
        amr: &[String],
        sid: &str,
        auth_time: u64,
    ) -> Result<String, StoreError> {
        let now = self.clock.now();
        let claims = Claims {
            iss: self.keys.issuer().to_owned(),
            aud: self.keys.audience().to_owned(),
            sub: user.id.clone(),
            email: user.email.clone(),
            roles: user.roles.clone(),
            attrs: user.attributes.clone(),
            amr: amr.to_vec(),
            iat: self.issued_at(&user.id, now),
            nbf: now,
            exp: now + self.config.tokens.access_ttl.as_secs(),
            jti: random_token(),
            sid: sid.to_owned(),
            auth_time,
        };
        // Signing with a loaded key does not fail; if it ever did, the pair would carry an
        // empty access token, which every verifier refuses (the refresh token still works).
        Ok(self.keys.sign(&claims).unwrap_or_default())
    }

    /// A new session (refresh-token family) and its first tokens.
    pub(super) async fn issue(&self, user: &User, amr: Vec<String>) -> Result<TokenPair, StoreError> {
        let now = self.clock.now();
        let refresh = random_token();
        // Past a `user revoke` in this same second, which covers what was made in it.
        let created = past(now, user.tokens_valid_after);
        let session = Session {
            id: format!("s-{}", &token_hash(&random_token())[..32]),
            user_id: user.id.clone(),
            current_refresh: token_hash(&refresh),
            amr,
            created,
            auth_time: now,
            expires: now + self.config.tokens.refresh_ttl.as_secs(),
            revoked: false,
        };
        self.store.put_session(&session).await?;
        self.session_used(&session.id);
        self.store
            .put_refresh(
                &session.current_refresh,
                &RefreshEntry {
                    session_id: session.id.clone(),
                    expires: session.expires,
                },
            )
            .await?;
        Ok(TokenPair {
            access_token: self.access_token(user, &session.amr, &session.id, session.auth_time)?,
            refresh_token: refresh,
            token_type: "Bearer",
            expires_in: self.config.tokens.access_ttl.as_secs(),
        })
    }

    /// Rotates a refresh token. A spent token presented again revokes its whole family.
    pub async fn refresh(&self, refresh_token: &str) -> Flow<TokenPair> {
        Flow::audited(self.try_refresh(refresh_token).await)
    }

    async fn try_refresh(&self, refresh_token: &str) -> Result<(TokenPair, AuthEvent), (GatewayError, AuthEvent)> {
        let ev = |event: EventKind, user: Option<&str>, reason: Option<&str>| AuthEvent {
            event,
            user_id: user.map(str::to_owned),
            email: None,
            reason: reason.map(str::to_owned),
        };
        let invalid = |reason: &str| {
            (
                GatewayError::InvalidGrant,
                ev(EventKind::TokenRefreshRefused, None, Some(reason)),
            )
        };
        let store_err = |e: StoreError| {
            (
                GatewayError::from(e),
                ev(EventKind::TokenRefreshRefused, None, Some("storage failure")),
            )
        };
        let now = self.clock.now();
        let hash = token_hash(refresh_token);
        let entry = self
            .store
            .refresh_entry(&hash)
            .await
            .map_err(store_err)?
            .ok_or_else(|| invalid("unknown refresh token"))?;
        let session = self
            .store
            .session(&entry.session_id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| invalid("unknown session"))?;
        if session.revoked || session.expires <= now {
            return Err(invalid("session revoked or expired"));
        }
        let issued = entry.expires.saturating_sub(self.config.tokens.refresh_ttl.as_secs());
        if let Some(ended) = self.end_if_idle(&session.id, issued).await.map_err(store_err)? {
            self.store.flush().await.map_err(store_err)?;
            return Err(match ended {
                Some(event) => (GatewayError::InvalidGrant, event),
                None => invalid("session idle"),
            });
        }
        if session.current_refresh != hash {
            self.revoke_session(&session).await.map_err(store_err)?;
            self.store.flush().await.map_err(store_err)?;
            return Err((
                GatewayError::InvalidGrant,
                ev(
                    EventKind::RefreshReuse,
                    Some(&session.user_id),
                    Some("spent refresh token presented again; session revoked"),
                ),
            ));
        }
        let user = self
            .store
            .user(&session.user_id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| invalid("unknown user"))?;
        if user.disabled || user.tokens_valid_after >= session.created {
            return Err(invalid("user disabled or sessions revoked"));
        }
        let new_refresh = random_token();
        let mut rotated = session.clone();
        rotated.current_refresh = token_hash(&new_refresh);
        if !self.store.swap_session(&session, &rotated).await.map_err(store_err)? {
            // Another request rotated the same token first: this is a reuse.
            self.revoke_session(&rotated).await.map_err(store_err)?;
            self.store.flush().await.map_err(store_err)?;
            return Err((
                GatewayError::InvalidGrant,
                ev(
                    EventKind::RefreshReuse,
                    Some(&user.id),
                    Some("concurrent reuse; session revoked"),
                ),
            ));
        }
        self.store
            .put_refresh(
                &rotated.current_refresh,
                &RefreshEntry {
                    session_id: rotated.id.clone(),
                    expires: rotated.expires,
                },
            )
            .await
            .map_err(store_err)?;
        let access = self
            .access_token(&user, &rotated.amr, &rotated.id, rotated.last_auth())
            .map_err(store_err)?;
        self.session_used(&rotated.id);
        self.store.flush().await.map_err(store_err)?;
        Ok((
            TokenPair {
                access_token: access,
                refresh_token: new_refresh,
                token_type: "Bearer",
                expires_in: self.config.tokens.access_ttl.as_secs(),
            },
            ev(EventKind::TokenRefresh, Some(&user.id), None),
        ))
    }

    /// Marks a session revoked, in the store and in memory.
    pub(super) async fn revoke_session(&self, session: &Session) -> Result<(), StoreError> {
        let mut s = self
            .store
            .session(&session.id)
            .await?
            .unwrap_or_else(|| session.clone());
        s.revoked = true;
        self.store.put_session(&s).await?;
        self.revoked.sessions.insert(s.id.clone(), s.expires);
        self.forget_activity(&s.id).await?;
        Ok(())
    }

    /// Logout: revokes the caller's access token and its session (and the session of a
    /// refresh token given with it, when it is the caller's).
    pub async fn logout(&self, caller: &Verified, refresh_token: Option<&str>) -> Flow<()> {
        let outcome = self.revoke_for_logout(&caller.claims, refresh_token).await;
        Flow::audited_success(outcome.map(|()| {
            let event = AuthEvent {
                event: EventKind::Logout,
                user_id: Some(caller.principal.id.clone()),
                email: Some(caller.principal.email.clone()),
                reason: None,
            };
            ((), event)
        }))
    }

    async fn revoke_for_logout(&self, claims: &Claims, refresh_token: Option<&str>) -> Result<(), GatewayError> {
        self.store.revoke_jti(&claims.jti, claims.exp).await?;
        self.revoked.jti.insert(claims.jti.clone(), claims.exp);
        if let Some(s) = self.store.session(&claims.sid).await? {
            self.revoke_session(&s).await?;
        }
        if let Some(rt) = refresh_token {
            if let Some(entry) = self.store.refresh_entry(&token_hash(rt)).await? {
                if let Some(s) = self
                    .store
                    .session(&entry.session_id)
                    .await?
                    .filter(|s| s.user_id == claims.sub)
                {
                    self.revoke_session(&s).await?;
                }
            }
        }
        self.store.flush().await?;
        Ok(())
    }

    /// Ends every session and every outstanding access token of a user at once.
    ///
    /// Sessions made in the second of an earlier revoke carry the next second
    /// ([`Self::issue`]), so a second revoke in that second moves one past the first;
    /// access tokens likewise ([`Self::stale_access_tokens`]).
    pub async fn revoke_user(&self, user_id: &str) -> Result<(), StoreError> {
        let now = self.clock.now();
        self.store
            .update_user(user_id, |u| u.tokens_valid_after = past(now, u.tokens_valid_after))
            .await?;
        self.stale_access_tokens(user_id).await?;
        for s in self.store.sessions_of(user_id).await? {
            if !s.revoked {
                self.revoke_session(&s).await?;
            }
        }
        Ok(())
    }

    /// The account of a signed-in caller (`GET /auth/me`); a token whose account is
    /// gone is refused.
    pub async fn account(&self, caller: &Verified) -> Result<User, GatewayError> {
        self.store
            .user(&caller.principal.id)
            .await?
            .ok_or(GatewayError::TokenRefused(TokenError::Revoked))
    }
}
