//! HTTP/1.1 to an upstream inside the request's own task, for requests without a body
//! (`GET`, `HEAD`), over plain TCP or TLS ([`stream::Stream`]): the request head is
//! written and the response head read by the request's future, and the response body is
//! read from the socket as the client's side polls it. There is no connection task, no
//! channel between the request and its connection and no wake-up between them: the work
//! hyper's client connection does in a task of its own, and the hand-offs to and from
//! it, are most of what a proxied request costs beyond nginx's.
//!
//! What keeps responses in step with their requests:
//! - one exchange at a time on a connection, which the exchange owns until the body's
//!   end (a request or body dropped half-way closes it);
//! - framing decided strictly from the head ([`head::framing`]), ambiguous framing
//!   refused;
//! - a connection kept only after a body that ended where its framing said, with the
//!   head allowing it and no byte beyond it received ([`body::Body::take_reusable`]);
//! - an idle connection checked before use: one the upstream closed, or on which it sent
//!   anything unasked, is not used ([`Connection::is_closed`]).
//!
//! Over TLS, a close-delimited body ends only at the upstream's `close_notify`: a bare
//! TCP close there is a truncation, an error (rustls reports it), never a clean end.
//!
//! Requests with a body go through hyper's client.

pub mod body;
pub mod head;
pub mod stream;
#[cfg(test)]
mod tests;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::header::HeaderName;
use http::{Method, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::upstream::BoxError;
use body::Body;
use head::{Head, Parsed, Written};
use stream::Stream;

/// Read buffer given to a connection, and the least free room it reads into; a body
/// whose reads fill the room doubles it, up to [`MAX_READ`].
const READ_BUF: usize = 8 * 1024;
const MAX_READ: usize = 256 * 1024;

/// Why an exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// Nothing of a response arrived: the upstream closed or reset the connection (on a
    /// reused one, it may have closed it while idle). A request without a body may be
    /// sent again on another connection.
    Unanswered(BoxError),
    /// The exchange failed after the upstream began to answer, or its answer was refused.
    Failed(BoxError),
}

impl From<ExchangeError> for BoxError {
    fn from(e: ExchangeError) -> Self {
        match e {
            ExchangeError::Unanswered(e) | ExchangeError::Failed(e) => e,
        }
    }
}

/// An upstream connection for in-task exchanges, with `guard`: its place in its pool,
/// held until the connection closes.
pub struct Connection<G> {
    stream: Stream,
    buf: BytesMut,
    /// The request head being written.
    out: Vec<u8>,
    /// Header fields of the response head being parsed.
    scratch: Vec<(HeaderName, usize, usize)>,
    /// Room made for the next read.
    room: usize,
    guard: G,
}

/// Whether a request can be sent in-task: `GET` or `HEAD`, with no body.
pub fn fits<B: hyper::body::Body>(req: &Request<B>) -> bool {
    (req.method() == Method::GET || req.method() == Method::HEAD) && req.body().is_end_stream()
}

impl<G> Connection<G> {
    pub fn new(stream: impl Into<Stream>, guard: G) -> Self {
        Self {
            stream: stream.into(),
            buf: BytesMut::new(),
            out: Vec::new(),
            scratch: Vec::new(),
            room: READ_BUF,
            guard,
        }
    }

    /// The socket and the guard, for a connection to carry on with another HTTP/1.1
    /// client. Only a connection with nothing unread (as every idle one is) is given up.
    pub fn into_parts(self) -> Option<(Stream, G)> {
        self.buf.is_empty().then_some((self.stream, self.guard))
    }

    /// Whether an idle connection is unusable: the upstream closed it, reset it, or sent
    /// something no request asked for (see [`Stream::is_closed`]).
    pub fn is_closed(&mut self) -> bool {
        self.stream.is_closed()
    }

    /// The buffer a request's head is written into ([`head::Written::new`]); it comes
    /// back with the exchange.
    pub fn take_buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Sends a request's `head` (the request has no body: see [`fits`]) and reads the
    /// response head, skipping interim (`1xx`) responses. The body is read through the
    /// [`Body`], which holds the connection until the body's end. Unanswered, `head` is
    /// as it was, to be sent on another connection.
    pub async fn exchange(mut self, head: &mut Written) -> Result<(http::response::Parts, Body<G>), ExchangeError> {
        // Flushed: over TLS the last record may still be in the session.
        if let Err(e) = async {
            self.stream.write_all(head.as_bytes()).await?;
            self.stream.flush().await
        }
        .await
        {
            return Err(ExchangeError::Unanswered(e.into()));
        }
        let mut answered = false;
        loop {
            if !self.buf.is_empty() {
                answered = true;
                match head::parse_response(&mut self.buf, head.head_request, &mut self.scratch) {
                    Ok(Parsed::Head(Head {
                        parts,
                        framing,
                        reusable,
                    })) => {
                        self.out = head.take_buffer();
                        return Ok((parts, Body::new(self, framing, reusable)));
                    }
                    Ok(Parsed::Interim) => continue,
                    Ok(Parsed::Partial) => {}
                    Err(e) => return Err(ExchangeError::Failed(e.into())),
                }
            }
            self.reserve();
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) if answered => return Err(ExchangeError::Failed("upstream closed mid-head".into())),
                Ok(0) => return Err(ExchangeError::Unanswered("upstream closed before answering".into())),
                Ok(_) => {}
                Err(e) if answered => return Err(ExchangeError::Failed(e.into())),
                Err(e) => return Err(ExchangeError::Unanswered(e.into())),
            }
        }
    }

    fn reserve(&mut self) {
        if self.buf.capacity() - self.buf.len() < self.room / 2 {
            self.buf.reserve(self.room);
        }
    }

    /// Reads what the socket has into the buffer: `Ok(0)` when the upstream has closed.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.reserve();
        let spare = self.buf.capacity() - self.buf.len();
        let read = std::task::ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.stream),
            cx,
            &mut self.buf
        ));
        if matches!(read, Ok(n) if n == spare) {
            self.room = (self.room * 2).min(MAX_READ);
        }
        Poll::Ready(read)
    }

    /// Back to a small buffer once a large body is over, before the connection idles.
    pub(super) fn shrink(&mut self) {
        if self.room > READ_BUF {
            self.room = READ_BUF;
            self.buf = BytesMut::new();
        }
    }
}
