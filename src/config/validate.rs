//! Validation: the raw layer becomes a [`Config`], every error naming file, line and key.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::RawConfig;
use super::*;
use crate::source::SourceError;

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
            None => default_workers(),
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
            (
                "[tokens] idle_timeout",
                raw.tokens.idle_timeout.as_ref().is_some_and(|d| d.0.as_secs() == 0),
            ),
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
            reject_common: raw.password.reject_common.unwrap_or(true),
            reset_ttl: raw.password.reset_ttl.map_or(Duration::from_secs(30 * 60), |d| d.0),
        };
        if password.reset_ttl.is_zero() {
            let key = "[password] reset_ttl";
            return Err(SourceError::at(
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
                return Err(at(
                    span,
                    format!("unknown algorithm {other:?}: expected \"EdDSA\" or \"ES256\""),
                ))
            }
        };
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

        let outbox = resolve(
            &raw.email
                .as_ref()
                .and_then(|e| e.outbox.clone())
                .unwrap_or_else(|| format!("{}/outbox", raw.server.data_dir)),
        );
        let keyed = |span, key: String, m: String| SourceError::at(path, src, Some(span), Some(key), m);
        let from = match raw.email.as_ref().and_then(|e| e.from.as_ref()) {
            Some(f) => super::smtp::parse_from(f).map_err(|(span, m)| keyed(span, "[email] from".into(), m))?,
            None => super::smtp::default_from(public_url.host().unwrap_or("localhost")),
        };
        let cors = raw.cors.map(super::cors::validate).transpose();
        let cors = cors.map_err(|(span, key, m)| keyed(span, key, m))?;
        let totp = super::totp::validate(raw.totp).map_err(|(span, m)| keyed(span, "[totp] issuer".into(), m))?;
        let smtp = match raw.email.and_then(|e| e.smtp) {
            Some(s) => Some(
                super::smtp::validate(s, &from, &resolve, &|k| std::env::var(k).ok(), &|span, m| {
                    at(span, m).to_string()
                })
                .map_err(|(span, m)| at(span, m))?,
            ),
            None => None,
        };
        let email = Email { outbox, from, smtp };
        let registration = super::registration::validate(
            raw.registration,
            &|r| raw.roles.contains_key(r),
            !raw.roles.is_empty(),
            src.find("[registration]").map(|i| i..i + 14),
        )
        .map_err(|(span, key, m)| SourceError::at(path, src, Some(span), Some(key.into()), m))?;

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
                idle_timeout: raw.tokens.idle_timeout.map(|d| d.0),
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
            registration,
            cors,
            totp,
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
