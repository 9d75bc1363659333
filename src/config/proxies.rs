//! `[server] trusted_proxies` and `[server] proxy_protocol`: which peers may say who the
//! client is (their `X-Forwarded-For`, or the PROXY header on the TLS listener).
//!
//! Entries are CIDRs (`10.0.0.0/8`, `::1/128`); a bare address is one host (`/32` or
//! `/128`). A CIDR with host bits set is refused with the network it probably meant, so
//! a typo never widens or narrows trust silently. An IPv4-mapped IPv6 address
//! (`::ffff:10.0.0.1`) is matched as its IPv4 address.

use std::net::IpAddr;
use std::ops::Range;

use ipnet::IpNet;
use toml::Spanned;

/// The most entries `trusted_proxies` may have: it is scanned on requests from them.
pub const MAX_TRUSTED_PROXIES: usize = 64;

/// `trusted_proxies` as written: a list of strings, each with its place in the file.
pub(super) type RawTrustedProxies = Spanned<Vec<Spanned<String>>>;

/// The networks whose peers may say who the client is; none by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// The networks of `cidrs`, already checked (for tests and programmatic set-up).
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// Whether no peer is trusted (the default): forwarding claims are never read.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is in one of the networks; an IPv4-mapped IPv6 address counts as
    /// its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The networks, in the order configured.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

/// An error: the span of the value at fault, the key, the message.
pub(super) type ProxiesError = (Range<usize>, String, String);

/// Checks `[server] trusted_proxies` and `proxy_protocol`: every entry a network
/// without host bits, and `proxy_protocol = true` only with a trusted proxy. Every
/// error is returned, not only the first.
pub(super) fn validate(
    trusted: Option<&RawTrustedProxies>,
    proxy_protocol: Option<&Spanned<bool>>,
) -> Result<(TrustedProxies, bool), Vec<ProxiesError>> {
    let mut errors = Vec::new();
    let mut nets = Vec::new();
    if let Some(list) = trusted {
        if list.get_ref().len() > MAX_TRUSTED_PROXIES {
            errors.push(err(
                list.span(),
                "trusted_proxies",
                format!("at most {MAX_TRUSTED_PROXIES} entries (use wider networks)"),
            ));
        }
        for entry in list.get_ref() {
            match parse_net(entry.get_ref()) {
                Ok(net) => nets.push(net),
                Err(m) => errors.push(err(entry.span(), "trusted_proxies", m)),
            }
        }
    }
    let proxy_protocol = match proxy_protocol {
        Some(p) if *p.get_ref() && trusted.is_none_or(|l| l.get_ref().is_empty()) => {
            errors.push(err(
                p.span(),
                "proxy_protocol",
                "needs [server] trusted_proxies: only the balancers listed there may send a PROXY header",
            ));
            false
        }
        Some(p) => *p.get_ref(),
        None => false,
    };
    if errors.is_empty() {
        Ok((TrustedProxies { nets }, proxy_protocol))
    } else {
        Err(errors)
    }
}

fn err(span: Range<usize>, key: &str, msg: impl Into<String>) -> ProxiesError {
    (span, format!("[server] {key}"), msg.into())
}

