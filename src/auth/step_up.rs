//! Step-up authentication (RFC 9470): a signed-in caller passes the second factor again
//! and gets tokens of the same session with a fresh `auth_time`, for the routes whose
//! `mfa_max_age` its token no longer meets.
//!
//! A wrong code counts toward the account's lockout like a wrong code at login, under the
//! same per-account attempt lock: a bearer token gives no more guesses than a password.

use super::flow::{AuthEvent, Flow};
use super::recovery;
use super::service::AuthService;
use super::sessions::TokenPair;
use super::state::Verified;
use super::tokens::{random_token, token_hash};
use super::totp;
use crate::audit::EventKind;
use crate::error::GatewayError;
use crate::store::{RefreshEntry, StoreError};

impl AuthService {
    /// `POST /auth/step-up`: checks `code` (a TOTP code or a recovery code) for the
    /// caller, then rotates the caller's session: a new refresh token (the old one is no
    /// longer current) and an access token with `auth_time` = now and `otp` in `amr`.
    pub async fn step_up(&self, caller: &Verified, code: &str) -> Flow<TokenPair> {
        Flow::audited(self.try_step_up(caller, code).await)
    }

    async fn try_step_up(
        &self,
        caller: &Verified,
        code: &str,
    ) -> Result<(TokenPair, AuthEvent), (GatewayError, AuthEvent)> {
        let principal = &caller.principal;
        let ev = |event: EventKind, reason: &str| AuthEvent {
            event,
            user_id: Some(principal.id.clone()),
            email: Some(principal.email.clone()),
            reason: Some(reason.to_owned()),
        };
        let refused = |e: GatewayError, reason: &str| (e, ev(EventKind::StepUpRefused, reason));
        let store_err = |e: StoreError| refused(e.into(), "storage failure");
        let _attempt = self.attempt_lock(&principal.email).await;
        let user = self
            .store
            .user(&principal.id)
            .await
            .map_err(store_err)?
            .filter(|u| !u.disabled)
            .ok_or_else(|| refused(GatewayError::InvalidGrant, "no such account, or disabled"))?;
        if !user.mfa_enabled() {
            return Err(refused(
                GatewayError::Forbidden {
                    reason: "the account has no second factor to step up with".into(),
                },
                "no TOTP enrolled",
            ));
        }
        let now_ms = self.clock.now_ms();
        if let Some(until) = self.store.locked_until(&user.email, now_ms).await.map_err(store_err)? {
            return Err((self.locked_error(until), ev(EventKind::LoginLocked, "locked; step-up")));
        }
        let passed = if recovery::looks_like_recovery(code) {
            self.spend_recovery_code(&user.id, code)
                .await
                .map_err(store_err)?
                .map(|(u, left)| (u, Some(left)))
                .ok_or(totp::Rejected::Wrong)
        } else {
            self.spend_totp(&user, user.totp_secret.as_deref(), code, now_ms, None)
                .await
                .map_err(store_err)?
                .map(|u| (u, None))
        };
        let (user, codes_left) = match passed {
            Ok(passed) => passed,
            Err(why) => {
                self.record_failure(&user.email).await.map_err(store_err)?;
                self.store.flush().await.map_err(store_err)?;
                return Err(match why {
                    totp::Rejected::Reused => refused(GatewayError::CodeReused { login_again: false }, "reused code"),
                    totp::Rejected::Wrong => refused(GatewayError::InvalidCode { login_again: false }, "wrong code"),
                });
            }
        };
        self.store.clear_failures(&user.email).await.map_err(store_err)?;

        // The caller's session, rotated: new refresh token, fresh auth_time.
        let gone = || refused(GatewayError::InvalidGrant, "session revoked or expired");
        let session = self
            .store
            .session(&caller.claims.sid)
            .await
            .map_err(store_err)?
            .filter(|s| s.user_id == user.id && !s.revoked && s.expires > self.clock.now())
            .ok_or_else(gone)?;
        let new_refresh = random_token();
        let mut rotated = session.clone();
        rotated.current_refresh = token_hash(&new_refresh);
        rotated.auth_time = self.clock.now();
        if !rotated.amr.iter().any(|a| a == "otp") {
            rotated.amr.push("otp".into());
        }
        if !self.store.swap_session(&session, &rotated).await.map_err(store_err)? {
            // A refresh of the same session won the race; the client retries.
            self.store.flush().await.map_err(store_err)?;
            return Err(gone());
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
            .access_token(&user, &rotated.amr, &rotated.id, rotated.auth_time)
            .map_err(store_err)?;
        self.store.flush().await.map_err(store_err)?;
        let pair = TokenPair {
            access_token: access,
            refresh_token: new_refresh,
            token_type: "Bearer",
            expires_in: self.config.tokens.access_ttl.as_secs(),
        };
        let event = match codes_left {
            Some(left) => ev(
                EventKind::RecoveryCodeUsed,
                &format!("step-up; {left} recovery codes left"),
            ),
            None => ev(EventKind::StepUp, "TOTP code"),
        };
        Ok((pair, event))
    }
}
