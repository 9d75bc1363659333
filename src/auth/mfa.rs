//! The second factor: TOTP challenges, enrolment, and the code that completes a login.

use super::flow::{AuthEvent, Flow};
use super::recovery;
use super::service::AuthService;
use super::sessions::TokenPair;
use super::tokens::{random_token, token_hash};
use super::totp;
use crate::audit::EventKind;
use crate::error::GatewayError;
use crate::policy::Principal;
use crate::store::{Challenge, StoreError, User};
use subtle::ConstantTimeEq;

/// What an enrolment hands the client.
#[derive(Debug, serde::Serialize)]
pub struct Enrollment {
    pub secret: String,
    pub otpauth_uri: String,
    /// A QR code of `otpauth_uri`: a PNG, in standard base64.
    pub qr_png: String,
    pub mfa_token: String,
}

/// The second factor presented at `/auth/mfa`.
#[derive(Debug, Clone, Copy)]
pub enum MfaCode<'a> {
    Totp(&'a str),
    Recovery(&'a str),
}

/// What a completed second factor hands the client: tokens, and when it completed an
/// enrolment, the new recovery codes (shown this once).
#[derive(Debug, serde::Serialize)]
pub struct MfaGrant {
    #[serde(flatten)]
    pub tokens: TokenPair,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
}

impl AuthService {
    /// A challenge for a second factor. An enrolment challenge (one offering a secret)
    /// replaces the user's previous one, so a caller cannot pile them up.
    pub(super) async fn new_challenge(
        &self,
        user: &User,
        pending_secret: Option<String>,
    ) -> Result<(String, u64), StoreError> {
        let token = random_token();
        let ttl = self.config.login.mfa_ttl;
        let enrolment = pending_secret.is_some();
        let challenge = Challenge {
            user_id: user.id.clone(),
            expires_ms: self.clock.now_ms() + u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            pending_secret,
            password_hash: Some(user.password_hash.clone()),
        };
        if enrolment {
            self.store.put_enrolment(&token_hash(&token), &challenge).await?;
        } else {
            self.store.put_challenge(&token_hash(&token), &challenge).await?;
        }
        Ok((token, ttl.as_secs()))
    }

    /// Takes a challenge: spent whether or not it is still valid.
    async fn take_challenge(&self, mfa_token: &str) -> Result<Challenge, GatewayError> {
        self.store
            .take_challenge(&token_hash(mfa_token))
            .await?
            .filter(|c| c.expires_ms > self.clock.now_ms())
            .ok_or(GatewayError::InvalidGrant)
    }

    /// Whether `challenge` was opened by `user`'s current password: one opened before the
    /// password changed no longer counts.
    fn opened_by_current_password(challenge: &Challenge, user: &User) -> bool {
        challenge
            .password_hash
            .as_ref()
            .is_none_or(|h| bool::from(h.as_bytes().ct_eq(user.password_hash.as_bytes())))
    }

    /// Starts TOTP enrolment, from an MFA challenge (first login of staff) or for a
    /// signed-in caller. An account that already has TOTP can only re-enrol from a
    /// session that passed TOTP, so a password alone never replaces the second factor.
    pub async fn enroll(&self, mfa_token: Option<&str>, caller: Option<&Principal>) -> Flow<Enrollment> {
        Flow::unaudited(self.try_enroll(mfa_token, caller).await)
    }

    async fn try_enroll(
        &self,
        mfa_token: Option<&str>,
        caller: Option<&Principal>,
    ) -> Result<Enrollment, GatewayError> {
        let challenge = match mfa_token {
            Some(t) => Some(self.take_challenge(t).await?),
            None => None,
        };
        let user_id = match (&challenge, caller) {
            (Some(c), _) => c.user_id.clone(),
            (None, Some(p)) => p.id.clone(),
            (None, None) => return Err(GatewayError::InvalidGrant),
        };
        let user = self.store.user(&user_id).await?.ok_or(GatewayError::InvalidGrant)?;
        if challenge
            .as_ref()
            .is_some_and(|c| !Self::opened_by_current_password(c, &user))
        {
            self.store.flush().await?;
            return Err(GatewayError::InvalidGrant);
        }
        let reenrol_allowed = caller.is_some_and(|p| p.mfa && mfa_token.is_none());
        if user.disabled || (user.mfa_enabled() && !reenrol_allowed) {
            self.store.flush().await?;
            return Err(GatewayError::InvalidGrant);
        }
        let secret = totp::generate_secret();
        let uri = totp::otpauth_uri(&secret, &user.email, &self.config.totp.issuer)
            .ok_or_else(|| GatewayError::Internal("totp".into()))?;
        let qr_png = totp::qr_png_base64(&secret, &user.email, &self.config.totp.issuer)
            .ok_or_else(|| GatewayError::Internal("qr".into()))?;
        let (token, _) = self.new_challenge(&user, Some(secret.clone())).await?;
        self.store.flush().await?;
        Ok(Enrollment {
            secret,
            otpauth_uri: uri,
            qr_png,
            mfa_token: token,
        })
    }

    /// Completes a login (or an enrolment) with a TOTP code or a recovery code. A wrong
    /// code spends the challenge and counts as a failed login.
    pub async fn mfa(&self, mfa_token: &str, code: MfaCode<'_>) -> Flow<MfaGrant> {
        Flow::audited(self.try_mfa(mfa_token, code).await)
    }

    /// Checks a TOTP code against `secret` (the account's, or the one an enrolment
    /// offers) and accepts it at most once: the step is written only if it is still later
    /// than the stored one (checked again on the stored record, atomically). Completing
    /// an enrolment stores the secret and the hashes of its recovery codes with it.
    pub(super) async fn spend_totp(
        &self,
        user: &User,
        secret: Option<&str>,
        code: &str,
        now_ms: u64,
        enrolment: Option<&[String]>,
    ) -> Result<Result<User, totp::Rejected>, StoreError> {
        let step = secret.map_or(Err(totp::Rejected::Wrong), |s| {
            totp::check(s, code, now_ms / 1000, user.totp_last_step)
        });
        let step = match step {
            Ok(_) if user.disabled => return Ok(Err(totp::Rejected::Wrong)),
            Ok(step) => step,
            Err(why) => return Ok(Err(why)),
        };
        // Refused on the stored record: another request accepted this step (or a later
        // one) first, so this code has been used.
        let spent = self
            .store
            .try_update_user(&user.id, |u| {
                if u.totp_last_step >= step || u.disabled {
                    return false;
                }
                u.totp_last_step = step;
                if let Some(hashes) = enrolment {
                    u.totp_secret = secret.map(str::to_owned);
                    u.recovery_codes = hashes.to_vec();
                }
                true
            })
            .await?;
        Ok(spent.ok_or(totp::Rejected::Reused))
    }

    async fn try_mfa(
        &self,
        mfa_token: &str,
        code: MfaCode<'_>,
    ) -> Result<(MfaGrant, AuthEvent), (GatewayError, AuthEvent)> {
        let ev = |event: EventKind, user: Option<&User>, reason: Option<&str>| AuthEvent {
            event,
            user_id: user.map(|u| u.id.clone()),
            email: user.map(|u| u.email.clone()),
            reason: reason.map(str::to_owned),
        };
        let err = |e: GatewayError| {
            let reason = e.to_string();
            (e, ev(EventKind::MfaFailure, None, Some(&reason)))
        };
        let challenge = self.take_challenge(mfa_token).await.map_err(err)?;
        let email = self
            .store
            .user(&challenge.user_id)
            .await
            .map_err(|e| err(e.into()))?
            .ok_or_else(|| err(GatewayError::InvalidGrant))?
            .email;
        let _attempt = self.attempt_lock(&email).await;
        // Everything decided from here on is read under the lock: a request that queued
        // behind another for the same account sees the step that one accepted.
        let user = self
            .store
            .user(&challenge.user_id)
            .await
            .map_err(|e| err(e.into()))?
            .ok_or_else(|| err(GatewayError::InvalidGrant))?;
        if !Self::opened_by_current_password(&challenge, &user) {
            self.store.flush().await.map_err(|e| err(e.into()))?;
            return Err((
                GatewayError::InvalidGrant,
                ev(
                    EventKind::MfaFailure,
                    Some(&user),
                    Some("the password changed since the challenge"),
                ),
            ));
        }
        let now_ms = self.clock.now_ms();
        if let Some(until) = self
            .store
            .locked_until(&user.email, now_ms)
            .await
            .map_err(|e| err(e.into()))?
        {
            self.store.flush().await.map_err(|e| err(e.into()))?;
            return Err((
                self.locked_error(until),
                ev(EventKind::LoginLocked, Some(&user), Some("locked")),
            ));
        }
        let enrolling = challenge.pending_secret.is_some();
        // Completing an enrolment hands out a fresh set of recovery codes.
        let new_codes = enrolling.then(|| recovery::new_set(&user.id));
        let accepted = match code {
            MfaCode::Totp(code) => {
                let secret = challenge.pending_secret.clone().or_else(|| user.totp_secret.clone());
                let hashes = new_codes.as_ref().map(|(_, h)| h.as_slice());
                self.spend_totp(&user, secret.as_deref(), code, now_ms, hashes)
                    .await
                    .map_err(|e| err(e.into()))?
                    .map(|u| (u, None))
            }
            // A recovery code stands in for the account's TOTP, never for an enrolment.
            MfaCode::Recovery(_) if enrolling => Err(totp::Rejected::Wrong),
            MfaCode::Recovery(code) => self
                .spend_recovery_code(&user.id, code)
                .await
                .map_err(|e| err(e.into()))?
                .map(|(u, left)| (u, Some(left)))
                .ok_or(totp::Rejected::Wrong),
        };
        let (user, codes_left) = match accepted {
            Ok(accepted) => accepted,
            Err(why) => {
                // A failed code, reused or wrong, counts like a failed password; this may
                // lock the account. The challenge is spent either way.
                self.record_failure(&user.email).await.map_err(|e| err(e.into()))?;
                self.store.flush().await.map_err(|e| err(e.into()))?;
                let (error, reason) = match (code, why) {
                    (MfaCode::Totp(_), totp::Rejected::Reused) => {
                        (GatewayError::CodeReused { login_again: true }, "reused code")
                    }
                    (MfaCode::Totp(_), totp::Rejected::Wrong) => {
                        (GatewayError::InvalidCode { login_again: true }, "wrong code")
                    }
                    (MfaCode::Recovery(_), _) => (
                        GatewayError::InvalidCode { login_again: true },
                        "wrong or used recovery code",
                    ),
                };
                return Err((error, ev(EventKind::MfaFailure, Some(&user), Some(reason))));
            }
        };
        self.store
            .clear_failures(&user.email)
            .await
            .map_err(|e| err(e.into()))?;
        let tokens = self
            .issue(&user, vec!["pwd".into(), "otp".into()])
            .await
            .map_err(|e| err(e.into()))?;
        self.store.flush().await.map_err(|e| err(e.into()))?;
        let event = match codes_left {
            Some(left) => ev(
                EventKind::RecoveryCodeUsed,
                Some(&user),
                Some(&format!("login; {left} recovery codes left")),
            ),
            None if enrolling => ev(EventKind::MfaEnrolled, Some(&user), None),
            None => ev(EventKind::MfaSuccess, Some(&user), None),
        };
        let grant = MfaGrant {
            tokens,
            recovery_codes: new_codes.map(|(codes, _)| codes),
        };
        Ok((grant, event))
    }

    /// Sets a user's TOTP secret directly (demo users are created enrolled).
    pub async fn set_totp(&self, user_id: &str, secret: &str) -> Result<(), StoreError> {
        self.store
            .update_user(user_id, |u| u.totp_secret = Some(secret.to_owned()))
            .await?;
        self.store.flush().await
    }
}
