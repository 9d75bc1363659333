//! Upstreams over TLS: an upstream served by the test over real TLS with a CA the test
//! made, reached through the gateway. Requests go through and keep their connection;
//! mutual TLS works with the configured client certificate and fails without it; a wrong
//! CA, a name the certificate does not carry or an expired certificate is 502, audited,
//! with nothing of the upstream's in the answer. A body that ends at the upstream's
//! close ends cleanly only at its `close_notify`; a bare close is a truncation, which the
//! client sees as a broken answer, never as a complete one.

mod common;

use std::path::Path;

use common::{raw_tls_upstream, Setup, TestCa, TlsEnd, TlsUpstream, OPEN_POLICY, TLS_UPSTREAM_MARK};
use portcullis::audit::EventKind;
use reqwest::StatusCode;
use serde_json::Value;

/// Writes `text` as `dir/name` and returns the path as TOML string content.
fn file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A gateway with one worker in front of `up` as the upstream `rec`, with `table` as the
/// body of `[upstream_tls.rec]`.
async fn gateway(up: &TlsUpstream, table: &str) -> common::TestGateway {
    gateway_at(up.url(), table).await
}

/// As [`gateway`], for the upstream at `url`.
async fn gateway_at(url: String, table: &str) -> common::TestGateway {
    Setup::new(&[("rec", url)], OPEN_POLICY)
        .server("workers = 1")
        .extra(&format!("[upstream_tls.rec]\n{table}\n"))
        .start()
        .await
}

/// Checks a 502 from the gateway: the generic JSON error with the request id, nothing of
/// the upstream's, and an `upstream_error` audit record for it.
async fn assert_refused_upstream(gw: &common::TestGateway, path: &str) {
    let resp = gw.client.get(gw.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let text = resp.text().await.unwrap();
    assert!(!text.contains(TLS_UPSTREAM_MARK), "{text}");
    assert!(!text.contains("certificate") && !text.contains("127.0.0.1"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], "bad_gateway", "{text}");
    assert!(text.contains(&id), "the body names the request id: {text}");
    let records = gw.wait_for_events(EventKind::UpstreamError, 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].event.status, Some(502), "{records:?}");
}

// A request reaches an upstream served over TLS by a CA given in `ca`, and the upstream
// sees it as sent; a second request reuses the same upstream connection (one TCP
// connection, one handshake).
#[tokio::test]
async fn requests_go_through_and_reuse_the_connection() {
    let ca = TestCa::new("test upstream CA");
    let up = TlsUpstream::start(&ca, &["127.0.0.1"], None).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&up, &format!("ca = {:?}", file(dir.path(), "ca.pem", &ca.pem))).await;

    for (n, path) in ["/first?x=1", "/second"].iter().enumerate() {
        let resp = gw.client.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let body = resp.text().await.unwrap();
        assert!(body.contains(TLS_UPSTREAM_MARK), "{body}");
        let seen = up.requests();
        assert_eq!(seen.len(), n + 1);
        assert_eq!(seen[n].target, *path);
        assert_eq!(seen[n].headers["host"], up.addr.to_string());
        assert!(seen[n].headers.contains_key("x-request-id"));
    }
    assert_eq!(up.connections(), 1, "the second request reused the first connection");
}

// Mutual TLS: an upstream that requires a client certificate from its own CA serves the
// gateway configured with `client_cert`/`client_key`, and refuses one without (502).
#[tokio::test]
async fn mutual_tls() {
    let ca = TestCa::new("server CA");
    let clients = TestCa::new("client CA");
    let up = TlsUpstream::start(&ca, &["127.0.0.1"], Some(&clients)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = file(dir.path(), "ca.pem", &ca.pem);
    let (cert, key) = clients.issue(&["gateway.internal"]);
    let with_cert = format!(
        "ca = {ca_file:?}\nclient_cert = {:?}\nclient_key = {:?}",
        file(dir.path(), "gw.crt", &cert),
        file(dir.path(), "gw.key", &key)
    );

    let gw = gateway(&up, &with_cert).await;
    let resp = gw.client.get(gw.url("/mtls")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains(TLS_UPSTREAM_MARK));
    assert_eq!(up.requests().len(), 1);

    let without = gateway(&up, &format!("ca = {ca_file:?}")).await;
    assert_refused_upstream(&without, "/no-client-cert").await;

    // A certificate from a CA the upstream does not trust is refused the same way.
    let stranger = TestCa::new("stranger CA");
    let (cert, key) = stranger.issue(&["gateway.internal"]);
    let wrong_cert = format!(
        "ca = {ca_file:?}\nclient_cert = {:?}\nclient_key = {:?}",
        file(dir.path(), "other.crt", &cert),
        file(dir.path(), "other.key", &key)
    );
    let other = gateway(&up, &wrong_cert).await;
    assert_refused_upstream(&other, "/wrong-client-cert").await;
    assert_eq!(
        up.requests().len(),
        1,
        "no refused client's request reached the upstream"
    );
}

// An upstream whose certificate comes from another CA than the configured one is 502 with
// the audit record and no byte of the upstream's answer; the request never reaches it.
#[tokio::test]
async fn wrong_ca_is_502() {
    let ca = TestCa::new("the upstream's CA");
    let other = TestCa::new("another CA");
    let up = TlsUpstream::start(&ca, &["127.0.0.1"], None).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&up, &format!("ca = {:?}", file(dir.path(), "other.pem", &other.pem))).await;
    assert_refused_upstream(&gw, "/secret").await;
    assert!(up.requests().is_empty());
    assert!(up.failed_handshakes.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("portcullis_upstream_errors_total{upstream=\"rec\","),
        "{metrics}"
    );
}

