//! The gateway's own HTTP/1.1 server for the plainest requests, in the connection's
//! task: read a head, serve it, write the response, again; no dispatcher, channels or
//! per-request state beyond the request's own future.
//!
//! It takes a connection from its first byte and keeps it while its requests are ones it
//! takes (see [`request`]): `GET`, `DELETE` and `OPTIONS` without a body, in HTTP/1.1 and
//! origin form. At the first request that is anything else (a body, `HEAD`, HTTP/1.0,
//! `Expect`, an upgrade, the HTTP/2 preface, a head malformed or over the limits), it
//! hands the connection, with every byte read and not yet served, to hyper, which serves
//! or refuses it from there exactly as it would have from the start. So framing a body
//! and refusing a bad head stay hyper's alone.
//!
//! As hyper does, it reads on while a request is in flight: bytes that come are kept
//! (the next request's), and the client closing the connection cancels the request.

pub(super) mod request;
pub(super) mod response;
#[cfg(test)]
mod tests;

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use http::header::HeaderName;
use http::{Request, Response};
use hyper::body::Body;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::io::poll_read_buf;

use super::stamp::Stamp;
use request::Parsed;
use response::Framing;

/// The read buffer's size, as hyper's.
const READ_BUF: usize = 8192;
/// Less room than this left in the read buffer is made more before a read.
const MIN_READ: usize = 1024;
/// Response bytes gathered before they are written; a larger body piece goes out as it is.
const WRITE_BUF: usize = 16 << 10;

/// How serving a connection ended.
pub(super) enum Ended<S> {
    /// The connection is closed (`Err`: it failed).
    Closed(io::Result<()>),
    /// hyper serves the connection from here: `Bytes` were read and not yet served.
    HandOff(S, Bytes),
}

/// What the server needs to know of its connection's limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// The longest head taken (hyper's `max_buf_size`).
    pub max_head: usize,
    pub max_fields: usize,
}

/// Serves requests on `io` with `respond` (given each request without a body) until the
/// connection closes or is handed to hyper. `closing` asks it to close once no request
/// is in flight or half read (a graceful close); the caller polls the returned future
/// again after setting it.
pub(super) async fn serve<S, F, Fut, B>(mut io: S, respond: F, limits: Limits, closing: &AtomicBool) -> Ended<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn(Request<()>) -> Fut,
    Fut: Future<Output = (Response<B>, Stamp)>,
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let mut scratch: Vec<(HeaderName, usize, usize)> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    loop {
        let parts = loop {
            if !buf.is_empty() {
                match request::parse(&mut buf, limits.max_head, limits.max_fields, &mut scratch) {
                    Parsed::Request(parts) => break parts,
                    Parsed::HandOff => return Ended::HandOff(io, buf.freeze()),
                    Parsed::Partial => {}
                }
            }
            // Between requests a graceful close is taken at once; a head half read is
            // read to its end first.
            let read = poll_fn(|cx| {
                if buf.is_empty() && closing.load(Ordering::Acquire) {
                    return Poll::Ready(Ok(0));
                }
                // Room is made only when little is left: the buffer is taken back (its
                // heads let go) or renewed once every few requests, not at every read.
                if buf.capacity() - buf.len() < MIN_READ {
                    buf.reserve(READ_BUF);
                }
                poll_read_buf(Pin::new(&mut io), cx, &mut buf)
            })
            .await;
            match read {
                Ok(0) => return Ended::Closed(close(&mut io).await),
                Ok(_) => {}
                Err(e) => return Ended::Closed(Err(e)),
            }
        };
        let resp = {
            let served = respond(Request::from_parts(parts, ()));
            let mut served = std::pin::pin!(served);
            let room = limits.max_head;
            poll_fn(|cx| {
                if let Poll::Ready(resp) = served.as_mut().poll(cx) {
                    return Poll::Ready(Some(resp));
                }
                // Watching the connection: what comes is kept for the next request, up to
                // a head's limit; the client closing it cancels this one.
                while buf.len() < room {
                    if buf.capacity() - buf.len() < MIN_READ {
                        buf.reserve(READ_BUF);
                    }
                    match poll_read_buf(Pin::new(&mut io), cx, &mut buf) {
                        Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(None),
                        Poll::Ready(Ok(_)) => {}
                        Poll::Pending => break,
                    }
                }
                Poll::Pending
            })
            .await
        };
        let Some((resp, stamp)) = resp else {
            return Ended::Closed(Ok(()));
        };
        let (mut parts, body) = resp.into_parts();
        out.clear();
        let (framing, close_after) = response::encode_head(
            parts.status,
            &parts.headers,
            &stamp,
            &body.size_hint(),
            body.is_end_stream(),
            closing.load(Ordering::Acquire),
            &mut out,
        );
        // The head is written: its map is kept for the next head.
        crate::header_maps::give_back(std::mem::take(&mut parts.headers));
        drop((parts, stamp));
        if let Err(e) = write_body(&mut io, body, framing, &mut out).await {
            return Ended::Closed(Err(e));
        }
        // An idle connection keeps no more than a small response's worth of buffers.
        if out.capacity() > WRITE_BUF / 2 {
            out = Vec::new();
        }
        if buf.is_empty() && buf.capacity() > 2 * READ_BUF {
            buf = BytesMut::with_capacity(READ_BUF);
        }
        // A graceful close asked for while the response was written ends the connection
        // now too: requests pipelined behind it are not started (as with hyper).
        if close_after || closing.load(Ordering::Acquire) {
            return Ended::Closed(close(&mut io).await);
        }
    }
}

