//! Accepting connections: TCP accept, the rustls handshake (bounded in time), HTTP/1.1
//! (the plainest requests on the gateway's own server, `h1`, the rest through hyper) and
//! HTTP/2 through hyper-util's auto builder, and graceful shutdown.
//!
//! Bounds on what a client can hold: a cap on open connections (further clients wait in
//! the accept queue), a TLS handshake timeout, a header read timeout, header size and
//! count limits, a limit on concurrent HTTP/2 streams, deadlines on request bodies (see
//! [`RequestBody`]), and an idle timeout that closes a connection on which no request
//! started or ended for a whole period and none is in flight (a request is in flight
//! until its response body has been sent). Only requests count as
//! activity: the server's own HTTP/2 keep-alive PINGs (and their answers) do not keep a
//! connection open. hyper starts its HTTP/1 header timer as soon as it waits for a
//! request head, so on HTTP/1.1 the header read timeout also bounds the wait between
//! keep-alive requests.
//!
//! Over TLS the protocol is the one ALPN chose: HTTP/2 for `h2`, HTTP/1.1 for
//! `http/1.1` or no ALPN, never the other by sniffing the first bytes. The plaintext
//! listener (a trusted hop, off by default) keeps detecting HTTP/2 by its preface.
//!
//! A panic in a handler is caught: the client gets a 500 with the JSON error body and
//! the connection goes on. When a connection closes, the gateway closes its own side
//! first and then reads and discards what the client still sends for a bounded time
//! ("lingering close", as nginx does): a client still uploading when it was refused
//! early (413) then reads its answer instead of a connection reset.
//!
//! Shutdown has two steps: [`Lifecycle::Draining`] stops accepting and asks every
//! connection to close once its requests are done; [`Lifecycle::Closing`] (after the
//! drain deadline) closes whatever is left.
//!
//! This module accepts, hands each connection to a worker and terminates TLS; the life
//! of one connection after that is in `listener/connection.rs`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

mod connection;
mod h1;
mod io;
pub mod proxy_protocol;
pub mod stamp;
mod watchdog;

use crate::config::{Limits, TrustedProxies};
use crate::upstream::body::GatewayBody;
use crate::upstream::request::RequestBody;
use crate::workers::Workers;
use stamp::Stamp;

/// What a connection's handler is told about the connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The connection's client: the peer's address, or the source a PROXY header from a
    /// trusted peer gave. Per request, `X-Forwarded-For` from a trusted address may name
    /// another (see `pipeline::client`).
    pub client: IpAddr,
    pub tls: bool,
    /// The worker the connection runs on (see [`Workers`]).
    pub worker: usize,
}

/// Handles one request of a connection.
pub trait Handler: Send + Sync + 'static {
    /// The response, and the fields to put on it as it is sent (see [`stamp`]).
    fn handle(
        &self,
        req: Request<RequestBody>,
        conn: ConnInfo,
    ) -> impl Future<Output = (Response<GatewayBody>, Stamp)> + Send;

    /// The answer when `handle` panicked: a 500 with the JSON error body. The panic's
    /// message goes to the log, never to the client.
    fn panicked(&self, conn: ConnInfo, message: &str) -> (Response<GatewayBody>, Stamp) {
        tracing::error!(peer = %conn.peer, panic = message, "request handler panicked");
        let resp = crate::error::GatewayError::Internal("handler panicked".into()).to_response("-");
        (resp, Stamp::default())
    }
}

/// Where the listeners are in their life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lifecycle {
    Serving,
    /// Not accepting; connections close once their requests are done.
    Draining,
    /// The drain deadline has passed: connections close now.
    Closing,
}

