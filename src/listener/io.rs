//! The connection's byte stream as its servers see it: with a lingering close, and
//! with the bytes the gateway's own HTTP/1.1 server read and did not serve put back in
//! front when it hands the connection to hyper.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::watchdog::Activity;

/// How long a closing connection goes on reading (and discarding) what the client sends.
const LINGER_TIME: Duration = Duration::from_secs(5);
/// The most bytes a closing connection reads and discards.
const LINGER_BYTES: u64 = 256 << 20;

/// An I/O stream whose shutdown lingers: it closes its own side (TLS close_notify, TCP
/// FIN), then reads and discards what the peer still sends until the peer closes, for
/// at most [`LINGER_TIME`] and [`LINGER_BYTES`]. Closing a socket with unread data
/// makes the kernel send a reset, which can destroy the answer the client has not read
/// yet; lingering lets it arrive.
///
/// Bytes put back ([`Lingering::put_back`]) are read before the stream's own.
pub(super) struct Lingering<S> {
    inner: S,
    state: Linger,
    activity: Arc<Activity>,
    put_back: Bytes,
}

impl<S> Lingering<S> {
    pub(super) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            state: Linger::Open,
            activity,
            put_back: Bytes::new(),
        }
    }

    /// Makes `bytes`, read off this stream and not used, the next ones read from it.
    pub(super) fn put_back(&mut self, bytes: Bytes) {
        debug_assert!(self.put_back.is_empty());
        self.put_back = bytes;
    }
}

enum Linger {
    Open,
    Draining {
        until: Pin<Box<tokio::time::Sleep>>,
        read: u64,
    },
    Done,
}

impl<S: AsyncRead + Unpin> AsyncRead for Lingering<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.put_back.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.put_back.len().min(buf.remaining());
        buf.put_slice(&self.put_back[..n]);
        self.put_back.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                Linger::Open => {
                    if let Err(e) = std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx)) {
                        this.state = Linger::Done;
                        return Poll::Ready(Err(e));
                    }
                    this.activity.lingering();
                    this.state = Linger::Draining {
                        until: Box::pin(tokio::time::sleep(LINGER_TIME)),
                        read: 0,
                    };
                }
                Linger::Draining { until, read } => {
                    if until.as_mut().poll(cx).is_ready() || *read >= LINGER_BYTES {
                        this.state = Linger::Done;
                        continue;
                    }
                    let mut scratch = [0u8; 8192];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => *read += buf.filled().len() as u64,
                        // The peer closed, or the connection failed: nothing more to wait for.
                        Poll::Ready(_) => this.state = Linger::Done,
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Linger::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}
