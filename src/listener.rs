//! Accepting connections: TCP accept, the rustls handshake (bounded in time), HTTP/1.1
//! and HTTP/2 through hyper-util's auto builder, and graceful shutdown.
//!
//! Bounds on what a client can hold: a cap on open connections (further clients wait in
//! the accept queue), a TLS handshake timeout, a header read timeout, header size and
//! count limits, a limit on concurrent HTTP/2 streams, and an idle timeout that closes a
//! connection with no request in flight. hyper starts its HTTP/1 header timer as soon as
//! it waits for a request head, so on HTTP/1.1 the header read timeout also bounds the
//! wait between keep-alive requests.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::body::GatewayBody;
use crate::config::Limits;
use crate::workers::Workers;

/// What a connection's handler is told about the connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The worker the connection runs on (see [`Workers`]).
    pub worker: usize,
}

/// Handles one request of a connection.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request<Incoming>, conn: ConnInfo) -> impl Future<Output = Response<GatewayBody>> + Send;
}

/// Accepts on `listener` until `shutdown` turns true, handing each connection to the
/// next of `workers`; then lets in-flight requests finish (open connections are asked
/// to close gracefully) and returns.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    limits: Limits,
    workers: Arc<Workers>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = http_builder(&limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = stopped(&mut shutdown) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        // Leave this runtime's reactor; the worker registers the socket with its own.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot hand the connection to a worker");
                continue;
            }
        };
        let (worker, runtime) = workers.next();
        let builder = builder.clone();
        let handler = handler.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        let limits = limits.clone();
        let info = ConnInfo {
            peer,
            tls: tls.is_some(),
            worker,
        };
        tracker.spawn_on(
            async move {
                let _permit = permit;
                match TcpStream::from_std(stream) {
                    Ok(stream) => serve_connection(stream, info, tls, handler, builder, limits, shutdown).await,
                    Err(e) => tracing::debug!(%peer, error = %e, "cannot register the connection"),
                }
            },
            runtime,
        );
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// Resolves once the shutdown flag is set (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(Some(limits.idle_timeout / 2))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

async fn serve_connection<H: Handler>(
    stream: TcpStream,
    info: ConnInfo,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    builder: auto::Builder<TokioExecutor>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    let peer = info.peer;
    match tls {
        Some(acceptor) => match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls_stream)) => run_http(tls_stream, info, handler, builder, limits, shutdown).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        },
        None => run_http(stream, info, handler, builder, limits, shutdown).await,
    }
}

async fn run_http<S, H>(
    io: S,
    info: ConnInfo,
    handler: Arc<H>,
    builder: auto::Builder<TokioExecutor>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let activity = Arc::new(Activity::default());
    let io = Tracked {
        inner: io,
        activity: activity.clone(),
    };
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        let activity = service_activity.clone();
        async move {
            let _in_flight = InFlight::new(&activity);
            Ok::<_, Infallible>(handler.handle(req, info).await)
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut idle_check = tokio::time::interval(limits.idle_timeout);
    idle_check.tick().await;
    let mut last_seen = activity.events.load(Ordering::Relaxed);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(peer = %info.peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = idle_check.tick(), if !closing => {
                // Idle: nothing read or written for a whole period and no request in flight.
                let now_seen = activity.events.load(Ordering::Relaxed);
                if now_seen == last_seen && activity.in_flight.load(Ordering::Relaxed) == 0 {
                    tracing::debug!(peer = %info.peer, "closing idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                last_seen = now_seen;
            }
            () = stopped(&mut shutdown), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Counts reads and writes on a connection, and requests in flight on it.
#[derive(Default)]
struct Activity {
    events: AtomicU64,
    in_flight: AtomicUsize,
}

struct InFlight<'a>(&'a Activity);

impl<'a> InFlight<'a> {
    fn new(a: &'a Activity) -> Self {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(a)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// An I/O stream that records activity for the idle timeout.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() != before {
            self.activity.events.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.events.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.events.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
