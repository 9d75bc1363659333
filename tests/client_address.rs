//! The client's address behind load balancers: `[server] trusted_proxies` (the
//! right-most untrusted `X-Forwarded-For` address) and `proxy_protocol` (PROXY v1/v2 on
//! the TLS listener, from trusted peers only). The address found is the one rate limits,
//! lockout evidence, audit, `/metrics` access and the forwarded `X-Forwarded-For` use.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{read_after, RawResponse, Recorder, Setup, TestGateway, PASSWORD};
use portcullis::audit::EventKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Members' pages (customers only), a public route limited to 2 requests an hour per
/// client, and public pages under `/open/`; all to `rec`.
const POLICY: &str = r#"
upstream = "rec"

[[route]]
name = "members"
methods = ["GET"]
path = "/members/{id}"
roles = ["customer"]
owner = "id"

[[route]]
name = "limited"
methods = ["GET"]
path = "/limited"
public = true
rate_limit = "2/hour"

[[route]]
name = "open"
methods = ["GET", "POST"]
path = "/open/{*rest}"
public = true
"#;

fn policy() -> String {
    POLICY.to_owned()
}

async fn gateway(rec: &Recorder, server: &str) -> TestGateway {
    Setup::new(&[("rec", rec.url())], &policy())
        .server(server)
        .start()
        .await
}

/// `GET path` with these `X-Forwarded-For` headers (one header per entry): the status.
async fn get(gw: &TestGateway, path: &str, xff: &[&str]) -> u16 {
    let mut req = gw.client.get(gw.url(path));
    for v in xff {
        req = req.header("x-forwarded-for", *v);
    }
    req.send().await.unwrap().status().as_u16()
}

/// The `X-Forwarded-For` values the upstream received with its last request.
fn forwarded_for(rec: &Recorder) -> Vec<String> {
    let seen = rec.requests();
    let last = seen.last().expect("nothing forwarded");
    last.headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The `ip` of the audit records of `event`, oldest first, once there are `n`.
async fn audited_ips(gw: &TestGateway, event: EventKind, n: usize) -> Vec<String> {
    let found = gw.wait_for_events(event, n).await;
    found.into_iter().map(|r| r.event.ip.unwrap_or_default()).collect()
}

// From a trusted peer, the client its X-Forwarded-For names is what the upstream is
// told, what the audit records, and what the per-IP route limit counts: two clients
// behind the same proxy have a budget each.
#[tokio::test]
async fn trusted_proxy_names_the_client() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec, "trusted_proxies = [\"127.0.0.1/32\"]").await;

    assert_eq!(get(&gw, "/open/a", &["203.0.113.9"]).await, 200);
    assert_eq!(forwarded_for(&rec), ["203.0.113.9"]);

    assert_eq!(get(&gw, "/members/u-1", &["203.0.113.9"]).await, 401);
    assert_eq!(audited_ips(&gw, EventKind::AccessDenied, 1).await, ["203.0.113.9"]);

    for _ in 0..2 {
        assert_eq!(get(&gw, "/limited", &["203.0.113.9"]).await, 200);
    }
    assert_eq!(get(&gw, "/limited", &["203.0.113.9"]).await, 429);
    // Another client behind the same proxy has its own budget.
    assert_eq!(get(&gw, "/limited", &["203.0.113.10"]).await, 200);
    assert_eq!(forwarded_for(&rec), ["203.0.113.10"]);
    assert_eq!(audited_ips(&gw, EventKind::RateLimited, 1).await, ["203.0.113.9"]);
    // The proxy's own requests (no header) are the proxy's.
    assert_eq!(get(&gw, "/limited", &[]).await, 200);
    assert_eq!(forwarded_for(&rec), ["127.0.0.1"]);
}