/// Accepts on `listener` until `shutdown` leaves [`Lifecycle::Serving`], handing each
/// connection to the next of `workers`; then lets in-flight requests finish (open
/// connections are asked to close gracefully, and closed at [`Lifecycle::Closing`]) and
/// returns. With `proxy_protocol`, every connection must come from one of those peers
/// and start with a PROXY header (see [`proxy_protocol`]).
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    proxy_protocol: Option<Arc<TrustedProxies>>,
    handler: Arc<H>,
    limits: Limits,
    workers: Arc<Workers>,
    mut shutdown: watch::Receiver<Lifecycle>,
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
        let proxy_protocol = proxy_protocol.clone();
        let shutdown = shutdown.clone();
        let limits = limits.clone();
        let info = ConnInfo {
            peer,
            client: peer.ip(),
            tls: tls.is_some(),
            worker,
        };
        tracker.spawn_on(
            async move {
                let _permit = permit;
                match TcpStream::from_std(stream) {
                    Ok(stream) => {
                        let conn = Conn {
                            stream,
                            info,
                            proxy_protocol,
                        };
                        serve_connection(conn, tls, handler, builder, limits, shutdown).await
                    }
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

/// Resolves once shutdown has begun (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<Lifecycle>) {
    reached(rx, Lifecycle::Draining).await;
}

/// Resolves once the lifecycle is at `phase` or beyond (or its sender is gone).
async fn reached(rx: &mut watch::Receiver<Lifecycle>, phase: Lifecycle) {
    loop {
        if *rx.borrow_and_update() >= phase {
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
        // The connection's watchdog keeps this timeout (see `watchdog`): hyper's arms a
        // timer for every request head.
        .header_read_timeout(None)
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

/// A connection just accepted: its socket, what is known of it, and the peers that may
/// (and must) start it with a PROXY header, if the listener reads one.
struct Conn {
    stream: TcpStream,
    info: ConnInfo,
    proxy_protocol: Option<Arc<TrustedProxies>>,
}

async fn serve_connection<H: Handler>(
    conn: Conn,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    builder: auto::Builder<TokioExecutor>,
    limits: Limits,
    mut shutdown: watch::Receiver<Lifecycle>,
) {
    let Conn {
        mut stream,
        mut info,
        proxy_protocol,
    } = conn;
    let peer = info.peer;
    if let Some(trusted) = proxy_protocol {
        let header = tokio::select! {
            h = proxy_header(&mut stream, peer, &trusted, limits.tls_handshake_timeout) => h,
            () = reached(&mut shutdown, Lifecycle::Closing) => return,
        };
        match header {
            Some(client) => info.client = client,
            None => return,
        }
    }
    match tls {
        Some(acceptor) => {
            let handshake = tokio::select! {
                h = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)) => h,
                () = reached(&mut shutdown, Lifecycle::Closing) => return,
            };
            match handshake {
                Ok(Ok(tls_stream)) => {
                    // Serve exactly what ALPN chose; without ALPN, HTTP/1.1 (RFC 7301;
                    // RFC 9113 §3.3 allows HTTP/2 over TLS only after ALPN h2).
                    let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let builder = if h2 { builder.http2_only() } else { builder.http1_only() };
                    connection::run_http(tls_stream, h2, info, handler, builder, limits, shutdown).await
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
        None => connection::run_http(stream, false, info, handler, builder, limits, shutdown).await,
    }
}

/// The connection's client address from its PROXY header, or `None` when the connection
/// is to be closed: the peer is not trusted, the header is malformed, or it did not come
/// whole within `deadline`.
async fn proxy_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
    trusted: &TrustedProxies,
    deadline: Duration,
) -> Option<IpAddr> {
    if !trusted.contains(peer.ip()) {
        tracing::warn!(%peer, "PROXY protocol: connection from a peer not in trusted_proxies refused");
        return None;
    }
    match tokio::time::timeout(deadline, proxy_protocol::read_header(stream)).await {
        Ok(Ok(client)) => Some(client.unwrap_or(peer.ip())),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            tracing::warn!(%peer, error = %e, "PROXY protocol: malformed header, connection closed");
            None
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "PROXY protocol: connection ended before its header");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "PROXY protocol: header not received in time, connection closed");
            None
        }
    }
}