/// One entry: `addr/prefix` without host bits, or a bare address (one host).
pub(super) fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if !s.contains('/') {
        return s
            .parse::<IpAddr>()
            .map(|ip| IpNet::from(ip.to_canonical()))
            .map_err(|_| format!("{s:?} is not an IP address or CIDR, e.g. \"10.0.0.0/8\" or \"127.0.0.1\""));
    }
    let net: IpNet = s
        .parse()
        .map_err(|_| format!("{s:?} is not a CIDR, e.g. \"10.0.0.0/8\" or \"::1/128\""))?;
    if net.addr() != net.network() {
        return Err(format!("{s:?} has host bits set: the network is \"{}\"", net.trunc()));
    }
    // `::ffff:10.0.0.0/104` is the IPv4 network 10.0.0.0/8: peers are matched as IPv4.
    Ok(match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 && v6.addr().to_ipv4_mapped().is_some() => {
            match (v6.addr().to_ipv4_mapped(), v6.prefix_len() - 96) {
                (Some(v4), len) => ipnet::Ipv4Net::new(v4, len).map_or(net, IpNet::V4),
                (None, _) => net,
            }
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> RawTrustedProxies {
        Spanned::new(
            0..1,
            entries.iter().map(|e| Spanned::new(0..1, (*e).to_owned())).collect(),
        )
    }

    fn messages(r: Result<(TrustedProxies, bool), Vec<ProxiesError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|(_, k, m)| format!("{k}: {m}"))
            .collect()
    }

    #[test]
    fn networks_and_hosts() {
        let (t, pp) = validate(
            Some(&list(&["10.0.0.0/8", "127.0.0.1", "::1/128", "2001:db8::/32"])),
            None,
        )
        .unwrap();
        assert!(!pp);
        for yes in [
            "10.1.2.3",
            "127.0.0.1",
            "::1",
            "2001:db8::7",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(t.contains(yes.parse().unwrap()), "{yes}");
        }
        for no in [
            "11.0.0.1",
            "127.0.0.2",
            "::2",
            "2001:db9::1",
            "::ffff:11.0.0.1",
            "192.168.0.1",
        ] {
            assert!(!t.contains(no.parse().unwrap()), "{no}");
        }
        // A bare address is one host.
        assert_eq!(t.nets()[1].prefix_len(), 32);
        // None by default.
        let (none, pp) = validate(None, None).unwrap();
        assert!(none.is_empty() && !pp);
        assert!(!none.contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn mapped_networks_match_ipv4_peers() {
        let (t, _) = validate(Some(&list(&["::ffff:10.0.0.0/104", "::ffff:192.0.2.1"])), None).unwrap();
        assert!(t.contains("10.9.9.9".parse().unwrap()));
        assert!(t.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(t.contains("192.0.2.1".parse().unwrap()));
        assert!(!t.contains("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn refused_entries_name_the_key_and_the_fix() {
        let errors = messages(validate(
            Some(&list(&["10.0.0.1/8", "banana", "10.0.0.0/33", "fe80::1/10"])),
            None,
        ));
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("[server] trusted_proxies"), "{errors:?}");
        assert!(
            errors[0].contains("host bits") && errors[0].contains("\"10.0.0.0/8\""),
            "{errors:?}"
        );
        assert!(errors[1].contains("\"banana\" is not an IP address"), "{errors:?}");
        assert!(errors[2].contains("not a CIDR"), "{errors:?}");
        assert!(errors[3].contains("\"fe80::/10\""), "{errors:?}");
    }

    #[test]
    fn proxy_protocol_needs_a_trusted_proxy() {
        let on = Spanned::new(5..9, true);
        let errors = messages(validate(None, Some(&on)));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("[server] proxy_protocol") && errors[0].contains("trusted_proxies"));
        assert_eq!(messages(validate(Some(&list(&[])), Some(&on))).len(), 1);
        let (_, pp) = validate(Some(&list(&["10.0.0.0/8"])), Some(&on)).unwrap();
        assert!(pp);
        let (_, pp) = validate(None, Some(&Spanned::new(0..1, false))).unwrap();
        assert!(!pp);
    }

    // Through the whole file: every error of the section, each at its file, line and key.
    #[test]
    fn errors_name_file_line_and_key() {
        let src = super::super::tests::MINIMAL.replace(
            "policies = \"policies\"\n",
            "policies = \"policies\"\ntrusted_proxies = [\n  \"10.0.0.1/8\",\n  \"::1/128\",\n]\nproxy_protocol = true\n",
        );
        let c = crate::config::Config::parse(std::path::Path::new("/etc/portcullis/gateway.toml"), &src);
        let errors = c.unwrap_err().0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert_eq!(e.file, std::path::Path::new("/etc/portcullis/gateway.toml"));
        assert_eq!(e.line, Some(8));
        assert_eq!(e.key.as_deref(), Some("[server] trusted_proxies"));
        assert!(e.message.contains("\"10.0.0.0/8\""), "{}", e.message);

        let src = super::super::tests::MINIMAL.replace(
            "policies = \"policies\"\n",
            "policies = \"policies\"\nproxy_protocol = true\n",
        );
        let errors = crate::config::Config::parse(std::path::Path::new("g.toml"), &src)
            .unwrap_err()
            .0;
        assert_eq!(
            (errors[0].line, errors[0].key.as_deref()),
            (Some(7), Some("[server] proxy_protocol"))
        );

        let src = super::super::tests::MINIMAL.replace(
            "policies = \"policies\"\n",
            "policies = \"policies\"\ntrusted_proxies = [\"127.0.0.1/32\", \"::1\"]\nproxy_protocol = true\n",
        );
        let c = crate::config::Config::parse(std::path::Path::new("g.toml"), &src).unwrap();
        assert!(c.server.proxy_protocol);
        assert!(c.server.trusted_proxies.contains("::1".parse().unwrap()));
        let c = crate::config::Config::parse(std::path::Path::new("g.toml"), super::super::tests::MINIMAL).unwrap();
        assert!(c.server.trusted_proxies.is_empty() && !c.server.proxy_protocol);
    }

    #[test]
    fn bounded() {
        let many: Vec<String> = (0..=MAX_TRUSTED_PROXIES).map(|i| format!("10.0.{i}.0/24")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let errors = messages(validate(Some(&list(&refs)), None));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("at most"));
    }
}
