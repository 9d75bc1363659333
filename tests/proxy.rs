//! Whole-system tests of the foundation: TLS, routing by policy, normalization, header
//! hygiene, limits, upstream failures and start-up errors.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{closed_port, start_shop, Recorder, Setup, OPEN_POLICY};
use reqwest::{StatusCode, Version};
use serde_json::Value;

async fn json(resp: reqwest::Response) -> Value {
    resp.json().await.unwrap()
}

fn shipped_policies() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

// A public route of the shop answers through TLS over HTTP/1.1 and HTTP/2.
#[tokio::test]
async fn public_route_over_h1_and_h2() {
    let shop = start_shop().await;
    let mut setup = Setup::new(&[("shop", format!("http://{shop}"))], "");
    setup.policy_dir = Some(shipped_policies());
    let gw = setup.start().await;

    let h2_client = common::client_builder(&gw.ca_pem, gw.addr).build().unwrap();
    let h2 = h2_client.get(gw.url("/api/products")).send().await.unwrap();
    assert_eq!(h2.version(), Version::HTTP_2);
    assert_eq!(h2.status(), StatusCode::OK);
    assert_eq!(h2.headers()["strict-transport-security"], "max-age=31536000");
    assert_eq!(h2.headers()["x-content-type-options"], "nosniff");
    assert_eq!(h2.headers()["x-frame-options"], "DENY");
    let products = json(h2).await;
    assert!(products.as_array().unwrap().len() >= 12);

    let h1 = gw.client.get(gw.url("/api/products/3")).send().await.unwrap();
    assert_eq!(h1.version(), Version::HTTP_11);
    assert_eq!(h1.status(), StatusCode::OK);
    assert_eq!(json(h1).await["id"], 3);
}

