//! The gateway's own HTTP/1.1 server on bytes alone: which heads it takes and which it
//! hands to hyper (with the bytes untouched), the response heads it writes, and a
//! connection served over an in-memory pipe: pipelined requests, a hand-off mid-way,
//! a client leaving while its request is in flight, and a graceful close.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{Full, StreamBody};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::request::{parse, Parsed};
use super::response::{encode_head, Framing};
use super::{serve, Ended, Limits};
use crate::listener::stamp::Stamp;

const LIMITS: Limits = Limits {
    max_head: 8192,
    max_fields: 100,
};

fn parsed(raw: &[u8], limits: Limits) -> (Parsed, BytesMut) {
    let mut buf = BytesMut::from(raw);
    let p = parse(&mut buf, limits.max_head, limits.max_fields, &mut Vec::new());
    (p, buf)
}

#[test]
fn a_plain_get_is_taken_and_the_next_request_stays_in_the_buffer() {
    let raw = b"GET /a/b?c=d HTTP/1.1\r\nHost: shop\r\nX-Two: 1\r\nx-two: 2\r\nConnection: Keep-Alive\r\n\r\nGET /next";
    let (p, rest) = parsed(raw, LIMITS);
    let Parsed::Request(parts) = p else {
        panic!("not taken: {p:?}");
    };
    assert_eq!(parts.method, Method::GET);
    assert_eq!(parts.uri, "/a/b?c=d");
    assert_eq!(parts.version, http::Version::HTTP_11);
    assert_eq!(parts.headers["host"], "shop");
    let twos: Vec<_> = parts.headers.get_all("x-two").iter().collect();
    assert_eq!(twos, ["1", "2"], "duplicates kept, in order");
    assert_eq!(&rest[..], b"GET /next");
    for method in ["DELETE", "OPTIONS"] {
        let (p, _) = parsed(format!("{method} / HTTP/1.1\r\n\r\n").as_bytes(), LIMITS);
        assert!(
            matches!(p, Parsed::Request(ref r) if r.method.as_str() == method),
            "{method}: {p:?}"
        );
    }
}

