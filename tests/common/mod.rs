//! Test harness: starts upstreams and the gateway in-process on `127.0.0.1:0` over real
//! TLS. Clients trust the certificate the gateway generated, nothing else.
//!
//! `upstreams` holds the upstreams tests put behind the gateway, `accounts` the one way
//! to make users and sign them in, `cli` the one way to run the binary.

// Each test file uses part of the harness.
#![allow(dead_code, unused_imports)]

mod accounts;
pub mod browser;
mod cli;
mod mfa;
pub mod postgres;
pub mod smtp;
mod tls_upstream;
mod upstreams;

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portcullis::{Config, Gateway, RunningGateway};
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use accounts::{confirmation_token, PASSWORD};
pub use cli::{cli, cli_stdin, field, portcullis_bin, serve, CliOut};
pub use mfa::Enrolled;
pub use tls_upstream::{raw_tls_upstream, TestCa, TlsEnd, TlsUpstream, TLS_UPSTREAM_MARK};
pub use upstreams::{closed_port, start_shop, Counter, Recorded, Recorder};

/// A policy that forwards everything to the `rec` upstream, publicly.
pub const OPEN_POLICY: &str = r#"
upstream = "rec"

[[route]]
name = "everything"
methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
path = "/{*rest}"
public = true

[[route]]
name = "members"
methods = ["GET"]
path = "/members/{id}"
roles = ["customer"]
owner = "id"
"#;

/// A running gateway and what tests need to talk to it.
pub struct TestGateway {
    pub running: Option<RunningGateway>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// An HTTP/1.1 client (ALPN `http/1.1`): its plain requests are served by the
    /// gateway's own HTTP/1.1 server, the others by hyper's after the hand-off. HTTP/2
    /// has tests of its own, with [`client_builder`]'s default (ALPN offers `h2`).
    pub client: reqwest::Client,
    pub ca_pem: Vec<u8>,
}

pub struct Setup {
    pub upstreams: Vec<(String, String)>,
    pub policy: String,
    /// Extra TOML appended to the configuration (e.g. a `[limits]` table).
    pub extra: String,
    /// Use this policy directory instead of writing `policy` into a fresh one.
    pub policy_dir: Option<PathBuf>,
    /// The clock the gateway reads; the wall clock when absent.
    pub clock: Option<portcullis::clock::ManualClock>,
    /// Extra lines of the `[server]` table (e.g. `workers = 1`).
    pub server: String,
    /// The `[registration]` table (registration on, `customer`), unless `extra` has one.
    pub registration: Option<String>,
    /// The `[login]` table the tests assume (the shop's staff roles need two-factor),
    /// unless `extra` has one.
    pub login: String,
}

/// The `[registration]` every test gateway has unless told otherwise.
pub const REGISTRATION: &str = "[registration]\nenabled = true\ndefault_roles = [\"customer\"]\n";

impl Setup {
    pub fn new(upstreams: &[(&str, String)], policy: &str) -> Self {
        Self {
            upstreams: upstreams.iter().map(|(n, u)| ((*n).to_owned(), u.clone())).collect(),
            policy: policy.to_owned(),
            extra: String::new(),
            policy_dir: None,
            clock: None,
            server: String::new(),
            registration: Some(REGISTRATION.to_owned()),
            login: "[login]\nrequire_mfa_roles = [\"admin\", \"inventory\", \"support\"]\n".to_owned(),
        }
    }

    /// The shipped policies in front of the upstream they call `shop` (the demo shop, or
    /// a recorder).
    pub fn shop(shop: SocketAddr) -> Self {
        let mut s = Self::new(&[("shop", format!("http://{shop}"))], "");
        s.policy_dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"));
        s
    }

    /// Lifts `[rate_limit] auth_per_ip`, for tests that make many `/auth/*` requests from
    /// one address.
    pub fn many_auth_requests(self) -> Self {
        self.extra("[rate_limit]\nauth_per_ip = \"1000/sec\"\n")
    }

    pub fn with_clock(mut self, clock: &portcullis::clock::ManualClock) -> Self {
        self.clock = Some(clock.clone());
        self
    }