// `1.2.3.4, 10.0.0.5`: with 10.0.0.0/8 trusted the client is 1.2.3.4 (10.0.0.5 is a
// hop); with only the local proxy trusted, 10.0.0.5 is the client and 1.2.3.4 its
// unverifiable claim.
#[tokio::test]
async fn chain_rightmost_untrusted() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec, "trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]").await;
    assert_eq!(get(&gw, "/open/a", &["1.2.3.4, 10.0.0.5"]).await, 200);
    assert_eq!(forwarded_for(&rec), ["1.2.3.4"]);
    // Several headers read as one list, in order.
    assert_eq!(get(&gw, "/open/a", &["1.2.3.4", "10.0.0.7, 10.0.0.5"]).await, 200);
    assert_eq!(forwarded_for(&rec), ["1.2.3.4"]);
    // Every hop trusted: the left-most.
    assert_eq!(get(&gw, "/open/a", &["10.9.9.9, 10.0.0.5"]).await, 200);
    assert_eq!(forwarded_for(&rec), ["10.9.9.9"]);
    // A hop that cannot be read: the peer itself (fail safe).
    assert_eq!(get(&gw, "/open/a", &["1.2.3.4, 10.0.0.5:8080"]).await, 200);
    assert_eq!(forwarded_for(&rec), ["127.0.0.1"]);

    let rec = Recorder::start().await;
    let gw = gateway(&rec, "trusted_proxies = [\"127.0.0.1/32\"]").await;
    assert_eq!(get(&gw, "/open/a", &["1.2.3.4, 10.0.0.5"]).await, 200);
    assert_eq!(forwarded_for(&rec), ["10.0.0.5"]);
}

// From a peer not in trusted_proxies (none configured, or other networks only), the
// header is ignored: the client is the peer, for the upstream, the audit and the limits.
#[tokio::test]
async fn untrusted_peer_header_ignored() {
    for server in ["", "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]"] {
        let rec = Recorder::start().await;
        let gw = gateway(&rec, server).await;
        assert_eq!(get(&gw, "/open/a", &["203.0.113.9"]).await, 200);
        assert_eq!(forwarded_for(&rec), ["127.0.0.1"], "{server}");
        assert_eq!(get(&gw, "/members/u-1", &["203.0.113.9"]).await, 401);
        assert_eq!(audited_ips(&gw, EventKind::AccessDenied, 1).await, ["127.0.0.1"]);
        for _ in 0..2 {
            assert_eq!(get(&gw, "/limited", &["203.0.113.9"]).await, 200);
        }
        // A different claimed client is the same peer: the same budget.
        assert_eq!(get(&gw, "/limited", &["203.0.113.10"]).await, 429, "{server}");
    }
}

// A client that writes its own X-Forwarded-For through a trusted proxy (which appends
// the address it saw) is still found: whatever it claimed stays to the left. Claiming
// loopback does not open `/metrics`, and neither does a local proxy: a client behind
// it is not local.
#[tokio::test]
async fn spoofing_through_a_trusted_proxy() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec, "trusted_proxies = [\"127.0.0.1/32\"]").await;
    assert_eq!(get(&gw, "/open/a", &["6.6.6.6, 198.51.100.4"]).await, 200);
    assert_eq!(forwarded_for(&rec), ["198.51.100.4"]);
    assert_eq!(get(&gw, "/open/a", &["6.6.6.6", "198.51.100.4"]).await, 200);
    assert_eq!(forwarded_for(&rec), ["198.51.100.4"]);
    assert_eq!(get(&gw, "/open/a", &["not an address, 198.51.100.4"]).await, 200);
    assert_eq!(forwarded_for(&rec), ["198.51.100.4"]);

    assert_eq!(get(&gw, "/metrics", &["127.0.0.1, 198.51.100.4"]).await, 403);
    assert_eq!(get(&gw, "/metrics", &["198.51.100.4"]).await, 403);
    // The scraper on the machine itself, without a proxy in between, still reads them.
    assert_eq!(get(&gw, "/metrics", &[]).await, 200);
}

