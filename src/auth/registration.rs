//! Registration: sign-up, the confirmation link, the notice to an address already
//! registered, and accounts made confirmed by an administrator.

use subtle::ConstantTimeEq;

use super::flow::{AuthEvent, Flow};
use super::service::{busy, AuthService, CONFIRMATION_TTL_MS};
use super::tokens::{random_token, token_hash};
use crate::audit::EventKind;
use crate::error::{BodyProblem, GatewayError};
use crate::store::{Confirmation, StoreError, User};

/// At most one "someone tried to register with your address" notice per address in this
/// time.
const NOTICE_INTERVAL_MS: u64 = 3600 * 1000;

/// An address as accounts are keyed: trimmed and lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A plausible address that is safe in a mail header and a log line.
fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '<' | '>' | '"' | ',' | ';' | '\\'))
}

/// A new account with a fresh random id: `u-` and 32 hex digits (128 random bits).
fn new_user(email: &str, name: &str, password_hash: String, roles: Vec<String>, confirmed: bool, now: u64) -> User {
    let t = token_hash(&random_token());
    User {
        id: format!("u-{}", &t[..32]),
        email: email.to_owned(),
        name: name.to_owned(),
        password_hash,
        roles,
        confirmed,
        disabled: false,
        totp_secret: None,
        totp_last_step: 0,
        recovery_codes: Vec::new(),
        tokens_valid_after: 0,
        created_at: now,
        attributes: crate::attributes::Attributes::new(),
    }
}

impl AuthService {
    /// Registers an account with `[registration] default_roles`, or mails the owner of an existing address. Answers the same
    /// either way, and costs one argon2 hash either way.
    pub async fn register(&self, email: &str, password: String, name: &str) -> Flow<()> {
        Flow::audited_success(self.try_register(email, password, name).await.map(|event| ((), event)))
    }