    /// Adds lines to the `[server]` table.
    pub fn server(mut self, toml: &str) -> Self {
        self.server.push_str(toml);
        self.server.push('\n');
        self
    }

    /// Replaces the `[registration]` table (the whole table text), or drops it with `None`
    /// (registration off).
    pub fn registration(mut self, table: Option<&str>) -> Self {
        self.registration = table.map(str::to_owned);
        self
    }

    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self
    }

    /// Writes the configuration into a temporary directory and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let policies = match &self.policy_dir {
            Some(p) => p.clone(),
            None => {
                let p = dir.join("policies");
                std::fs::create_dir_all(&p).unwrap();
                std::fs::write(p.join("test.toml"), &self.policy).unwrap();
                p
            }
        };
        let upstreams: String = self.upstreams.iter().map(|(n, u)| format!("{n} = \"{u}\"\n")).collect();
        // A table of `extra` wins over the default one; the defaults come last, so the
        // line numbers of `extra` stay what tests expect.
        let default_table = |table: Option<&str>, header: &str| match table {
            Some(t) if !self.extra.contains(header) => format!("{t}\n"),
            _ => String::new(),
        };
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://localhost\"\ndata_dir = \"{}\"\npolicies = \"{}\"\n{}\n[upstreams]\n{upstreams}\n{}\n{}{}",
            dir.join("data").display(),
            policies.display(),
            self.server,
            self.extra,
            default_table(self.registration.as_deref(), "[registration]"),
            default_table(Some(&self.login), "[login]"),
        );
        let path = dir.join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        path
    }

    /// With `PORTCULLIS_TEST_STORE=postgres` in the environment, the gateway keeps its
    /// state in a fresh database of the throwaway PostgreSQL (tests/common/postgres.rs)
    /// instead of sled: the tests that exercise state run on both backends, the same
    /// tests (.ci/run runs them again that way, with `PORTCULLIS_SECRET_KEY` set).
    async fn on_test_store(mut self) -> Self {
        if std::env::var("PORTCULLIS_TEST_STORE").as_deref() == Ok("postgres") && !self.extra.contains("[store]") {
            let url = postgres::PgCluster::shared().database().await;
            self.extra
                .push_str(&format!("\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"));
        }
        self
    }

    pub async fn start(self) -> TestGateway {
        let setup = self.on_test_store().await;
        let dir = tempfile::tempdir().unwrap();
        let path = setup.write(dir.path());
        TestGateway::launch(dir, &path, setup.clock).await
    }

    /// Like [`Setup::start`], with `edit` applied to the loaded configuration (for what
    /// no file key sets, e.g. the SMTP password or the mail retry wait).
    pub async fn start_with(self, edit: impl FnOnce(&mut Config)) -> TestGateway {
        let setup = self.on_test_store().await;
        let dir = tempfile::tempdir().unwrap();
        let path = setup.write(dir.path());
        TestGateway::launch_with(dir, &path, setup.clock, edit).await
    }
}

impl TestGateway {
    /// Starts a gateway from a configuration already written into `dir`.
    pub async fn launch(dir: tempfile::TempDir, path: &Path, clock: Option<portcullis::clock::ManualClock>) -> Self {
        Self::launch_with(dir, path, clock, |_| {}).await
    }

    /// Like [`TestGateway::launch`], with `edit` applied to the loaded configuration.
    pub async fn launch_with(
        dir: tempfile::TempDir,
        path: &Path,
        clock: Option<portcullis::clock::ManualClock>,
        edit: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config::load(path).unwrap();
        edit(&mut config);
        let gateway = match clock {
            Some(c) => Gateway::with_clock(config, Arc::new(c)).await.unwrap(),
            None => Gateway::new(config).await.unwrap(),
        };
        let running = gateway.start().await.unwrap();
        let addr = running.tls_addr;
        let ca_pem = std::fs::read(dir.path().join("data/tls/gateway.crt")).unwrap();
        let client = client_builder(&ca_pem, addr).http1_only().build().unwrap();
        TestGateway {
            running: Some(running),
            addr,
            dir,
            client,
            ca_pem,
        }
    }
}

