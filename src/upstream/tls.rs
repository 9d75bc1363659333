//! TLS to `https://` upstreams: one rustls client configuration per upstream, built at
//! start-up, and the handshake the pool runs on each new connection.
//!
//! Roots are the `ca` file when given, else the system's (rustls-native-certs; a system
//! without any refuses to start rather than trust nothing or everything). Verification is
//! always on, ALPN offers `http/1.1` only (the pool speaks HTTP/1.1 upstream), the
//! protocol versions are TLS 1.2 and 1.3 with the ring provider, like the listener's.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::BoxError;
use crate::config::UpstreamTls;

/// What a pool needs to open TLS connections to one upstream.
#[derive(Clone)]
pub struct TlsTarget {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

/// A TLS handshake with an upstream that failed; its source is the rustls error (an
/// unknown issuer, a name that does not match, an expired certificate, a refused client
/// certificate).
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake with {addr} as {name} failed")]
pub struct HandshakeError {
    addr: String,
    name: String,
    #[source]
    source: std::io::Error,
}

impl TlsTarget {
    /// Runs the TLS handshake over `tcp`, to the upstream at `addr` (for the error).
    pub async fn handshake(&self, tcp: TcpStream, addr: &str) -> Result<TlsStream<TcpStream>, BoxError> {
        self.connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|source| {
                HandshakeError {
                    addr: addr.to_owned(),
                    name: self.server_name.to_str().into_owned(),
                    source,
                }
                .into()
            })
    }
}

/// The system's root certificates, loaded once when the first upstream needs them.
#[derive(Default)]
pub struct SystemRoots(Option<Arc<RootCertStore>>);

impl SystemRoots {
    fn get(&mut self) -> Result<Arc<RootCertStore>, String> {
        if let Some(roots) = &self.0 {
            return Ok(roots.clone());
        }
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found.errors.first().map_or_else(String::new, |e| format!(" ({e})"));
            return Err(format!(
                "no root certificates found on this system{why}; install the CA certificates package or set `ca`"
            ));
        }
        let roots = Arc::new(roots);
        self.0 = Some(roots.clone());
        Ok(roots)
    }
}

/// The TLS client of upstream `name`, from its validated settings.
pub fn target(name: &str, tls: &UpstreamTls, system: &mut SystemRoots) -> Result<TlsTarget, String> {
    let fail = |m: String| format!("[upstream_tls.{name}]: {m}");
    let roots = match &tls.ca {
        Some((path, certs)) => {
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots
                    .add(cert.clone())
                    .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            }
            Arc::new(roots)
        }
        None => system.get().map_err(&fail)?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match &tls.client {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key())
            .map_err(|e| fail(format!("client_cert: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsTarget {
        connector: TlsConnector::from(Arc::new(config)),
        server_name: tls.server_name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    fn ca(name: &str) -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert, rcgen::Issuer::new(params, key))
    }

    // A handshake refused for an unknown issuer fails with an error whose chain (what the
    // log line shows) names the upstream, the server name and rustls's reason.
    #[tokio::test]
    async fn handshake_error_names_the_reason() {
        let (_, issuer) = ca("the upstream's CA");
        let (other, _) = ca("another CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(tcp).await;
        });

        let settings = UpstreamTls {
            ca: Some(("other.pem".into(), vec![CertificateDer::from(other.der().to_vec())])),
            client: None,
            server_name: ServerName::try_from("127.0.0.1").unwrap().to_owned(),
        };
        let target = target("api", &settings, &mut SystemRoots::default()).unwrap();
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let err = target.handshake(tcp, &addr).await.unwrap_err();
        let text = crate::error_chain::chain(&*err);
        assert!(
            text.starts_with(&format!("TLS handshake with {addr} as 127.0.0.1 failed: ")),
            "{text}"
        );
        assert!(
            text.contains("invalid peer certificate") && text.contains("UnknownIssuer"),
            "{text}"
        );
    }
}
