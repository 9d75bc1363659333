//! Validation: the raw layer becomes a [`Config`], every error naming file, line and key.
//!
//! Errors are collected, not returned at the first: each check records its error in
//! [`Found`] and goes on with a stand-in value, and the whole list, in file order, is the
//! result when any was found. A new section's validation hooks in with one line:
//! `let x = found.take(section::validate(raw.x, ...))` (an `Option` of the typed value).

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::RawConfig;
use super::*;
use crate::source::{SourceError, SourceErrors};

/// The errors found so far; validation goes on after each.
#[derive(Default)]
pub(super) struct Found(Vec<SourceError>);

impl Found {
    /// The value, or `None` after recording the error.
    pub(super) fn take<T>(&mut self, r: Result<T, SourceError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }

    /// Records an error.
    pub(super) fn push(&mut self, e: SourceError) {
        self.0.push(e);
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, SourceErrors> {
        let src = std::fs::read_to_string(path).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (use --config PATH or set PORTCULLIS_CONFIG)"
            } else {
                ""
            };
            SourceError::whole_file(path, format!("cannot read the configuration: {e}{hint}"))
        })?;
        Self::parse(path, &src)
    }

    /// Validates configuration text; `path` names it in errors and anchors relative paths.
    /// Every error found is reported, in file order.
    pub fn parse(path: &Path, src: &str) -> Result<Self, SourceErrors> {
        let raw: RawConfig = crate::source::parse_toml_all(path, src).map_err(SourceErrors)?;
        let mut found = Found::default();
        let config = Self::validate(path, src, raw, &mut found);
        let mut errors = found.0;
        if errors.is_empty() {
            if let Some(config) = config {
                return Ok(config);
            }
        }
        crate::source::in_file_order(&mut errors);
        Err(SourceErrors(errors))
    }

    /// Checks every part of `raw`, recording each error in `found`; `None` only when a
    /// part could not be built at all (and then `found` says why).
    fn validate(path: &Path, src: &str, raw: RawConfig, found: &mut Found) -> Option<Self> {
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

        let unspecified = SocketAddr::from(([127, 0, 0, 1], 0));
        let listen = found
            .take(parse_addr(&raw.server.listen).map_err(|m| at(raw.server.listen.span(), m)))
            .unwrap_or(unspecified);
        let plain_listen = raw
            .server
            .plain_listen
            .as_ref()
            .and_then(|s| found.take(parse_addr(s).map_err(|m| at(s.span(), m))));
        let public_url: Option<http::Uri> = found.take(
            raw.server
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
                }),
        );

        let mut upstreams = BTreeMap::new();
        for (name, url) in &raw.upstreams {
            if let Some(upstream) =
                found.take(super::upstreams::parse_upstream(name, url.get_ref()).map_err(|m| at(url.span(), m)))
            {
                upstreams.insert(name.clone(), upstream);
            }
        }

        let workers = match &raw.server.workers {
            None => default_workers(),
            Some(w) if (1..=MAX_WORKERS).contains(w.get_ref()) => *w.get_ref(),
            Some(w) => {
                found.push(SourceError::at(
                    path,
                    src,
                    Some(w.span()),
                    Some("[server] workers".into()),
                    format!("must be between 1 and {MAX_WORKERS}"),
                ));
                default_workers()
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
            max_filtered_response: l.max_filtered_response.map_or(defaults.max_filtered_response, |b| b.0),
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
            ("[limits] max_filtered_response", limits.max_filtered_response == 0),
            ("[server] drain_timeout", drain_timeout.is_zero()),
            (
                "[tokens] idle_timeout",
                raw.tokens.idle_timeout.as_ref().is_some_and(|d| d.0.as_secs() == 0),
            ),
            ("[limits] max_header_bytes", limits.max_header_bytes < 8192),
        ];
        for (key, _) in positive.iter().filter(|(_, bad)| *bad) {
            found.push(SourceError::at(
                path,
                src,
                find_key(src, key),
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
                    .filter_map(|c| match c.get_ref().as_str() {
                        "upper" => Some(CharClass::Upper),
                        "lower" => Some(CharClass::Lower),
                        "digit" => Some(CharClass::Digit),
                        "symbol" => Some(CharClass::Symbol),
                        other => {
                            found.push(at(
                                c.span(),
                                format!("unknown character class {other:?}: expected upper, lower, digit or symbol"),
                            ));
                            None
                        }
                    })
                    .collect(),
            },
            reject_common: raw.password.reject_common.unwrap_or(true),
            reset_ttl: raw.password.reset_ttl.map_or(Duration::from_secs(30 * 60), |d| d.0),
        };
        if password.reset_ttl.is_zero() {
            let key = "[password] reset_ttl";
            found.push(SourceError::at(
                path,
                src,
                find_key(src, key),
                Some(key.into()),
                "must be positive",
            ));
        }

        let algorithm = match raw.tokens.algorithm.as_ref().map(|a| (a.get_ref().as_str(), a.span())) {
            None | Some(("EdDSA", _)) => KeyAlg::EdDsa,
            Some(("ES256", _)) => KeyAlg::Es256,
            Some((other, span)) => {
                found.push(at(
                    span,
                    format!("unknown algorithm {other:?}: expected \"EdDSA\" or \"ES256\""),
                ));
                KeyAlg::EdDsa
            }
        };
        let shadow = match raw.policy.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("enforce", _)) => false,
            Some(("shadow", _)) => true,
            Some((other, span)) => {
                found.push(at(
                    span,
                    format!("unknown mode {other:?}: expected \"enforce\" or \"shadow\""),
                ));
                false
            }
        };

        let outbox = resolve(
            &raw.email
                .as_ref()
                .and_then(|e| e.outbox.clone())
                .unwrap_or_else(|| format!("{}/outbox", raw.server.data_dir)),
        );
        let keyed = |span, key: String, m: String| SourceError::at(path, src, Some(span), Some(key), m);
        let default_from =
            || super::smtp::default_from(public_url.as_ref().and_then(http::Uri::host).unwrap_or("localhost"));
        let from = match raw.email.as_ref().and_then(|e| e.from.as_ref()) {
            Some(f) => found
                .take(super::smtp::parse_from(f).map_err(|(span, m)| keyed(span, "[email] from".into(), m)))
                .unwrap_or_else(default_from),
            None => default_from(),
        };
        let (trusted_proxies, proxy_protocol) =
            super::proxies::validate(raw.server.trusted_proxies.as_ref(), raw.server.proxy_protocol.as_ref())
                .unwrap_or_else(|errors| {
                    errors
                        .into_iter()
                        .for_each(|(span, key, m)| found.push(keyed(span, key, m)));
                    Default::default()
                });
        let cors = match raw.cors {
            Some(c) => found.take(super::cors::validate(c).map_err(|(span, key, m)| keyed(span, key, m))),
            None => None,
        };
        let report = &mut |e: upstream_tls::TlsConfigError| found.push(keyed(e.0, e.1, e.2));
        let upstream_tls = upstream_tls::validate(raw.upstream_tls, &raw.upstreams, &upstreams, &resolve, report);
        let totp = found
            .take(super::totp::validate(raw.totp).map_err(|(span, m)| keyed(span, "[totp] issuer".into(), m)))
            .unwrap_or_default();
        let smtp = raw.email.and_then(|e| e.smtp).and_then(|s| {
            found.take(
                super::smtp::validate(s, &from, &resolve, &|k| std::env::var(k).ok(), &|span, m| {
                    at(span, m).to_string()
                })
                .map_err(|(span, m)| at(span, m)),
            )
        });
        let email = Email { outbox, from, smtp };
        let store =
            found.take(super::store::validate(raw.store, &resolve).map_err(|(span, key, m)| keyed(span, key, m)));
        let registration = found.take(
            super::registration::validate(
                raw.registration,
                &|r| raw.roles.contains_key(r),
                !raw.roles.is_empty(),
                src.find("[registration]").map(|i| i..i + 14),
            )
            .map_err(|(span, key, m)| SourceError::at(path, src, Some(span), Some(key.into()), m)),
        );

        let forward_auth = found
            .take(super::forward_auth::validate(raw.forward_auth).map_err(|(span, key, m)| keyed(span, key, m)))
            .unwrap_or_default();
        let audience = found
            .take(
                super::forward_auth::audience(raw.tokens.audience.as_ref(), public_url.as_ref())
                    .map_err(|(span, m)| keyed(span, "[tokens] audience".into(), m)),
            )
            .unwrap_or_default();

        Some(Self {
            source: path.to_path_buf(),
            server: Server {
                listen,
                plain_listen,
                public_url: public_url?,
                data_dir: resolve(&raw.server.data_dir),
                policies: resolve(&raw.server.policies),
                workers,
                drain_timeout,
                trusted_proxies,
                proxy_protocol,
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
                idle_timeout: raw.tokens.idle_timeout.map(|d| d.0),
                audience,
            },
            login: Login {
                max_failures: raw.login.max_failures.unwrap_or(5),
                lockout: raw.login.lockout.map_or(Duration::from_secs(900), |d| d.0),
                mfa_ttl: raw.login.mfa_ttl.map_or(Duration::from_secs(120), |d| d.0),
                require_mfa_roles: raw.login.require_mfa_roles.unwrap_or_default(),
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
            registration: registration?,
            cors,
            totp,
            upstream_tls,
            store: store.unwrap_or_default(),
            forward_auth,
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
