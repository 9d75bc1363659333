//! Upstreams for tests: the demo shop, a recorder of what the gateway forwards, a
//! counter of open connections, and a port nobody listens on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Starts the demo shop on a free port.
pub async fn start_shop() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(upstream_demo::serve(
        listener,
        upstream_demo::Shop::seeded(),
        std::future::pending(),
    ));
    addr
}

/// One request as an upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An upstream that records every request and answers 200 with a small JSON body.
/// A path starting with `/slow` answers after 3 s.
#[derive(Clone)]
pub struct Recorder {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    pub async fn start() -> Self {
        Self::start_named("recorder").await
    }

    /// A recorder that names itself in an `x-upstream` response header.
    pub async fn start_named(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let store = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let store = store.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let target = parts.uri.path_and_query().map(ToString::to_string).unwrap_or_default();
                            let slow = target.starts_with("/slow");
                            store.lock().unwrap().push(Recorded {
                                method: parts.method.to_string(),
                                target: target.clone(),
                                headers: parts.headers,
                                body,
                            });
                            if slow {
                                tokio::time::sleep(Duration::from_secs(3)).await;
                            }
                            let resp = Response::builder()
                                .header("content-type", "application/json")
                                .header("x-upstream", name)
                                .header("keep-alive", "timeout=5")
                                .body(Full::new(Bytes::from(format!("{{\"target\":{target:?}}}"))))
                                .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A port on which nothing listens.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// An upstream that counts its open connections (now and at most at once) and answers
/// every request 200 after `delay`.
#[derive(Clone)]
pub struct Counter {
    pub addr: SocketAddr,
    pub open: Arc<std::sync::atomic::AtomicUsize>,
    pub max_open: Arc<std::sync::atomic::AtomicUsize>,
}

impl Counter {
    pub async fn start(delay: Duration) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let max_open = Arc::new(AtomicUsize::new(0));
        let (o, m) = (open.clone(), max_open.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                let o = o.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self { addr, open, max_open }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