// Deny by default: a path no route matches is 404 with a JSON error and a request id.
#[tokio::test]
async fn unknown_route_is_404() {
    let shop = start_shop().await;
    let mut setup = Setup::new(&[("shop", format!("http://{shop}"))], "");
    setup.policy_dir = Some(shipped_policies());
    let gw = setup.start().await;
    for path in ["/api/nothing", "/", "/api/products/3/secret"] {
        let resp = gw.client.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let body = json(resp).await;
        assert_eq!(body["error"], "not_found");
        assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    }
    // A method the route does not list is not routed either.
    let resp = gw.client.delete(gw.url("/api/orders")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

// A route with roles is 401 with a Bearer challenge, and the upstream sees nothing.
#[tokio::test]
async fn role_route_needs_token() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let resp = gw.client.get(gw.url("/api/orders")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the open route forwards");
    let before = rec.requests().len();

    let shop = start_shop().await;
    let mut setup = Setup::new(&[("shop", format!("http://{shop}"))], "");
    setup.policy_dir = Some(shipped_policies());
    let gw = setup.start().await;
    for path in ["/api/orders", "/api/customers/u-1", "/api/staff"] {
        let resp = gw.client.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        assert_eq!(json(resp).await["error"], "unauthenticated");
    }
    assert_eq!(rec.requests().len(), before);
}

// Every ambiguous target is refused with 400 (CONNECT with 405) and never forwarded,
// even under a policy that forwards every path.
#[tokio::test]
async fn ambiguous_targets_refused_and_not_forwarded() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let targets = [
        "/a/../b",
        "/a/./b",
        "/a/..",
        "/a/%2e%2e/b",
        "/a/%2E%2e/b",
        "/a/.%2E/b",
        "/a/%2e/b",
        "/a/..;/b",
        "/a%2fb",
        "/a%2Fb",
        "/a%5cb",
        "/a%5Cb",
        "/a\\b",
        "/a%00b",
        "/a%0d%0ab",
        "/a//b",
        "//a",
        "/a/%ff",
        "/a/%c3",
        "/a%zz",
        "/a%2",
        "http://evil.example/a",
        "*",
    ];
    for t in targets {
        let resp = gw
            .raw(&format!(
                "GET {t} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(resp.status, 400, "{t}: {}", resp.head);
        if resp.body.contains('{') {
            assert_eq!(resp.json()["error"], "bad_request", "{t}");
        }
    }
    let resp = gw
        .raw("CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(resp.status, 405, "{}", resp.head);
    assert!(rec.requests().is_empty(), "forwarded: {:?}", rec.requests());

    // The same gateway forwards a clean path, exactly as judged.
    let resp = gw
        .raw("GET /a/%62/c%3fd?q=%2e%2e HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    let seen = rec.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/a/b/c%3Fd?q=%2e%2e");
}

// Absolute-form naming our own host is fine; naming another is refused.
#[tokio::test]
async fn absolute_form_must_name_host() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let ok = gw
        .raw("GET https://localhost/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(ok.status, 200, "{}", ok.head);
    let bad = gw
        .raw("GET https://internal.example/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(bad.status, 400, "{}", bad.head);
    assert_eq!(rec.requests().len(), 1);
}

// Spoofed identity headers, Authorization, method overrides, forwarding claims and
// hop-by-hop headers never reach the upstream; the gateway's own headers do.
#[tokio::test]
async fn header_hygiene() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let request = "GET /headers HTTP/1.1\r\n\
        Host: localhost\r\n\
        X-Auth-User: u-admin\r\n\
        x-auth-roles: admin\r\n\
        X_Auth_Email: boss@example.com\r\n\
        x_auth-user: u-admin\r\n\
        Proxy-Authorization: Basic eDp5\r\n\
        X-HTTP-Method-Override: DELETE\r\n\
        X-Method-Override: DELETE\r\n\
        X-HTTP-Method: DELETE\r\n\
        X-Forwarded-For: 6.6.6.6\r\n\
        X-Forwarded-Host: evil.example\r\n\
        X-Request-Id: chosen-by-client\r\n\
        Forwarded: for=6.6.6.6\r\n\
        Connection: close, X-Secret-Hop\r\n\
        X-Secret-Hop: 1\r\n\
        Keep-Alive: timeout=99\r\n\
        TE: trailers\r\n\
        Accept: application/json\r\n\r\n";
    let resp = gw.raw(request).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    let seen = rec.requests();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    for name in h.keys() {
        let n = name.as_str().to_ascii_lowercase().replace('_', "-");
        assert!(!n.starts_with("x-auth-"), "identity header {name} reached the upstream");
    }
    for gone in [
        "authorization",
        "proxy-authorization",
        "x-http-method-override",
        "x-method-override",
        "x-http-method",
        "forwarded",
        "x-secret-hop",
        "keep-alive",
        "te",
    ] {
        assert!(!h.contains_key(gone), "{gone} reached the upstream");
    }
    assert_eq!(h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), ["127.0.0.1"]);
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "localhost");
    // The upstream is addressed by its own authority, once.
    let authority = rec.url().trim_start_matches("http://").to_owned();
    assert_eq!(h.get_all("host").iter().collect::<Vec<_>>(), [authority.as_str()]);
    assert_ne!(h["x-request-id"], "chosen-by-client");
    assert_eq!(h["accept"], "application/json");
    // The upstream's hop-by-hop headers do not reach the client either.
    assert!(
        !resp.head.to_ascii_lowercase().contains("keep-alive: timeout=5"),
        "{}",
        resp.head
    );
    assert!(resp.head.to_ascii_lowercase().contains("x-upstream: recorder"));
}

// The request id the upstream receives is the one the client's response names, and
// each request gets its own.
#[tokio::test]
async fn request_id_matches() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let first = gw.client.get(gw.url("/one")).send().await.unwrap();
    let first_id = first.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(rec.requests()[0].headers["x-request-id"], first_id.as_str());

    let refused = gw.client.get(gw.url("/a//b")).send().await.unwrap();
    let header_id = refused.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = json(refused).await;
    assert_eq!(body["request_id"], header_id.as_str());
    assert_ne!(header_id, first_id);
}

// A body over max_body is 413 with JSON, whether announced by Content-Length or streamed.
#[tokio::test]
async fn body_limit_413() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .extra("[limits]\nmax_body = \"1KiB\"\n")
        .start()
        .await;
    let resp = gw
        .client
        .post(gw.url("/upload"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(resp).await["error"], "payload_too_large");
    assert!(rec.requests().is_empty(), "an announced oversized body was forwarded");

    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|_| Ok(vec![b'y'; 512])).collect();
    let stream = futures_util::stream::iter(chunks);
    let resp = gw
        .client
        .post(gw.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let resp = gw
        .client
        .post(gw.url("/upload"))
        .body(vec![b'z'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let last = rec.requests().pop().unwrap();
    assert_eq!(last.body.len(), 1000);
}

/// OPEN_POLICY with its catch-all moved under `prefix`, plus a public route `/dead` to
/// the upstream named `dead`.
fn with_dead_route(prefix: &str) -> String {
    format!(
        "{OPEN_POLICY}\n[[route]]\nname = \"dead\"\nmethods = [\"GET\"]\npath = \"/dead\"\npublic = true\nupstream = \"dead\"\n"
    )
    .replace("path = \"/{*rest}\"", &format!("path = \"{prefix}/{{*rest}}\""))
}

// An unreachable upstream is 502 and a slow one 504, both JSON with nothing internal.
#[tokio::test]
async fn upstream_failures() {
    let rec = Recorder::start().await;
    let dead = closed_port().await;
    let policy = with_dead_route("/slow");
    let gw = Setup::new(&[("rec", rec.url()), ("dead", format!("http://{dead}"))], &policy)
        .extra("[limits]\nupstream_timeout = \"300ms\"\n")
        .start()
        .await;
    let resp = gw.client.get(gw.url("/dead")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains(&dead.port().to_string()) && !text.contains("127.0.0.1"),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"], "bad_gateway");

    let started = std::time::Instant::now();
    let resp = gw.client.get(gw.url("/slow/x")).send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(json(resp).await["error"], "gateway_timeout");
    // The worker's coarse clock keeps the timeout: never early, a tick or so late.
    assert!(
        waited >= Duration::from_millis(300),
        "504 before the timeout: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "504 long after the timeout: {waited:?}"
    );
}

/// A plain answer: `ok`, framed by its length.
const OK_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// A minimal HTTP/1.1 upstream that answers every request head with `answer` (a request
/// body, if any, is read as part of the next head and ignored) and counts connections
/// and requests; with `one_per_connection` it closes each connection after one answer,
/// without announcing it, as an upstream does when a keep-alive connection times out.
async fn counting_upstream(
    one_per_connection: bool,
    answer: &'static [u8],
) -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    r.fetch_add(1, Ordering::SeqCst);
                    if stream.write_all(answer).await.is_err() || one_per_connection {
                        return;
                    }
                }
            });
        }
    });
    (addr, connections, requests)
}

