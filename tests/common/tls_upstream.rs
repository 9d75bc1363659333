//! An upstream served over TLS by the test itself: a CA made with rcgen, certificates it
//! signs, and a small hyper server on `127.0.0.1:0` that records what it receives, counts
//! its TCP connections and, when told, requires a client certificate from another CA.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use super::Recorded;

/// What the TLS upstream puts in every response body, so a test can tell whether any of
/// it reached the client.
pub const TLS_UPSTREAM_MARK: &str = "answered-by-the-tls-upstream";

/// A certificate authority made by the test.
pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this CA, and its
    /// key, both PEM.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        self.issue_with(names, |_| {})
    }

    /// Like [`TestCa::issue`], with `edit` applied to the certificate's parameters (e.g.
    /// its validity).
    pub fn issue_with(&self, names: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        edit(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes the CA certificate as `dir/NAME` and returns its path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

/// A TLS upstream on `127.0.0.1:0`.
#[derive(Clone)]
pub struct TlsUpstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Recorded>>>,
    /// TCP connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// TLS handshakes that failed on the upstream's side.
    pub failed_handshakes: Arc<AtomicUsize>,
}

impl TlsUpstream {
    /// Serves with a certificate for `names` signed by `ca`; with `client_ca`, only
    /// clients presenting a certificate signed by that CA are served.
    pub async fn start(ca: &TestCa, names: &[&str], client_ca: Option<&TestCa>) -> Self {
        Self::start_with(ca.issue(names), client_ca).await
    }

    /// Serves with this certificate and key (PEM), e.g. one [`TestCa::issue_with`] made.
    pub async fn start_with((cert, key): (String, String), client_ca: Option<&TestCa>) -> Self {
        let acceptor = acceptor((cert, key), client_ca);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Self {
            addr,
            seen: Arc::default(),
            connections: Arc::default(),
            failed_handshakes: Arc::default(),
        };
        let state = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                state.connections.fetch_add(1, Ordering::SeqCst);
                let (acceptor, state) = (acceptor.clone(), state.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        state.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    let seen = state.seen.clone();
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let target = parts.uri.path_and_query().map(ToString::to_string).unwrap_or_default();
                            seen.lock().unwrap().push(Recorded {
                                method: parts.method.to_string(),
                                target: target.clone(),
                                headers: parts.headers,
                                body,
                            });
                            let text = format!("{{\"target\":{target:?},\"mark\":\"{TLS_UPSTREAM_MARK}\"}}");
                            let resp = Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(text)))
                                .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    // A client refused after its handshake (a missing client certificate
                    // under TLS 1.3) ends here with an error.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        up
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A TLS acceptor serving this certificate and key (PEM); with `client_ca`, only clients
/// presenting a certificate signed by that CA are served.
fn acceptor((cert, key): (String, String), client_ca: Option<&TestCa>) -> tokio_rustls::TlsAcceptor {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(client_ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(client_ca.pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// How [`raw_tls_upstream`] ends each connection after its answer.
#[derive(Clone, Copy, Debug)]
pub enum TlsEnd {
    /// TLS `close_notify`, then the TCP close: the clean end of a close-delimited body.
    CloseNotify,
    /// A TCP close with no `close_notify`: a truncation, as an attacker on the path
    /// could cause.
    BareClose,
}

/// A TLS upstream (a certificate for `names` from `ca`) that reads one request head per
/// connection, answers it with `head` and `body` as they are (no framing added), and
/// ends the connection as `end` says.
pub async fn raw_tls_upstream(
    ca: &TestCa,
    names: &[&str],
    head: &'static str,
    body: &'static [u8],
    end: TlsEnd,
) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor = acceptor(ca.issue(names), None);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut piece = [0u8; 4096];
                    match tls.read(&mut piece).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&piece[..n]),
                    }
                }
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(body).await;
                let _ = tls.flush().await;
                match end {
                    TlsEnd::CloseNotify => {
                        let _ = tls.shutdown().await;
                    }
                    TlsEnd::BareClose => {
                        let (mut tcp, _) = tls.into_inner();
                        let _ = tcp.shutdown().await;
                    }
                }
            });
        }
    });
    addr
}