    async fn try_register(&self, email: &str, password: String, name: &str) -> Result<AuthEvent, GatewayError> {
        let email = normalize_email(email);
        if !valid_email(&email) {
            return Err(GatewayError::InvalidBody(BodyProblem::Invalid(
                "email",
                "not an email address",
            )));
        }
        // Decided on the address alone, before any account is looked at.
        if !self.config.registration.domain_allowed(&email) {
            return Err(GatewayError::DomainNotAllowed);
        }
        if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(GatewayError::InvalidBody(BodyProblem::Invalid(
                "name",
                "1 to 100 characters, no control characters",
            )));
        }
        self.check_password(&password, &email, name.trim()).await?;
        let hash = self
            .hasher
            .hash(password)
            .await
            .map_err(busy)?
            .ok_or_else(|| GatewayError::Internal("password hashing failed".into()))?;
        let mut existing = self.store.user_by_email(&email).await?;
        // A pending account takes the newest registration's password (and name): the
        // link mailed now is bound to it, and every earlier link dies, so the owner's
        // confirmation never activates a password someone else chose.
        let pending = match &existing {
            Some(user) if !user.confirmed => {
                let replaced = self
                    .store
                    .try_update_user(&user.id, |u| {
                        if u.confirmed {
                            return false;
                        }
                        u.password_hash.clone_from(&hash);
                        name.trim().clone_into(&mut u.name);
                        true
                    })
                    .await;
                match replaced {
                    Ok(p) => p,
                    // The sweep removed the expired account meanwhile: register afresh.
                    Err(StoreError::NoSuchUser) => {
                        existing = None;
                        None
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            _ => None,
        };
        let event = match (existing, pending) {
            (Some(user), None) => {
                let reason = if self.notice_due(&email) {
                    self.mail(
                        &email,
                        "Someone tried to register with your address",
                        "Someone tried to create a new account with this email address, which already has one.\n\
                         If it was you, log in instead. If not, you can ignore this message.",
                    )
                    .await?;
                    "address already registered; notice sent"
                } else {
                    "address already registered; notice already sent within the hour"
                };
                AuthEvent {
                    event: EventKind::Register,
                    user_id: Some(user.id),
                    email: Some(email),
                    reason: Some(reason.into()),
                }
            }
            (_, Some(user)) => {
                self.send_confirmation(&user).await?;
                AuthEvent {
                    event: EventKind::Register,
                    user_id: Some(user.id),
                    email: Some(email),
                    reason: Some("unconfirmed address; registered again, earlier links void".into()),
                }
            }
            (None, _) => {
                let registration = &self.config.registration;
                let mut user = new_user(
                    &email,
                    name.trim(),
                    hash,
                    registration.default_roles.clone(),
                    false,
                    self.clock.now(),
                );
                user.attributes.clone_from(&registration.default_attributes);
                match self.store.create_user(&user).await {
                    Ok(()) => self.send_confirmation(&user).await?,
                    // Lost a race with another registration of the same address.
                    Err(StoreError::EmailTaken) => {}
                    Err(e) => return Err(e.into()),
                }
                AuthEvent {
                    event: EventKind::Register,
                    user_id: Some(user.id),
                    email: Some(email),
                    reason: None,
                }
            }
        };
        self.store.flush().await?;
        Ok(event)
    }

    /// Whether the owner of `email` may be sent a registration notice now (at most one
    /// per [`NOTICE_INTERVAL_MS`]); notes the sending when it may.
    fn notice_due(&self, email: &str) -> bool {
        let now = self.clock.now_ms();
        let mut last = self.notices.entry(email.to_owned()).or_insert(0);
        if *last != 0 && now < last.saturating_add(NOTICE_INTERVAL_MS) {
            return false;
        }
        *last = now;
        true
    }

    /// Mails a confirmation link bound to the account's current password. The mail
    /// carries nothing the registrant typed but the address itself.
    async fn send_confirmation(&self, user: &User) -> Result<(), GatewayError> {
        let token = random_token();
        let expires_ms = self.clock.now_ms() + CONFIRMATION_TTL_MS;
        self.store
            .put_confirmation(
                &token_hash(&token),
                &Confirmation {
                    user_id: user.id.clone(),
                    expires_ms,
                    password_hash: Some(user.password_hash.clone()),
                },
            )
            .await?;
        self.store.put_pending(&user.id, expires_ms).await?;
        let base = self.config.server.public_url.to_string();
        let link = format!("{}/auth/confirm?token={token}", base.trim_end_matches('/'));
        self.mail(
            &user.email,
            "Confirm your email address",
            &format!("Welcome.\n\nConfirm your address by opening this link within 24 hours:\n\n{link}\n"),
        )
        .await
    }

    /// Confirms an address with a single-use token, only while the password of the
    /// registration that sent it is still the account's.
    pub async fn confirm(&self, token: &str) -> Flow<()> {
        Flow::audited_success(self.try_confirm(token).await.map(|event| ((), event)))
    }

    async fn try_confirm(&self, token: &str) -> Result<AuthEvent, GatewayError> {
        let c = self
            .store
            .take_confirmation(&token_hash(token))
            .await?
            .filter(|c| c.expires_ms > self.clock.now_ms())
            .ok_or(GatewayError::InvalidConfirmation)?;
        // A link from before links were bound to a registration confirms nothing.
        let bound = c.password_hash.ok_or(GatewayError::InvalidConfirmation)?;
        let user = self
            .store
            .try_update_user(&c.user_id, |u| {
                let same = bool::from(u.password_hash.as_bytes().ct_eq(bound.as_bytes()));
                if same {
                    u.confirmed = true;
                }
                same
            })
            .await
            .map_err(|e| match e {
                StoreError::NoSuchUser => GatewayError::InvalidConfirmation,
                other => other.into(),
            })?
            .ok_or(GatewayError::InvalidConfirmation)?;
        self.store.clear_pending(&user.id).await?;
        self.store.flush().await?;
        Ok(AuthEvent {
            event: EventKind::EmailConfirmed,
            user_id: Some(user.id),
            email: Some(user.email),
            reason: None,
        })
    }

    /// Forgets the registration notices sent longer ago than [`NOTICE_INTERVAL_MS`].
    pub(super) fn sweep_notices(&self, now_ms: u64) {
        self.notices
            .retain(|_, sent| sent.saturating_add(NOTICE_INTERVAL_MS) > now_ms);
    }

    /// Creates a confirmed account (staff are made this way).
    pub async fn add_user(
        &self,
        email: &str,
        roles: Vec<String>,
        password: String,
        name: &str,
    ) -> Result<User, String> {
        let email = normalize_email(email);
        if !valid_email(&email) {
            return Err(format!("{email:?} is not a valid email address"));
        }
        if roles.is_empty()
            || roles
                .iter()
                .any(|r| r.is_empty() || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            return Err("roles must be non-empty names of letters, digits, - and _".into());
        }
        let hash = self.admin_password_hash(password, &email, name).await?;
        let user = new_user(&email, name, hash, roles, true, self.clock.now());
        self.store.create_user(&user).await.map_err(|e| e.to_string())?;
        self.store.flush().await.map_err(|e| e.to_string())?;
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Addresses that could break a mail header or a log line are refused.
    #[test]
    fn email_validation() {
        assert!(valid_email("ann@example.com"));
        for bad in [
            "ann",
            "ann@",
            "@example.com",
            "a@b",
            "a b@example.com",
            "a@example.com\r\nBcc: x@y.z",
            "a<b>@example.com",
            "a@@example.com",
        ] {
            assert!(!valid_email(bad), "{bad:?}");
        }
    }
}
