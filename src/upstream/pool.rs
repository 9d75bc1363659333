//! Upstream keep-alive connections: one pool per upstream and connection worker.
//!
//! A request takes the most recently used idle connection of its worker's pool (or opens
//! one), waits until that connection can take a request, and sends. The connection goes
//! back to the pool when the upstream's response body has been read to its end; a
//! response abandoned half-way closes its connection instead, since the next response
//! on it would be out of step. A request that a reused connection could not send (the
//! upstream closed it while it was idle) is sent again on another connection. A request
//! that went out is never sent twice, with one exception: a `GET` or `HEAD` without a
//! body that a reused connection got not one byte of answer to (the upstream closed it
//! as the request went out) is sent again, as a safe method may be (RFC 9110 §9.2.2).
//!
//! Requests without a body run their exchange inside their own task ([`super::h1`]),
//! over plain TCP or TLS; the others go through hyper's client, whose connections run in
//! tasks of their own. Both kinds share the pool, its cap and its line: an in-task
//! connection taken for a request with a body is handed to hyper for good.
//!
//! An `https://` upstream's connections are TLS: the TCP connect and the TLS handshake
//! share the connect deadline, then HTTP/1.1 runs over the TLS stream; keep-alive, reuse
//! and reaping are the same as for plain connections. The kind of stream is chosen once,
//! when a connection opens ([`h1::stream::Stream`]).
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

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::added::Added;
use super::conn::{open, Conn, Slot};
use super::h1::head::Written;
use super::h1::{self, ExchangeError};
use super::line::{lock, Handoff, Idle, Line, Turn};
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
    line: Arc<Mutex<Line<Conn>>>,
    /// One permit per connection that may be open, held by a connection until it closes.
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

    /// An idle connection, or a new one if the cap allows (in-task if `in_task`), or
    /// (waiting, in turn) the first connection to come back or the first place to free
    /// up. `true` with a connection that was used before.
    async fn checkout(&self, in_task: bool) -> Result<(Conn, bool), BoxError> {
        // Told of room that another request took first: back in line, at its head.
        let mut overtaken = false;
        loop {
            match self.next(overtaken) {
                Next::Idle(c) => return Ok((c, true)),
                // Boxed: opening a connection (with its TLS handshake) is rare, and its
                // state would otherwise make every request's future larger. A failure
                // gives the place back (the slot's drop tells a waiter).
                Next::Open(permit) => return Box::pin(self.connect(permit, in_task)).await.map(|c| (c, false)),
                // Dropped with this request (its deadline passed): the handoff then goes
                // to the next in line.
                Next::Wait(turn) => match turn.await {
                    Some(Handoff::Connection(c)) => return Ok((c, true)),
                    Some(Handoff::Room) | None => overtaken = true,
                },
            }
        }
    }

    /// What a request looking for a connection does next, decided under the line's lock.
    fn next(&self, overtaken: bool) -> Next {
        // Declared before the lock, so closed connections are dropped after it is let go
        // (an in-task connection's slot locks the line as it closes).
        let mut closed = Vec::new();
        let mut line = lock(&self.line);
        if let Some(c) = self.take_idle(&mut line, &mut closed) {
            return Next::Idle(c);
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
        let mut closed = Vec::new();
        let mut line = lock(&self.line);
        for mut entry in std::mem::take(&mut line.idle) {
            if entry.conn.is_closed() || entry.since.elapsed() >= self.idle_timeout {
                closed.push(entry);
            } else {
                line.idle.push(entry);
            }
        }
    }

    /// Sends `req` with the `added` fields; the body gives the connection back once read.
    #[expect(clippy::manual_async_fn, reason = "an `async fn` holds the request twice")]
    pub fn send<'a>(
        self: &'a Arc<Self>,
        mut req: Request<UpstreamBody>,
        mut added: Added<'a>,
    ) -> impl Future<Output = Result<Response<PooledBody>, BoxError>> + Send + 'a {
        async move {
            let in_task = h1::fits(&req);
            // The head an in-task exchange wrote, for sending the request again.
            let mut written: Option<Written> = None;
            loop {
                let (conn, reused) = self.checkout(in_task).await?;
                let mut sender = match conn {
                    Conn::InTask(c) if in_task => {
                        // Made in a block, so the connection's binding is not kept beside
                        // the exchange, which holds it.
                        let exchange = {
                            let mut c = c;
                            let head = written.get_or_insert_with(|| Written::new(&req, added.take(), c.take_buffer()));
                            // The request's head is let go once written (its map kept for
                            // the next head), not when the upstream has answered.
                            crate::header_maps::give_back(std::mem::take(req.headers_mut()));
                            *req.uri_mut() = Uri::default();
                            c.exchange(head)
                        };
                        match exchange.await {
                            Ok((parts, body)) => {
                                return Ok(Response::from_parts(parts, PooledBody::in_task(body, self)))
                            }
                            // The upstream closed it as the request went out: another will do.
                            Err(ExchangeError::Unanswered(_)) if reused => continue,
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Conn::InTask(c) => {
                        let (stream, slot) = c.into_parts().ok_or("idle connection with unread bytes")?;
                        self.start(stream, slot).await?
                    }
                    Conn::Hyper(s) => s,
                };
                // A reused connection may still be finishing its previous exchange.
                if let Err(e) = sender.ready().await {
                    if reused {
                        continue;
                    }
                    return Err(e.into());
                }
                // Made again from an in-task head (the added fields in it), or given them, once.
                if let Some(head) = written.take() {
                    req = Request::from_parts(head.to_parts()?, req.into_body());
                } else if let Some(added) = added.take() {
                    added.insert_into(req.headers_mut());
                }
                match sender.try_send_request(req).await {
                    Ok(resp) => {
                        let (parts, body) = resp.into_parts();
                        let body = PooledBody(Inner::Hyper {
                            body,
                            back: Some((sender, self.clone())),
                        });
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
    }

    fn take_idle(&self, line: &mut Line<Conn>, closed: &mut Vec<Conn>) -> Option<Conn> {
        while let Some(mut entry) = line.idle.pop() {
            if !entry.conn.is_closed() && entry.since.elapsed() < self.idle_timeout {
                return Some(entry.conn);
            }
            closed.push(entry.conn);
        }
        None
    }

    fn put(&self, conn: Conn) {
        if let Conn::Hyper(s) = &conn {
            if s.is_closed() {
                return;
            }
        }
        // Declared before the lock: what is dropped here closes after it is let go.
        let mut closed = Vec::new();
        let mut line = lock(&self.line);
        // The first request waiting takes it; otherwise it is idle.
        let Some(conn) = line.give(conn) else {
            return;
        };
        let idle = &mut line.idle;
        // The oldest come first: drop those idle too long (their connections close).
        let stale = idle
            .iter()
            .take_while(|e| e.since.elapsed() >= self.idle_timeout)
            .count();
        closed.extend(idle.drain(..stale).map(|e| e.conn));
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        } else {
            closed.push(conn);
        }
    }

    /// Opens a connection (TCP, and TLS for an `https://` upstream, within the connect
    /// deadline): an in-task one if `in_task`, else one that runs hyper's HTTP/1.1
    /// client.
    async fn connect(&self, permit: OwnedSemaphorePermit, in_task: bool) -> Result<Conn, BoxError> {
        let slot = Slot::new(permit, &self.line);
        let timed_out = || format!("connecting to {} timed out", self.addr);
        let stream: h1::stream::Stream = match &self.tls {
            None => tokio::time::timeout(self.connect_timeout, open(&self.addr))
                .await
                .map_err(|_| timed_out())??
                .into(),
            Some(tls) => {
                let secure = async { tls.handshake(open(&self.addr).await?, &self.addr).await };
                tokio::time::timeout(self.connect_timeout, secure)
                    .await
                    .map_err(|_| timed_out())??
                    .into()
            }
        };
        if in_task {
            return Ok(Conn::InTask(h1::Connection::new(stream, slot)));
        }
        self.start(stream, slot).await.map(Conn::Hyper)
    }

    /// The HTTP/1.1 handshake over `stream`; the connection runs in its own task, which
    /// gives its place back when it ends.
    async fn start<S>(&self, stream: S, slot: Slot) -> Result<SendRequest<UpstreamBody>, BoxError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::Builder::new().handshake(TokioIo::new(stream)).await?;
        let addr = self.addr.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(upstream = %addr, error = %crate::error_chain::chain(&e), "upstream connection ended with an error");
            }
            // The connection's place is free for another.
            drop(slot);
        });
        Ok(sender)
    }
}

