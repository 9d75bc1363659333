//! `[email.smtp]`: the mail server, its TLS mode, and the password from the environment.
//!
//! The password is read from [`SMTP_PASSWORD_ENV`] when the configuration is validated,
//! never from the file (a `password` key is refused), and is kept in [`SmtpPassword`],
//! whose `Debug` prints nothing of it. A username without the variable stops the gateway
//! from starting (not the commands that send no mail).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::raw::RawSmtp;
use lettre::message::Mailbox;

/// The environment variable holding the SMTP password.
pub const SMTP_PASSWORD_ENV: &str = "PORTCULLIS_SMTP_PASSWORD";

/// How many messages the spool holds before `mail()` answers busy.
pub const DEFAULT_SPOOL_MAX: usize = 10_000;

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required); port 587 by default.
    StartTls,
    /// TLS from the first byte; port 465 by default.
    Tls,
    /// No TLS at all: accepted only for a loopback host.
    None,
}

/// The SMTP password. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct SmtpPassword(String);

impl SmtpPassword {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the SMTP AUTH exchange only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SmtpPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SmtpPassword(<redacted>)")
    }
}

impl fmt::Display for SmtpPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[email.smtp]`, validated.
#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    /// From [`SMTP_PASSWORD_ENV`], when `username` is set.
    pub password: Option<SmtpPassword>,
    /// Set when `username` is but the variable is not: the gateway refuses to start with
    /// this message (naming file, line and key). Commands that send no mail still run.
    pub missing_password: Option<String>,
    /// The `From` of every message (and the envelope sender).
    pub from: Mailbox,
    /// `ca`: PEM certificates trusted beside the public roots (a private mail server);
    /// read at start-up. Empty without `ca`.
    pub ca_pem: Vec<u8>,
    /// The most messages the spool holds ([`DEFAULT_SPOOL_MAX`]); not a file key.
    pub spool_max: usize,
    /// The wait before the first retry, doubled after each failure (5 s); not a file
    /// key: tests shrink it.
    pub retry_first: Duration,
    /// The longest wait between two tries (10 min); not a file key.
    pub retry_max: Duration,
}

/// Validates `[email.smtp]`; `env` reads an environment variable. Errors carry the span
/// of the key at fault and the message.
pub(super) fn validate(
    raw: RawSmtp,
    default_from: &Mailbox,
    resolve: &dyn Fn(&str) -> std::path::PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
    locate: &dyn Fn(std::ops::Range<usize>, String) -> String,
) -> Result<Smtp, (std::ops::Range<usize>, String)> {
    if let Some(p) = &raw.password {
        return Err((
            p.span(),
            format!("the SMTP password is never read from the configuration file: set {SMTP_PASSWORD_ENV}"),
        ));
    }
    let tls = match raw.tls.as_ref().map(|t| (t.get_ref().as_str(), t.span())) {
        None | Some(("starttls", _)) => SmtpTls::StartTls,
        Some(("tls", _)) => SmtpTls::Tls,
        Some(("none", span)) => {
            if !is_loopback(raw.host.get_ref()) {
                return Err((
                    span,
                    format!(
                        "tls = \"none\" sends mail (and the password) in clear: allowed only to a loopback host, not {:?}",
                        raw.host.get_ref()
                    ),
                ));
            }
            SmtpTls::None
        }
        Some((other, span)) => {
            return Err((
                span,
                format!("unknown tls mode {other:?}: expected \"starttls\", \"tls\" or \"none\""),
            ))
        }
    };
    let host = raw.host.get_ref().trim();
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '/') {
        return Err((raw.host.span(), format!("{:?} is not a host name", raw.host.get_ref())));
    }
    let from = match &raw.from {
        Some(f) => parse_from(f)?,
        None => default_from.clone(),
    };
    let port = raw.port.unwrap_or(match tls {
        SmtpTls::Tls => 465,
        SmtpTls::StartTls | SmtpTls::None => 587,
    });
    let password = env(SMTP_PASSWORD_ENV).filter(|p| !p.is_empty()).map(SmtpPassword);
    let mut missing_password = None;
    let username = match raw.username {
        Some(u) if u.get_ref().is_empty() => return Err((u.span(), "the username is empty".to_owned())),
        Some(u) => {
            if password.is_none() {
                missing_password = Some(locate(
                    u.span(),
                    format!("a username is set but {SMTP_PASSWORD_ENV} (the password) is not in the environment"),
                ));
            }
            Some(u.into_inner())
        }
        None => None,
    };
    let ca_pem = match &raw.ca {
        Some(ca) => read_roots(&resolve(ca.get_ref())).map_err(|m| (ca.span(), m))?,
        None => Vec::new(),
    };
    Ok(Smtp {
        host: host.to_owned(),
        port,
        tls,
        password: username.as_ref().and(password),
        missing_password,
        username,
        from,
        ca_pem,
        spool_max: DEFAULT_SPOOL_MAX,
        retry_first: Duration::from_secs(5),
        retry_max: Duration::from_secs(600),
    })
}

/// `[email] from` (or `[email.smtp] from`): one mailbox, e.g. `"Shop <no-reply@shop.example>"`.
pub(super) fn parse_from(raw: &toml::Spanned<String>) -> Result<Mailbox, (std::ops::Range<usize>, String)> {
    let s = raw.get_ref();
    if s.len() > 320 {
        return Err((raw.span(), "the From address is at most 320 bytes".to_owned()));
    }
    if s.chars().any(char::is_control) {
        return Err((
            raw.span(),
            "the From address cannot contain control characters".to_owned(),
        ));
    }
    s.parse()
        .map_err(|e| (raw.span(), format!("{s:?} is not a mail address: {e}")))
}

/// The From without `[email] from`: `Portcullis <no-reply@HOST>`, HOST from `public_url`.
pub(super) fn default_from(public_host: &str) -> Mailbox {
    let host = public_host.trim_start_matches('[').trim_end_matches(']');
    format!("Portcullis <no-reply@{host}>")
        .parse()
        .or_else(|_| "Portcullis <no-reply@localhost>".parse())
        .unwrap_or_else(|_| {
            Mailbox::new(
                None,
                lettre::Address::new("no-reply", "localhost").expect("a valid address"),
            )
        })
}

/// Reads a PEM file that must hold at least one certificate.
fn read_roots(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>();
    match certs {
        Ok(c) if !c.is_empty() => Ok(pem),
        _ => Err(format!("{} holds no PEM certificate", path.display())),
    }
}

/// `localhost`, or an IP address on the loopback interface.
fn is_loopback(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(toml_src: &str, env: Option<&str>) -> Result<Smtp, String> {
        let raw: RawSmtp = toml::from_str(toml_src).map_err(|e| e.message().to_owned())?;
        let env = env.map(str::to_owned);
        validate(
            raw,
            &default_from("shop.example"),
            &|p| std::path::PathBuf::from(p),
            &|k| (k == SMTP_PASSWORD_ENV).then(|| env.clone()).flatten(),
            &|_, m| m,
        )
        .map_err(|(_, m)| m)
    }

    const FROM: &str = "from = \"Shop <no-reply@shop.example>\"\n";

    // `[email.smtp] from` falls back to `[email] from` (here the test default); a From
    // with a line break (a header injection) is refused.
    #[test]
    fn from_default_and_no_injection() {
        let s = smtp("host = \"smtp.example.com\"\n", None).unwrap();
        assert_eq!(s.from.to_string(), default_from("shop.example").to_string());
        assert_eq!(s.from.email.to_string(), "no-reply@shop.example");
        let e = smtp("host = \"h\"\nfrom = \"a@b.example\\r\\nBcc: x@y.example\"\n", None).unwrap_err();
        assert!(e.contains("control characters"), "{e}");
        assert_eq!(default_from("[::1]").email.to_string(), "no-reply@localhost");
    }

    // Ports follow the TLS mode; plain SMTP is only for loopback hosts.
    #[test]
    fn modes_ports_and_loopback() {
        let s = smtp(&format!("host = \"smtp.example.com\"\n{FROM}"), None).unwrap();
        assert_eq!((s.tls, s.port), (SmtpTls::StartTls, 587));
        assert_eq!(s.from.email.to_string(), "no-reply@shop.example");
        assert_eq!(
            (s.retry_first, s.retry_max),
            (Duration::from_secs(5), Duration::from_secs(600))
        );
        let s = smtp(&format!("host = \"smtp.example.com\"\ntls = \"tls\"\n{FROM}"), None).unwrap();
        assert_eq!((s.tls, s.port), (SmtpTls::Tls, 465));
        for host in ["localhost", "127.0.0.1", "::1", "[::1]"] {
            let s = smtp(&format!("host = \"{host}\"\ntls = \"none\"\nport = 25\n{FROM}"), None).unwrap();
            assert_eq!((s.tls, s.port), (SmtpTls::None, 25));
        }
        for host in ["smtp.example.com", "10.0.0.1", "localhost.example.com"] {
            let e = smtp(&format!("host = \"{host}\"\ntls = \"none\"\n{FROM}"), None).unwrap_err();
            assert!(e.contains("loopback"), "{e}");
        }
        let e = smtp(&format!("host = \"h\"\ntls = \"ssl\"\n{FROM}"), None).unwrap_err();
        assert!(e.contains("starttls"), "{e}");
        let e = smtp("host = \"h\"\nfrom = \"not an address\"\n", None).unwrap_err();
        assert!(e.contains("not a mail address"), "{e}");
    }

    // The password comes only from the environment, and no Debug print shows it.
    #[test]
    fn password_from_the_environment_only() {
        let e = smtp(&format!("host = \"h\"\npassword = \"hunter2\"\n{FROM}"), Some("x")).unwrap_err();
        assert!(e.contains(SMTP_PASSWORD_ENV) && !e.contains("hunter2"), "{e}");

        let s = smtp(&format!("host = \"h\"\nusername = \"u\"\n{FROM}"), None).unwrap();
        let missing = s.missing_password.unwrap();
        assert!(missing.contains(SMTP_PASSWORD_ENV), "{missing}");

        let s = smtp(&format!("host = \"h\"\nusername = \"u\"\n{FROM}"), Some("s3cret-Pa55")).unwrap();
        assert!(s.missing_password.is_none());
        assert_eq!(s.password.as_ref().unwrap().expose(), "s3cret-Pa55");
        let shown = format!(
            "{s:?} {:?} {}",
            s.password.as_ref().unwrap(),
            s.password.as_ref().unwrap()
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");

        // Without a username the variable is not used.
        let s = smtp(&format!("host = \"h\"\n{FROM}"), Some("s3cret-Pa55")).unwrap();
        assert!(s.password.is_none());
    }
}
