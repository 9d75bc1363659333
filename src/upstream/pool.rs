//! Upstream keep-alive connections: one pool per upstream and connection worker.
//!
//! A request takes the most recently used idle connection of its worker's pool (or opens
//! one), waits until that connection can take a request, and sends. The connection goes
//! back to the pool when the upstream's response body has been read to its end; a
//! response abandoned half-way closes its connection instead, since the next response
//! on it would be out of step. A request that a reused connection could not send (the
//! upstream closed it while it was idle) is sent again on another connection; a request
//! that went out is never sent twice.
//!
//! An `https://` upstream's connections are TLS: the TCP connect and the TLS handshake
//! share the connect deadline, then HTTP/1.1 runs over the TLS stream; keep-alive, reuse
//! and reaping are the same as for plain connections. The kind of stream is chosen once,
//! when a connection opens: a request on a pooled connection, plain or TLS, takes the same
//! path as before, and a plain connection pays nothing for TLS.
//!
//! The connection tasks run on the worker that opened them, like the requests that use
//! them, so neither the pool's lock nor the connections are shared between threads.
//!
//! A pool opens at most `[limits] upstream_max_connections` connections at once (idle
//! ones included): a request that finds none idle and the cap reached waits until one
//! comes back or closes, within the upstream timeout of the request (504 after it), so
//! a burst of client streams cannot flood the upstream's accept queue. Waiting requests
//! are served in the order they came (see [`super::line`]). Connections idle
//! for `[limits] upstream_idle_timeout` are closed by [`Pool::reap`], which the gateway
//! runs on a timer.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::line::{lock, room, Handoff, Idle, Line, Turn};
use super::request::UpstreamBody;
use super::tls::TlsTarget;
use super::BoxError;
use crate::config::Limits;

/// Idle connections kept per pool beyond those in use.
const MAX_IDLE: usize = 1024;

/// One upstream's connections opened by one worker.
pub struct Pool {
    /// `host:port` to connect to.
    addr: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// Idle connections and the requests waiting for one.
    line: Arc<Mutex<Line<SendRequest<UpstreamBody>>>>,
    /// One permit per connection that may be open; a connection holds its permit until
    /// it closes.
    slots: Arc<Semaphore>,
    /// For an `https://` upstream: the TLS client its connections are opened with.
    tls: Option<TlsTarget>,
}

impl Pool {
    pub fn new(addr: String, connect_timeout: Duration, limits: &Limits, tls: Option<TlsTarget>) -> Self {
        Self {
            addr,
            tls,
            connect_timeout,
            idle_timeout: limits.upstream_idle_timeout,
            line: Arc::default(),
            slots: Arc::new(Semaphore::new(limits.upstream_max_connections)),
        }
    }

    /// An idle connection, or a new one if the cap allows, or (waiting, in turn) the
    /// first connection to come back or the first place to free up.
    async fn checkout(&self) -> Result<(SendRequest<UpstreamBody>, bool), BoxError> {
        // Told of room that another request took first: back in line, at its head.
        let mut overtaken = false;
        loop {
            match self.next(overtaken) {
                Next::Idle(s) => return Ok((s, true)),
                // Boxed: opening a connection (with its TLS handshake) is rare, and its
                // state would otherwise make every request's future larger.
                Next::Open(permit) => {
                    return match Box::pin(self.connect(permit)).await {
                        Ok(s) => Ok((s, false)),
                        Err(e) => {
                            // The permit went back: let a waiter try.
                            room(&self.line);
                            Err(e)
                        }
                    };
                }
                // Dropped with this request (its deadline passed): the handoff then goes
                // to the next in line.
                Next::Wait(turn) => match turn.await {
                    Some(Handoff::Connection(s)) => return Ok((s, true)),
                    Some(Handoff::Room) | None => overtaken = true,
                },
            }
        }
    }

    /// What a request looking for a connection does next, decided under the line's lock.
    fn next(&self, overtaken: bool) -> Next {
        let mut line = lock(&self.line);
        if let Some(s) = self.take_idle(&mut line) {
            return Next::Idle(s);
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Next::Open(permit),
            Err(_) => Next::Wait(Turn::new(&self.line, &mut line, overtaken)),
        }
    }

