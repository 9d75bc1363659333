//! Password reset: `forgot` mails a single-use token, `reset` spends it on a new password.
//!
//! `forgot` answers the same for every address, and both its paths wait on one store
//! flush that has something to write; at most one mail per account per minute. A token
//! is stored only as its hash, with the account's password hash at issue: any change of
//! password, by any route, kills it; a newer token voids the older one.

use subtle::ConstantTimeEq;

use super::flow::{AuthEvent, Flow};
use super::registration::normalize_email;
use super::service::{busy, AuthService};
use super::tokens::{random_token, token_hash};
use crate::audit::EventKind;
use crate::error::GatewayError;
use crate::store::{PasswordReset, StoreError, User};

/// At most one reset mail per account in this time.
const RESET_MAIL_INTERVAL_MS: u64 = 60 * 1000;

/// Whether two password hashes are the same, in constant time.
pub(super) fn same_hash(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl AuthService {
    /// `POST /auth/password/forgot`: mails a reset link to a confirmed, enabled account
    /// (at most once a minute); does comparable work and answers the same otherwise.
    pub async fn forgot_password(&self, email: &str) -> Flow<()> {
        Flow::audited(self.try_forgot(email).await.map(|event| ((), event)))
    }

    async fn try_forgot(&self, email: &str) -> Result<AuthEvent, (GatewayError, AuthEvent)> {
        let email = normalize_email(email);
        let event = |user: Option<&User>, reason: &str| AuthEvent {
            event: EventKind::PasswordResetRequested,
            user_id: user.map(|u| u.id.clone()),
            email: Some(email.clone()),
            reason: Some(reason.to_owned()),
        };
        let store_err = |e: StoreError| (GatewayError::from(e), event(None, "storage failure"));
        let now_ms = self.clock.now_ms();
        let user = self.store.user_by_email(&email).await.map_err(store_err)?;
        let (user, reason) = match user {
            None => (None, "no such account"),
            Some(u) if !u.confirmed => (Some(u), "account unconfirmed; no mail"),
            Some(u) if u.disabled => (Some(u), "account disabled; no mail"),
            Some(u) if !self.reset_mail_due(&u.email, now_ms) => (Some(u), "already sent within a minute"),
            Some(u) => {
                let token = random_token();
                let reset = PasswordReset {
                    user_id: u.id.clone(),
                    expires_ms: now_ms.saturating_add(self.reset_ttl_ms()),
                    password_hash: u.password_hash.clone(),
                };
                let sent = self.send_reset(&u, &token, &reset).await;
                if let Err(e) = sent {
                    // Let the owner try again at once rather than in a minute.
                    self.resets_sent.remove(&u.email);
                    return Err((e, event(Some(&u), "reset mail could not be written")));
                }
                return Ok(event(Some(&u), "mail sent"));
            }
        };
        // The same kind of work as storing a token and mailing it: a write and a flush
        // that has it to do, then a small file written and synced on the blocking pool.
        self.store.touch_reset_decoy(now_ms).await.map_err(store_err)?;
        self.store.flush().await.map_err(store_err)?;
        self.write_decoy().await;
        Ok(event(user.as_ref(), reason))
    }

    /// Writes and syncs one fixed file of a mail's size, `data_dir/reset-decoy` (mode
    /// 0600, replaced each time, so nothing grows), on the blocking pool: what handing over a mail costs, for the
    /// requests that send none. Its failure changes nothing but the timing.
    async fn write_decoy(&self) {
        let path = self.config.server.data_dir.join("reset-decoy");
        let written = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)?;
            f.write_all(&[b'.'; 900])?;
            f.sync_all()
        })
        .await;
        if let Ok(Err(e)) = written {
            tracing::debug!(error = %e, "reset decoy write failed");
        }
    }

    /// Stores a reset token (voiding the account's older one) and mails its link.
    async fn send_reset(&self, user: &User, token: &str, reset: &PasswordReset) -> Result<(), GatewayError> {
        self.store.put_reset(&token_hash(token), reset).await?;
        self.store.flush().await?;
        let base = self.config.server.public_url.to_string();
        let link = format!("{}/auth/password/reset?token={token}", base.trim_end_matches('/'));
        let minutes = self.config.password.reset_ttl.as_secs().div_ceil(60);
        self.mail(
            &user.email,
            "Reset your password",
            &format!(
                "Someone asked to reset the password of your account.\n\n\
                 To choose a new password, open this link within {minutes} minutes:\n\n{link}\n\n\
                 or send this token to /auth/password/reset:\n\n{token}\n\n\
                 If it was not you, ignore this message: your password stays as it is.\n"
            ),
        )
        .await
    }

    /// `reset_ttl` in milliseconds.
    fn reset_ttl_ms(&self) -> u64 {
        u64::try_from(self.config.password.reset_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether `email` may be sent a reset mail now (at most one per minute); notes the
    /// sending when it may.
    fn reset_mail_due(&self, email: &str, now_ms: u64) -> bool {
        let mut last = self.resets_sent.entry(email.to_owned()).or_insert(0);
        if *last != 0 && now_ms < last.saturating_add(RESET_MAIL_INTERVAL_MS) {
            return false;
        }
        *last = now_ms;
        true
    }

    /// Forgets the reset mails sent more than a minute ago.
    pub(super) fn sweep_resets_sent(&self, now_ms: u64) {
        self.resets_sent
            .retain(|_, sent| sent.saturating_add(RESET_MAIL_INTERVAL_MS) > now_ms);
    }

    /// `POST /auth/password/reset`: spends a reset token on a new password, revokes every
    /// session of the account and clears its lockout. A password the policy refuses
    /// leaves the token usable.
    pub async fn reset_password(&self, token: &str, password: String) -> Flow<()> {
        Flow::audited(self.try_reset(token, password).await.map(|event| ((), event)))
    }

    async fn try_reset(&self, token: &str, password: String) -> Result<AuthEvent, (GatewayError, AuthEvent)> {
        let event = |kind: EventKind, user: Option<&User>, reason: &str| AuthEvent {
            event: kind,
            user_id: user.map(|u| u.id.clone()),
            email: user.map(|u| u.email.clone()),
            reason: Some(reason.to_owned()),
        };
        let refused = |user: Option<&User>, reason: &str| {
            (
                GatewayError::InvalidResetToken,
                event(EventKind::PasswordResetRefused, user, reason),
            )
        };
        let store_err = |e: StoreError| {
            (
                GatewayError::from(e),
                event(EventKind::PasswordResetRefused, None, "storage failure"),
            )
        };
        let hash = token_hash(token);
        let reset = self
            .store
            .reset(&hash)
            .await
            .map_err(store_err)?
            .filter(|r| r.expires_ms > self.clock.now_ms())
            .ok_or_else(|| refused(None, "unknown, spent or expired token"))?;
        let user = self
            .store
            .user(&reset.user_id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| refused(None, "no such account"))?;
        if !user.confirmed || user.disabled || !same_hash(&user.password_hash, &reset.password_hash) {
            return Err(refused(
                Some(&user),
                "account disabled or password changed since the token was issued",
            ));
        }
        if let Err(e) = self.check_password(&password, &user.email, &user.name).await {
            let reason = "new password refused; token kept";
            return Err((e, event(EventKind::PasswordResetRefused, Some(&user), reason)));
        }
        let new_hash = self
            .hasher
            .hash(password)
            .await
            .map_err(|b| {
                (
                    busy(b),
                    event(EventKind::PasswordResetRefused, Some(&user), "hashing queue full"),
                )
            })?
            .ok_or_else(|| {
                let e = GatewayError::Internal("password hashing failed".into());
                (e, event(EventKind::PasswordResetRefused, Some(&user), "hashing failed"))
            })?;
        // No login of this account is between its password check and its session while
        // the password changes and the sessions are revoked.
        let _attempt = self.attempt_lock(&user.email).await;
        // Spending is atomic: of two requests with one token, one takes it.
        self.store
            .take_reset(&hash)
            .await
            .map_err(store_err)?
            .ok_or_else(|| refused(Some(&user), "token spent by a concurrent request"))?;
        self.store
            .try_update_user(&user.id, |u| {
                let bound = same_hash(&u.password_hash, &reset.password_hash);
                if bound {
                    u.password_hash.clone_from(&new_hash);
                }
                bound
            })
            .await
            .map_err(store_err)?
            .ok_or_else(|| refused(Some(&user), "password changed since the token was issued"))?;
        self.revoke_sessions_except(&user.id, None).await.map_err(store_err)?;
        self.store.clear_failures(&user.email).await.map_err(store_err)?;
        self.store.flush().await.map_err(store_err)?;
        Ok(event(
            EventKind::PasswordReset,
            Some(&user),
            "every session revoked; lockout cleared",
        ))
    }
}
