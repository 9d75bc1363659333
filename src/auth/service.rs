//! The identity service: accounts, login with lockout, two-factor, token issue,
//! rotation and revocation, and access-token verification for proxied requests.
//!
//! Revocations (token ids, sessions, and "every token of this user before T") are kept in
//! memory as well as in sled, so checking a token on the request path never touches the
//! disk; verified tokens are cached until they expire, so a repeat costs a map lookup.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use subtle::ConstantTimeEq;

use super::mail::Mailer;
use super::password::{broken_rules, Busy, Hasher};
use super::tokens::{random_token, token_hash, Claims, KeyRing, TokenError};
use super::totp;
use crate::audit::EventKind;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::error::GatewayError;
use crate::policy::Principal;
use crate::store::{Challenge, Confirmation, RefreshEntry, Session, Store, StoreError, User};

/// Most verified tokens remembered; past it, expired entries and then an arbitrary
/// eighth of the rest make room (see [`evict`]).
const TOKEN_CACHE_MAX: usize = 50_000;
/// How long a confirmation link works; an account never confirmed is removed when its
/// latest link has expired.
const CONFIRMATION_TTL_MS: u64 = 24 * 3600 * 1000;
/// At most one "someone tried to register with your address" notice per address in this
/// time.
const NOTICE_INTERVAL_MS: u64 = 3600 * 1000;

/// What a successful login or refresh hands the client.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

/// The answer to a correct password.
#[derive(Debug)]
pub enum LoginOutcome {
    Tokens(TokenPair),
    MfaRequired { mfa_token: String, expires_in: u64 },
    EnrollmentRequired { mfa_token: String, expires_in: u64 },
}

/// What an enrolment hands the client.
#[derive(Debug, serde::Serialize)]
pub struct Enrollment {
    pub secret: String,
    pub otpauth_uri: String,
    pub mfa_token: String,
}

/// An event worth recording, emitted by the service as it decides.
#[derive(Debug, Clone)]
pub struct AuthEvent {
    pub event: EventKind,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub reason: Option<String>,
}

impl AuthEvent {
    /// The audit record of this event, for a request from `ip`.
    pub fn to_audit(&self, ip: Option<std::net::IpAddr>, request_id: Option<&str>) -> crate::audit::Event {
        let mut ev = crate::audit::Event::new(self.event);
        ev.user_id.clone_from(&self.user_id);
        ev.email.clone_from(&self.email);
        ev.reason.clone_from(&self.reason);
        ev.ip = ip.map(|i| i.to_string());
        ev.request_id = request_id.map(str::to_owned);
        ev
    }
}

#[derive(Default)]
struct Revocations {
    jti: DashMap<String, u64>,
    sessions: DashMap<String, u64>,
    /// User id -> tokens issued at or before this second are refused.
    users: DashMap<String, u64>,
}

pub struct AuthService {
    config: Arc<Config>,
    audit: crate::audit::Audit,
    store: Store,
    hasher: Hasher,
    keys: KeyRing,
    mailer: Mailer,
    clock: SharedClock,
    revoked: Revocations,
    /// Verified tokens, keyed by the whole token (a key on any part of it would let
    /// altered claims hit the cache), with a fast hasher.
    verified: DashMap<String, Arc<Verified>, foldhash::fast::RandomState>,
    /// One async lock per email with an attempt in flight: attempts on one account run
    /// one after another, so parallel guesses cannot outrun the failure count, and
    /// parallel correct logins simply queue. Entries live only while attempts do.
    attempts: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Security events by kind, for `GET /metrics`.
    events: crate::metrics::AuthEventCounts,
    /// Confirmed address -> when its owner was last sent a registration notice (Unix
    /// ms); entries older than [`NOTICE_INTERVAL_MS`] are swept. Only confirmed accounts
    /// get notices, so this holds at most one entry per account.
    notices: DashMap<String, u64>,
    /// Set while one request makes room in the token cache, so others do not pile on.
    evicting: std::sync::atomic::AtomicBool,
    /// [`TOKEN_CACHE_MAX`], smaller in tests.
    token_cache_max: usize,
}