// Upstream connections are kept alive and reused: requests one after another share one.
#[tokio::test]
async fn upstream_connection_reused() {
    let (addr, connections, requests) = counting_upstream(false, OK_ANSWER).await;
    let gw = Setup::new(&[("rec", format!("http://{addr}"))], OPEN_POLICY)
        .start()
        .await;
    for i in 0..5 {
        let resp = gw.client.get(gw.url(&format!("/r/{i}"))).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.text().await.unwrap(), "ok");
    }
    assert_eq!(requests.load(Ordering::SeqCst), 5);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

// The upstream's hop-by-hop fields (RFC 9110 §7.6.1) and those its `Connection` names
// never reach the client, in any case, on either path upstream: in-task (a GET) and
// hyper's client (a request with a body). The rest of the head arrives, and the
// connection, kept alive, serves both.
#[tokio::test]
async fn upstream_hop_by_hop_fields_stay_behind() {
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nX-Secret: s\r\nConnection: X-Secret, keep-alive\r\n\
        Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Kept: 1\r\nConnection: x-other\r\n\
        X-Other: o\r\ncontent-length: 2\r\n\r\nok";
    let (addr, connections, requests) = counting_upstream(false, ANSWER).await;
    let gw = Setup::new(&[("rec", format!("http://{addr}"))], OPEN_POLICY)
        .start()
        .await;
    let get = gw.client.get(gw.url("/r/get"));
    let post = gw.client.post(gw.url("/r/post")).body("{}");
    for request in [get, post] {
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let headers = resp.headers().clone();
        assert_eq!(resp.text().await.unwrap(), "ok");
        assert_eq!(headers.get("x-kept").unwrap(), "1");
        for gone in ["x-secret", "x-other", "connection", "keep-alive", "proxy-connection"] {
            assert!(headers.get(gone).is_none(), "{gone} reached the client: {headers:?}");
        }
    }
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

// An upstream that closes idle connections: every request still succeeds, on a fresh
// connection, and none reaches the upstream twice.
#[tokio::test]
async fn upstream_closing_idle_connections() {
    let (addr, connections, requests) = counting_upstream(true, OK_ANSWER).await;
    let gw = Setup::new(&[("rec", format!("http://{addr}"))], OPEN_POLICY)
        .start()
        .await;
    for i in 0..5 {
        let resp = gw.client.get(gw.url(&format!("/r/{i}"))).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "request {i}");
        assert_eq!(resp.text().await.unwrap(), "ok");
    }
    assert_eq!(requests.load(Ordering::SeqCst), 5);
    assert_eq!(connections.load(Ordering::SeqCst), 5);
}