/// A reqwest client that trusts only the gateway's certificate and resolves `localhost`
/// to the gateway's address.
pub fn client_builder(ca_pem: &[u8], addr: SocketAddr) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .resolve("localhost", addr)
        .no_proxy()
        .timeout(Duration::from_secs(20))
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// Sends raw bytes over TLS (HTTP/1.1) and returns the raw response, read until the
    /// server closes or 5 s pass.
    pub async fn raw(&self, request: &str) -> RawResponse {
        let tls = self.tls_connect(b"http/1.1").await;
        RawResponse::parse(&read_after(tls, request.as_bytes()).await)
    }

    /// Opens a TLS connection to the gateway that offers `alpn` (nothing when empty).
    pub async fn tls_connect(&self, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        self.tls_handshake(tcp, alpn).await.unwrap()
    }

    /// The TLS handshake with the gateway over `tcp`, a connection already open (on
    /// which, say, a PROXY header was written), offering `alpn` (nothing when empty).
    pub async fn tls_handshake(
        &self,
        tcp: TcpStream,
        alpn: &[u8],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&self.ca_pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        if !alpn.is_empty() {
            config.alpn_protocols = vec![alpn.to_vec()];
        }
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await
    }

    /// The gateway's metrics text (asked from loopback).
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn auth(&self) -> &portcullis::auth::service::AuthService {
        self.running.as_ref().unwrap().inner().auth()
    }

    /// The audit records of one event kind (an `EventKind` or its name), oldest first.
    pub async fn audit_events(&self, event: impl Display) -> Vec<portcullis::audit::Record> {
        let query = portcullis::audit::Query {
            event: Some(event.to_string()),
            ..portcullis::audit::Query::default()
        };
        portcullis::audit::list(self.auth().store(), &query).await.unwrap()
    }

    /// The audit records of one kind once there are at least `n` of them, or what there
    /// is after 2 s. Queued records are written by a task of their own, beside the
    /// request path: this waits for that task, not for any clock.
    pub async fn wait_for_events(&self, event: impl Display, n: usize) -> Vec<portcullis::audit::Record> {
        let event = event.to_string();
        for _ in 0..100 {
            let found = self.audit_events(&event).await;
            if found.len() >= n {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.audit_events(&event).await
    }

    /// The status of a plain `GET`, without a token.
    pub async fn status(&self, path: &str) -> u16 {
        self.client.get(self.url(path)).send().await.unwrap().status().as_u16()
    }

    /// The messages in the outbox, oldest first.
    pub fn outbox(&self) -> Vec<String> {
        let dir = self.dir.path().join("data/outbox");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect()
    }

    /// The messages waiting in the SMTP spool (`data/spool`), oldest first. A message the
    /// sender removes between the listing and the reading was delivered: it is left out.
    /// With a shared store, the messages of its spool (every gateway's).
    pub fn spool(&self) -> Vec<String> {
        if let portcullis::config::store::StoreConfig::Postgres(pg) =
            &self.running.as_ref().unwrap().inner().config().store
        {
            return shared_spool(&pg.url);
        }
        let dir = self.dir.path().join("data/spool");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect()
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let resp = self.client.post(self.url(path)).json(&body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get_with(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        let resp = self.client.get(self.url(path)).bearer_auth(token).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// The messages in the shared spool of the database at `url`, oldest first (a blocking
/// look behind the store's back: call it from a multi-threaded runtime).
pub fn shared_spool(url: &str) -> Vec<String> {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            let client = postgres::PgCluster::client(url).await;
            client
                .query("SELECT message FROM mail_spool ORDER BY created_ms, id", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| String::from_utf8_lossy(r.get::<_, &[u8]>(0)).into_owned())
                .collect()
        })
    })
}

/// Writes `bytes` and reads until the peer closes or 5 s pass.
pub async fn read_after<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut io: S, bytes: &[u8]) -> Vec<u8> {
    io.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut buf)).await;
    buf
}

/// A response read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawResponse {
    pub fn parse(buf: &[u8]) -> Self {
        let text = String::from_utf8_lossy(buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        Self {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.body.trim()).unwrap_or(serde_json::Value::Null)
    }
}
