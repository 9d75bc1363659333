//! `[upstream_tls.NAME]`: how the gateway verifies an `https://` upstream and, for mutual
//! TLS, which certificate it shows. Everything is read and checked at start-up: the CA
//! file holds certificates, the client certificate and key belong together, the server
//! name is a DNS name or an IP address. Verification is always on: there is no key to
//! turn it off.
//!
//! Every `https://` upstream gets a validated [`UpstreamTls`], from its table or, without
//! one, the defaults (the system's roots, no client certificate, the URL's host).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use toml::Spanned;

use super::Upstream;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstreamTls {
    ca: Option<Spanned<String>>,
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
}

/// The TLS settings of one `https://` upstream, validated.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// `ca`: the certificates that verify the upstream, and the file they came from;
    /// the system's roots when absent.
    pub ca: Option<(PathBuf, Vec<CertificateDer<'static>>)>,
    /// `client_cert` and `client_key`: the certificate shown for mutual TLS.
    pub client: Option<ClientIdentity>,
    /// `server_name`, or the URL's host: the name the upstream's certificate must carry
    /// (and the SNI sent).
    pub server_name: ServerName<'static>,
}

/// A client certificate chain and its private key, known to match. Its `Debug` never
/// shows the key.
pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// The private key (DER), for the TLS client configuration only.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificates", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// An error: the span of the value at fault, the key, the message.
pub(super) type TlsConfigError = (Range<usize>, String, String);

/// Validates the `[upstream_tls.*]` tables against the upstreams, and gives every
/// `https://` upstream its settings. `raw_urls` are the `[upstreams]` entries as written
/// (for spans), `upstreams` those that validated (an upstream whose URL was refused is
/// already reported and is skipped here). Every error found is passed to `report`.
pub(super) fn validate(
    tables: BTreeMap<Spanned<String>, RawUpstreamTls>,
    raw_urls: &BTreeMap<String, Spanned<String>>,
    upstreams: &BTreeMap<String, Upstream>,
    resolve: &dyn Fn(&str) -> PathBuf,
    report: &mut dyn FnMut(TlsConfigError),
) -> BTreeMap<String, UpstreamTls> {
    let mut tables: BTreeMap<String, (Range<usize>, RawUpstreamTls)> = tables
        .into_iter()
        .map(|(name, raw)| {
            let span = name.span();
            (name.into_inner(), (span, raw))
        })
        .collect();
    let mut out = BTreeMap::new();
    for (name, (span, _)) in &tables {
        let key = format!("[upstream_tls.{name}]");
        match upstreams.get(name) {
            Some(u) if u.scheme != http::uri::Scheme::HTTPS => report((
                span.clone(),
                key,
                format!("upstream {name:?} is plain http://: TLS settings apply only to an https:// upstream"),
            )),
            Some(_) => {}
            None if raw_urls.contains_key(name) => {}
            None => report((
                span.clone(),
                key,
                format!("there is no upstream {name:?} in [upstreams]"),
            )),
        }
    }
    for (name, upstream) in upstreams.iter().filter(|(_, u)| u.scheme == http::uri::Scheme::HTTPS) {
        let settings = match tables.remove(name) {
            Some((span, raw)) => one(name, span, raw, upstream, resolve, report),
            None => default_name(upstream)
                .map_err(|m| {
                    let span = raw_urls.get(name).map_or(0..0, Spanned::span);
                    report((span, format!("[upstreams] {name}"), m));
                })
                .ok()
                .map(|server_name| UpstreamTls {
                    ca: None,
                    client: None,
                    server_name,
                }),
        };
        if let Some(settings) = settings {
            out.insert(name.clone(), settings);
        }
    }
    out
}

/// One table; `None` after reporting what is wrong with it.
fn one(
    name: &str,
    table: Range<usize>,
    raw: RawUpstreamTls,
    upstream: &Upstream,
    resolve: &dyn Fn(&str) -> PathBuf,
    report: &mut dyn FnMut(TlsConfigError),
) -> Option<UpstreamTls> {
    let mut ok = true;
    let mut fail = |span: Range<usize>, key: &str, m: String| {
        ok = false;
        report((span, format!("[upstream_tls.{name}] {key}"), m));
    };
    let ca = raw.ca.as_ref().and_then(|ca| {
        let path = resolve(ca.get_ref());
        read_ca(&path)
            .map_err(|m| fail(ca.span(), "ca", m))
            .ok()
            .map(|certs| (path, certs))
    });
    let client = match (&raw.client_cert, &raw.client_key) {
        (None, None) => None,
        (Some(cert), None) => {
            fail(
                cert.span(),
                "client_cert",
                "client_cert needs client_key (the private key of that certificate)".into(),
            );
            None
        }
        (None, Some(key)) => {
            fail(
                key.span(),
                "client_key",
                "client_key needs client_cert (the certificate of that key)".into(),
            );
            None
        }
        (Some(cert), Some(key)) => {
            let chain = read_chain(&resolve(cert.get_ref())).map_err(|m| fail(cert.span(), "client_cert", m));
            let der = read_key(&resolve(key.get_ref())).map_err(|m| fail(key.span(), "client_key", m));
            match (chain, der) {
                (Ok(chain), Ok(key_der)) => match matching(&chain, &key_der) {
                    Ok(()) => Some(ClientIdentity { chain, key: key_der }),
                    Err(m) => {
                        fail(key.span(), "client_key", m);
                        None
                    }
                },
                _ => None,
            }
        }
    };
    let server_name = match &raw.server_name {
        Some(s) => ServerName::try_from(s.get_ref().trim().to_owned())
            .map_err(|_| {
                fail(
                    s.span(),
                    "server_name",
                    format!("{:?} is not a DNS name or an IP address", s.get_ref()),
                );
            })
            .ok(),
        None => default_name(upstream).map_err(|m| fail(table, "server_name", m)).ok(),
    };
    match (ok, server_name) {
        (true, Some(server_name)) => Some(UpstreamTls {
            ca,
            client,
            server_name,
        }),
        _ => None,
    }
}

/// The URL's host as the server name (brackets of an IPv6 address removed).
fn default_name(upstream: &Upstream) -> Result<ServerName<'static>, String> {
    let host = upstream.authority.host();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|_| {
        format!(
            "upstream {:?}: the host {host:?} is not a DNS name or an IP address a certificate can carry; set [upstream_tls.{}] server_name",
            upstream.name, upstream.name
        )
    })
}

/// The certificates of a CA file: at least one, each usable as a trust anchor.
fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = read_chain(path)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in &certs {
        roots
            .add(cert.clone())
            .map_err(|e| format!("{}: a certificate is not usable as a CA: {e}", path.display()))?;
    }
    Ok(certs)
}

/// The PEM certificates of a file: at least one.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(format!("{} holds no PEM certificate", path.display())),
        Err(e) => Err(format!("{}: bad PEM: {e}", path.display())),
    }
}

/// The PEM private key of a file (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // The file's bytes may be a key: no detail of a parse error is repeated.
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| format!("{} holds no PEM private key", path.display()))
}

/// Whether `key` is the private key of the first certificate of `chain`.
fn matching(chain: &[CertificateDer<'static>], key: &PrivateKeyDer<'static>) -> Result<(), String> {
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain.to_vec(), key.clone_key(), &provider)
        .map(|_| ())
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => "the key does not match the certificate in client_cert".to_owned(),
            other => format!("the key cannot be used with the certificate in client_cert: {other}"),
        })
}

#[cfg(test)]
mod tests;
