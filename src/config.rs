//! `gateway.toml`: raw serde types, validated into the typed [`Config`] the engine uses.
//!
//! Raw types refuse unknown keys; humane values (durations, sizes, rates) parse while the
//! TOML is read, so every error names the file, the line and the key. Relative paths are
//! resolved against the directory of the configuration file. Nothing is defaulted
//! silently except the keys documented as optional in the README.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::source::SourceError;
use crate::units::{ByteSize, HumanDuration, Rate};

/// The most connection workers `[server] workers` may ask for.
const MAX_WORKERS: usize = 256;

/// `[server] drain_timeout` when absent.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Raw layer: exactly what the file says.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    tls: Option<RawTls>,
    #[serde(default)]
    upstreams: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    rate_limit: RawRateLimit,
    #[serde(default)]
    tokens: RawTokens,
    #[serde(default)]
    login: RawLogin,
    #[serde(default)]
    password: RawPassword,
    email: Option<RawEmail>,
    #[serde(default)]
    roles: BTreeMap<String, RawRole>,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    policy: RawPolicyMode,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicyMode {
    mode: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    retain: Option<HumanDuration>,
    queue: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Spanned<String>,
    plain_listen: Option<Spanned<String>>,
    public_url: Spanned<String>,
    data_dir: String,
    policies: String,
    workers: Option<Spanned<usize>>,
    drain_timeout: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body: Option<ByteSize>,
    upstream_timeout: Option<HumanDuration>,
    max_header_bytes: Option<ByteSize>,
    max_headers: Option<usize>,
    header_read_timeout: Option<HumanDuration>,
    idle_timeout: Option<HumanDuration>,
    tls_handshake_timeout: Option<HumanDuration>,
    h2_max_streams: Option<u32>,
    max_connections: Option<usize>,
    body_read_timeout: Option<HumanDuration>,
    request_timeout: Option<HumanDuration>,
    upstream_max_connections: Option<usize>,
    upstream_idle_timeout: Option<HumanDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    auth_per_ip: Option<Rate>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    access_ttl: Option<HumanDuration>,
    refresh_ttl: Option<HumanDuration>,
    algorithm: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogin {
    max_failures: Option<u32>,
    lockout: Option<HumanDuration>,
    mfa_ttl: Option<HumanDuration>,
    require_mfa_roles: Option<Vec<String>>,
    hash_concurrency: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPassword {
    min_length: Option<usize>,
    require: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    outbox: Option<String>,
    smtp: Option<RawSmtp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    port: Option<u16>,
    username: Option<String>,
    password_env: Option<String>,
    from: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    #[serde(default)]
    description: String,
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
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A backend the gateway forwards to.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// `http://host:port`, possibly with a path prefix (without a trailing slash).
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    pub base_path: String,
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
}

/// The algorithm of the token signing key (`[tokens] algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// Ed25519 (`EdDSA`), the default.
    EdDsa,
    /// ECDSA P-256 with SHA-256 (`ES256`).
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

/// One hashing thread per core: the default of `hash_concurrency`. Proxying is protected
/// by the threads' lower priority rather than by fewer threads: on 2 cores, one thread at
/// normal priority let the login queue outlast client timeouts (under 1 login/s), while
/// two niced threads keep about 28 logins/s and three quarters of the idle proxying rate
/// during a login flood.
pub fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
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
}

#[derive(Debug, Clone)]
pub struct Email {
    pub outbox: PathBuf,
    pub smtp: Option<Smtp>,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    /// The name of the environment variable holding the password: the secret itself
    /// never sits in the configuration file.
    pub password_env: Option<String>,
    pub from: String,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, SourceError> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| SourceError::whole_file(path, format!("cannot read the configuration: {e}")))?;
        Self::parse(path, &src)
    }

    /// Validates configuration text; `path` names it in errors and anchors relative paths.
    pub fn parse(path: &Path, src: &str) -> Result<Self, SourceError> {
        let raw: RawConfig = toml::from_str(src).map_err(|e| SourceError::from_toml(path, src, &e))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &str| {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                base.join(p)
            }
        };
        let at = |span: std::ops::Range<usize>, msg: String| SourceError::at(path, src, Some(span), None, msg);

        let listen = parse_addr(&raw.server.listen).map_err(|m| at(raw.server.listen.span(), m))?;
        let plain_listen = match &raw.server.plain_listen {
            Some(s) => Some(parse_addr(s).map_err(|m| at(s.span(), m))?),
            None => None,
        };
        let public_url: http::Uri = raw
            .server
            .public_url
            .get_ref()
            .parse()
            .ok()
            .filter(|u: &http::Uri| matches!(u.scheme_str(), Some("https" | "http")) && u.authority().is_some())
            .ok_or_else(|| {
                at(
                    raw.server.public_url.span(),
                    format!("{:?} is not an http(s) URL", raw.server.public_url.get_ref()),
                )
            })?;

        let mut upstreams = BTreeMap::new();
        for (name, url) in &raw.upstreams {
            let upstream = parse_upstream(name, url.get_ref()).map_err(|m| at(url.span(), m))?;
            upstreams.insert(name.clone(), upstream);
        }

        let workers = match &raw.server.workers {
            None => crate::workers::default_count(),
            Some(w) if (1..=MAX_WORKERS).contains(w.get_ref()) => *w.get_ref(),
            Some(w) => {
                return Err(SourceError::at(
                    path,
                    src,
                    Some(w.span()),
                    Some("[server] workers".into()),
                    format!("must be between 1 and {MAX_WORKERS}"),
                ))
            }
        };

        let defaults = Limits::default();
        let l = raw.limits;
        let limits = Limits {
            max_body: l.max_body.map_or(defaults.max_body, |b| b.0),
            upstream_timeout: l.upstream_timeout.map_or(defaults.upstream_timeout, |d| d.0),
            max_header_bytes: l.max_header_bytes.map_or(defaults.max_header_bytes, |b| {
                usize::try_from(b.0).unwrap_or(usize::MAX)
            }),
            max_headers: l.max_headers.unwrap_or(defaults.max_headers),
            header_read_timeout: l.header_read_timeout.map_or(defaults.header_read_timeout, |d| d.0),
            idle_timeout: l.idle_timeout.map_or(defaults.idle_timeout, |d| d.0),
            tls_handshake_timeout: l.tls_handshake_timeout.map_or(defaults.tls_handshake_timeout, |d| d.0),
            h2_max_streams: l.h2_max_streams.unwrap_or(defaults.h2_max_streams),
            max_connections: l.max_connections.unwrap_or(defaults.max_connections),
            body_read_timeout: l.body_read_timeout.map_or(defaults.body_read_timeout, |d| d.0),
            request_timeout: l.request_timeout.map_or(defaults.request_timeout, |d| d.0),
            upstream_max_connections: l.upstream_max_connections.unwrap_or(defaults.upstream_max_connections),
            upstream_idle_timeout: l.upstream_idle_timeout.map_or(defaults.upstream_idle_timeout, |d| d.0),
        };
        let drain_timeout = raw.server.drain_timeout.map_or(DEFAULT_DRAIN_TIMEOUT, |d| d.0);
        let positive = [
            ("[limits] upstream_timeout", limits.upstream_timeout.is_zero()),
            ("[limits] header_read_timeout", limits.header_read_timeout.is_zero()),
            ("[limits] idle_timeout", limits.idle_timeout.is_zero()),
            ("[limits] tls_handshake_timeout", limits.tls_handshake_timeout.is_zero()),
            ("[limits] max_headers", limits.max_headers == 0),
            ("[limits] h2_max_streams", limits.h2_max_streams == 0),
            ("[limits] max_connections", limits.max_connections == 0),
            ("[limits] body_read_timeout", limits.body_read_timeout.is_zero()),
            ("[limits] request_timeout", limits.request_timeout.is_zero()),
            (
                "[limits] upstream_max_connections",
                limits.upstream_max_connections == 0,
            ),
            ("[limits] upstream_idle_timeout", limits.upstream_idle_timeout.is_zero()),
            ("[server] drain_timeout", drain_timeout.is_zero()),
            ("[limits] max_header_bytes", limits.max_header_bytes < 8192),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, bad)| *bad) {
            let span = find_key(src, key);
            return Err(SourceError::at(
                path,
                src,
                span,
                Some((*key).into()),
                "must be positive (and max_header_bytes at least 8KiB)",
            ));
        }

        let password = PasswordPolicy {
            min_length: raw.password.min_length.unwrap_or(8),
            require: match raw.password.require {
                None => vec![CharClass::Upper, CharClass::Lower, CharClass::Digit, CharClass::Symbol],
                Some(list) => list
                    .iter()
                    .map(|c| match c.get_ref().as_str() {
                        "upper" => Ok(CharClass::Upper),
                        "lower" => Ok(CharClass::Lower),
                        "digit" => Ok(CharClass::Digit),
                        "symbol" => Ok(CharClass::Symbol),
                        other => Err(at(
                            c.span(),
                            format!("unknown character class {other:?}: expected upper, lower, digit or symbol"),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            },
        };

        let algorithm = match raw.tokens.algorithm.as_ref().map(|a| (a.get_ref().as_str(), a.span())) {
            None | Some(("EdDSA", _)) => KeyAlg::EdDsa,
            Some(("ES256", _)) => KeyAlg::Es256,
            Some((other, span)) => {
                return Err(at(
                    span,
                    format!("unknown algorithm {other:?}: expected \"EdDSA\" or \"ES256\""),
                ))
            }
        };
        if let Some(span) = raw
            .email
            .as_ref()
            .and_then(|e| e.smtp.as_ref())
            .and(find_key_span(src, "[email.smtp]"))
        {
            return Err(at(
                span,
                "SMTP delivery is not available in this version; use `outbox`".to_owned(),
            ));
        }

        let shadow = match raw.policy.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("enforce", _)) => false,
            Some(("shadow", _)) => true,
            Some((other, span)) => {
                return Err(at(
                    span,
                    format!("unknown mode {other:?}: expected \"enforce\" or \"shadow\""),
                ))
            }
        };

        let email = match raw.email {
            None => Email {
                outbox: resolve(&format!("{}/outbox", raw.server.data_dir)),
                smtp: None,
            },
            Some(e) => Email {
                outbox: resolve(&e.outbox.unwrap_or_else(|| format!("{}/outbox", raw.server.data_dir))),
                smtp: e.smtp.map(|s| Smtp {
                    host: s.host,
                    port: s.port.unwrap_or(587),
                    username: s.username,
                    password_env: s.password_env,
                    from: s.from,
                }),
            },
        };

        Ok(Self {
            source: path.to_path_buf(),
            server: Server {
                listen,
                plain_listen,
                public_url,
                data_dir: resolve(&raw.server.data_dir),
                policies: resolve(&raw.server.policies),
                workers,
                drain_timeout,
            },
            tls: raw.tls.map(|t| TlsFiles {
                cert: resolve(&t.cert),
                key: resolve(&t.key),
            }),
            upstreams,
            limits,
            rate_limit: RateLimits {
                auth_per_ip: raw.rate_limit.auth_per_ip.unwrap_or(Rate {
                    count: 60,
                    per: Duration::from_secs(60),
                }),
            },
            tokens: Tokens {
                access_ttl: raw.tokens.access_ttl.map_or(Duration::from_secs(300), |d| d.0),
                refresh_ttl: raw.tokens.refresh_ttl.map_or(Duration::from_secs(12 * 3600), |d| d.0),
                algorithm,
            },
            login: Login {
                max_failures: raw.login.max_failures.unwrap_or(5),
                lockout: raw.login.lockout.map_or(Duration::from_secs(900), |d| d.0),
                mfa_ttl: raw.login.mfa_ttl.map_or(Duration::from_secs(120), |d| d.0),
                require_mfa_roles: raw
                    .login
                    .require_mfa_roles
                    .unwrap_or_else(|| vec!["admin".into(), "inventory".into(), "support".into()]),
                hash_concurrency: raw
                    .login
                    .hash_concurrency
                    .unwrap_or_else(default_hash_concurrency)
                    .max(1),
            },
            password,
            email,
            roles: raw.roles.into_iter().map(|(k, v)| (k, v.description)).collect(),
            audit_retain: raw.audit.retain.map(|d| d.0),
            audit_queue: raw.audit.queue.unwrap_or(crate::audit::QUEUE).max(1),
            shadow,
        })
    }
}

