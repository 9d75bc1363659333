//! TLS server configuration: TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, the
//! certificate from the configuration or a self-signed one for `localhost` generated
//! into `data_dir/tls/` at first start and reused afterwards.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("cannot generate the self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the certificate and key come from.
pub fn cert_paths(config: &Config) -> (PathBuf, PathBuf) {
    match &config.tls {
        Some(files) => (files.cert.clone(), files.key.clone()),
        None => {
            let dir = config.server.data_dir.join("tls");
            (dir.join("gateway.crt"), dir.join("gateway.key"))
        }
    }
}

/// Builds the rustls server configuration, generating the self-signed certificate when
/// no `[tls]` is configured and none was generated before.
pub fn server_config(config: &Config) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert_path, key_path) = cert_paths(config);
    if config.tls.is_none() && !(cert_path.exists() && key_path.exists()) {
        generate_self_signed(&cert_path, &key_path)?;
    }
    let file_err = |path: &Path, message: String| TlsError::File {
        path: path.to_path_buf(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| file_err(&cert_path, format!("cannot read the certificate: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&cert_path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(&cert_path, "no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| file_err(&key_path, format!("cannot read the private key: {e}")))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// Writes a self-signed certificate for `localhost` and `127.0.0.1`; the key file is
/// created with mode 0600 in a directory of mode 0700.
fn generate_self_signed(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    if let Some(dir) = key_path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| TlsError::File {
                path: dir.to_path_buf(),
                message: format!("cannot create: {e}"),
            })?;
    }
    write_file(key_path, generated.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_file(cert_path, generated.cert.pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate for localhost");
    Ok(())
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let err = |e: std::io::Error| TlsError::File {
        path: path.to_path_buf(),
        message: format!("cannot write: {e}"),
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(contents).map_err(err)?;
    f.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    // The generated key is private to its owner and the certificate is reused at restart.
    #[test]
    fn self_signed_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let src = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://localhost\"\ndata_dir = \"{}\"\npolicies = \"p\"\n",
            dir.path().display()
        );
        let config = Config::parse(&dir.path().join("g.toml"), &src).unwrap();
        server_config(&config).unwrap();
        let (cert, key) = cert_paths(&config);
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let first = fs::read(&cert).unwrap();
        let tls = server_config(&config).unwrap();
        assert_eq!(fs::read(&cert).unwrap(), first, "certificate regenerated");
        assert_eq!(tls.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }
}
