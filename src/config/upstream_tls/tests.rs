//! `[upstream_tls.NAME]` and `https://` upstreams: what is accepted, and each refusal at
//! its file, line and key.

use std::path::Path;

use crate::config::Config;
use crate::source::SourceError;

const BASE: &str = r#"[server]
listen = "127.0.0.1:8443"
public_url = "https://localhost:8443"
data_dir = "data"
policies = "policies"

[upstreams]
plain = "http://127.0.0.1:8081"
api = "https://api.internal:9443/v1"
"#;

/// A CA, a client certificate it signed with its key, and another key, written as PEM
/// files into a temporary directory.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let client_key = KeyPair::generate().unwrap();
        let client = CertificateParams::new(vec!["gateway".to_owned()])
            .unwrap()
            .signed_by(&client_key, &issuer)
            .unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", ca_cert.pem());
        write("gw.crt", client.pem());
        write("gw.key", client_key.serialize_pem());
        write("other.key", KeyPair::generate().unwrap().serialize_pem());
        write("empty.pem", "nothing here\n".to_owned());
        Self { dir }
    }

    /// The configuration with `tables` appended, in this directory.
    fn parse(&self, tables: &str) -> Result<Config, Vec<SourceError>> {
        let src = format!("{BASE}\n{tables}");
        Config::parse(&self.dir.path().join("gateway.toml"), &src).map_err(|e| e.0)
    }

    /// The one error `tables` makes: its line (in the whole file) and key.
    fn error(&self, tables: &str) -> SourceError {
        let mut errors = self.parse(tables).expect_err("an error");
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.remove(0)
    }
}

/// Line of the first line of the appended tables.
const TABLE_LINE: usize = 11;

// An https:// upstream with no table gets the defaults: the URL's host as the server name,
// the system's roots, no client certificate, port 443 when the URL has none.
#[test]
fn https_upstream_defaults() {
    let files = Files::new();
    let c = files.parse("").unwrap();
    let api = &c.upstream_tls["api"];
    assert_eq!(api.server_name.to_str(), "api.internal");
    assert!(api.ca.is_none() && api.client.is_none());
    assert_eq!(c.upstreams["api"].scheme, http::uri::Scheme::HTTPS);
    assert_eq!(c.upstreams["api"].base_path, "/v1");
    assert!(!c.upstream_tls.contains_key("plain"));
    let src = BASE.replace("https://api.internal:9443/v1", "https://api.internal");
    let c = Config::parse(Path::new("g.toml"), &src).unwrap();
    assert_eq!(c.upstreams["api"].port(), 443);
    assert_eq!(c.upstreams["plain"].port(), 8081);
}

// A full table: the CA and the client pair are read relative to the file, the server name
// replaces the host (an IP address too), and the key never shows in Debug output.
#[test]
fn full_table() {
    let files = Files::new();
    let c = files
        .parse("[upstream_tls.api]\nca = \"ca.pem\"\nclient_cert = \"gw.crt\"\nclient_key = \"gw.key\"\nserver_name = \"10.1.2.3\"\n")
        .unwrap();
    let api = &c.upstream_tls["api"];
    let (path, certs) = api.ca.as_ref().unwrap();
    assert_eq!(path, &files.dir.path().join("ca.pem"));
    assert_eq!(certs.len(), 1);
    assert_eq!(api.client.as_ref().unwrap().chain.len(), 1);
    assert_eq!(api.server_name.to_str(), "10.1.2.3");
    let debug = format!("{:?}", api.client);
    assert!(debug.contains("redacted"), "{debug}");
}

// Each mistake is refused at its line and key, with a message that says what is wrong.
#[test]
fn refusals_name_line_and_key() {
    let files = Files::new();
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "[upstream_tls.nope]\nca = \"ca.pem\"\n",
            0,
            "[upstream_tls.nope]",
            "no upstream \"nope\"",
        ),
        (
            "[upstream_tls.plain]\nca = \"ca.pem\"\n",
            0,
            "[upstream_tls.plain]",
            "plain http://",
        ),
        (
            "[upstream_tls.api]\nca = \"missing.pem\"\n",
            1,
            "[upstream_tls.api] ca",
            "cannot read",
        ),
        (
            "[upstream_tls.api]\nca = \"empty.pem\"\n",
            1,
            "[upstream_tls.api] ca",
            "no PEM certificate",
        ),
        (
            "[upstream_tls.api]\nclient_cert = \"gw.crt\"\n",
            1,
            "[upstream_tls.api] client_cert",
            "needs client_key",
        ),
        (
            "[upstream_tls.api]\nclient_key = \"gw.key\"\n",
            1,
            "[upstream_tls.api] client_key",
            "needs client_cert",
        ),
        (
            "[upstream_tls.api]\nclient_cert = \"gw.crt\"\nclient_key = \"other.key\"\n",
            2,
            "[upstream_tls.api] client_key",
            "does not match",
        ),
        (
            "[upstream_tls.api]\nclient_cert = \"gw.crt\"\nclient_key = \"ca.pem\"\n",
            2,
            "[upstream_tls.api] client_key",
            "no PEM private key",
        ),
        (
            "[upstream_tls.api]\nserver_name = \"not a name!\"\n",
            1,
            "[upstream_tls.api] server_name",
            "not a DNS name or an IP address",
        ),
    ];
    for (tables, offset, key, message) in cases {
        let e = files.error(tables);
        assert_eq!(e.line, Some(TABLE_LINE + offset), "{tables}: {e}");
        assert_eq!(e.key.as_deref(), Some(*key), "{tables}: {e}");
        assert!(e.message.contains(message), "{tables}: {e}");
        assert!(e.to_string().contains("gateway.toml"), "{e}");
    }
}

// Verification cannot be turned off, and unknown keys are refused like everywhere else.
#[test]
fn no_key_turns_verification_off() {
    let files = Files::new();
    for key in ["verify = false", "insecure = true"] {
        let errors = files.parse(&format!("[upstream_tls.api]\n{key}\n")).unwrap_err();
        assert!(
            errors[0].to_string().contains(key.split(' ').next().unwrap()),
            "{errors:?}"
        );
    }
}

// Several mistakes in several tables are all reported in one run.
#[test]
fn every_error_reported() {
    let files = Files::new();
    let errors = files
        .parse("[upstream_tls.api]\nca = \"missing.pem\"\nclient_cert = \"gw.crt\"\n\n[upstream_tls.nope]\n")
        .unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:?}");
}

// Another scheme is still refused, naming the two accepted.
#[test]
fn other_schemes_refused() {
    let src = BASE.replace("https://api.internal:9443/v1", "ftp://api.internal");
    let e = Config::parse(Path::new("g.toml"), &src).unwrap_err().0.remove(0);
    assert_eq!(e.key.as_deref(), Some("[upstreams] api"), "{e}");
    assert!(e.message.contains("http:// or https://"), "{e}");
}
