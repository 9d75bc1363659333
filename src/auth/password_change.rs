//! Password change by the signed-in owner (`POST /auth/password/change`), the password
//! set by an administrator (`portcullis user password`, `user enable`), and the policy
//! check every new password passes, common-password estimate included.

use super::flow::{AuthEvent, Flow};
use super::password::Busy;
use super::password_reset::same_hash;
use super::service::{busy, AuthService};
use super::state::Verified;
use crate::audit::EventKind;
use crate::error::GatewayError;
use crate::store::{StoreError, User};

impl AuthService {
    /// Every rule of the `[password]` policy that `password` breaks, for the account of
    /// `email` and `name`. Runs on a hashing thread (the common-password estimate can take
    /// milliseconds).
    pub(super) async fn password_rules(&self, password: &str, email: &str, name: &str) -> Result<Vec<String>, Busy> {
        self.hasher
            .check(
                &self.config.password,
                password.to_owned(),
                vec![email.to_owned(), name.to_owned()],
            )
            .await
    }

    /// 422 `password_policy` (with every rule broken) unless `password` meets the policy.
    pub(super) async fn check_password(&self, password: &str, email: &str, name: &str) -> Result<(), GatewayError> {
        let rules = self.password_rules(password, email, name).await.map_err(busy)?;
        if rules.is_empty() {
            Ok(())
        } else {
            Err(GatewayError::PasswordPolicy { rules })
        }
    }

    /// For the administrator's commands (`user add`, `user password`): the argon2id hash
    /// of `password` once it meets the policy, or the message the command prints.
    pub(super) async fn admin_password_hash(
        &self,
        password: String,
        email: &str,
        name: &str,
    ) -> Result<String, String> {
        let full = "the password hashing queue is full; try again";
        let rules = self.password_rules(&password, email, name).await.map_err(|_| full)?;
        if !rules.is_empty() {
            return Err(format!("the password breaks the policy: {}", rules.join("; ")));
        }
        self.hasher
            .hash(password)
            .await
            .map_err(|_| full)?
            .ok_or_else(|| "password hashing failed".to_owned())
    }

    /// `POST /auth/password/change`: the current password, then the new one. A wrong
    /// current password counts toward the lockout exactly like a failed login; success
    /// revokes every other session of the account (the caller's stays).
    pub async fn change_password(&self, caller: &Verified, current: String, new: String) -> Flow<()> {
        Flow::audited(self.try_change(caller, current, new).await.map(|event| ((), event)))
    }

    async fn try_change(
        &self,
        caller: &Verified,
        current: String,
        new: String,
    ) -> Result<AuthEvent, (GatewayError, AuthEvent)> {
        let email = caller.principal.email.clone();
        let event = |kind: EventKind, reason: &str| AuthEvent {
            event: kind,
            user_id: Some(caller.principal.id.clone()),
            email: Some(email.clone()),
            reason: Some(reason.to_owned()),
        };
        let refused = |e: GatewayError, reason: &str| (e, event(EventKind::PasswordChangeRefused, reason));
        let store_err = |e: StoreError| refused(e.into(), "storage failure");
        let _attempt = self.attempt_lock(&email).await;
        if let Some(until) = self
            .store
            .locked_until(&email, self.clock.now_ms())
            .await
            .map_err(store_err)?
        {
            let reason = "locked; password change refused";
            return Err((self.locked_error(until), event(EventKind::LoginLocked, reason)));
        }
        let user = self
            .store
            .user(&caller.principal.id)
            .await
            .map_err(store_err)?
            .filter(|u| !u.disabled)
            .ok_or_else(|| {
                let e = GatewayError::TokenRefused(crate::error::TokenError::Revoked);
                refused(e, "account gone or disabled")
            })?;
        let ok = self
            .hasher
            .verify(current, Some(user.password_hash.clone()))
            .await
            .map_err(|b| refused(busy(b), "hashing queue full"))?;
        if !ok {
            self.record_failure(&user.email).await.map_err(store_err)?;
            self.store.flush().await.map_err(store_err)?;
            return Err(refused(GatewayError::InvalidCredentials, "wrong current password"));
        }
        self.check_password(&new, &user.email, &user.name)
            .await
            .map_err(|e| refused(e, "new password refused by the policy"))?;
        let new_hash = self
            .hasher
            .hash(new)
            .await
            .map_err(|b| refused(busy(b), "hashing queue full"))?
            .ok_or_else(|| {
                refused(
                    GatewayError::Internal("password hashing failed".into()),
                    "hashing failed",
                )
            })?;
        self.store
            .try_update_user(&user.id, |u| {
                let same = same_hash(&u.password_hash, &user.password_hash);
                if same {
                    u.password_hash.clone_from(&new_hash);
                }
                same
            })
            .await
            .map_err(store_err)?
            .ok_or_else(|| refused(GatewayError::InvalidCredentials, "password changed meanwhile"))?;
        self.store.clear_failures(&user.email).await.map_err(store_err)?;
        self.revoke_sessions_except(&user.id, Some(&caller.claims.sid))
            .await
            .map_err(store_err)?;
        self.store.flush().await.map_err(store_err)?;
        Ok(event(
            EventKind::PasswordChanged,
            "by its owner; other sessions revoked",
        ))
    }

    /// Revokes every session of a user but `keep`, with their access and refresh tokens.
    ///
    /// After a new password, sessions are revoked one by one rather than by
    /// `revoke_user`'s "every token issued up to this second": that would also kill a
    /// session signed in with the new password within the same second. Callers hold the
    /// account's attempt lock, so no login with the old password is between its check
    /// and its session meanwhile.
    pub(super) async fn revoke_sessions_except(&self, user_id: &str, keep: Option<&str>) -> Result<(), StoreError> {
        for s in self.store.sessions_of(user_id).await? {
            if !s.revoked && Some(s.id.as_str()) != keep {
                self.revoke_session(&s).await?;
            }
        }
        Ok(())
    }

    /// `portcullis user password`: sets an account's password after the policy check,
    /// revokes every session and clears the lockout.
    pub async fn set_password(&self, email: &str, password: String) -> Result<User, String> {
        let user = self.account_by_email(email).await?;
        let hash = self.admin_password_hash(password, &user.email, &user.name).await?;
        let _attempt = self.attempt_lock(&user.email).await;
        let user = self
            .store
            .update_user(&user.id, |u| u.password_hash.clone_from(&hash))
            .await
            .map_err(|e| e.to_string())?;
        self.revoke_sessions_except(&user.id, None)
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .clear_failures(&user.email)
            .await
            .map_err(|e| e.to_string())?;
        self.store.flush().await.map_err(|e| e.to_string())?;
        Ok(user)
    }

    /// `portcullis user enable`: the reverse of `user disable` (sessions revoked by the
    /// disabling stay revoked).
    pub async fn enable_user(&self, email: &str) -> Result<User, String> {
        let user = self.account_by_email(email).await?;
        let user = self
            .store
            .update_user(&user.id, |u| u.disabled = false)
            .await
            .map_err(|e| e.to_string())?;
        self.store.flush().await.map_err(|e| e.to_string())?;
        Ok(user)
    }

    /// The account of an address, or an error naming it.
    async fn account_by_email(&self, email: &str) -> Result<User, String> {
        let email = super::registration::normalize_email(email);
        self.store
            .user_by_email(&email)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no account with email {email}"))
    }
}
