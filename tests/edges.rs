//! The connection and HTTP edges: body deadlines, client faults, idle HTTP/2, early
//! answers to uploads, panics, the upstream connection cap, Host rules and ALPN.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn body_limits() -> &'static str {
    "[limits]\nbody_read_timeout = \"1s\"\nrequest_timeout = \"3s\"\n"
}

// A body that stops arriving on /auth/* is answered 408 within the body read timeout.
#[tokio::test]
async fn stalled_auth_body_gets_408() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .extra(body_limits())
        .start()
        .await;
    let started = Instant::now();
    let resp = gw
        .raw("POST /auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":")
        .await;
    assert_eq!(resp.status, 408, "{}", resp.head);
    assert_eq!(resp.json()["error"], "request_timeout", "{}", resp.body);
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

// A body that trickles in forever is cut off by the overall request deadline.
#[tokio::test]
async fn trickled_auth_body_hits_request_deadline() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .extra("[limits]\nbody_read_timeout = \"1s\"\nrequest_timeout = \"2s\"\n")
        .start()
        .await;
    let started = Instant::now();
    // One byte every 300 ms: never a gap of a second, but never done.
    let text = trickle(
        &gw,
        "POST /auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000\r\n\r\n",
        10000,
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
}

// A stalled body on a proxied route is the client's fault: 408, not 504, and no
// upstream error is counted or audited.
#[tokio::test]
async fn stalled_proxied_body_gets_408() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .extra("[limits]\nbody_read_timeout = \"1s\"\nrequest_timeout = \"10s\"\nupstream_timeout = \"2s\"\n")
        .start()
        .await;
    let resp = gw
        .raw("POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nabc")
        .await;
    assert_eq!(resp.status, 408, "{}", resp.head);
    let metrics = gw.metrics().await;
    assert!(!metrics.contains("portcullis_upstream_errors_total{"), "{metrics}");
    assert!(gw.audit_events("upstream_error").await.is_empty());
}

