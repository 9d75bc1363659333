//! The in-task exchange against an upstream that answers each request with scripted
//! bytes, over real sockets.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::requests_of;
use crate::config::Limits;
use crate::upstream::added::{write_field, AddedFields};
use crate::upstream::pool::Pool;

/// One scripted answer: bytes written when a request has been read, then (after a
/// pause) bytes no request asked for, then whether the upstream closes the connection.
#[derive(Clone, Copy)]
struct Answer {
    bytes: &'static [u8],
    unasked: &'static [u8],
    close: bool,
}

const fn answer(bytes: &'static [u8]) -> Answer {
    Answer {
        bytes,
        unasked: b"",
        close: false,
    }
}

const fn closing(bytes: &'static [u8]) -> Answer {
    Answer {
        bytes,
        unasked: b"",
        close: true,
    }
}

struct Scripted {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// The head of each request read, in order.
    requests: Arc<Mutex<Vec<String>>>,
}

/// An upstream that reads request heads (the requests have no body) and answers each
/// with the next of `answers`, whatever connection it came on.
async fn scripted(answers: Vec<Answer>) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (counted, seen) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let (answers, seen) = (answers.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut piece = [0u8; 4096];
                        match stream.read(&mut piece).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&piece[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let head: Vec<u8> = buf.drain(..end).collect();
                    seen.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                    let Some(a) = answers.lock().unwrap().pop_front() else {
                        return;
                    };
                    if stream.write_all(a.bytes).await.is_err() {
                        return;
                    }
                    if !a.unasked.is_empty() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = stream.write_all(a.unasked).await;
                    }
                    if a.close {
                        return;
                    }
                }
            });
        }
    });
    Scripted {
        addr,
        connections,
        requests,
    }
}

fn pool(addr: SocketAddr) -> Arc<Pool> {
    Arc::new(Pool::new(
        addr.to_string(),
        Duration::from_secs(5),
        &Limits::default(),
        None,
    ))
}

/// Sends a request without a body through the pool (in-task); the status and body, or
/// the error of the exchange or of the body.
async fn fetch(pool: &Arc<Pool>, method: Method) -> Result<(u16, Bytes), String> {
    answer_of(pool, method).await.map(|(status, _, body)| (status, body))
}

/// Status, header fields and body through the pool, or the error.
async fn answer_of(pool: &Arc<Pool>, method: Method) -> Result<(u16, Vec<(String, String)>, Bytes), String> {
    let req = requests_of(&[(method, "/x")]).await.pop().unwrap();
    let resp = pool.send(req, None).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((parts.status.as_u16(), fields(&parts.headers), body))
}

async fn body(pool: &Arc<Pool>) -> Bytes {
    fetch(pool, Method::GET).await.unwrap().1
}

