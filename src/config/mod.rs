//! `gateway.toml`: raw serde types, validated into the typed [`Config`] the engine uses.
//!
//! Raw types refuse unknown keys; humane values (durations, sizes, rates) parse while the
//! TOML is read, so every error names the file, the line and the key. Relative paths are
//! resolved against the directory of the configuration file. Nothing is defaulted
//! silently except the keys documented as optional in the README.
//!
//! `raw` holds the serde layer (what the file says), `validate` turns it into the typed
//! layer below (what the engine reads).

pub mod cors;
pub mod forward_auth;
pub mod proxies;
mod raw;
mod registration;
mod smtp;
pub mod store;
#[cfg(test)]
mod tests;
pub mod totp;
pub mod upstream_tls;
mod upstreams;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::units::Rate;

pub use self::cors::{Cors, CorsOrigins};
pub use self::forward_auth::ForwardAuth;
pub use self::proxies::TrustedProxies;
pub use self::registration::Registration;
pub use self::smtp::{Smtp, SmtpPassword, SmtpTls, SMTP_PASSWORD_ENV};
pub use self::upstream_tls::UpstreamTls;

/// The most connection workers `[server] workers` may ask for.
const MAX_WORKERS: usize = 256;

/// `[server] drain_timeout` when absent.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// `[server] workers` when absent: one connection worker per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One hashing thread per core: the default of `hash_concurrency`. Proxying is protected
/// by the threads' lower priority rather than by fewer threads: on 2 cores, one thread at
/// normal priority let the login queue outlast client timeouts (under 1 login/s), while
/// two niced threads keep about 28 logins/s and three quarters of the idle proxying rate
/// during a login flood.
pub fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

// ---------------------------------------------------------------------------------------
// Typed layer: what the engine reads.

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages).
    pub source: PathBuf,
    pub server: Server,
    pub tls: Option<TlsFiles>,
    pub upstreams: BTreeMap<String, Upstream>,
    pub limits: Limits,
    pub rate_limit: RateLimits,
    pub tokens: Tokens,
    pub login: Login,
    pub password: PasswordPolicy,
    pub email: Email,
    /// Roles declared in `[roles]`, beyond those that policies name.
    pub roles: BTreeMap<String, String>,
    /// How long audit records are kept; forever when absent.
    pub audit_retain: Option<Duration>,
    /// Capacity of the queue of high-volume audit records.
    pub audit_queue: usize,
    /// `[policy] mode = "shadow"`: refusals are let through and audited as `would_deny`.
    pub shadow: bool,
    /// `[registration]`: self-registration, off by default.
    pub registration: Registration,
    /// `[cors]`: which browser origins may call through the gateway; none when absent.
    pub cors: Option<Cors>,
    /// `[totp]`: the issuer authenticator apps show.
    pub totp: totp::Totp,
    /// `[upstream_tls.NAME]`, or its defaults: one entry per `https://` upstream.
    pub upstream_tls: BTreeMap<String, UpstreamTls>,
    /// `[store]`: the embedded sled store, or PostgreSQL shared by several gateways.
    pub store: store::StoreConfig,
    /// `[forward_auth]`: the peers `GET /auth/verify` answers (loopback by default).
    pub forward_auth: ForwardAuth,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub plain_listen: Option<SocketAddr>,
    pub public_url: http::Uri,
    pub data_dir: PathBuf,
    pub policies: PathBuf,
    /// Connection workers, one single-threaded runtime each (default: one per core).
    pub workers: usize,
    /// How long shutdown waits for requests in flight before it closes their connections.
    pub drain_timeout: Duration,
    /// `trusted_proxies`: the peers whose `X-Forwarded-For` (or PROXY header) names the
    /// client; none by default.
    pub trusted_proxies: TrustedProxies,
    /// `proxy_protocol`: the TLS listener reads a PROXY v1/v2 header from trusted peers.
    pub proxy_protocol: bool,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A backend the gateway forwards to: `http://host:port` or `https://host:port`,
/// possibly with a path prefix.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// The path prefix, without a trailing slash (empty when there is none).
    pub base_path: String,
}

impl Upstream {
    /// The port to connect to: the URL's, or 443 for `https://` and 80 for `http://`.
    pub fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(if self.scheme == http::uri::Scheme::HTTPS {
                443
            } else {
                80
            })
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body: u64,
    pub upstream_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub h2_max_streams: u32,
    pub max_connections: usize,
    /// The longest wait for the next piece of a request body.
    pub body_read_timeout: Duration,
    /// The longest a client may take to send a whole request body, from its head.
    pub request_timeout: Duration,
    /// Connections to one upstream open at once, per connection worker.
    pub upstream_max_connections: usize,
    /// How long an upstream connection may sit idle before it is closed.
    pub upstream_idle_timeout: Duration,
    /// The largest upstream response a route with `response_fields` filters; a larger
    /// one is refused with 502, never passed through unfiltered.
    pub max_filtered_response: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 10 << 20,
            upstream_timeout: Duration::from_secs(30),
            max_header_bytes: 64 << 10,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            h2_max_streams: 100,
            max_connections: 10_000,
            body_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
            upstream_max_connections: 256,
            upstream_idle_timeout: Duration::from_secs(90),
            max_filtered_response: 4 << 20,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateLimits {
    pub auth_per_ip: Rate,
}

#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub algorithm: KeyAlg,
    /// `[tokens] idle_timeout`: a session unused for this long is ended; off when absent.
    pub idle_timeout: Option<Duration>,
    /// `[tokens] audience`: the `aud` of access tokens, required when verifying them;
    /// `public_url` without a trailing `/` by default.
    pub audience: String,
}

/// The algorithm access tokens are signed with (`[tokens] algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// `"EdDSA"`, Ed25519: the default.
    EdDsa,
    /// `"ES256"`, ECDSA on P-256 with SHA-256.
    Es256,
}

#[derive(Debug, Clone)]
pub struct Login {
    pub max_failures: u32,
    pub lockout: Duration,
    pub mfa_ttl: Duration,
    pub require_mfa_roles: Vec<String>,
    /// Passwords hashed at once, at most (argon2 takes a core and 19 MiB each).
    pub hash_concurrency: usize,
}

/// A character class a password must contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharClass {
    Upper,
    Lower,
    Digit,
    Symbol,
}

#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub require: Vec<CharClass>,
    /// Refuse passwords that are common or easily guessed (zxcvbn), as rule `common`.
    pub reject_common: bool,
    /// How long a password reset token works (`reset_ttl`, default 30 minutes).
    pub reset_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct Email {
    pub outbox: PathBuf,
    /// `[email] from`: the `From` of every message (outbox and SMTP, unless
    /// `[email.smtp] from` says otherwise); `Portcullis <no-reply@HOST>` by default, HOST
    /// from `public_url`.
    pub from: lettre::message::Mailbox,
    pub smtp: Option<Smtp>,
}
