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