    /// How many requests wait in line.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        lock(&self.line).waiting()
    }

    /// Closes the connections idle for longer than the idle timeout.
    pub fn reap(&self) {
        let mut line = lock(&self.line);
        let idle = &mut line.idle;
        let stale = idle
            .iter()
            .take_while(|e| e.conn.is_closed() || e.since.elapsed() >= self.idle_timeout)
            .count();
        idle.drain(..stale);
        idle.retain(|e| !e.conn.is_closed());
    }

    /// Sends `req` and returns the response, whose body hands the connection back to
    /// the pool once it has been read to its end.
    pub async fn send(self: &Arc<Self>, mut req: Request<UpstreamBody>) -> Result<Response<PooledBody>, BoxError> {
        loop {
            let (mut sender, reused) = self.checkout().await?;
            // A reused connection may still be finishing its previous exchange.
            if let Err(e) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(e.into());
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let body = PooledBody {
                        body,
                        back: Some((sender, self.clone())),
                    };
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut e) => match e.take_message() {
                    // Not sent: the connection was closed under us. Another one will do.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    fn take_idle(&self, line: &mut Line<SendRequest<UpstreamBody>>) -> Option<SendRequest<UpstreamBody>> {
        while let Some(entry) = line.idle.pop() {
            if !entry.conn.is_closed() && entry.since.elapsed() < self.idle_timeout {
                return Some(entry.conn);
            }
        }
        None
    }

    fn put(&self, sender: SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        let mut line = lock(&self.line);
        // The first request waiting takes it; otherwise it is idle.
        let Some(sender) = line.give(sender) else {
            return;
        };
        let idle = &mut line.idle;
        // The oldest come first: drop those idle too long (their connections close).
        let stale = idle
            .iter()
            .take_while(|e| e.since.elapsed() >= self.idle_timeout)
            .count();
        if stale > 0 {
            idle.drain(..stale);
        }
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                conn: sender,
                since: Instant::now(),
            });
        }
    }

    /// Opens a connection (TCP, and TLS for an `https://` upstream, within the connect
    /// deadline) and starts HTTP/1.1 on it.
    async fn connect(&self, permit: OwnedSemaphorePermit) -> Result<SendRequest<UpstreamBody>, BoxError> {
        let timed_out = || format!("connecting to {} timed out", self.addr);
        match &self.tls {
            None => {
                let stream = tokio::time::timeout(self.connect_timeout, open(&self.addr))
                    .await
                    .map_err(|_| timed_out())??;
                self.start(stream, permit).await
            }
            Some(tls) => {
                let secure = async { tls.handshake(open(&self.addr).await?, &self.addr).await };
                let stream = tokio::time::timeout(self.connect_timeout, secure)
                    .await
                    .map_err(|_| timed_out())??;
                self.start(stream, permit).await
            }
        }
    }

    /// The HTTP/1.1 handshake over `stream`; the connection runs in its own task, which
    /// gives its place back when it ends.
    async fn start<S>(&self, stream: S, permit: OwnedSemaphorePermit) -> Result<SendRequest<UpstreamBody>, BoxError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::Builder::new().handshake(TokioIo::new(stream)).await?;
        let addr = self.addr.clone();
        let line = self.line.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(upstream = %addr, error = %crate::error_chain::chain(&e), "upstream connection ended with an error");
            }
            // The connection's place is free for another.
            drop(permit);
            room(&line);
        });
        Ok(sender)
    }
}

/// What a request looking for a connection does next.
enum Next {
    /// Sends on this idle connection.
    Idle(SendRequest<UpstreamBody>),
    /// Opens a connection in this place.
    Open(OwnedSemaphorePermit),
    /// Waits in line for its turn.
    Wait(Turn<SendRequest<UpstreamBody>>),
}

/// Connects to the first address of `addr` that accepts, with Nagle off and TCP
/// keep-alive on.
async fn open(addr: &str) -> Result<tokio::net::TcpStream, BoxError> {
    let mut last: Option<std::io::Error> = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_keepalive(true)?;
        match socket.connect(a).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| format!("{addr} resolves to no address").into(), Into::into))
}

/// An upstream response body; its connection returns to the pool at the body's end.
pub struct PooledBody {
    body: Incoming,
    back: Option<(SendRequest<UpstreamBody>, Arc<Pool>)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((sender, pool)) = self.back.take() {
            pool.put(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            // An error leaves the connection in an unknown state: it is not reused.
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body without content (204, 304, HEAD) may never be polled.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}