// GET /metrics (from loopback) counts requests by route and status, auth events,
// upstream errors and the audit queue's waits and drops, in the Prometheus text format.
#[tokio::test]
async fn metrics_count_what_happened() {
    let rec = Recorder::start().await;
    let dead = closed_port().await;
    let policy = with_dead_route("/x");
    let gw = Setup::new(&[("rec", rec.url()), ("dead", format!("http://{dead}"))], &policy)
        .start()
        .await;
    for _ in 0..3 {
        let resp = gw.client.get(gw.url("/x/anything")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = gw.client.get(gw.url("/dead")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let (status, _) = gw
        .post(
            "/auth/login",
            serde_json::json!({"email": "nobody@example.com", "password": "Wrong!Passw0rd"}),
        )
        .await;
    assert_eq!(status, 401);

    let resp = gw.client.get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.unwrap();
    for line in [
        "portcullis_requests_total{route=\"everything\",status=\"200\"} 3",
        "portcullis_requests_total{route=\"dead\",status=\"502\"} 1",
        "portcullis_requests_total{route=\"(auth)\",status=\"401\"} 1",
        "portcullis_request_duration_seconds_count{route=\"everything\"} 3",
        "portcullis_auth_events_total{event=\"login_failure\"} 1",
        "portcullis_upstream_errors_total{upstream=\"dead\",kind=\"unreachable\"} 1",
        // The audit queue kept up: nothing waited, nothing dropped, the writer is well.
        "portcullis_audit_waits_total 0",
        "portcullis_audit_dropped_total 0",
        "portcullis_audit_writer_failing 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("portcullis_request_duration_seconds_bucket{route=\"everything\",le=\"+Inf\"} 3"));
}

// Shutdown lets an in-flight request finish, then stops accepting.
#[tokio::test]
async fn graceful_shutdown_finishes_in_flight() {
    let rec = Recorder::start().await;
    let mut gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let client = gw.client.clone();
    let url = gw.url("/slow/finish-me");
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    // Wait until the upstream has the request, then shut down.
    for _ in 0..200 {
        if !rec.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rec.requests().len(), 1);
    gw.shutdown().await;
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        tokio::net::TcpStream::connect(gw.addr).await.is_err(),
        "still accepting"
    );
}

// A client that never finishes its headers is disconnected by the header read timeout.
#[tokio::test]
async fn slow_headers_cut_off() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .extra("[limits]\nheader_read_timeout = \"1s\"\n")
        .start()
        .await;
    let started = std::time::Instant::now();
    let resp = gw.raw("GET /never-finished HTTP/1.1\r\nHost: localhost\r\n").await;
    assert!(started.elapsed() < Duration::from_secs(4), "connection held open");
    assert!(resp.status == 0 || resp.status == 408, "{}", resp.head);
    assert!(rec.requests().is_empty());
}

// Headers beyond the configured count are refused before reaching the upstream.
#[tokio::test]
async fn too_many_headers_refused() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .extra("[limits]\nmax_headers = 20\n")
        .start()
        .await;
    let many: String = (0..40).map(|i| format!("X-Filler-{i}: v\r\n")).collect();
    let resp = gw
        .raw(&format!(
            "GET /x HTTP/1.1\r\nHost: localhost\r\n{many}Connection: close\r\n\r\n"
        ))
        .await;
    assert!(resp.status == 431 || resp.status == 400, "{}", resp.head);
    assert!(rec.requests().is_empty());
}

// The demo shop works through the gateway with the shipped policy: a purchase through a
// public route is impossible, browsing is possible.
#[tokio::test]
async fn shop_through_gateway() {
    let shop = start_shop().await;
    let mut setup = Setup::new(&[("shop", format!("http://{shop}"))], "");
    setup.policy_dir = Some(shipped_policies());
    let gw = setup.start().await;
    let resp = gw
        .client
        .post(gw.url("/api/customers/u-1/orders"))
        .json(&serde_json::json!({"product_id": 1, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let product = json(gw.client.get(gw.url("/api/products/1")).send().await.unwrap()).await;
    assert_eq!(product["stock"], 24, "the refused purchase took stock");
}

// A keep-alive connection with no request in flight is closed after the idle timeout
// (the header read timeout is set far longer, so only the idle watchdog can close it).
#[tokio::test]
async fn idle_connection_closed() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .extra("[limits]\nidle_timeout = \"1s\"\nheader_read_timeout = \"30s\"\n")
        .start()
        .await;
    let started = std::time::Instant::now();
    let resp = gw.raw("GET /keep HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let elapsed = started.elapsed();
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed before the idle timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(4500),
        "idle connection held open: {elapsed:?}"
    );
}

// An upstream with a path of its own receives every request under it, the query kept; a
// target the gateway made canonical arrives canonical under it too.
#[tokio::test]
async fn upstream_path_prefix_is_kept() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", format!("{}/base", rec.url()))], OPEN_POLICY)
        .start()
        .await;
    for (sent, received) in [("/items/7?q=1", "/base/items/7?q=1"), ("/items/%7e", "/base/items/~")] {
        let resp = gw.client.get(gw.url(sent)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{sent}");
        assert_eq!(rec.requests().last().unwrap().target, received, "{sent}");
    }
}
