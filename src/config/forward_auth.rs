//! `[forward_auth]`: which peers `GET /auth/verify` answers (nginx `auth_request`, Caddy
//! `forward_auth`, Traefik `ForwardAuth`), and `[tokens] audience`, the `aud` of the
//! access tokens those proxies' upstreams may be handed.
//!
//! `trusted` is a list of CIDRs (or bare addresses), checked like `[server]
//! trusted_proxies`; loopback (`127.0.0.0/8`, `::1/128`) when absent, nobody when empty.

use std::ops::Range;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::proxies::{parse_net, TrustedProxies, MAX_TRUSTED_PROXIES};

/// `[forward_auth]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForwardAuth {
    pub(super) trusted: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[forward_auth]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuth {
    /// The peers (TCP addresses) `/auth/verify` answers; others get 403.
    pub trusted: TrustedProxies,
}

impl Default for ForwardAuth {
    /// Loopback only: a proxy on the same machine.
    fn default() -> Self {
        let loopback = ["127.0.0.0/8", "::1/128"].map(|n| n.parse::<IpNet>().expect("a fixed CIDR"));
        Self {
            trusted: TrustedProxies::new(loopback.to_vec()),
        }
    }
}

/// An error: the span of the value at fault, the key, the message.
pub(super) type ForwardAuthError = (Range<usize>, String, String);

/// Checks `[forward_auth]`: every `trusted` entry a network without host bits, at most
/// [`MAX_TRUSTED_PROXIES`] of them. The first error is returned.
pub(super) fn validate(raw: Option<RawForwardAuth>) -> Result<ForwardAuth, ForwardAuthError> {
    let Some(list) = raw.and_then(|r| r.trusted) else {
        return Ok(ForwardAuth::default());
    };
    let key = || "[forward_auth] trusted".to_owned();
    if list.get_ref().len() > MAX_TRUSTED_PROXIES {
        return Err((
            list.span(),
            key(),
            format!("at most {MAX_TRUSTED_PROXIES} entries (use wider networks)"),
        ));
    }
    let nets = list
        .get_ref()
        .iter()
        .map(|entry| parse_net(entry.get_ref()).map_err(|m| (entry.span(), key(), m)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ForwardAuth {
        trusted: TrustedProxies::new(nets),
    })
}

/// `[tokens] audience`: the `aud` of access tokens, `public_url` without a trailing `/`
/// by default. Not empty, at most 512 bytes, no whitespace or control characters.
pub(super) fn audience(
    raw: Option<&Spanned<String>>,
    public_url: Option<&http::Uri>,
) -> Result<String, (Range<usize>, String)> {
    let Some(raw) = raw else {
        let url = public_url.map(ToString::to_string).unwrap_or_default();
        return Ok(url.trim_end_matches('/').to_owned());
    };
    let value = raw.get_ref();
    if value.is_empty() || value.len() > 512 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err((
            raw.span(),
            "must be 1 to 512 characters without spaces or control characters, e.g. \"https://api.example.com\"".into(),
        ));
    }
    Ok(value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(entries: &[&str]) -> Option<RawForwardAuth> {
        Some(RawForwardAuth {
            trusted: Some(Spanned::new(
                0..1,
                entries.iter().map(|e| Spanned::new(2..3, (*e).to_owned())).collect(),
            )),
        })
    }

    // Loopback by default; a list replaces it; an empty list trusts nobody; a CIDR with
    // host bits is refused, naming the key and the entry.
    #[test]
    fn trusted_peers() {
        let default = validate(None).unwrap();
        for ip in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(default.trusted.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(!default.trusted.contains("10.0.0.1".parse().unwrap()));
        let custom = validate(raw(&["10.0.0.0/8", "192.0.2.7"])).unwrap();
        assert!(custom.trusted.contains("10.1.2.3".parse().unwrap()));
        assert!(custom.trusted.contains("192.0.2.7".parse().unwrap()));
        assert!(!custom.trusted.contains("127.0.0.1".parse().unwrap()));
        assert!(validate(raw(&[])).unwrap().trusted.is_empty());
        let (span, key, message) = validate(raw(&["10.0.0.1/8"])).unwrap_err();
        assert_eq!((span, key.as_str()), (2..3, "[forward_auth] trusted"));
        assert!(message.contains("10.0.0.0/8"), "{message}");
        assert!(validate(raw(&["nowhere"])).is_err());
    }

    // In a file: each error names the file, the line and the key; an unknown key in the
    // table is refused; the defaults hold when the table and the key are absent.
    #[test]
    fn errors_name_file_line_and_key() {
        use crate::config::tests::MINIMAL;
        use crate::config::Config;
        let path = std::path::Path::new("/etc/portcullis/gateway.toml");
        let src = format!("{MINIMAL}\n[tokens]\naudience = \"\"\n\n[forward_auth]\ntrusted = [\"10.0.0.1/8\"]\n");
        let errors = Config::parse(path, &src).unwrap_err().0;
        let found: Vec<_> = errors
            .iter()
            .map(|e| (e.file.as_path(), e.line, e.key.as_deref()))
            .collect();
        assert_eq!(
            found,
            [
                (path, Some(12), Some("[tokens] audience")),
                (path, Some(15), Some("[forward_auth] trusted")),
            ],
            "{errors:?}"
        );
        let src = format!("{MINIMAL}\n[forward_auth]\ntrusted_peers = []\n");
        let text = Config::parse(path, &src).unwrap_err().to_string();
        assert!(text.contains("trusted_peers"), "{text}");
        let c = Config::parse(path, MINIMAL).unwrap();
        assert_eq!(c.forward_auth, ForwardAuth::default());
        assert_eq!(c.tokens.audience, "https://localhost:8443");
    }

    // The audience defaults to public_url without its trailing slash; a custom one is
    // kept as written; an empty or spaced one is refused.
    #[test]
    fn audience_values() {
        let url: http::Uri = "https://gw.example.com/".parse().unwrap();
        assert_eq!(audience(None, Some(&url)).unwrap(), "https://gw.example.com");
        let custom = Spanned::new(0..1, "api://orders".to_owned());
        assert_eq!(audience(Some(&custom), Some(&url)).unwrap(), "api://orders");
        for bad in ["", "a b", "x\u{7}"] {
            assert!(
                audience(Some(&Spanned::new(0..1, bad.to_owned())), Some(&url)).is_err(),
                "{bad:?}"
            );
        }
    }
}