/// What a request looking for a connection does next.
enum Next {
    /// Sends on this idle connection.
    Idle(Conn),
    /// Opens a connection in this place.
    Open(OwnedSemaphorePermit),
    /// Waits in line for its turn.
    Wait(Turn<Conn>),
}

/// An upstream response body; its connection returns to the pool at the body's end.
pub struct PooledBody(Inner);

enum Inner {
    Hyper {
        body: Incoming,
        back: Option<(SendRequest<UpstreamBody>, Arc<Pool>)>,
    },
    InTask {
        body: h1::body::Body<Slot>,
        pool: Arc<Pool>,
    },
}

impl PooledBody {
    fn in_task(body: h1::body::Body<Slot>, pool: &Arc<Pool>) -> Self {
        let mut this = Self(Inner::InTask {
            body,
            pool: pool.clone(),
        });
        // No body (204, 304, HEAD) or none left: the connection is free at once.
        this.release(false);
        this
    }

    /// Gives the connection back if the body is over (`ended`: it was read to its end)
    /// and the connection reusable.
    fn release(&mut self, ended: bool) {
        match &mut self.0 {
            Inner::Hyper { body, back } => {
                if ended || body.is_end_stream() {
                    if let Some((sender, pool)) = back.take() {
                        pool.put(Conn::Hyper(sender));
                    }
                }
            }
            Inner::InTask { body, pool } => {
                if let Some(conn) = body.take_reusable() {
                    pool.put(Conn::InTask(conn));
                }
            }
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match &mut self.0 {
            Inner::Hyper { body, back } => {
                let frame = Pin::new(&mut *body).poll_frame(cx);
                // An error leaves the connection in an unknown state: it is not reused.
                if let Poll::Ready(Some(Err(_))) = &frame {
                    *back = None;
                }
                frame.map_err(Into::into)
            }
            Inner::InTask { body, .. } => Pin::new(body).poll_frame(cx),
        };
        match &frame {
            Poll::Ready(None) => self.release(true),
            Poll::Ready(Some(Ok(_))) => self.release(false),
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Hyper { body, .. } => body.is_end_stream(),
            Inner::InTask { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Hyper { body, .. } => body.size_hint(),
            Inner::InTask { body, .. } => body.size_hint(),
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body without content (204, 304, HEAD) may never be polled.
        self.release(false);
    }
}
