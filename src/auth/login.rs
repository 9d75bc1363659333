//! Login: the password check, the per-account attempt lock and the lockout.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use super::flow::{AuthEvent, Flow};
use super::registration::normalize_email;
use super::service::{busy, AuthService};
use super::sessions::TokenPair;
use crate::audit::EventKind;
use crate::error::GatewayError;
use crate::store::{StoreError, User};

/// The answer to a correct password.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Signed in: no second factor is needed.
    Tokens(TokenPair),
    /// The account has TOTP: a code must follow, with this challenge.
    MfaRequired { mfa_token: String, expires_in: u64 },
    /// The account's roles require TOTP and it has none: enrolment must follow.
    EnrollmentRequired { mfa_token: String, expires_in: u64 },
}

impl LoginOutcome {
    /// The reason the `login_success` event records.
    fn reason(&self) -> &'static str {
        match self {
            Self::Tokens(_) => "password",
            Self::MfaRequired { .. } => "password; TOTP code required",
            Self::EnrollmentRequired { .. } => "password; TOTP enrolment required",
        }
    }
}

/// Holds the attempt lock of one email; removes the map entry when the last user is done.
pub(super) struct AttemptGuard<'a> {
    map: &'a DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    email: String,
    lock: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for AttemptGuard<'_> {
    fn drop(&mut self) {
        // Dropping the guard releases its clone of the mutex; when only the map's
        // reference remains, nobody is waiting and the entry can go.
        self.lock.take();
        self.map.remove_if(&self.email, |_, m| Arc::strong_count(m) == 1);
    }
}

impl AuthService {
    /// Whether an account with `roles` must have a second factor.
    fn requires_mfa(&self, roles: &[String]) -> bool {
        roles.iter().any(|r| self.config.login.require_mfa_roles.contains(r))
    }

    /// Waits for the attempt lock of `email`: attempts on one account run one at a time.
    pub(super) async fn attempt_lock(&self, email: &str) -> AttemptGuard<'_> {
        let mutex = self.attempts.entry(email.to_owned()).or_default().clone();
        let lock = mutex.lock_owned().await;
        AttemptGuard {
            map: &self.attempts,
            email: email.to_owned(),
            lock: Some(lock),
        }
    }

    /// The lockout, and also the window of failures: a failure older than it is forgotten.
    pub(super) fn lockout_ms(&self) -> u64 {
        u64::try_from(self.config.login.lockout.as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts a failed attempt (a wrong password or code) against `email`; enough of
    /// them within the lockout lock it.
    pub(super) async fn record_failure(&self, email: &str) -> Result<(), StoreError> {
        let lockout_ms = self.lockout_ms();
        self.store
            .record_failure(
                email,
                self.config.login.max_failures,
                lockout_ms,
                lockout_ms,
                self.clock.now_ms(),
            )
            .await
            .map(|_| ())
    }

    /// The answer to an attempt on an account locked until `until_ms`: 429, with the
    /// time left.
    pub(super) fn locked_error(&self, until_ms: u64) -> GatewayError {
        GatewayError::Locked {
            retry_after: Duration::from_millis(until_ms.saturating_sub(self.clock.now_ms())),
        }
    }

    /// Checks a password. Unknown emails cost the same argon2 work as wrong passwords and
    /// get the same answer; every attempt counts toward the lockout of that email.
    pub async fn login(&self, email: &str, password: String) -> Flow<LoginOutcome> {
        Flow::audited(self.try_login(email, password).await)
    }

    async fn try_login(
        &self,
        email: &str,
        password: String,
    ) -> Result<(LoginOutcome, AuthEvent), (GatewayError, AuthEvent)> {
        let email = normalize_email(email);
        let fail = |err: GatewayError, event: EventKind, user: Option<&User>, reason: &str| {
            (
                err,
                AuthEvent {
                    event,
                    user_id: user.map(|u| u.id.clone()),
                    email: Some(email.clone()),
                    reason: Some(reason.to_owned()),
                },
            )
        };
        let store_err = |e: StoreError| fail(e.into(), EventKind::LoginFailure, None, "storage failure");
        let _attempt = self.attempt_lock(&email).await;
        if let Some(until) = self
            .store
            .locked_until(&email, self.clock.now_ms())
            .await
            .map_err(store_err)?
        {
            return Err(fail(self.locked_error(until), EventKind::LoginLocked, None, "locked"));
        }
        let user = self.store.user_by_email(&email).await.map_err(store_err)?;
        // A full hashing queue is not a failed attempt: nothing is counted.
        let ok = self
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await
            .map_err(|b| fail(busy(b), EventKind::LoginFailure, None, "hashing queue full"))?;
        let Some(user) = user.filter(|_| ok) else {
            self.record_failure(&email).await.map_err(store_err)?;
            self.store.flush().await.map_err(store_err)?;
            return Err(fail(
                GatewayError::InvalidCredentials,
                EventKind::LoginFailure,
                None,
                "wrong email or password",
            ));
        };
        // A right password alone does not reset the count: only a login that completes
        // does (here, or in `mfa`), so wrong codes add up like wrong passwords.
        if !user.confirmed {
            return Err(fail(
                GatewayError::EmailUnconfirmed,
                EventKind::LoginFailure,
                Some(&user),
                "email unconfirmed",
            ));
        }
        if user.disabled {
            return Err(fail(
                GatewayError::AccountDisabled,
                EventKind::LoginFailure,
                Some(&user),
                "account disabled",
            ));
        }
        let outcome = if user.mfa_enabled() {
            let (mfa_token, expires_in) = self.new_challenge(&user, None).await.map_err(store_err)?;
            LoginOutcome::MfaRequired { mfa_token, expires_in }
        } else if self.requires_mfa(&user.roles) {
            let (mfa_token, expires_in) = self.new_challenge(&user, None).await.map_err(store_err)?;
            LoginOutcome::EnrollmentRequired { mfa_token, expires_in }
        } else {
            self.store.clear_failures(&email).await.map_err(store_err)?;
            LoginOutcome::Tokens(self.issue(&user, vec!["pwd".into()]).await.map_err(store_err)?)
        };
        self.store.flush().await.map_err(store_err)?;
        let event = AuthEvent {
            event: EventKind::LoginSuccess,
            user_id: Some(user.id),
            email: Some(user.email),
            reason: Some(outcome.reason().to_owned()),
        };
        Ok((outcome, event))
    }
}