// Login failures, the lockout they lead to, and the `/auth/` limiter all see the client
// a trusted proxy names, not the proxy.
#[tokio::test]
async fn lockout_evidence_and_auth_limit_carry_the_client() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], &policy())
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .extra("[rate_limit]\nauth_per_ip = \"7/hour\"\n")
        .start()
        .await;
    gw.add_user("ann@example.com", &["customer"]).await;
    let login = |xff: &'static str, email: &'static str, password: &'static str| {
        let req = gw
            .client
            .post(gw.url("/auth/login"))
            .header("x-forwarded-for", xff)
            .json(&serde_json::json!({ "email": email, "password": password }));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    for _ in 0..5 {
        assert_eq!(login("203.0.113.9", "ann@example.com", "wrong-password").await, 401);
    }
    assert_eq!(login("203.0.113.9", "ann@example.com", PASSWORD).await, 429);
    let failures = audited_ips(&gw, EventKind::LoginFailure, 5).await;
    assert_eq!(failures, vec!["203.0.113.9"; 5]);
    assert_eq!(audited_ips(&gw, EventKind::LoginLocked, 1).await, ["203.0.113.9"]);

    // Seven `/auth/` requests an hour per client: this client has one left, then is
    // refused whatever it asks; the next client, and the proxy itself, have their own.
    assert_eq!(login("203.0.113.9", "bob@example.com", "wrong-password").await, 401);
    assert_eq!(login("203.0.113.9", "bob@example.com", "wrong-password").await, 429);
    assert_eq!(login("203.0.113.10", "bob@example.com", "wrong-password").await, 401);
    let (status, _) = gw.login("bob@example.com", "wrong-password").await;
    assert_eq!(status, 401);
    let bob = audited_ips(&gw, EventKind::LoginFailure, 8).await;
    assert_eq!(bob[5..], ["203.0.113.9", "203.0.113.10", "127.0.0.1"]);
}

/// A gateway that reads PROXY headers from `trusted`, with a 1 s handshake deadline.
async fn proxy_gateway(rec: &Recorder, trusted: &str) -> TestGateway {
    Setup::new(&[("rec", rec.url())], &policy())
        .server(&format!("trusted_proxies = {trusted}\nproxy_protocol = true"))
        .extra("[limits]\ntls_handshake_timeout = \"1s\"\n")
        .start()
        .await
}

/// Writes `header`, then does the TLS handshake and one HTTP/1.1 request on the same
/// connection.
async fn through_header(gw: &TestGateway, header: &[u8], request: &str) -> RawResponse {
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    let tls = gw.tls_handshake(tcp, b"http/1.1").await.unwrap();
    RawResponse::parse(&read_after(tls, request.as_bytes()).await)
}

fn v2(command: ppp::v2::Command, source: &str) -> Vec<u8> {
    let source: SocketAddr = source.parse().unwrap();
    let destination: SocketAddr = if source.is_ipv4() { "127.0.0.1:443" } else { "[::1]:443" }
        .parse()
        .unwrap();
    let addresses = (source, destination);
    ppp::v2::Builder::with_addresses(ppp::v2::Version::Two | command, ppp::v2::Protocol::Stream, addresses)
        .build()
        .unwrap()
}

const GET_MEMBER: &str = "GET /members/u-1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

