//! [`AuthService`]: the identity service the gateway holds, and what its flows share.
//!
//! The flows live one per file beside this one, each an `impl AuthService` block over
//! the fields defined here (the store, the clock, the key ring, the audit trail):
//! `registration` (sign-up, confirmation, accounts made by an administrator), `login`
//! (passwords and lockout), `mfa` (TOTP enrolment and codes), `sessions` (token issue,
//! refresh rotation, logout, revocation) and `verify` (access tokens on the request
//! path, with their cache and the in-memory revocation sets). Each flow answers with a
//! [`Flow`]: its result and the event to record.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use super::password::{Busy, Hasher};
use super::state::{Revocations, TokenCache, TOKEN_CACHE_MAX};
use super::tokens::KeyRing;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::error::GatewayError;
use crate::mail::{Mailer, SpoolError};
use crate::store::Store;

/// The identity service: one per gateway, shared by every connection.
pub struct AuthService {
    pub(super) config: Arc<Config>,
    pub(super) audit: crate::audit::Audit,
    pub(super) store: Store,
    pub(super) hasher: Hasher,
    pub(super) keys: KeyRing,
    /// The outbox, or the SMTP spool (see [`crate::mail`]).
    pub(super) mailer: Mailer,
    pub(super) clock: SharedClock,
    /// Revoked token ids, sessions and users still in force, kept in memory (as well as
    /// in the store) so the request path never reads the disk.
    pub(super) revoked: Revocations,
    /// Verified tokens, keyed by the whole token (a key on any part of it would let
    /// altered claims hit the cache), hashed by its end.
    pub(super) verified: TokenCache,
    /// One async lock per email with an attempt in flight: attempts on one account run
    /// one after another, so parallel guesses cannot outrun the failure count, and
    /// parallel correct logins simply queue. Entries live only while attempts do.
    pub(super) attempts: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Security events by kind, for `GET /metrics`.
    pub(super) events: crate::metrics::AuthEventCounts,
    /// Confirmed address -> when its owner was last sent a registration notice (Unix
    /// ms); entries older than the notice interval are swept. Only confirmed accounts
    /// get notices, so this holds at most one entry per account.
    pub(super) notices: DashMap<String, u64>,
    /// Account address -> when it was last sent a password reset mail (Unix ms); swept
    /// after a minute. Only real, confirmed, enabled accounts get entries.
    pub(super) resets_sent: DashMap<String, u64>,
    /// Set while one request makes room in the token cache, so others do not pile on.
    pub(super) evicting: AtomicBool,
    /// [`TOKEN_CACHE_MAX`], smaller in tests.
    pub(super) token_cache_max: usize,
    /// `[tokens] idle_timeout` and when each session was last used.
    pub(super) idle: super::activity::IdleSessions,
    /// Resolved session cookies, keyed by the cookie id (see [`super::cookie`]).
    pub(super) cookies: TokenCache,
}

/// How long a confirmation link works; an account never confirmed is removed when its
/// latest link has expired.
pub(super) const CONFIRMATION_TTL_MS: u64 = 24 * 3600 * 1000;

/// The answer when the password hashing queue is full: 503, try again in a second.
pub(super) fn busy(_: Busy) -> GatewayError {
    GatewayError::Busy {
        retry_after: Duration::from_secs(1),
    }
}