/// A verified access token and what requests need from it, made once per token and
/// shared by every request that presents it.
pub struct Verified {
    pub claims: Claims,
    pub principal: Arc<Principal>,
    /// The identity headers the upstream receives for this caller.
    pub identity: crate::upstream::identity::IdentityHeaders,
}

/// Holds the attempt lock of one email; removes the map entry when the last user is done.
struct AttemptGuard<'a> {
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

/// The answer when the password hashing queue is full: 503, try again in a second.
fn busy(_: Busy) -> GatewayError {
    GatewayError::Busy {
        retry_after: Duration::from_secs(1),
    }
}

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
        tokens_valid_after: 0,
        created_at: now,
    }
}

impl AuthService {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        clock: SharedClock,
        audit: crate::audit::Audit,
    ) -> Result<Self, String> {
        let issuer = config.server.public_url.to_string().trim_end_matches('/').to_owned();
        let alg = config.tokens.algorithm;
        let keys =
            KeyRing::load_or_generate(&config.server.data_dir.join("keys"), alg, &issuer).map_err(|e| e.to_string())?;
        let domain = config.server.public_url.host().unwrap_or("localhost").to_owned();
        let mailer = Mailer::new(config.email.outbox.clone(), domain, clock.clone());
        let hasher = Hasher::with_concurrency(config.login.hash_concurrency);
        let service = Self {
            config,
            audit,
            store,
            hasher,
            keys,
            mailer,
            clock,
            revoked: Revocations::default(),
            verified: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            attempts: DashMap::new(),
            events: crate::metrics::AuthEventCounts::default(),
            notices: DashMap::new(),
            evicting: std::sync::atomic::AtomicBool::new(false),
            token_cache_max: TOKEN_CACHE_MAX,
        };
        service
            .store
            .build_indexes(CONFIRMATION_TTL_MS)
            .map_err(|e| e.to_string())?;
        service.load_revocations().map_err(|e| e.to_string())?;
        Ok(service)
    }

    fn load_revocations(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        for (jti, exp) in self.store.revoked_jtis(now)? {
            self.revoked.jti.insert(jti, exp);
        }
        for (sid, exp) in self.store.revoked_sessions(now)? {
            self.revoked.sessions.insert(sid, exp);
        }
        for (id, after) in self
            .store
            .revoked_users(now.saturating_sub(self.user_revocation_span()))?
        {
            self.revoked.users.insert(id, after);
        }
        Ok(())
    }

    /// How long after `revoke_user` a token issued before it can still be unexpired; past
    /// that, the refusal needs no memory (refresh checks the account itself).
    fn user_revocation_span(&self) -> u64 {
        self.config.tokens.access_ttl.as_secs() + super::tokens::LEEWAY_SECS
    }

    pub fn audit(&self) -> &crate::audit::Audit {
        &self.audit
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Security events by kind, as counted for `GET /metrics`.
    pub fn event_counts(&self) -> &crate::metrics::AuthEventCounts {
        &self.events
    }

    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    fn requires_mfa(&self, roles: &[String]) -> bool {
        roles.iter().any(|r| self.config.login.require_mfa_roles.contains(r))
    }

    // --- registration ---------------------------------------------------------------

    /// Registers a customer, or mails the owner of an existing address. Answers the same
    /// either way, and costs one argon2 hash either way.
    pub async fn register(&self, email: &str, password: String, name: &str) -> Result<AuthEvent, GatewayError> {
        let email = normalize_email(email);
        if !valid_email(&email) {
            return Err(GatewayError::Malformed("invalid email".into()));
        }
        if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(GatewayError::Malformed("invalid name".into()));
        }
        let rules = broken_rules(&self.config.password, &password, &email);
        if !rules.is_empty() {
            return Err(GatewayError::PasswordPolicy { rules });
        }
        let hash = self
            .hasher
            .hash(password)
            .await
            .map_err(busy)?
            .ok_or_else(|| GatewayError::Internal("password hashing failed".into()))?;
        let mut existing = self.store.user_by_email(&email)?;
        // A pending account takes the newest registration's password (and name): the
        // link mailed now is bound to it, and every earlier link dies, so the owner's
        // confirmation never activates a password someone else chose.
        let pending = match &existing {
            Some(user) if !user.confirmed => {
                let replaced = self.store.try_update_user(&user.id, |u| {
                    if u.confirmed {
                        return false;
                    }
                    u.password_hash.clone_from(&hash);
                    name.trim().clone_into(&mut u.name);
                    true
                });
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
                    )?;
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
                self.send_confirmation(&user)?;
                AuthEvent {
                    event: EventKind::Register,
                    user_id: Some(user.id),
                    email: Some(email),
                    reason: Some("unconfirmed address; registered again, earlier links void".into()),
                }
            }
            (None, _) => {
                let user = new_user(
                    &email,
                    name.trim(),
                    hash,
                    vec!["customer".into()],
                    false,
                    self.clock.now(),
                );
                match self.store.create_user(&user) {
                    Ok(()) => self.send_confirmation(&user)?,
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

    fn mail(&self, to: &str, subject: &str, body: &str) -> Result<(), GatewayError> {
        self.mailer
            .send(to, subject, body)
            .map(|_| ())
            .map_err(|e| GatewayError::Internal(format!("cannot write mail: {e}").into()))
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
    fn send_confirmation(&self, user: &User) -> Result<(), GatewayError> {
        let token = random_token();
        let expires_ms = self.clock.now_ms() + CONFIRMATION_TTL_MS;
        self.store.put_confirmation(
            &token_hash(&token),
            &Confirmation {
                user_id: user.id.clone(),
                expires_ms,
                password_hash: Some(user.password_hash.clone()),
            },
        )?;
        self.store.put_pending(&user.id, expires_ms)?;
        let base = self.config.server.public_url.to_string();
        let link = format!("{}/auth/confirm?token={token}", base.trim_end_matches('/'));
        self.mail(
            &user.email,
            "Confirm your email address",
            &format!("Welcome.\n\nConfirm your address by opening this link within 24 hours:\n\n{link}\n"),
        )
    }

    /// Confirms an address with a single-use token, only while the password of the
    /// registration that sent it is still the account's.
    pub async fn confirm(&self, token: &str) -> Result<AuthEvent, GatewayError> {
        let c = self
            .store
            .take_confirmation(&token_hash(token))?
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
            .map_err(|e| match e {
                StoreError::NoSuchUser => GatewayError::InvalidConfirmation,
                other => other.into(),
            })?
            .ok_or(GatewayError::InvalidConfirmation)?;
        self.store.clear_pending(&user.id)?;
        self.store.flush().await?;
        Ok(AuthEvent {
            event: EventKind::EmailConfirmed,
            user_id: Some(user.id),
            email: Some(user.email),
            reason: None,
        })
    }

    // --- login ----------------------------------------------------------------------

    async fn attempt_lock(&self, email: &str) -> AttemptGuard<'_> {
        let mutex = self.attempts.entry(email.to_owned()).or_default().clone();
        let lock = mutex.lock_owned().await;
        AttemptGuard {
            map: &self.attempts,
            email: email.to_owned(),
            lock: Some(lock),
        }
    }

    /// The lockout, and also the window of failures: a failure older than it is forgotten.
    fn lockout_ms(&self) -> u64 {
        u64::try_from(self.config.login.lockout.as_millis()).unwrap_or(u64::MAX)
    }

    fn record_failure(&self, email: &str) -> Result<(), StoreError> {
        let lockout_ms = self.lockout_ms();
        self.store
            .record_failure(
                email,
                self.config.login.max_failures,
                lockout_ms,
                lockout_ms,
                self.clock.now_ms(),
            )
            .map(|_| ())
    }

    fn locked_error(&self, until_ms: u64) -> GatewayError {
        GatewayError::Locked {
            retry_after: Duration::from_millis(until_ms.saturating_sub(self.clock.now_ms())),
        }
    }

    /// Checks a password. Unknown emails cost the same argon2 work as wrong passwords and
    /// get the same answer; every attempt counts toward the lockout of that email.
    pub async fn login(
        &self,
        email: &str,
        password: String,
    ) -> Result<(LoginOutcome, User), (GatewayError, AuthEvent)> {
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
            .map_err(store_err)?
        {
            return Err(fail(self.locked_error(until), EventKind::LoginLocked, None, "locked"));
        }
        let user = self.store.user_by_email(&email).map_err(store_err)?;
        // A full hashing queue is not a failed attempt: nothing is counted.
        let ok = self
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await
            .map_err(|b| fail(busy(b), EventKind::LoginFailure, None, "hashing queue full"))?;
        let Some(user) = user.filter(|_| ok) else {
            self.record_failure(&email).map_err(store_err)?;
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
            let (mfa_token, expires_in) = self.new_challenge(&user, None).map_err(store_err)?;
            LoginOutcome::MfaRequired { mfa_token, expires_in }
        } else if self.requires_mfa(&user.roles) {
            let (mfa_token, expires_in) = self.new_challenge(&user, None).map_err(store_err)?;
            LoginOutcome::EnrollmentRequired { mfa_token, expires_in }
        } else {
            self.store.clear_failures(&email).map_err(store_err)?;
            LoginOutcome::Tokens(self.issue(&user, vec!["pwd".into()]).map_err(store_err)?)
        };
        self.store.flush().await.map_err(store_err)?;
        Ok((outcome, user))
    }

    /// A challenge for a second factor. An enrolment challenge (one offering a secret)
    /// replaces the user's previous one, so a caller cannot pile them up.
    fn new_challenge(&self, user: &User, pending_secret: Option<String>) -> Result<(String, u64), StoreError> {
        let token = random_token();
        let ttl = self.config.login.mfa_ttl;
        let enrolment = pending_secret.is_some();
        let challenge = Challenge {
            user_id: user.id.clone(),
            expires_ms: self.clock.now_ms() + u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            pending_secret,
        };
        if enrolment {
            self.store.put_enrolment(&token_hash(&token), &challenge)?;
        } else {
            self.store.put_challenge(&token_hash(&token), &challenge)?;
        }
        Ok((token, ttl.as_secs()))
    }

    /// Takes a challenge: spent whether or not it is still valid.
    fn take_challenge(&self, mfa_token: &str) -> Result<Challenge, GatewayError> {
        self.store
            .take_challenge(&token_hash(mfa_token))?
            .filter(|c| c.expires_ms > self.clock.now_ms())
            .ok_or(GatewayError::InvalidGrant)
    }

    /// Starts TOTP enrolment, from an MFA challenge (first login of staff) or for a
    /// signed-in caller. An account that already has TOTP can only re-enrol from a
    /// session that passed TOTP, so a password alone never replaces the second factor.
    pub async fn enroll(
        &self,
        mfa_token: Option<&str>,
        caller: Option<&Principal>,
    ) -> Result<Enrollment, GatewayError> {
        let user_id = match (mfa_token, caller) {
            (Some(t), _) => self.take_challenge(t)?.user_id,
            (None, Some(p)) => p.id.clone(),
            (None, None) => return Err(GatewayError::InvalidGrant),
        };
        let user = self.store.user(&user_id)?.ok_or(GatewayError::InvalidGrant)?;
        let reenrol_allowed = caller.is_some_and(|p| p.mfa && mfa_token.is_none());
        if user.disabled || (user.mfa_enabled() && !reenrol_allowed) {
            self.store.flush().await?;
            return Err(GatewayError::InvalidGrant);
        }
        let secret = totp::generate_secret();
        let uri = totp::otpauth_uri(&secret, &user.email).ok_or_else(|| GatewayError::Internal("totp".into()))?;
        let (token, _) = self.new_challenge(&user, Some(secret.clone()))?;
        self.store.flush().await?;
        Ok(Enrollment {
            secret,
            otpauth_uri: uri,
            mfa_token: token,
        })
    }

    /// Completes a login (or an enrolment) with a TOTP code. A wrong code spends the
    /// challenge and counts as a failed login.
    pub async fn mfa(&self, mfa_token: &str, code: &str) -> Result<(TokenPair, AuthEvent), (GatewayError, AuthEvent)> {
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
        let challenge = self.take_challenge(mfa_token).map_err(err)?;
        let email = self
            .store
            .user(&challenge.user_id)
            .map_err(|e| err(e.into()))?
            .ok_or_else(|| err(GatewayError::InvalidGrant))?
            .email;
        let _attempt = self.attempt_lock(&email).await;
        // Everything decided from here on is read under the lock: a request that queued
        // behind another for the same account sees the step that one accepted.
        let user = self
            .store
            .user(&challenge.user_id)
            .map_err(|e| err(e.into()))?
            .ok_or_else(|| err(GatewayError::InvalidGrant))?;
        let now_ms = self.clock.now_ms();
        if let Some(until) = self
            .store
            .locked_until(&user.email, now_ms)
            .map_err(|e| err(e.into()))?
        {
            self.store.flush().await.map_err(|e| err(e.into()))?;
            return Err((
                self.locked_error(until),
                ev(EventKind::LoginLocked, Some(&user), Some("locked")),
            ));
        }
        let enrolling = challenge.pending_secret.is_some();
        let secret = challenge.pending_secret.clone().or_else(|| user.totp_secret.clone());
        let step = secret
            .as_deref()
            .and_then(|s| totp::verify(s, code, now_ms / 1000, user.totp_last_step));
        // The step is written only if it is still later than the stored one (checked
        // again on the stored record, atomically), so one code passes once.
        let accepted = match step.filter(|_| !user.disabled) {
            Some(step) => self
                .store
                .try_update_user(&user.id, |u| {
                    if u.totp_last_step >= step || u.disabled {
                        return false;
                    }
                    u.totp_last_step = step;
                    if enrolling {
                        u.totp_secret.clone_from(&secret);
                    }
                    true
                })
                .map_err(|e| err(e.into()))?,
            None => None,
        };
        let Some(user) = accepted else {
            // A failed code counts like a failed password; this may lock the account.
            self.record_failure(&user.email).map_err(|e| err(e.into()))?;
            self.store.flush().await.map_err(|e| err(e.into()))?;
            return Err((
                GatewayError::InvalidCode,
                ev(EventKind::MfaFailure, Some(&user), Some("wrong or reused code")),
            ));
        };
        self.store.clear_failures(&user.email).map_err(|e| err(e.into()))?;
        let pair = self
            .issue(&user, vec!["pwd".into(), "otp".into()])
            .map_err(|e| err(e.into()))?;
        self.store.flush().await.map_err(|e| err(e.into()))?;
        let event = if enrolling {
            EventKind::MfaEnrolled
        } else {
            EventKind::MfaSuccess
        };
        Ok((pair, ev(event, Some(&user), None)))
    }

    // --- tokens ---------------------------------------------------------------------

    fn access_token(&self, user: &User, amr: &[String], sid: &str) -> Result<String, StoreError> {
        let now = self.clock.now();
        let claims = Claims {
            iss: self.keys.issuer().to_owned(),
            sub: user.id.clone(),
            email: user.email.clone(),
            roles: user.roles.clone(),
            amr: amr.to_vec(),
            iat: now,
            nbf: now,
            exp: now + self.config.tokens.access_ttl.as_secs(),
            jti: random_token(),
            sid: sid.to_owned(),
        };
        // Signing with a loaded key does not fail; if it ever does, no token is issued.
        Ok(self.keys.sign(&claims).unwrap_or_default())
    }

    /// A new session (refresh-token family) and its first tokens.
    fn issue(&self, user: &User, amr: Vec<String>) -> Result<TokenPair, StoreError> {
        let now = self.clock.now();
        let refresh = random_token();
        let session = Session {
            id: format!("s-{}", &token_hash(&random_token())[..32]),
            user_id: user.id.clone(),
            current_refresh: token_hash(&refresh),
            amr,
            created: now,
            expires: now + self.config.tokens.refresh_ttl.as_secs(),
            revoked: false,
        };
        self.store.put_session(&session)?;
        self.store.put_refresh(
            &session.current_refresh,
            &RefreshEntry {
                session_id: session.id.clone(),
                expires: session.expires,
            },
        )?;
        Ok(TokenPair {
            access_token: self.access_token(user, &session.amr, &session.id)?,
            refresh_token: refresh,
            token_type: "Bearer",
            expires_in: self.config.tokens.access_ttl.as_secs(),
        })
    }

    /// Rotates a refresh token. A spent token presented again revokes its whole family.
    pub async fn refresh(&self, refresh_token: &str) -> Result<(TokenPair, AuthEvent), (GatewayError, AuthEvent)> {
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
            .map_err(store_err)?
            .ok_or_else(|| invalid("unknown refresh token"))?;
        let session = self
            .store
            .session(&entry.session_id)
            .map_err(store_err)?
            .ok_or_else(|| invalid("unknown session"))?;
        if session.revoked || session.expires <= now {
            return Err(invalid("session revoked or expired"));
        }
        if session.current_refresh != hash {
            self.revoke_session(&session).map_err(store_err)?;
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
            .map_err(store_err)?
            .ok_or_else(|| invalid("unknown user"))?;
        if user.disabled || user.tokens_valid_after >= session.created {
            return Err(invalid("user disabled or sessions revoked"));
        }
        let new_refresh = random_token();
        let mut rotated = session.clone();
        rotated.current_refresh = token_hash(&new_refresh);
        if !self.store.swap_session(&session, &rotated).map_err(store_err)? {
            // Another request rotated the same token first: this is a reuse.
            self.revoke_session(&rotated).map_err(store_err)?;
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
            .map_err(store_err)?;
        let access = self.access_token(&user, &rotated.amr, &rotated.id).map_err(store_err)?;
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

    fn revoke_session(&self, session: &Session) -> Result<(), StoreError> {
        let mut s = self.store.session(&session.id)?.unwrap_or_else(|| session.clone());
        s.revoked = true;
        self.store.put_session(&s)?;
        self.revoked.sessions.insert(s.id.clone(), s.expires);
        Ok(())
    }

    /// Logout: revokes the access token and its session (and the session of a refresh
    /// token given with it, when it is the caller's).
    pub async fn logout(&self, claims: &Claims, refresh_token: Option<&str>) -> Result<(), GatewayError> {
        self.store.revoke_jti(&claims.jti, claims.exp)?;
        self.revoked.jti.insert(claims.jti.clone(), claims.exp);
        if let Some(s) = self.store.session(&claims.sid)? {
            self.revoke_session(&s)?;
        }
        if let Some(rt) = refresh_token {
            if let Some(entry) = self.store.refresh_entry(&token_hash(rt))? {
                if let Some(s) = self
                    .store
                    .session(&entry.session_id)?
                    .filter(|s| s.user_id == claims.sub)
                {
                    self.revoke_session(&s)?;
                }
            }
        }
        self.store.flush().await?;
        Ok(())
    }

    /// Ends every session and every outstanding access token of a user at once.
    pub fn revoke_user(&self, user_id: &str) -> Result<(), StoreError> {
        let now = self.clock.now();
        self.store.update_user(user_id, |u| u.tokens_valid_after = now)?;
        self.store.revoke_user_tokens(user_id, now)?;
        self.revoked.users.insert(user_id.to_owned(), now);
        for s in self.store.sessions_of(user_id)? {
            if !s.revoked {
                self.revoke_session(&s)?;
            }
        }
        Ok(())
    }

    /// Verifies a bearer access token: signature (cached after first sight), times,
    /// and every revocation.
    pub fn verify_access(&self, token: &str) -> Result<Arc<Verified>, TokenError> {
        let now = self.clock.now();
        let cached = self.verified.get(token).map(|c| c.clone());
        let verified = match cached {
            Some(v) if now <= v.claims.exp + super::tokens::LEEWAY_SECS => v,
            _ => {
                let claims = self.keys.verify(token, now)?;
                let principal = Arc::new(Self::principal(&claims));
                let identity = crate::upstream::identity::IdentityHeaders::of(&principal);
                let v = Arc::new(Verified {
                    claims,
                    principal,
                    identity,
                });
                if self.verified.len() >= self.token_cache_max {
                    self.make_room(now);
                }
                self.verified.insert(token.to_owned(), v.clone());
                v
            }
        };
        let claims = &verified.claims;
        let revoked = self.revoked.jti.contains_key(&claims.jti)
            || self.revoked.sessions.contains_key(&claims.sid)
            || self
                .revoked
                .users
                .get(&claims.sub)
                .is_some_and(|after| claims.iat <= *after);
        if revoked {
            return Err(TokenError::BadSignature);
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
            v.claims.exp + super::tokens::LEEWAY_SECS >= now
        });
        self.evicting.store(false, Ordering::Release);
    }

    /// The periodic clean-up (every minute): drops what has expired from the in-memory
    /// revocation sets, the token cache and the notice times, and from the database
    /// every record that has run out (see [`Store::prune`]).
    pub fn sweep(&self) {
        let now = self.clock.now();
        let now_ms = self.clock.now_ms();
        self.revoked.jti.retain(|_, exp| *exp > now);
        self.revoked.sessions.retain(|_, exp| *exp > now);
        let span = self.user_revocation_span();
        self.revoked.users.retain(|_, after| after.saturating_add(span) >= now);
        self.verified
            .retain(|_, v| v.claims.exp + super::tokens::LEEWAY_SECS >= now);
        self.notices
            .retain(|_, sent| sent.saturating_add(NOTICE_INTERVAL_MS) > now_ms);
        match self.store.prune(now_ms, self.lockout_ms()) {
            Ok(p) if p != crate::store::Pruned::default() => tracing::debug!(?p, "pruned expired records"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning expired records failed"),
        }
        if let Err(e) = self.store.revoked_users(now.saturating_sub(span)) {
            tracing::warn!(error = %e, "pruning user revocations failed");
        }
    }

    /// The principal a verified token stands for.
    pub fn principal(claims: &Claims) -> Principal {
        Principal {
            id: claims.sub.clone(),
            email: claims.email.clone(),
            roles: claims.roles.clone(),
            mfa: claims.amr.iter().any(|a| a == "otp"),
        }
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
        let rules = broken_rules(&self.config.password, &password, &email);
        if !rules.is_empty() {
            return Err(format!("the password breaks the policy: {}", rules.join("; ")));
        }
        let hash = self
            .hasher
            .hash(password)
            .await
            .map_err(|_| "the password hashing queue is full; try again")?
            .ok_or("password hashing failed")?;
        let user = new_user(&email, name, hash, roles, true, self.clock.now());
        self.store.create_user(&user).map_err(|e| e.to_string())?;
        self.store.flush().await.map_err(|e| e.to_string())?;
        Ok(user)
    }

    /// Sets a user's TOTP secret directly (demo users are created enrolled).
    pub async fn set_totp(&self, user_id: &str, secret: &str) -> Result<(), StoreError> {
        self.store
            .update_user(user_id, |u| u.totp_secret = Some(secret.to_owned()))?;
        self.store.flush().await
    }
}

/// Makes room in a cache that has reached `max`: drops the entries that are no longer
/// `live`, then, if that freed less than an eighth, an arbitrary eighth of the rest (the
/// map's order follows a random hash). Past `max`, inserting stays cheap on average: one
/// pass over the map per `max / 8` insertions, and the entries in use stay.
fn evict<K, V, S>(map: &DashMap<K, V, S>, max: usize, live: impl Fn(&V) -> bool)
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
    use super::*;

    /// A service on a temporary database, with a fake clock.
    fn service(dir: &std::path::Path, clock: &crate::clock::ManualClock) -> AuthService {
        let src = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://localhost\"\ndata_dir = \"{}\"\npolicies = \"p\"\n",
            dir.display()
        );
        let config = Arc::new(Config::parse(&dir.join("g.toml"), &src).unwrap());
        let store = Store::temporary().unwrap();
        let clock: SharedClock = Arc::new(clock.clone());
        let (audit, _task) = crate::audit::Audit::start(&store, clock.clone()).unwrap();
        AuthService::new(config, store, clock, audit).unwrap()
    }

    fn token(auth: &AuthService, n: usize, ttl: u64) -> String {
        let now = auth.clock.now();
        auth.keys
            .sign(&Claims {
                iss: "https://localhost".into(),
                sub: "u-1".into(),
                email: "a@example.com".into(),
                roles: vec!["customer".into()],
                amr: vec!["pwd".into()],
                iat: now,
                nbf: now,
                exp: now + ttl,
                jti: format!("jti-{n}"),
                sid: "s-1".into(),
            })
            .unwrap()
    }

    // A full token cache makes room by dropping expired tokens, then a few others; the
    // tokens in use stay cached (it used to empty itself).
    #[tokio::test]
    async fn token_cache_evicts_instead_of_clearing() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::ManualClock::new();
        let mut auth = service(dir.path(), &clock);
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