#[tokio::test]
async fn connections_kept_exactly_when_the_end_is_certain() {
    let up = scripted(vec![
        answer(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"),
        answer(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nt: 1\r\n\r\n",
        ),
        answer(b"HTTP/1.1 204 No Content\r\n\r\n"),
        answer(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"),
        answer(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx"),
        closing(b"HTTP/1.1 200 OK\r\n\r\nto the close"),
        answer(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\ny"),
    ])
    .await;
    let pool = pool(up.addr);
    assert_eq!(body(&pool).await, "hello");
    assert_eq!(body(&pool).await, "hello world");
    assert_eq!(fetch(&pool, Method::GET).await.unwrap(), (204, Bytes::new()));
    assert_eq!(body(&pool).await, "ok");
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "kept alive through four answers"
    );
    assert_eq!(body(&pool).await, "x");
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        2,
        "not after `connection: close`"
    );
    assert_eq!(body(&pool).await, "to the close");
    assert_eq!(body(&pool).await, "y");
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        3,
        "not after a body ended by the close"
    );
}

// The heart of it: bytes beyond a response, at once or later, never become the answer
// to the next request.
#[tokio::test]
async fn bytes_no_request_asked_for_close_the_connection() {
    let up = scripted(vec![
        answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil"),
        answer(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ngood"),
        Answer {
            bytes: b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            unasked: b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil",
            close: false,
        },
        answer(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ngood"),
        answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
    ])
    .await;
    let pool = pool(up.addr);
    assert_eq!(body(&pool).await, "ok");
    assert_eq!(body(&pool).await, "good");
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
    assert_eq!(body(&pool).await, "ok");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(body(&pool).await, "good");
    assert_eq!(up.connections.load(Ordering::SeqCst), 3);
    // A HEAD's answer has no body, whatever its length says.
    let head = fetch(&pool, Method::HEAD).await.unwrap();
    assert_eq!(head, (200, Bytes::new()));
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_not_used() {
    let up = scripted(vec![
        closing(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na"),
        answer(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb"),
    ])
    .await;
    let pool = pool(up.addr);
    assert_eq!(body(&pool).await, "a");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(body(&pool).await, "b");
    assert_eq!(
        up.requests.lock().unwrap().len(),
        2,
        "nothing sent on the closed connection"
    );
}

// The upstream closes a kept connection just as a request goes out on it: a GET that got
// no byte of answer is sent again, once, on a new connection.
#[tokio::test]
async fn a_get_unanswered_on_a_reused_connection_is_sent_again() {
    let up = scripted(vec![
        answer(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na"),
        closing(b""),
        answer(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb"),
        closing(b""),
    ])
    .await;
    let pool = pool(up.addr);
    assert_eq!(body(&pool).await, "a");
    assert_eq!(body(&pool).await, "b");
    assert_eq!(up.requests.lock().unwrap().len(), 3);
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
    // Unanswered on the kept connection, then on a new one: sent twice, no more, and
    // the second silence is an error.
    let err = fetch(&pool, Method::GET).await.unwrap_err();
    assert!(err.contains("closed before answering"), "{err}");
    assert_eq!(up.requests.lock().unwrap().len(), 5);
    assert_eq!(up.connections.load(Ordering::SeqCst), 3);
}

/// Two fields added beside a request, as the forward phase adds its own.
struct Added;

impl AddedFields for Added {
    fn write(&self, out: &mut Vec<u8>) {
        write_field(out, &http::HeaderName::from_static("x-added"), b"1");
        write_field(out, &http::HeaderName::from_static("x-also"), b"two");
    }

    fn insert_into(&self, headers: &mut http::HeaderMap) {
        headers.insert("x-added", http::HeaderValue::from_static("1"));
        headers.insert("x-also", http::HeaderValue::from_static("two"));
    }
}

// Sent again on a connection hyper's client runs (one a request with a body opened):
// the request is made again from its head as written, which goes out the same. The
// added fields go out once on every path: written into an in-task head, inserted into
// a request for hyper's client (a POST, a GET that took hyper's connection), and kept
// in the head a request is made again from.
#[tokio::test]
async fn a_get_unanswered_is_sent_again_through_hyper_s_client_the_same() {
    let up = scripted(vec![
        answer(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\np"),
        answer(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na"),
        answer(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb"),
        closing(b""),
        answer(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nc"),
    ])
    .await;
    let pool = pool(up.addr);
    let read = |resp: http::Response<crate::upstream::pool::PooledBody>| async move {
        resp.into_body().collect().await.unwrap().to_bytes()
    };
    let mut reqs = requests_of(&[
        (Method::POST, "/p"),
        (Method::GET, "/1"),
        (Method::GET, "/2"),
        (Method::GET, "/3?q=1"),
    ])
    .await
    .into_iter();
    let mut next = || reqs.next().unwrap();
    // The POST opens a connection for hyper's client; the first GET takes it, the second
    // opens an in-task one, which is given back last and so is taken first.
    assert_eq!(read(pool.send(next(), Some(&Added)).await.unwrap()).await, "p");
    let on_hyper = pool.send(next(), Some(&Added)).await.unwrap();
    let in_task = pool.send(next(), Some(&Added)).await.unwrap();
    assert_eq!(read(on_hyper).await, "a");
    assert_eq!(read(in_task).await, "b");
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
    // Unanswered on the in-task connection, answered on hyper's.
    assert_eq!(read(pool.send(next(), Some(&Added)).await.unwrap()).await, "c");
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
    let heads = up.requests.lock().unwrap().clone();
    assert_eq!(heads.len(), 5);
    assert!(heads[3].starts_with("GET /3?q=1 HTTP/1.1\r\n"), "{heads:?}");
    assert_eq!(heads[3], heads[4]);
    for head in &heads {
        assert_eq!(head.matches("\r\nx-added: 1\r\n").count(), 1, "{head:?}");
        assert_eq!(head.matches("\r\nx-also: two\r\n").count(), 1, "{head:?}");
    }
}

/// Status, headers and body as a client would see them, or that it failed: hyper's
/// client hands over the hop-by-hop fields, which the forward phase then strips and the
/// in-task exchange leaves out, so they are left out here.
async fn via_hyper(addr: SocketAddr) -> Result<(u16, Vec<(String, String)>, Bytes), ()> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/x")
        .header("host", "up")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.map_err(drop)?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(drop)?.to_bytes();
    let mut headers = parts.headers;
    for name in &crate::upstream::HOP_BY_HOP {
        headers.remove(name);
    }
    Ok((parts.status.as_u16(), fields(&headers), body))
}

fn fields(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect()
}

// The same bytes give the same answer (or fail the same) through the in-task exchange as
// through hyper's client.
#[tokio::test]
async fn the_same_answers_as_hyper_for_the_same_bytes() {
    let cases: [&'static [u8]; 12] = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\nx-a: 2\r\n\r\nhello",
        b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3;e\r\nabc\r\n2\r\nde\r\n0\r\nt: v\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nuntil the close",
        b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.0 404 Not Found\r\ncontent-length: 2\r\n\r\nno",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n",
    ];
    for case in cases {
        let up = scripted(vec![closing(case), closing(case)]).await;
        let ours = answer_of(&pool(up.addr), Method::GET).await.map_err(drop);
        let hypers = via_hyper(up.addr).await;
        assert_eq!(ours, hypers, "{:?}", Bytes::from_static(case));
    }
}