#[test]
fn anything_but_the_plainest_request_is_handed_over_untouched() {
    let few = Limits {
        max_head: 8192,
        max_fields: 2,
    };
    let cases: [(&[u8], Limits); 16] = [
        (b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", LIMITS),
        (b"HEAD / HTTP/1.1\r\n\r\n", LIMITS),
        (b"PATCH / HTTP/1.1\r\n\r\n", LIMITS),
        (b"GET / HTTP/1.0\r\n\r\n", LIMITS),
        (b"GET / HTTP/1.1\r\ncontent-LENGTH: 0\r\n\r\n", LIMITS),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", LIMITS),
        (b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", LIMITS),
        (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", LIMITS),
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", LIMITS),
        (b"GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n", LIMITS),
        (b"GET http://shop/ HTTP/1.1\r\n\r\n", LIMITS),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", LIMITS),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", LIMITS),
        (b"GET / HTTP/1.1\r\nFolded: a\r\n b\r\n\r\n", LIMITS),
        (b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", few),
        // httparse takes `<` in a target, `http`'s `Uri` does not: put back for hyper.
        (b"GET /a<b HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n", LIMITS),
    ];
    for (raw, limits) in cases {
        let (p, rest) = parsed(raw, limits);
        assert!(
            matches!(p, Parsed::HandOff),
            "{:?}: {p:?}",
            String::from_utf8_lossy(raw)
        );
        assert_eq!(
            &rest[..],
            raw,
            "{:?}: the bytes are hyper's, as read",
            String::from_utf8_lossy(raw)
        );
    }
    // Over the head limit, complete or not.
    let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    assert!(matches!(parsed(long.as_bytes(), LIMITS).0, Parsed::HandOff));
    assert!(matches!(parsed(&long.as_bytes()[..8500], LIMITS).0, Parsed::HandOff));
    assert!(matches!(parsed(&long.as_bytes()[..8000], LIMITS).0, Parsed::Partial));
    assert!(matches!(
        parsed(b"GET / HTTP/1.1\r\nHost: a\r\n", LIMITS).0,
        Parsed::Partial
    ));
}

fn head(
    status: StatusCode,
    headers: &[(&str, &str)],
    hint: SizeHint,
    ended: bool,
    close: bool,
) -> (String, Framing, bool) {
    stamped(status, headers, &Stamp::default(), hint, ended, close)
}

fn stamped(
    status: StatusCode,
    headers: &[(&str, &str)],
    stamp: &Stamp,
    hint: SizeHint,
    ended: bool,
    close: bool,
) -> (String, Framing, bool) {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let mut out = Vec::new();
    let (framing, close) = encode_head(status, &map, stamp, &hint, ended, close, &mut out);
    (String::from_utf8(out).unwrap(), framing, close)
}

// A stamp's fields are written after the response's own, each in place of the
// response's field of its name.
#[test]
fn a_stamp_replaces_the_response_s_fields_of_its_names() {
    static FIXED: [(http::HeaderName, HeaderValue); 1] =
        [(http::header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"))];
    let stamp = Stamp::new(&FIXED, "gw-1f".into());
    let own = [("x-frame-options", "SAMEORIGIN"), ("x-request-id", "up"), ("x-a", "1")];
    let (h, ..) = stamped(StatusCode::OK, &own, &stamp, SizeHint::with_exact(0), true, false);
    assert!(
        h.starts_with(
            "HTTP/1.1 200 OK\r\nx-a: 1\r\nx-frame-options: DENY\r\nx-request-id: gw-1f\r\ncontent-length: 0\r\n"
        ),
        "{h}"
    );
}

#[test]
fn response_heads_are_framed_as_hyper_frames_them() {
    let (h, f, close) = head(StatusCode::OK, &[("x-a", "1")], SizeHint::with_exact(5), false, false);
    assert!(
        h.starts_with("HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 5\r\ndate: "),
        "{h}"
    );
    assert!(h.ends_with(" GMT\r\n\r\n"), "{h}");
    assert_eq!((f, close), (Framing::Length(5), false));

    let (h, f, _) = head(StatusCode::NOT_FOUND, &[], SizeHint::new(), false, false);
    assert!(
        h.starts_with("HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n"),
        "{h}"
    );
    assert_eq!(f, Framing::Chunked);

    let (h, f, _) = head(StatusCode::OK, &[("content-length", "9")], SizeHint::new(), true, false);
    assert!(h.contains("content-length: 0\r\n") && !h.contains(": 9"), "{h}");
    assert_eq!(f, Framing::Length(0));

    // A stated length is kept when the body does not know its own; two that disagree
    // are dropped, and so is a transfer coding.
    let (h, f, _) = head(
        StatusCode::OK,
        &[("content-length", "7")],
        SizeHint::new(),
        false,
        false,
    );
    assert_eq!((h.matches("content-length").count(), f), (1, Framing::Length(7)), "{h}");
    let (h, f, _) = head(
        StatusCode::OK,
        &[
            ("content-length", "7"),
            ("content-length", "8"),
            ("transfer-encoding", "gzip"),
        ],
        SizeHint::new(),
        false,
        false,
    );
    assert!(!h.contains("content-length") && !h.contains("gzip"), "{h}");
    assert_eq!(f, Framing::Chunked);
    // A length is digits only (`+7` is not one).
    let (h, f, _) = head(
        StatusCode::OK,
        &[("content-length", "+7")],
        SizeHint::new(),
        false,
        false,
    );
    assert!(!h.contains("content-length"), "{h}");
    assert_eq!(f, Framing::Chunked);

    let (h, f, _) = head(
        StatusCode::NO_CONTENT,
        &[("content-length", "0")],
        SizeHint::with_exact(0),
        true,
        false,
    );
    assert!(!h.contains("content-length") && !h.contains("chunked"), "{h}");
    assert_eq!(f, Framing::Nothing);
    let (h, _, _) = head(
        StatusCode::from_u16(599).unwrap(),
        &[],
        SizeHint::with_exact(0),
        true,
        false,
    );
    assert!(h.starts_with("HTTP/1.1 599 <none>\r\n"), "{h}");

    let (h, _, close) = head(StatusCode::OK, &[], SizeHint::with_exact(0), true, true);
    assert!(h.contains("\r\nconnection: close\r\n") && close, "{h}");
    let (h, _, close) = head(
        StatusCode::OK,
        &[("connection", "Close")],
        SizeHint::with_exact(0),
        true,
        false,
    );
    assert_eq!((h.matches("onnection").count(), close), (1, true), "{h}");
    let (h, _, _) = head(
        StatusCode::OK,
        &[("date", "then")],
        SizeHint::with_exact(0),
        true,
        false,
    );
    assert_eq!(h.matches("date").count(), 1, "{h}");
}

/// A server over one end of a pipe, answering each request with its path, and the
/// number of requests it started. `/chunks` answers in pieces, `/stream` with one piece
/// and the next once `release` is notified.
struct Pipe {
    client: tokio::io::DuplexStream,
    served: tokio::task::JoinHandle<(Result<(), String>, Option<Bytes>)>,
    started: Arc<AtomicUsize>,
    closing: Arc<AtomicBool>,
    release: Arc<tokio::sync::Notify>,
}

type Piece = Result<Frame<Bytes>, std::convert::Infallible>;

fn pipe(hang_on: &'static str) -> Pipe {
    use futures_util::StreamExt;
    use http_body_util::BodyExt;
    let (client, server) = tokio::io::duplex(64 << 10);
    let started = Arc::new(AtomicUsize::new(0));
    let closing = Arc::new(AtomicBool::new(false));
    let release = Arc::new(tokio::sync::Notify::new());
    let (count, flag, released) = (started.clone(), closing.clone(), release.clone());
    let served = tokio::spawn(async move {
        let respond = |req: Request<()>| {
            count.fetch_add(1, Ordering::SeqCst);
            let path = req.uri().path().to_owned();
            let released = released.clone();
            async move {
                if path == hang_on {
                    std::future::pending::<()>().await;
                }
                let piece = |s: &'static str| -> Piece { Ok(Frame::data(Bytes::from(s))) };
                let body = match path.as_str() {
                    "/chunks" => BodyExt::boxed_unsync(StreamBody::new(futures_util::stream::iter(
                        ["ab", "", "cde"].map(piece),
                    ))),
                    "/stream" => {
                        let rest = async move {
                            released.notified().await;
                            piece("rest")
                        };
                        let pieces =
                            futures_util::stream::iter([piece("first;")]).chain(futures_util::stream::once(rest));
                        BodyExt::boxed_unsync(StreamBody::new(pieces.boxed()))
                    }
                    _ => BodyExt::boxed_unsync(Full::new(Bytes::from(path))),
                };
                (Response::new(body), Stamp::default())
            }
        };
        match serve(server, respond, LIMITS, &flag).await {
            Ended::Closed(r) => (r.map_err(|e| e.to_string()), None),
            Ended::HandOff(_, rest) => (Ok(()), Some(rest)),
        }
    });
    Pipe {
        client,
        served,
        started,
        closing,
        release,
    }
}

async fn read_until_closed(client: &mut tokio::io::DuplexStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut all))
        .await
        .expect("closed in time")
        .unwrap();
    String::from_utf8(all).unwrap()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_the_first_other_is_handed_over() {
    let mut p = pipe("");
    p.client
        .write_all(
            b"GET /one HTTP/1.1\r\n\r\nGET /chunks HTTP/1.1\r\n\r\nPOST /three HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
        )
        .await
        .unwrap();
    let (result, rest) = p.served.await.unwrap();
    assert_eq!(result, Ok(()));
    assert_eq!(
        rest.as_deref(),
        Some(&b"POST /three HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"[..]),
        "handed over with the bytes not served"
    );
    let mut got = vec![0u8; 4096];
    let n = p.client.read(&mut got).await.unwrap();
    let got = String::from_utf8_lossy(&got[..n]);
    let one = got.find("content-length: 4\r\n").expect("first answer");
    let chunks = got.find("transfer-encoding: chunked\r\n").expect("second answer");
    assert!(one < chunks, "{got}");
    assert!(got.contains("\r\n\r\n/oneHTTP/1.1 200 OK\r\n"), "{got}");
    assert!(
        got.ends_with("\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
        "empty piece skipped: {got}"
    );
    assert_eq!(p.started.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_client_that_leaves_cancels_its_request() {
    let mut p = pipe("/hang");
    p.client.write_all(b"GET /hang HTTP/1.1\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(p.started.load(Ordering::SeqCst), 1);
    assert!(!p.served.is_finished(), "in flight");
    p.client.shutdown().await.unwrap();
    let (result, rest) = tokio::time::timeout(Duration::from_secs(5), p.served)
        .await
        .expect("the request was cancelled")
        .unwrap();
    assert_eq!((result, rest), (Ok(()), None));
}

#[tokio::test]
async fn a_graceful_close_waits_for_the_request_and_says_so() {
    let mut p = pipe("");
    // A head half sent when the close is asked for is read to its end and answered.
    p.client.write_all(b"GET /last HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    p.closing.store(true, Ordering::SeqCst);
    p.client.write_all(b"\r\nGET /never HTTP/1.1\r\n\r\n").await.unwrap();
    let got = read_until_closed(&mut p.client).await;
    assert!(got.contains("connection: close\r\n") && got.ends_with("/last"), "{got}");
    assert_eq!(p.started.load(Ordering::SeqCst), 1);
    assert_eq!(p.served.await.unwrap().0, Ok(()));
}

#[tokio::test]
async fn a_body_that_streams_reaches_the_client_as_it_comes() {
    let mut p = pipe("");
    p.client.write_all(b"GET /stream HTTP/1.1\r\n\r\n").await.unwrap();
    // The head and the first piece arrive while the second is still to come.
    let mut got = Vec::new();
    let mut piece = [0u8; 1024];
    while !got.ends_with(b"6\r\nfirst;\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), p.client.read(&mut piece))
            .await
            .expect("the head and the first piece were held back")
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&piece[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n"));
    p.release.notify_one();
    let n = tokio::time::timeout(Duration::from_secs(5), p.client.read(&mut piece))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&piece[..n], b"4\r\nrest\r\n0\r\n\r\n");
}