/// Sends `head`, then one byte every 300 ms (at most `bytes`), and returns what the
/// gateway answered (empty if nothing came within 40 rounds).
async fn trickle(gw: &TestGateway, head: &str, bytes: usize) -> String {
    let mut tls = gw.tls_connect(b"http/1.1").await;
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut sent = 0;
    for _ in 0..40 {
        if sent < bytes {
            if tls.write_all(b" ").await.is_err() {
                break;
            }
            sent += 1;
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(300), tls.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

// While the gateway waits on a client still sending a proxied body, the upstream's clock
// does not run: a slow but steady upload outlasting the upstream timeout is forwarded,
// and one that never ends is the client's fault (408), not an upstream timeout.
#[tokio::test]
async fn trickled_proxied_body_is_not_an_upstream_timeout() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .extra("[limits]\nbody_read_timeout = \"2s\"\nrequest_timeout = \"4s\"\nupstream_timeout = \"1500ms\"\n")
        .start()
        .await;
    let slow = "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8\r\n\r\n";
    let text = trickle(&gw, slow, 8).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(rec.requests().len(), 1);
    let endless = "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000\r\n\r\n";
    let text = trickle(&gw, endless, 10000).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let metrics = gw.metrics().await;
    assert!(!metrics.contains("portcullis_upstream_errors_total{"), "{metrics}");
    assert!(gw.audit_events("upstream_error").await.is_empty());
}

// A malformed chunked body from the client is a 400, not an upstream failure.
#[tokio::test]
async fn malformed_chunked_body_is_400() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let resp = gw
        .raw("POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nbad\r\n0\r\n\r\n")
        .await;
    assert_eq!(resp.status, 400, "{}", resp.head);
    assert_eq!(resp.json()["error"], "bad_request", "{}", resp.body);
    let metrics = gw.metrics().await;
    assert!(!metrics.contains("portcullis_upstream_errors_total{"), "{metrics}");
    assert!(gw.audit_events("upstream_error").await.is_empty());
}

// Shutdown with a client holding a request open finishes within the drain deadline,
// and what the audit queue holds is written.
#[tokio::test]
async fn shutdown_drains_within_deadline() {
    let rec = Recorder::start().await;
    let mut gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .server("drain_timeout = \"1s\"")
        .extra("[limits]\nbody_read_timeout = \"60s\"\nrequest_timeout = \"120s\"\n")
        .start()
        .await;
    let mut tls = gw.tls_connect(b"http/1.1").await;
    tls.write_all(b"POST /auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    // A request that is audited, so the queue has something to flush.
    let _ = gw.client.get(gw.url("/nothing/here/%2e%2e/x")).send().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let done = tokio::time::timeout(Duration::from_secs(10), gw.shutdown()).await;
    assert!(done.is_ok(), "shutdown still waiting after 10 s");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the stalled connection is still open");
    drop(tls);
}

/// An HTTP/2 connection to the gateway over TLS with ALPN h2.
async fn h2_connect(
    gw: &TestGateway,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tls = gw.tls_connect(b"h2").await;
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    (send, tokio::spawn(conn))
}

/// Sends a GET for each path at once, as streams of one HTTP/2 connection; the statuses
/// in the order of `paths`.
async fn h2_get_concurrently(
    send: &hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    gw: &TestGateway,
    paths: impl IntoIterator<Item = String>,
) -> Vec<u16> {
    let tasks: Vec<_> = paths
        .into_iter()
        .map(|path| {
            let mut send = send.clone();
            let url = gw.url(&path);
            tokio::spawn(async move {
                send.ready().await.unwrap();
                let resp = send
                    .send_request(Request::get(url).body(Empty::new()).unwrap())
                    .await
                    .unwrap();
                resp.status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses
}

// An idle HTTP/2 connection is closed after the idle timeout, although the gateway's own
// keep-alive PINGs keep crossing it.
#[tokio::test]
async fn idle_h2_connection_closed() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .extra("[limits]\nidle_timeout = \"1s\"\n")
        .start()
        .await;
    let (mut send, conn) = h2_connect(&gw).await;
    let req = Request::get(gw.url("/ping")).body(Empty::new()).unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let _ = resp.into_body().collect().await;
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(8), conn).await;
    assert!(ended.is_ok(), "idle HTTP/2 connection still open after 8 s");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

// An HTTP/2 `:authority` with userinfo is refused (RFC 9113 §8.3.1).
#[tokio::test]
async fn h2_authority_with_userinfo_refused() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let (mut send, _conn) = h2_connect(&gw).await;
    let req = Request::get(format!("https://user:pw@evil.example:{}/x", gw.addr.port()))
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let req = Request::get(gw.url("/fine")).body(Empty::new()).unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), StatusCode::OK);
    assert_eq!(rec.requests().len(), 1);
}

// HTTP/1.1 without Host, or with two, is refused (RFC 9112 §3.2); HTTP/1.0 needs none.
#[tokio::test]
async fn http11_host_rules() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let none = gw.raw("GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(none.status, 400, "{}", none.head);
    assert_eq!(none.json()["error"], "bad_request");
    let two = gw
        .raw("GET /x HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(two.status, 400, "{}", two.head);
    let userinfo = gw
        .raw("GET /x HTTP/1.1\r\nHost: user@localhost\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(userinfo.status, 400, "{}", userinfo.head);
    assert!(rec.requests().is_empty(), "{:?}", rec.requests());
    let old = gw.raw("GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(old.status, 200, "{}", old.head);
}

/// The client preface of HTTP/2 and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

// The protocol ALPN chose is the one served: an HTTP/2 preface after ALPN http/1.1 is
// not served as HTTP/2, nor HTTP/1.1 after ALPN h2.
#[tokio::test]
async fn alpn_decides_the_protocol() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let reply = read_after(gw.tls_connect(b"http/1.1").await, H2_PREFACE).await;
    // An HTTP/2 server answers with its SETTINGS frame (type 4) first.
    assert!(
        !(reply.len() >= 9 && reply[3] == 4),
        "served as HTTP/2 after ALPN http/1.1: {reply:?}"
    );
    let reply = read_after(
        gw.tls_connect(b"h2").await,
        b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        !reply.starts_with(b"HTTP/1.1"),
        "served as HTTP/1.1 after ALPN h2: {}",
        String::from_utf8_lossy(&reply)
    );
    // Without ALPN, HTTP/1.1 is served.
    let reply = read_after(
        gw.tls_connect(b"").await,
        b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(rec.requests().len() == 1);
}

/// Keeps `n` threads spinning until dropped.
struct Spinners(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl Spinners {
    fn start(n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                })
            })
            .collect();
        Self(stop, threads)
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

// A refused upload reads as a 413, not a reset, even with both cores busy: a 64 MiB
// body to a proxied route and a 1 MB password to /auth/login, several times each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_413_is_readable() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let client = client_builder(&gw.ca_pem, gw.addr)
        .http1_only()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let big = Bytes::from(vec![b'x'; 64 << 20]);
    let password = "p".repeat(1 << 20);
    let login =
        Bytes::from(serde_json::to_vec(&serde_json::json!({"email": "a@example.com", "password": password})).unwrap());
    let _busy = Spinners::start(2);
    for round in 0..4 {
        // HTTP/1.1 in even rounds, HTTP/2 in odd ones.
        let client = if round % 2 == 0 { &client } else { &gw.client };
        let resp = client.post(gw.url("/upload")).body(big.clone()).send().await;
        let resp = resp.unwrap_or_else(|e| panic!("round {round}: upload: {e:?}"));
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "round {round}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "payload_too_large");
        let resp = client
            .post(gw.url("/auth/login"))
            .header("content-type", "application/json")
            .body(login.clone())
            .send()
            .await;
        let resp = resp.unwrap_or_else(|e| panic!("round {round}: login: {e:?}"));
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "round {round}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "payload_too_large");
    }
    assert!(rec.requests().is_empty());
}

// Many concurrent slow requests through one connection never make the gateway hold more
// upstream connections than the cap, and all of them are answered.
#[tokio::test]
async fn upstream_connections_capped() {
    let up = Counter::start(Duration::from_millis(200)).await;
    let gw = Setup::new(&[("rec", up.url())], OPEN_POLICY)
        .server("workers = 1")
        .extra("[limits]\nupstream_max_connections = 3\nh2_max_streams = 200\n")
        .start()
        .await;
    let (send, _conn) = h2_connect(&gw).await;
    let statuses = h2_get_concurrently(&send, &gw, (0..30).map(|i| format!("/slow/{i}"))).await;
    assert_eq!(statuses, [200; 30]);
    let max = up.max_open.load(Ordering::SeqCst);
    assert!((1..=3).contains(&max), "{max} upstream connections at once");
}

// Idle upstream connections are closed on a timer after the upstream idle timeout, with
// no further request needed to notice them.
#[tokio::test]
async fn idle_upstream_connections_reaped() {
    let up = Counter::start(Duration::ZERO).await;
    let gw = Setup::new(&[("rec", up.url())], OPEN_POLICY)
        .extra("[limits]\nupstream_idle_timeout = \"1s\"\n")
        .start()
        .await;
    let resp = gw.client.get(gw.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(up.open.load(Ordering::SeqCst), 1);
    let started = Instant::now();
    while up.open.load(Ordering::SeqCst) > 0 && started.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.open.load(Ordering::SeqCst), 0, "idle upstream connection kept");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

/// A handler that panics on `/panic` and answers 204 otherwise.
struct Panicky;

impl portcullis::listener::Handler for Panicky {
    async fn handle(
        &self,
        req: Request<portcullis::upstream::request::RequestBody>,
        _conn: portcullis::listener::ConnInfo,
    ) -> (
        http::Response<portcullis::upstream::body::GatewayBody>,
        portcullis::listener::stamp::Stamp,
    ) {
        if req.uri().path() == "/panic" {
            panic!("handler bug");
        }
        let mut resp = http::Response::new(portcullis::upstream::body::GatewayBody::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        (resp, Default::default())
    }
}

// A panic in a handler is answered 500 with the JSON error body, and the connection
// serves the next request.
#[tokio::test]
async fn handler_panic_is_500() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let workers = Arc::new(portcullis::workers::Workers::start(1, "test-panic").unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(portcullis::listener::Lifecycle::Serving);
    let server = tokio::spawn(portcullis::listener::serve(
        listener,
        None,
        None,
        Arc::new(Panicky),
        portcullis::config::Limits::default(),
        workers,
        stopped,
    ));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = || {
        Request::get("/panic")
            .header("host", "x")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let resp = send.send_request(req()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "internal_error");
    assert!(!String::from_utf8_lossy(&body).contains("handler bug"));
    send.ready().await.unwrap();
    let ok = Request::get("/ok")
        .header("host", "x")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(ok).await.unwrap().status(), StatusCode::NO_CONTENT);
    let _ = stop.send(portcullis::listener::Lifecycle::Closing);
    drop(send);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}

/// An upstream whose responses stream four chunks, `gap` apart.
async fn dribbling_upstream(gap: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| async move {
                    let chunks = futures_util::stream::unfold(0u8, move |i| async move {
                        if i == 4 {
                            return None;
                        }
                        tokio::time::sleep(gap).await;
                        let frame = hyper::body::Frame::data(Bytes::from_static(b"chunk "));
                        Some((Ok::<_, std::convert::Infallible>(frame), i + 1))
                    });
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::StreamBody::new(chunks)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

// A response still streaming to the client keeps its request in flight: the idle
// watchdog leaves the connection open, and it serves the next request.
#[tokio::test]
async fn streaming_response_is_not_idle() {
    let up = dribbling_upstream(Duration::from_millis(700)).await;
    let gw = Setup::new(&[("rec", up)], OPEN_POLICY)
        .extra("[limits]\nidle_timeout = \"1s\"\nheader_read_timeout = \"30s\"\n")
        .start()
        .await;
    let tls = gw.tls_connect(b"http/1.1").await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req = || {
        Request::get("/stream")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let resp = send.send_request(req()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers().get("connection"), None);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"chunk chunk chunk chunk ");
    send.ready().await.unwrap();
    let resp = send.send_request(req()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

// HTTP/2 requests are held to the header count too, and the 431 carries the JSON body
// (HTTP/1.1's is hyper's own, with an empty body).
#[tokio::test]
async fn h2_header_count_limited() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .extra("[limits]\nmax_headers = 20\n")
        .start()
        .await;
    let (mut send, _conn) = h2_connect(&gw).await;
    let mut req = Request::get(gw.url("/many")).body(Empty::new()).unwrap();
    for i in 0..40 {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).unwrap(),
            "v".parse().unwrap(),
        );
    }
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "headers_too_large");
    assert!(rec.requests().is_empty());
    let req = Request::get(gw.url("/few")).body(Empty::new()).unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), StatusCode::OK);
}

// A request waiting for a pooled connection waits within the upstream timeout: with one
// connection allowed and a slow upstream, the second of two requests gets 504.
#[tokio::test]
async fn pool_wait_has_a_deadline() {
    let up = Counter::start(Duration::from_millis(1000)).await;
    let gw = Setup::new(&[("rec", up.url())], OPEN_POLICY)
        .server("workers = 1")
        .extra("[limits]\nupstream_max_connections = 1\nupstream_timeout = \"1500ms\"\n")
        .start()
        .await;
    let (send, _conn) = h2_connect(&gw).await;
    let mut statuses = h2_get_concurrently(&send, &gw, (0..2).map(|i| format!("/wait/{i}"))).await;
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 504]);
    assert_eq!(up.max_open.load(Ordering::SeqCst), 1);
}
