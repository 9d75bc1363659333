//! The response body of an in-task exchange, read from the upstream connection as the
//! client's side asks for it: `Content-Length` bytes, chunked (RFC 9112 §7.1), or until
//! the upstream closes. The decoder works on the connection's buffer alone
//! ([`Decoder::step`]), so what it accepts can be tested and fuzzed without a socket.
//!
//! The connection comes back out of the body ([`Body::take_reusable`]) only when the
//! body ended where its framing said it would, the head allowed another exchange, and
//! not one byte beyond the response was received: anything else closes it, so no
//! response can be read as the answer to the next request.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};

use super::head::Framing;
use super::Connection;
use crate::upstream::BoxError;

/// The longest chunk-size line (with its extensions), and the most trailer bytes read.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// This many bytes left of a `Content-Length` body.
    Length(u64),
    /// At a chunk-size line.
    ChunkSize,
    /// This many bytes left of a chunk's data.
    ChunkData(u64),
    /// At the CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: trailer fields (read and dropped) up to an empty line.
    Trailers,
    /// Until the upstream closes.
    Close,
    /// The body is over.
    Done,
}

/// What one step of decoding found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body bytes.
    Data(Bytes),
    /// Nothing decodable yet: more must be read.
    More,
    /// The body is over.
    Done,
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    #[error("upstream closed the connection before the body's end")]
    Incomplete,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => Self::Done,
            Framing::Length(n) => Self::Length(n),
            Framing::Chunked => Self::ChunkSize,
            Framing::Close => Self::Close,
        }
    }

    /// Decodes what `buf` holds, removing what it used.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, BodyError> {
        loop {
            match *self {
                Self::Done => return Ok(Step::Done),
                Self::Length(left) | Self::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                    let left = left - n as u64;
                    *self = match (*self, left) {
                        (Self::Length(_), 0) => Self::Done,
                        (Self::Length(_), _) => Self::Length(left),
                        (_, 0) => Self::ChunkEnd,
                        _ => Self::ChunkData(left),
                    };
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                Self::Close => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                Self::ChunkSize => {
                    let Some(end) = line_end(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Step::More);
                    };
                    let size = chunk_size(&buf[..end])?;
                    buf.advance(end + 2);
                    *self = if size == 0 {
                        Self::Trailers
                    } else {
                        Self::ChunkData(size)
                    };
                }
                Self::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(BodyError::Chunked("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Self::ChunkSize;
                }
                Self::Trailers => {
                    // Lines up to an empty one; each line is checked as it completes.
                    let Some(end) = line_end(buf, MAX_TRAILERS)? else {
                        return Ok(Step::More);
                    };
                    let empty = end == 0;
                    if !empty && buf[..end].iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
                        return Err(BodyError::Chunked("control character in a trailer field"));
                    }
                    buf.advance(end + 2);
                    if empty {
                        *self = Self::Done;
                    }
                }
            }
        }
    }

    /// The upstream closed the connection: the end of a close-delimited body, an error
    /// anywhere else.
    pub fn closed(&mut self) -> Result<(), BodyError> {
        match *self {
            Self::Close | Self::Done => {
                *self = Self::Done;
                Ok(())
            }
            _ => Err(BodyError::Incomplete),
        }
    }
}

/// Where the CRLF ending the first line of `buf` is, if within `max` bytes; a bare LF or
/// CR there is an error.
fn line_end(buf: &[u8], max: usize) -> Result<Option<usize>, BodyError> {
    let window = &buf[..buf.len().min(max + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) if lf > 0 && window[lf - 1] == b'\r' && !window[..lf - 1].contains(&b'\r') => Ok(Some(lf - 1)),
        Some(_) => Err(BodyError::Chunked("line not ended by CRLF")),
        None if window.len() >= max + 2 => Err(BodyError::Chunked("line too long")),
        None if window[..window.len().saturating_sub(1)].contains(&b'\r') => {
            Err(BodyError::Chunked("line not ended by CRLF"))
        }
        None => Ok(None),
    }
}

/// A chunk-size line (without its CRLF): hex digits, then optional whitespace and
/// `;`-extensions, which are dropped; no control characters.
fn chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let hex = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if hex == 0 || hex > 15 {
        return Err(BodyError::Chunked("bad chunk size"));
    }
    let rest = &line[hex..];
    let rest_ok = rest
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80)
        && rest
            .iter()
            .find(|&&b| b != b' ' && b != b'\t')
            .is_none_or(|&b| b == b';');
    if !rest_ok {
        return Err(BodyError::Chunked("bad chunk extension"));
    }
    line[..hex].iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(16).ok_or(BodyError::Chunked("bad chunk size"))?;
        Ok(n * 16 + u64::from(d))
    })
}

/// A response body read from its connection, which it holds until the end.
pub struct Body<G> {
    conn: Option<Connection<G>>,
    decoder: Decoder,
    /// The head allowed another exchange on the connection.
    reusable: bool,
}

impl<G> Body<G> {
    pub(super) fn new(conn: Connection<G>, framing: Framing, reusable: bool) -> Self {
        let mut body = Self {
            conn: Some(conn),
            decoder: Decoder::new(framing),
            reusable,
        };
        if body.decoder == Decoder::Done {
            body.ended();
        }
        body
    }

    /// The connection, if the body is over and it may carry another exchange.
    pub fn take_reusable(&mut self) -> Option<Connection<G>> {
        if self.decoder != Decoder::Done {
            return None;
        }
        let mut conn = self.conn.take()?;
        conn.shrink();
        Some(conn)
    }

    /// The body is over: its connection is kept only if nothing is left unread in it.
    fn ended(&mut self) {
        self.decoder = Decoder::Done;
        if !self.reusable || self.conn.as_ref().is_some_and(|c| !c.buf.is_empty()) {
            self.conn = None;
        }
    }

    fn failed(&mut self) {
        self.conn = None;
        self.decoder = Decoder::Done;
    }
}

impl<G: Unpin> hyper::body::Body for Body<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.step(&mut conn.buf) {
                Ok(Step::Data(data)) => {
                    if this.decoder == Decoder::Done {
                        this.ended();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::Done) => {
                    this.ended();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(e) => {
                    this.failed();
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            match std::task::ready!(conn.poll_fill(cx)) {
                Ok(0) => {
                    if let Err(e) = this.decoder.closed() {
                        this.failed();
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    this.failed();
                    return Poll::Ready(None);
                }
                Ok(_) => {}
                Err(e) => {
                    this.failed();
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder == Decoder::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Done => SizeHint::with_exact(0),
            Decoder::Length(left) => SizeHint::with_exact(left),
            _ => SizeHint::default(),
        }
    }
}