fn parse_addr(s: &Spanned<String>) -> Result<SocketAddr, String> {
    s.get_ref().parse().map_err(|_| {
        format!(
            "{:?} is not an IP address and port, e.g. \"127.0.0.1:8443\"",
            s.get_ref()
        )
    })
}

fn parse_upstream(name: &str, url: &str) -> Result<Upstream, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("upstream {name:?}: {url:?} is not a valid URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "upstream {name:?}: scheme {other:?} is not supported; the gateway speaks plain HTTP to upstreams on a trusted network"
            ))
        }
        None => return Err(format!("upstream {name:?}: {url:?} needs a scheme, e.g. \"http://127.0.0.1:8081\"")),
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("upstream {name:?}: {url:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("upstream {name:?}: credentials in the URL are not supported"));
    }
    if uri.query().is_some() {
        return Err(format!(
            "upstream {name:?}: a query string is not allowed in an upstream URL"
        ));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok(Upstream {
        name: name.to_owned(),
        scheme: http::uri::Scheme::HTTP,
        authority,
        base_path,
    })
}

/// Byte span of a table header line, e.g. `[email.smtp]`.
fn find_key_span(src: &str, header: &str) -> Option<std::ops::Range<usize>> {
    let mut offset = 0;
    for line in src.split_inclusive('\n') {
        if line.trim().split('#').next().unwrap_or("").trim() == header {
            let start = offset + (line.len() - line.trim_start().len());
            return Some(start..start + 1);
        }
        offset += line.len();
    }
    Some(0..1)
}

