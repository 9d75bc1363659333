//! The client connection's own timeouts: the header read timeout (HTTP/1.1), which also
//! bounds the wait between keep-alive requests, and what it does not apply to.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A gateway with a 1 s header read timeout in front of a recording upstream.
async fn one_second_heads() -> (Recorder, TestGateway) {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .extra("[limits]\nheader_read_timeout = \"1s\"\n")
        .start()
        .await;
    (rec, gw)
}

// A client that keeps sending its head a field at a time, never finishing it, is cut
// off at the header read timeout: bytes arriving do not extend it.
#[tokio::test]
async fn a_dripped_head_is_cut_at_the_header_read_timeout() {
    let (rec, gw) = one_second_heads().await;
    let tls = gw.tls_connect(b"http/1.1").await;
    let (mut read, mut write) = tokio::io::split(tls);
    let started = Instant::now();
    let drip = async {
        write.write_all(b"GET /drip HTTP/1.1\r\nHost: localhost\r\n").await?;
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            write.write_all(format!("X-Drip-{i}: v\r\n").as_bytes()).await?;
            write.flush().await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        // An answer (a 408) may come before the close; the close is what counts.
        while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        () = closed => {}
        r = drip => panic!("the head was dripped for 10 s without the connection closing: {r:?}"),
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed before the timeout: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(4), "held open: {elapsed:?}");
    assert!(rec.requests().is_empty());
}

// A keep-alive HTTP/1.1 connection waiting for its next request is closed at the header
// read timeout, well before the idle timeout (60 s by default).
#[tokio::test]
async fn a_keep_alive_wait_ends_at_the_header_read_timeout() {
    let (_rec, gw) = one_second_heads().await;
    let started = Instant::now();
    let resp = gw.raw("GET /keep HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let elapsed = started.elapsed();
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed before the timeout: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(4), "held open: {elapsed:?}");
}

// HTTP/2 has no header read timeout: a connection with no stream open for longer than
// it still serves the next request (the idle timeout is what ends it).
#[tokio::test]
async fn an_http2_connection_outlives_the_header_read_timeout() {
    let (rec, gw) = one_second_heads().await;
    let tls = gw.tls_connect(b"h2").await;
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let get = || Request::get(gw.url("/h2")).body(Empty::<Bytes>::new()).unwrap();
    assert_eq!(send.send_request(get()).await.unwrap().status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!conn.is_finished(), "the HTTP/2 connection was closed");
    assert_eq!(send.send_request(get()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(rec.requests().len(), 2);
}