// PROXY v1 and v2 from a trusted peer: the header's source is the client in the audit
// and upstream; v2 LOCAL keeps the peer. XFF on such a connection is read only when the
// header's source is itself a trusted proxy.
#[tokio::test]
async fn proxy_protocol_v1_and_v2() {
    let rec = Recorder::start().await;
    let gw = proxy_gateway(&rec, "[\"127.0.0.1/32\", \"10.0.0.0/8\"]").await;

    let resp = through_header(&gw, b"PROXY TCP4 203.0.113.9 127.0.0.1 51234 443\r\n", GET_MEMBER).await;
    assert_eq!(resp.status, 401, "{}", resp.head);
    assert_eq!(audited_ips(&gw, EventKind::AccessDenied, 1).await, ["203.0.113.9"]);

    let resp = through_header(&gw, &v2(ppp::v2::Command::Proxy, "[2001:db8::7]:40000"), GET_MEMBER).await;
    assert_eq!(resp.status, 401, "{}", resp.head);
    assert_eq!(audited_ips(&gw, EventKind::AccessDenied, 2).await[1], "2001:db8::7");

    let resp = through_header(&gw, &v2(ppp::v2::Command::Proxy, "198.51.100.7:40000"), GET_MEMBER).await;
    assert_eq!(resp.status, 401, "{}", resp.head);
    assert_eq!(audited_ips(&gw, EventKind::AccessDenied, 3).await[2], "198.51.100.7");

    // The balancer's own health check.
    let resp = through_header(&gw, &v2(ppp::v2::Command::Local, "10.0.0.1:1"), GET_MEMBER).await;
    assert_eq!(resp.status, 401, "{}", resp.head);
    assert_eq!(audited_ips(&gw, EventKind::AccessDenied, 4).await[3], "127.0.0.1");

    // An untrusted client behind the balancer cannot name another with XFF...
    let get = |xff: &str| {
        format!("GET /open/a HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n")
    };
    let resp = through_header(&gw, b"PROXY TCP4 203.0.113.9 127.0.0.1 1 443\r\n", &get("6.6.6.6")).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(forwarded_for(&rec), ["203.0.113.9"]);
    // ...but an inner proxy the balancer names, itself trusted, can.
    let resp = through_header(
        &gw,
        b"PROXY TCP4 10.1.1.1 127.0.0.1 1 443\r\n",
        &get("6.6.6.6, 198.51.100.1"),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(forwarded_for(&rec), ["198.51.100.1"]);
}

/// Whether the gateway closed the connection without an HTTP answer: the TLS handshake
/// after `header` fails, or the connection ends with nothing read.
async fn refused(gw: &TestGateway, header: &[u8]) -> bool {
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let _ = tcp.write_all(header).await;
    match gw.tls_handshake(tcp, b"http/1.1").await {
        Err(_) => true,
        Ok(tls) => read_after(tls, GET_MEMBER.as_bytes()).await.is_empty(),
    }
}

// A PROXY header from a peer not in trusted_proxies is refused: the connection is
// closed, no request is answered, nothing reaches the upstream or the audit.
#[tokio::test]
async fn proxy_header_from_untrusted_peer_refused() {
    let rec = Recorder::start().await;
    let gw = proxy_gateway(&rec, "[\"10.0.0.0/8\"]").await;
    assert!(refused(&gw, b"PROXY TCP4 203.0.113.9 127.0.0.1 51234 443\r\n").await);
    assert!(refused(&gw, &v2(ppp::v2::Command::Proxy, "203.0.113.9:1")).await);
    // Nor does TLS without a header get through.
    assert!(refused(&gw, b"").await);
    assert!(rec.requests().is_empty());
    assert!(gw.audit_events(EventKind::AccessDenied).await.is_empty());
}

// From a trusted peer, a malformed header (or none: the ClientHello where the header
// should be) closes the connection, and so does one trickled in slower than the
// handshake deadline.
#[tokio::test]
async fn malformed_and_slow_headers_closed() {
    let rec = Recorder::start().await;
    let gw = proxy_gateway(&rec, "[\"127.0.0.1/32\"]").await;
    for bad in [
        &b"PROXY TCP4 203.0.113.9 127.0.0.1 51234\r\n"[..],
        b"PROXY TCP4 203.0.113.999 127.0.0.1 1 443\r\n",
        b"PROXY TCP4 203.0.113.9 127.0.0.1 1 443\n",
        b"PROXY TCP9 x\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"",
    ] {
        assert!(refused(&gw, bad).await, "{:?}", String::from_utf8_lossy(bad));
    }
    // A v2 header announcing more than the bound.
    let mut big = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    big.extend_from_slice(&4096u16.to_be_bytes());
    assert!(refused(&gw, &big).await);

    // Slowloris: one byte every 200 ms, 4 s for the whole header; the deadline is 1 s.
    let header = b"PROXY TCP4 203.0.113.9 127.0.0.1 51234 443\r\n";
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut read, mut write) = tcp.split();
    // Resolves only once the whole header went out; a refused write waits for the read.
    let trickle = async {
        for b in header.chunks(2) {
            if write.write_all(b).await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let mut buf = [0u8; 64];
    let closed = tokio::select! {
        r = read.read(&mut buf) => matches!(r, Ok(0) | Err(_)),
        () = trickle => false,
    };
    assert!(closed, "the connection outlived its header deadline");
    assert!(rec.requests().is_empty());

    // The same header sent whole is accepted.
    let resp = through_header(&gw, header, GET_MEMBER).await;
    assert_eq!(resp.status, 401, "{}", resp.head);
}
