//! TLS to the database: rustls (ring) with the system's roots and an optional CA file.
//! Used when the URL's `sslmode` asks for it (`require`, or `prefer` against a server
//! that offers it); the server's certificate is always verified.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PgError;
use crate::store::{Result, StoreError};

/// The connector: the system's roots, plus every certificate of `ca`.
pub(super) fn connector(ca: Option<&Path>) -> Result<MakeRustlsConnect> {
    let fail = |m: String| StoreError::Database(PgError::new(m));
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if let Some(ca) = ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .and_then(|it| it.collect())
            .map_err(|e| fail(format!("{}: cannot read the CA certificates: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(fail(format!("{}: no certificate in the file", ca.display())));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| fail(format!("{}: not a usable CA certificate: {e}", ca.display())))?;
        }
    } else if added == 0 {
        tracing::warn!("no system root certificates found: TLS to the database will fail without [store] ca");
    }
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Whether every host of `config` is this machine (a loopback address, `localhost`, or
/// a Unix socket): the only hosts to which a connection without TLS is allowed.
fn all_local(config: &tokio_postgres::Config) -> bool {
    config.get_hosts().iter().all(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => {
            name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        tokio_postgres::config::Host::Unix(_) => true,
    })
}

/// Whether the URL names its `sslmode`.
fn names_sslmode(url: &str) -> bool {
    url.split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|kv| kv.starts_with("sslmode=")))
}

/// TLS unless the URL says otherwise, for any host but this machine: PostgreSQL's own
/// default (`prefer`) lets whoever sits on the path turn TLS off.
pub(super) fn require_tls_by_default(config: &mut tokio_postgres::Config, url: &str) {
    if !names_sslmode(url) && !all_local(config) {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
}

/// Why a URL is refused: `sslmode=disable` or `prefer` to a host that is not this
/// machine would send the password and every record in clear (or let the path decide).
pub fn refuse_plaintext(url: &str) -> Option<String> {
    let config: tokio_postgres::Config = url.parse().ok()?;
    let weak = !matches!(config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
    (names_sslmode(url) && weak && !all_local(&config)).then(|| {
        "sslmode=disable or prefer sends the password and every record in clear (or lets the network decide): \
         allowed only to this machine; use sslmode=require"
            .to_owned()
    })
}