/// Byte span of `key = ` inside `[table]` in `src`, for keys validated after parsing.
fn find_key(src: &str, key_path: &str) -> Option<std::ops::Range<usize>> {
    let (table, key) = key_path.split_once(' ')?;
    let mut in_table = false;
    let mut offset = 0;
    for line in src.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') {
            in_table = t.split('#').next().unwrap_or(t).trim() == table;
        } else if in_table && t.split_once('=').is_some_and(|(k, _)| k.trim() == key) {
            let eq = line.find('=')? + 1;
            let after = &line[eq..];
            let start = offset + eq + (after.len() - after.trim_start().len());
            return Some(start..start + 1);
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:8443"
public_url = "https://localhost:8443"
data_dir = "data"
policies = "policies"

[upstreams]
shop = "http://127.0.0.1:8081"
"#;

    fn parse(src: &str) -> Result<Config, SourceError> {
        Config::parse(Path::new("/etc/portcullis/gateway.toml"), src)
    }

    // A minimal file gets the documented defaults and paths relative to the file.
    #[test]
    fn minimal_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.limits.max_body, 10 << 20);
        assert_eq!(c.limits.upstream_timeout, Duration::from_secs(30));
        assert_eq!(c.server.data_dir, PathBuf::from("/etc/portcullis/data"));
        assert_eq!(c.login.max_failures, 5);
        assert_eq!(c.upstreams["shop"].authority.as_str(), "127.0.0.1:8081");
    }

    // The shipped gateway.toml is valid.
    #[test]
    fn shipped_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
        Config::load(&path).unwrap();
    }

    // An unknown key is an error naming the key and its line.
    #[test]
    fn unknown_key() {
        let src = MINIMAL.replace("[upstreams]", "[limits]\nmax_bodee = \"1MiB\"\n\n[upstreams]");
        let e = parse(&src).unwrap_err().to_string();
        assert!(e.contains("gateway.toml:9:1:"), "{e}");
        assert!(e.contains("max_bodee"), "{e}");
    }

    // Workers default to one per core; zero or an absurd count is refused at its line.
    #[test]
    fn workers_bounds() {
        assert_eq!(parse(MINIMAL).unwrap().server.workers, crate::workers::default_count());
        let src = MINIMAL.replace("policies = \"policies\"", "policies = \"policies\"\nworkers = 3");
        assert_eq!(parse(&src).unwrap().server.workers, 3);
        for bad in ["0", "1000"] {
            let src = MINIMAL.replace(
                "policies = \"policies\"",
                &format!("policies = \"policies\"\nworkers = {bad}"),
            );
            let e = parse(&src).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("[server] workers"), "{e}");
            assert_eq!(e.line, Some(7), "{e}");
        }
    }

    // A bad duration names the key, the line and the value.
    #[test]
    fn bad_duration() {
        let src = format!("{MINIMAL}\n[login]\nlockout = \"15 minutes\"\n");
        let e = parse(&src).unwrap_err();
        assert_eq!(e.line, Some(12), "{e}");
        assert_eq!(e.key.as_deref(), Some("[login] lockout"), "{e}");
        assert!(e.message.contains("invalid duration"), "{e}");
    }

    // An upstream that is not a valid http URL stops start-up.
    #[test]
    fn bad_upstream_url() {
        for bad in ["not a url", "ftp://x", "127.0.0.1:8081", "http://u:p@host"] {
            let src = MINIMAL.replace("http://127.0.0.1:8081", bad);
            let e = parse(&src).unwrap_err();
            assert_eq!(e.line, Some(9), "{bad}: {e}");
            assert_eq!(e.key.as_deref(), Some("[upstreams] shop"), "{bad}: {e}");
        }
    }

    // A zero limit is refused rather than taken to mean "none".
    #[test]
    fn zero_limit() {
        let src = format!("{MINIMAL}\n[limits]\nidle_timeout = \"0s\"\n");
        let e = parse(&src).unwrap_err();
        assert_eq!(e.line, Some(12), "{e}");
        assert_eq!(e.key.as_deref(), Some("[limits] idle_timeout"));
    }

    // The body deadlines, the upstream connection cap and the drain deadline are read,
    // default when absent, and a zero is refused at its line.
    #[test]
    fn edge_limits() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.limits.body_read_timeout, Duration::from_secs(30));
        assert_eq!(c.limits.request_timeout, Duration::from_secs(300));
        assert_eq!(c.limits.upstream_max_connections, 256);
        assert_eq!(c.limits.upstream_idle_timeout, Duration::from_secs(90));
        assert_eq!(c.server.drain_timeout, Duration::from_secs(30));
        let src = format!(
            "{}\n[limits]\nbody_read_timeout = \"5s\"\nrequest_timeout = \"1m\"\nupstream_max_connections = 8\nupstream_idle_timeout = \"10s\"\n",
            MINIMAL.replace("policies = \"policies\"", "policies = \"policies\"\ndrain_timeout = \"3s\"")
        );
        let c = parse(&src).unwrap();
        assert_eq!(c.limits.body_read_timeout, Duration::from_secs(5));
        assert_eq!(c.limits.request_timeout, Duration::from_secs(60));
        assert_eq!(c.limits.upstream_max_connections, 8);
        assert_eq!(c.limits.upstream_idle_timeout, Duration::from_secs(10));
        assert_eq!(c.server.drain_timeout, Duration::from_secs(3));
        for (key, value) in [
            ("body_read_timeout", "\"0s\""),
            ("request_timeout", "\"0s\""),
            ("upstream_max_connections", "0"),
            ("upstream_idle_timeout", "\"0s\""),
        ] {
            let e = parse(&format!("{MINIMAL}\n[limits]\n{key} = {value}\n")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(format!("[limits] {key}").as_str()), "{e}");
            assert_eq!(e.line, Some(12), "{e}");
        }
        let e = parse(&MINIMAL.replace(
            "policies = \"policies\"",
            "policies = \"policies\"\ndrain_timeout = \"0s\"",
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("[server] drain_timeout"), "{e}");
        assert_eq!(e.line, Some(7), "{e}");
    }

    // A bad listen address names its key.
    #[test]
    fn bad_listen() {
        let e = parse(&MINIMAL.replace("127.0.0.1:8443", "localhost")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("[server] listen"), "{e}");
        assert_eq!(e.line, Some(3));
    }
}
