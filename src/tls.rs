//! TLS server configuration: TLS 1.2 and 1.3 only, the server's order of cipher suites
//! (all of them AEAD with forward secrecy) over the client's, ALPN `h2` and `http/1.1`,
//! and the certificate from the configuration or a self-signed development certificate.
//!
//! The development certificate is made like a real one, so that scanners and browsers
//! judge it as they would a real one: subject alternative names `localhost` and
//! `127.0.0.1`, a one-year lifetime, `basicConstraints CA:FALSE`, key usage
//! `digitalSignature`, extended key usage `serverAuth`, a random serial. It is generated
//! into `data_dir/tls/` at first start, reused afterwards, and made anew at start-up once
//! fewer than [`RENEW_BEFORE_DAYS`] days of it are left.

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
    if config.tls.is_none() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if !(cert_path.exists() && key_path.exists()) {
            generate_self_signed(&cert_path, &key_path, now)?;
        } else if renewal_due(&cert_path, now) {
            tracing::info!(cert = %cert_path.display(), "the development certificate nears its end; making a new one");
            generate_self_signed(&cert_path, &key_path, now)?;
        }
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
    // The provider lists its suites strongest first; a client's preference for a weaker
    // one does not win.
    tls.ignore_client_order = true;
    Ok(Arc::new(tls))
}

/// How long a generated development certificate is valid.
const LIFETIME_DAYS: i64 = 365;
/// A generated certificate with fewer days left than this is made anew at start-up.
pub const RENEW_BEFORE_DAYS: i64 = 30;

/// Whether the generated certificate at `path` ends within [`RENEW_BEFORE_DAYS`] of
/// `now` (Unix seconds), or cannot be read as one: then a new one is made.
fn renewal_due(path: &Path, now: u64) -> bool {
    let Some(der) = CertificateDer::pem_file_iter(path)
        .ok()
        .and_then(|mut i| i.next())
        .and_then(Result::ok)
    else {
        return true;
    };
    match x509_parser::parse_x509_certificate(&der) {
        Ok((_, cert)) => {
            let left = cert.validity().not_after.timestamp() - i64::try_from(now).unwrap_or(i64::MAX);
            left < RENEW_BEFORE_DAYS * 86_400
        }
        Err(_) => true,
    }
}

/// The parameters of the development certificate, valid from a day before `now` (clocks
/// of clients differ) for `days`.
fn development_params(now: u64, days: i64) -> Result<rcgen::CertificateParams, TlsError> {
    use rcgen::{DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SerialNumber};
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).map_err(generate)?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(DnType::CommonName, "localhost");
    name.push(DnType::OrganizationName, "Portcullis development certificate");
    params.distinguished_name = name;
    let now = time::OffsetDateTime::from_unix_timestamp(i64::try_from(now).unwrap_or(0))
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f; // positive, as RFC 5280 asks
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(params)
}

/// Writes a development certificate for `localhost` and `127.0.0.1` with a new key; the
/// key file is created with mode 0600 in a directory of mode 0700.
fn generate_self_signed(cert_path: &Path, key_path: &Path, now: u64) -> Result<(), TlsError> {
    write_development_cert(cert_path, key_path, now, LIFETIME_DAYS)
}

fn write_development_cert(cert_path: &Path, key_path: &Path, now: u64, days: i64) -> Result<(), TlsError> {
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let signing_key = rcgen::KeyPair::generate().map_err(generate)?;
    let cert = development_params(now, days)?
        .self_signed(&signing_key)
        .map_err(generate)?;
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
    write_file(key_path, signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_file(cert_path, cert.pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %cert_path.display(), "generated a development certificate for localhost, valid for a year");
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
        assert!(tls.ignore_client_order, "the server's cipher order");
    }

    // The development certificate reads like a real server certificate: a year, not
    // CA, server auth, digital signature, both names, a named subject.
    #[test]
    fn development_certificate() {
        use x509_parser::extensions::GeneralName;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.crt"), dir.path().join("c.key"));
        let now = 1_800_000_000;
        generate_self_signed(&cert, &key, now).unwrap();
        let der = CertificateDer::pem_file_iter(&cert).unwrap().next().unwrap().unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
        let days = (x.validity().not_after.timestamp() - now as i64) / 86_400;
        assert_eq!(days, 365);
        assert!(x.validity().not_before.timestamp() < now as i64);
        let bc = x.basic_constraints().unwrap().unwrap().value;
        assert!(!bc.ca);
        let ku = x.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_cert_sign());
        assert!(x.extended_key_usage().unwrap().unwrap().value.server_auth);
        let sans: Vec<String> = x
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => (*d).to_owned(),
                GeneralName::IPAddress(ip) => format!("{ip:?}"),
                other => format!("{other}"),
            })
            .collect();
        assert_eq!(sans, ["localhost", "[127, 0, 0, 1]"]);
        let subject = x.subject().to_string();
        assert!(
            subject.contains("CN=localhost") && !subject.contains("rcgen"),
            "{subject}"
        );
        assert!(!renewal_due(&cert, now));
        assert!(!renewal_due(&cert, now + 334 * 86_400));
        assert!(renewal_due(&cert, now + 336 * 86_400), "30 days before its end");
    }

    // A generated certificate near its end is made anew at start-up; a configured one
    // is never touched.
    #[test]
    fn renewed_near_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let src = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://localhost\"\ndata_dir = \"{}\"\npolicies = \"p\"\n",
            dir.path().display()
        );
        let config = Config::parse(&dir.path().join("g.toml"), &src).unwrap();
        let (cert, key) = cert_paths(&config);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        fs::create_dir_all(cert.parent().unwrap()).unwrap();
        write_development_cert(&cert, &key, now - 355 * 86_400, 365).unwrap();
        let old = fs::read(&cert).unwrap();
        assert!(renewal_due(&cert, now));
        server_config(&config).unwrap();
        assert_ne!(fs::read(&cert).unwrap(), old, "not renewed");
        assert!(!renewal_due(&cert, now));
    }
}