/// Writes the head in `out` and then `body`, framed, and flushes.
async fn write_body<S, B>(io: &mut S, body: B, framing: Framing, out: &mut Vec<u8>) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    use futures_util::FutureExt;
    use http_body_util::BodyExt;
    let mut body = std::pin::pin!(body);
    let mut left = match framing {
        Framing::Length(n) => n,
        Framing::Chunked => u64::MAX,
        Framing::Nothing => 0,
    };
    if !matches!(framing, Framing::Nothing | Framing::Length(0)) {
        loop {
            // A piece not ready yet: what is gathered (the head, the pieces so far) goes
            // out first, so a body that streams reaches the client as it comes.
            let frame = match body.frame().now_or_never() {
                Some(frame) => frame,
                None => {
                    io.write_all(out).await?;
                    out.clear();
                    io.flush().await?;
                    body.frame().await
                }
            };
            let Some(frame) = frame else {
                break;
            };
            let frame = frame.map_err(|e| io::Error::other(format!("response body failed: {e}")))?;
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            if framing == Framing::Chunked {
                response::chunk_start(data.len(), out);
            } else {
                if data.len() as u64 > left {
                    return Err(io::Error::other("response body longer than its length"));
                }
                left -= data.len() as u64;
            }
            if data.len() <= WRITE_BUF {
                out.extend_from_slice(&data);
            } else {
                io.write_all(out).await?;
                out.clear();
                while data.has_remaining() {
                    let n = io.write(&data).await?;
                    if n == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    data.advance(n);
                }
            }
            if framing == Framing::Chunked {
                out.extend_from_slice(b"\r\n");
            }
            if out.len() >= WRITE_BUF {
                io.write_all(out).await?;
                out.clear();
            }
            if framing != Framing::Chunked && left == 0 {
                break;
            }
        }
        match framing {
            Framing::Chunked => out.extend_from_slice(response::CHUNKED_END),
            Framing::Length(_) if left > 0 => {
                // The head promised more than came: what was sent cannot be completed.
                io.write_all(out).await?;
                return Err(io::Error::other("response body shorter than its length"));
            }
            _ => {}
        }
    }
    io.write_all(out).await?;
    out.clear();
    io.flush().await
}

/// Closes the connection from this side (see the lingering close in `connection`).
async fn close<S: AsyncWrite + Unpin>(io: &mut S) -> io::Result<()> {
    io.shutdown().await
}
