//! One HTTP connection's life, once accepted (and TLS-terminated): its requests, with
//! deadlines on their bodies and panics caught; its header read and idle timeouts,
//! counting requests only (see `watchdog`); graceful close on drain and a hard close at
//! the drain deadline; and the lingering close that lets a client refused early read
//! its answer.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use super::watchdog::{Activity, ControlWake, InFlight, Verdict, Watchdog};
use super::{ConnInfo, Handler, Lifecycle};
use crate::config::Limits;
use crate::upstream::body::GatewayBody;
use crate::upstream::request::RequestBody;

/// How long a closing connection goes on reading (and discarding) what the client sends.
const LINGER_TIME: Duration = Duration::from_secs(5);
/// The most bytes a closing connection reads and discards.
const LINGER_BYTES: u64 = 256 << 20;

/// Serves HTTP on one connection until it closes, the gateway drains it, or the drain
/// deadline passes. `h2`: ALPN chose HTTP/2 (a plain connection is known to speak it at
/// its first request).
pub(super) async fn run_http<S, H>(
    io: S,
    h2: bool,
    info: ConnInfo,
    handler: Arc<H>,
    builder: auto::Builder<TokioExecutor>,
    limits: Limits,
    mut shutdown: watch::Receiver<Lifecycle>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let activity = Arc::new(Activity::new(h2));
    let io = Lingering {
        inner: io,
        state: Linger::Open,
        activity: activity.clone(),
    };
    let service_activity = activity.clone();
    let (body_read_timeout, request_timeout) = (limits.body_read_timeout, limits.request_timeout);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        let activity = service_activity.clone();
        async move {
            if req.version() == http::Version::HTTP_2 {
                activity.saw_h2();
            }
            // In flight until the response body has been sent (or dropped).
            let in_flight = InFlight::new(activity);
            let deadline = tokio::time::Instant::now() + request_timeout;
            let req = req.map(|body| RequestBody::new(body, body_read_timeout, deadline));
            // The handler does not mutate shared state half-way in a way a later request
            // could observe broken (locks it holds are poison-tolerant), so a panic
            // ends the request, not the connection.
            let resp = match AssertUnwindSafe(handler.handle(req, info)).catch_unwind().await {
                Ok(resp) => resp,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .copied()
                        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                        .unwrap_or("(not a string)");
                    handler.panicked(info, message)
                }
            };
            Ok::<_, Infallible>(resp.map(|body| Counted {
                body,
                _in_flight: in_flight,
            }))
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut watchdog = Watchdog::new(
        limits.header_read_timeout,
        limits.idle_timeout,
        tokio::time::Instant::now(),
    );
    let timer = tokio::time::sleep(watchdog.period());
    tokio::pin!(timer);
    let (control, control_waker) = ControlWake::waker();
    let mut phase = *shutdown.borrow_and_update();
    let mut watching = true;
    let mut closing = false;
    loop {
        if phase == Lifecycle::Closing {
            tracing::debug!(peer = %info.peer, "drain deadline passed: closing the connection");
            return;
        }
        if phase == Lifecycle::Draining && !closing {
            conn.as_mut().graceful_shutdown();
            closing = true;
        }
        // The connection is polled at every wake-up; the timer and the shutdown signal
        // only when they woke the task (see `ControlWake`). A new shutdown future must
        // be polled once to register.
        control.mark();
        let event = {
            let changed = async {
                if watching {
                    shutdown.changed().await
                } else {
                    std::future::pending().await
                }
            };
            tokio::pin!(changed);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                    return Poll::Ready(Event::Ended(result));
                }
                if control.take(cx.waker()) {
                    let mut controls = Context::from_waker(&control_waker);
                    if timer.as_mut().poll(&mut controls).is_ready() {
                        return Poll::Ready(Event::Check);
                    }
                    if let Poll::Ready(changed) = changed.as_mut().poll(&mut controls) {
                        return Poll::Ready(Event::Shutdown(changed.is_ok()));
                    }
                }
                Poll::Pending
            })
            .await
        };
        match event {
            Event::Ended(result) => {
                if let Err(e) = result {
                    tracing::debug!(peer = %info.peer, error = %crate::error_chain::chain(&*e), "connection ended with an error");
                }
                return;
            }
            Event::Check => {
                let now = tokio::time::Instant::now();
                match watchdog.check(now, &activity) {
                    Verdict::Keep => {}
                    Verdict::Close(reason) => {
                        tracing::debug!(peer = %info.peer, reason, "closing the connection");
                        if !closing {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                    Verdict::CloseNow => {
                        tracing::debug!(peer = %info.peer, "connection still open a period after it was asked to close: closing it now");
                        return;
                    }
                }
                timer.as_mut().reset(now + watchdog.period());
            }
            Event::Shutdown(true) => phase = *shutdown.borrow_and_update(),
            // The gateway is gone: drain.
            Event::Shutdown(false) => {
                watching = false;
                phase = phase.max(Lifecycle::Draining);
            }
        }
    }
}

/// What woke the connection's loop with something to do.
enum Event<E> {
    Ended(Result<(), E>),
    Check,
    /// The shutdown signal changed (`true`) or its sender is gone (`false`).
    Shutdown(bool),
}

/// A response body that keeps its request counted in flight until it is done.
struct Counted {
    body: GatewayBody,
    _in_flight: InFlight,
}

impl hyper::body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = crate::upstream::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, crate::upstream::BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// An I/O stream whose shutdown lingers: it closes its own side (TLS close_notify, TCP
/// FIN), then reads and discards what the peer still sends until the peer closes, for
/// at most [`LINGER_TIME`] and [`LINGER_BYTES`]. Closing a socket with unread data
/// makes the kernel send a reset, which can destroy the answer the client has not read
/// yet; lingering lets it arrive.
struct Lingering<S> {
    inner: S,
    state: Linger,
    activity: Arc<Activity>,
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
        Pin::new(&mut self.inner).poll_read(cx, buf)
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
