//! The pool over real sockets: a request that arrives just as the only connection comes
//! back waits behind the one already waiting; and the in-task exchange against an
//! upstream that answers with scripted bytes: connections kept exactly when a response's
//! end is certain, never one with bytes no request asked for, and the same answers as
//! hyper's client gives for the same bytes.

mod scripted;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::pool::Pool;
use super::request::{RequestBody, UpstreamBody};
use crate::config::Limits;

/// An upstream that notes the path of each request as it arrives and answers `{}`.
async fn recording_upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = paths.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    seen.lock().unwrap().push(req.uri().path().to_owned());
                    async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}")))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, paths)
}

/// Requests as the gateway's listener hands them on (a client's body is a hyper
/// `Incoming`, which only a connection makes): a server that passes each request it gets
/// to the test, and a client that sends it `paths`.
async fn requests(paths: &[&str]) -> Vec<Request<UpstreamBody>> {
    let gets: Vec<_> = paths.iter().map(|p| (http::Method::GET, *p)).collect();
    requests_of(&gets).await
}

/// As [`requests`], each with its method.
async fn requests_of(reqs: &[(http::Method, &str)]) -> Vec<Request<UpstreamBody>> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let _ = tx.send(req);
            async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    });
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for (method, path) in reqs {
        let req = Request::builder()
            .method(method.clone())
            .uri(*path)
            .header("host", "upstream")
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.send_request(req).await.unwrap();
        let req = rx.recv().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        out.push(req.map(|b| Limited::new(RequestBody::new(b, Duration::from_secs(10), deadline), 1 << 20)));
    }
    out
}

#[tokio::test]
async fn a_request_arriving_as_the_connection_comes_back_waits_its_turn() {
    let (addr, seen) = recording_upstream().await;
    let limits = Limits {
        upstream_max_connections: 1,
        ..Limits::default()
    };
    let pool = Arc::new(Pool::new(addr.to_string(), Duration::from_secs(5), &limits, None));
    let mut reqs = requests(&["/first", "/waiting", "/late"]).await.into_iter();
    let (first, waiting, late) = (reqs.next().unwrap(), reqs.next().unwrap(), reqs.next().unwrap());

    // The only connection, held by the first request until its body has been read.
    let resp = pool.send(first, None).await.unwrap();
    // The second waits in line.
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.send(waiting, None).await.map(|_| ()) }
    });
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.waiting(), 1);
    // The first's body read to its end gives the connection back, and a third request
    // looks for one at that very moment, before the waiting one has run again.
    resp.into_body().collect().await.unwrap();
    let late = pool.send(late, None);
    tokio::pin!(late);
    assert!(futures_util::poll!(late.as_mut()).is_pending());
    // Its response is dropped once it comes (the waiting request may need its
    // connection).
    let (waited, late) = tokio::join!(waiter, async { late.await.map(drop) });
    waited.unwrap().unwrap();
    late.unwrap();
    assert_eq!(*seen.lock().unwrap(), ["/first", "/waiting", "/late"]);
}