impl AuthService {
    /// The service over `store`: loads (or makes, on first start) the signing key in
    /// `data_dir/keys/`, rebuilds the store's indexes and loads the revocations still
    /// in force.
    pub async fn new(
        config: Arc<Config>,
        store: Store,
        clock: SharedClock,
        audit: crate::audit::Audit,
    ) -> Result<Self, String> {
        let issuer = config.server.public_url.to_string().trim_end_matches('/').to_owned();
        let alg = config.tokens.algorithm;
        // The embedded store's gateway keeps its key in data_dir; gateways sharing a
        // store share the key through it.
        let keys = if store.sled().is_some() {
            KeyRing::load_or_generate(&config.server.data_dir.join("keys"), alg, &issuer).map_err(|e| e.to_string())?
        } else {
            KeyRing::shared(&store, alg, &issuer).await?
        }
        .with_audience(&config.tokens.audience);
        let mailer = Mailer::new(&config, clock.clone(), &store)
            .map_err(|e| format!("mail spool in {}: {e}", config.server.data_dir.display()))?;
        let hasher = Hasher::with_concurrency(config.login.hash_concurrency);
        let idle = super::activity::IdleSessions::new(config.tokens.idle_timeout);
        let service = Self {
            config,
            audit,
            store,
            hasher,
            keys,
            mailer,
            clock,
            revoked: Revocations::default(),
            verified: TokenCache::default(),
            attempts: DashMap::new(),
            events: crate::metrics::AuthEventCounts::default(),
            notices: DashMap::new(),
            resets_sent: DashMap::new(),
            evicting: AtomicBool::new(false),
            token_cache_max: TOKEN_CACHE_MAX,
            idle,
            cookies: TokenCache::default(),
        };
        if let Some(sled) = service.store.sled() {
            sled.build_indexes(CONFIRMATION_TTL_MS).map_err(|e| e.to_string())?;
        }
        service.load_revocations().await.map_err(|e| e.to_string())?;
        service.load_activity().await.map_err(|e| e.to_string())?;
        Ok(service)
    }

    /// The audit trail, for the gateway's own records (requests, reloads, admin
    /// commands). Auth flows record through `auth::http`, never through this.
    pub fn audit(&self) -> &crate::audit::Audit {
        &self.audit
    }

    /// The account store, for the admin commands, the audit queries and checkpoints.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The token signing key, for the JWKS endpoint and audit checkpoints.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The gateway's clock, shared with the rate limiters and the audit pruning.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Whether `[registration]` lets anyone make an account (`/auth/register` and
    /// `/auth/confirm` answer 404 otherwise).
    pub fn registration_enabled(&self) -> bool {
        self.config.registration.enabled
    }

    /// Security events by kind, as counted for `GET /metrics`.
    pub fn event_counts(&self) -> &crate::metrics::AuthEventCounts {
        &self.events
    }

    /// Where mail goes: the outbox, or the SMTP spool the sender delivers.
    pub fn mailer(&self) -> &Mailer {
        &self.mailer
    }

    /// The password hashing pool (its queue bounds concurrent logins).
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// Hands one message to the mailer: durable when this returns (in the outbox, in the
    /// SMTP spool, whose sender is woken, or in the spool a shared store keeps; see
    /// [`Mailer::send`]). A full spool answers 503 busy; a shared spool whose database
    /// cannot be reached, 503 unavailable.
    pub(super) async fn mail(&self, to: &str, subject: &str, body: &str) -> Result<(), GatewayError> {
        match self.mailer.send(to, subject, body).await {
            Ok(()) => Ok(()),
            Err(SpoolError::Full(max)) => {
                tracing::warn!(max, "the mail spool is full: is the mail server down?");
                Err(GatewayError::Busy {
                    retry_after: Duration::from_secs(30),
                })
            }
            Err(SpoolError::Store(e)) => {
                tracing::warn!(error = %e, "cannot put mail in the shared spool");
                Err(e.into())
            }
            Err(e) => Err(GatewayError::Internal(format!("cannot write mail: {e}").into())),
        }
    }

    /// The periodic clean-up (every minute): drops what has expired from the in-memory
    /// revocation sets, the token cache and the notice times, and from the database
    /// every record that has run out (see [`Backend::prune`](crate::store::backend::Backend::prune)).
    pub async fn sweep(&self) {
        let now = self.clock.now();
        let now_ms = self.clock.now_ms();
        self.sweep_verification(now);
        self.cookies.retain(|_, v| v.claims.exp >= now);
        self.sweep_notices(now_ms);
        self.sweep_resets_sent(now_ms);
        self.sweep_idle().await;
        match self.store.prune(now_ms, self.lockout_ms()).await {
            Ok(p) if p != crate::store::Pruned::default() => tracing::debug!(?p, "pruned expired records"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning expired records failed"),
        }
        if let Err(e) = self
            .store
            .revoked_users(now.saturating_sub(self.user_revocation_span()))
            .await
        {
            tracing::warn!(error = %e, "pruning user revocations failed");
        }
    }
}
