//! The gateway's own HTTP/1.1 server over real TLS: plain requests served on it,
//! pipelined, with a request it hands to hyper in the middle of the connection; and a
//! drain that answers the request in flight with `connection: close` and closes the
//! connections that wait between requests.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Reads one response with a `content-length` body: its head (lower-cased) and body.
async fn response<R: tokio::io::AsyncRead + Unpin>(r: &mut BufReader<R>) -> (String, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "closed in the middle of a head: {head}");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; len];
    r.read_exact(&mut body).await.unwrap();
    (head, String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_across_the_hand_off_to_hyper() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let tls = gw.tls_connect(b"http/1.1").await;
    let mut tls = BufReader::new(tls);
    // Two requests the gateway's server takes, then one with a body (hyper's from there
    // on), then one more, all in one write.
    tls.get_mut()
        .write_all(
            b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n\
              DELETE /b?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n\
              POST /c HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nxyz\
              GET /d HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .await
        .unwrap();
    for target in ["/a", "/b?x=1", "/c", "/d"] {
        let (head, body) = response(&mut tls).await;
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{target}: {head}");
        assert!(
            head.contains("\r\ndate: ") && head.contains("\r\nx-request-id: "),
            "{target}: {head}"
        );
        assert!(
            !head.contains("keep-alive"),
            "the upstream's hop-by-hop field is dropped: {head}"
        );
        assert_eq!(body, format!("{{\"target\":{target:?}}}"));
    }
    let seen: Vec<_> = rec
        .requests()
        .into_iter()
        .map(|r| (r.method, r.target, r.body))
        .collect();
    assert_eq!(
        seen,
        [
            ("GET".to_owned(), "/a".to_owned(), bytes::Bytes::new()),
            ("DELETE".to_owned(), "/b?x=1".to_owned(), bytes::Bytes::new()),
            ("POST".to_owned(), "/c".to_owned(), bytes::Bytes::from_static(b"xyz")),
            ("GET".to_owned(), "/d".to_owned(), bytes::Bytes::new()),
        ]
    );
    // The connection is still open for more.
    tls.get_mut()
        .write_all(b"GET /e HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(response(&mut tls).await.1, "{\"target\":\"/e\"}");
}

#[tokio::test]
async fn a_drain_answers_the_request_in_flight_and_closes_the_idle_connection() {
    let rec = Recorder::start().await;
    let mut gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .server("drain_timeout = \"20s\"")
        .start()
        .await;
    // One connection waits between requests; the other has a request in flight (the
    // upstream answers `/slow` after 3 s).
    let mut idle = BufReader::new(gw.tls_connect(b"http/1.1").await);
    idle.get_mut()
        .write_all(b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    response(&mut idle).await;
    let mut busy = BufReader::new(gw.tls_connect(b"http/1.1").await);
    busy.get_mut()
        .write_all(b"GET /slow/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let drained = async {
        let mut rest = Vec::new();
        idle.read_to_end(&mut rest).await.unwrap();
        let idle_closed = started.elapsed();
        let (head, body) = response(&mut busy).await;
        let mut after = Vec::new();
        busy.read_to_end(&mut after).await.unwrap();
        (idle_closed, rest, head, body, after)
    };
    let ((idle_closed, rest, head, body, after), ()) = tokio::join!(drained, gw.shutdown());
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        idle_closed < Duration::from_secs(2),
        "the idle connection closed at the drain, not at its end: {idle_closed:?}"
    );
    assert!(
        head.starts_with("http/1.1 200 ok\r\n") && head.contains("\r\nconnection: close\r\n"),
        "{head}"
    );
    assert_eq!(body, "{\"target\":\"/slow/x\"}");
    assert!(after.is_empty());
}

#[tokio::test]
async fn both_servers_judge_a_head_alike() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    // Each head once on the gateway's own server (a keep-alive request) and once on
    // hyper's (`Connection: close` hands it over).
    let heads = [
        ("GET /x HTTP/1.1\r\nHost: localhost\r\n", 200),
        ("GET /x HTTP/1.1\r\n", 400),
        ("GET /x HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n", 400),
        ("GET /x HTTP/1.1\r\nHost: user@localhost\r\n", 400),
        ("GET /a/%2e%2e/x HTTP/1.1\r\nHost: localhost\r\n", 400),
        ("GET /a%2Fb HTTP/1.1\r\nHost: localhost\r\n", 400),
        ("DELETE /x?y=1 HTTP/1.1\r\nHost: localhost\r\n", 200),
        ("OPTIONS /x HTTP/1.1\r\nHost: localhost\r\n", 200),
    ];
    for (head, status) in heads {
        let mut own = BufReader::new(gw.tls_connect(b"http/1.1").await);
        own.get_mut().write_all(format!("{head}\r\n").as_bytes()).await.unwrap();
        let (own_head, own_body) = response(&mut own).await;
        let hyper = gw.raw(&format!("{head}Connection: close\r\n\r\n")).await;
        assert!(
            own_head.starts_with(&format!("http/1.1 {status} ")),
            "{head:?}: {own_head}"
        );
        assert_eq!(hyper.status, status, "{head:?}: {}", hyper.head);
        let error = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap_or_default()["error"].clone();
        assert_eq!(error(&own_body), error(&hyper.body), "{head:?}");
    }
}

#[tokio::test]
async fn a_head_leaves_nothing_behind_for_the_next_one() {
    // The maps that hold a request's and a response's fields are kept for the next
    // heads on the worker, in either role: what one request or response carried must
    // not reach the next, upstream or back to the client.
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let mut tls = BufReader::new(gw.tls_connect(b"http/1.1").await);
    tls.get_mut()
        .write_all(b"GET /a HTTP/1.1\r\nHost: localhost\r\nX-Secret-Note: first\r\nAccept: text/a\r\n\r\n")
        .await
        .unwrap();
    let (first, _) = response(&mut tls).await;
    for target in ["/b", "/c", "/d"] {
        tls.get_mut()
            .write_all(format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (head, body) = response(&mut tls).await;
        assert_eq!(body, format!("{{\"target\":{target:?}}}"));
        assert!(!head.contains("first") && !head.contains("text/a"), "{target}: {head}");
        for field in ["x-upstream: ", "content-type: ", "x-request-id: ", "date: "] {
            assert_eq!(
                head.matches(&format!("\r\n{field}")).count(),
                1,
                "{target}: {field} once: {head}"
            );
        }
    }
    assert_eq!(first.matches("\r\nx-upstream: ").count(), 1, "{first}");
    let seen = rec.requests();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0].headers.get("x-secret-note").unwrap(), "first");
    for later in &seen[1..] {
        assert!(
            later.headers.get("x-secret-note").is_none() && later.headers.get("accept").is_none(),
            "{}: {:?}",
            later.target,
            later.headers
        );
        assert_eq!(
            later.headers.get_all("x-forwarded-for").iter().count(),
            1,
            "{:?}",
            later.headers
        );
    }
}