// Without `[upstream_tls]`, the system's roots verify the upstream: a certificate from a
// private CA is refused (502), never accepted for lack of a CA file.
#[tokio::test]
async fn system_roots_do_not_trust_a_private_ca() {
    let ca = TestCa::new("private CA");
    let up = TlsUpstream::start(&ca, &["127.0.0.1"], None).await;
    let setup = Setup::new(&[("rec", up.url())], OPEN_POLICY);
    let dir = tempfile::tempdir().unwrap();
    let path = setup.write(dir.path());
    let config = portcullis::Config::load(&path).unwrap();
    match portcullis::Gateway::new(config).await {
        // A system without root certificates refuses to start, saying so.
        Err(e) => assert!(e.to_string().contains("no root certificates"), "{e}"),
        Ok(gateway) => {
            drop(gateway);
            let gw = setup.start().await;
            assert_refused_upstream(&gw, "/x").await;
            assert!(up.requests().is_empty());
        }
    }
}

// `server_name` is the name the certificate must carry: with the certificate's name the
// upstream is reached at its IP address; a name it does not carry, or the default (the
// URL's host, here the IP address the certificate lacks), is 502.
#[tokio::test]
async fn server_name_must_match() {
    let ca = TestCa::new("names CA");
    let up = TlsUpstream::start(&ca, &["api.internal"], None).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_line = format!("ca = {:?}", file(dir.path(), "ca.pem", &ca.pem));

    let gw = gateway(&up, &format!("{ca_line}\nserver_name = \"api.internal\"")).await;
    assert_eq!(gw.status("/named").await, 200);
    assert_eq!(up.requests().len(), 1);

    let gw = gateway(&up, &format!("{ca_line}\nserver_name = \"other.internal\"")).await;
    assert_refused_upstream(&gw, "/wrong-name").await;
    let gw = gateway(&up, &ca_line).await;
    assert_refused_upstream(&gw, "/default-name").await;
    assert_eq!(up.requests().len(), 1);
}

// A certificate from the right CA, for the right name, but expired, is refused (502).
#[tokio::test]
async fn expired_certificate_is_502() {
    let ca = TestCa::new("expiry CA");
    let expired = ca.issue_with(&["127.0.0.1"], |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let up = TlsUpstream::start_with(expired, None).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&up, &format!("ca = {:?}", file(dir.path(), "ca.pem", &ca.pem))).await;
    assert_refused_upstream(&gw, "/expired").await;
    assert!(up.requests().is_empty());
}

// A body without a length, which ends where the upstream closes: with `close_notify` the
// client gets all of it; with a bare TCP close (what cutting the connection on the path
// looks like) the client's answer breaks off instead of ending as if complete.
#[tokio::test]
async fn a_close_delimited_body_ends_only_at_close_notify() {
    const HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n";
    const BODY: &[u8] = b"all of the body, to the upstream's close";
    let ca = TestCa::new("test upstream CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = file(dir.path(), "ca.pem", &ca.pem);
    for end in [TlsEnd::CloseNotify, TlsEnd::BareClose] {
        let addr = raw_tls_upstream(&ca, &["127.0.0.1"], HEAD, BODY, end).await;
        let gw = gateway_at(format!("https://{addr}"), &format!("ca = {ca_file:?}")).await;
        // The status and the body, or the error that broke the answer off (over
        // HTTP/2 the stream's reset may overtake its head).
        let answer = match gw.client.get(gw.url("/stream")).send().await {
            Ok(resp) => {
                let status = resp.status();
                resp.bytes().await.map(|b| (status, b))
            }
            Err(e) => Err(e),
        };
        match end {
            TlsEnd::CloseNotify => {
                let (status, body) = answer.unwrap();
                assert_eq!(status, StatusCode::OK);
                assert_eq!(body.as_ref(), BODY);
            }
            TlsEnd::BareClose => assert!(answer.is_err(), "a truncated body ended cleanly: {answer:?}"),
        }
    }
}

// An upstream that answers once per connection (with a length, so the connection looks
// reusable) and then closes it with `close_notify`: the idle connection is found closed,
// or the request it could not answer goes again on a new one, so every request succeeds.
#[tokio::test]
async fn an_idle_connection_closed_by_the_upstream_is_not_used() {
    const HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n\r\n";
    let ca = TestCa::new("test upstream CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = file(dir.path(), "ca.pem", &ca.pem);
    let addr = raw_tls_upstream(&ca, &["127.0.0.1"], HEAD, b"once", TlsEnd::CloseNotify).await;
    let gw = gateway_at(format!("https://{addr}"), &format!("ca = {ca_file:?}")).await;
    for n in 0..4 {
        let resp = gw.client.get(gw.url("/again")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "request {n}");
        assert_eq!(resp.text().await.unwrap(), "once", "request {n}");
        // Time for the close to arrive, or not: both orders must work.
        if n % 2 == 1 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
