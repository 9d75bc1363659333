//! One HTTP connection's life, once accepted (and TLS-terminated): its requests, with
//! deadlines on their bodies and panics caught; its header read and idle timeouts,
//! counting requests only (see `watchdog`); graceful close on drain and a hard close at
//! the drain deadline; and the lingering close that lets a client refused early read
//! its answer (see `io`).
//!
//! An HTTP/1 connection starts on the gateway's own server (see `h1`), which hands it
//! to hyper at the first request it does not take; an HTTP/2 one is hyper's from the
//! start. Both are driven by the same loop, with the same timeouts and shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::h1;
use super::io::Lingering;
use super::stamp::Stamp;
use super::watchdog::{Activity, ControlWake, InFlight, Verdict, Watchdog};
use super::{ConnInfo, Handler, Lifecycle};
use crate::config::Limits;
use crate::upstream::body::GatewayBody;
use crate::upstream::request::RequestBody;

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
    shutdown: watch::Receiver<Lifecycle>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let activity = Arc::new(Activity::new(h2));
    let mut io = Lingering::new(io, activity.clone());
    let responder = Arc::new(Responder {
        handler,
        activity: activity.clone(),
        info,
        request_timeout: limits.request_timeout,
        body_read_timeout: limits.body_read_timeout,
    });
    let mut controls = Controls::new(&limits, activity.clone(), shutdown);
    if !h2 {
        let closing = AtomicBool::new(false);
        let own = h1::serve(
            io,
            |req| responder.respond(req.map(|()| None)),
            h1::Limits {
                max_head: limits.max_header_bytes.max(8192),
                max_fields: limits.max_headers,
            },
            &closing,
        );
        let mut own = std::pin::pin!(own);
        match controls
            .drive(own.as_mut(), |_| closing.store(true, Ordering::Release), &info)
            .await
        {
            None => return,
            Some(h1::Ended::Closed(result)) => {
                if let Err(e) = result {
                    tracing::debug!(peer = %info.peer, error = %e, "connection ended with an error");
                }
                return;
            }
            Some(h1::Ended::HandOff(handed, read)) => {
                io = handed;
                io.put_back(read);
            }
        }
    }
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let responder = responder.clone();
        async move {
            if req.version() == http::Version::HTTP_2 {
                responder.activity.saw_h2();
            }
            // hyper writes the head from the map: the stamp's fields go into it.
            let (mut resp, stamp) = responder.respond(req.map(Some)).await;
            stamp.insert_into(resp.headers_mut());
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    if let Some(Err(e)) = controls.drive(conn.as_mut(), |c| c.graceful_shutdown(), &info).await {
        tracing::debug!(peer = %info.peer, error = %crate::error_chain::chain(&*e), "connection ended with an error");
    }
}

/// Answers a connection's requests: the handler's answer, with panics caught, counted
/// in flight until its body has been sent.
struct Responder<H> {
    handler: Arc<H>,
    activity: Arc<Activity>,
    info: ConnInfo,
    request_timeout: std::time::Duration,
    body_read_timeout: std::time::Duration,
}

impl<H: Handler> Responder<H> {
    /// `body`: the body as hyper reads it; `None` for a request without one.
    async fn respond(&self, req: Request<Option<Incoming>>) -> (Response<Counted>, Stamp) {
        // In flight until the response body has been sent (or dropped).
        let in_flight = InFlight::new(self.activity.clone());
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let read_timeout = self.body_read_timeout;
        let req = req.map(|body| match body {
            Some(body) => RequestBody::new(body, read_timeout, deadline),
            None => RequestBody::empty(read_timeout, deadline),
        });
        // The handler does not mutate shared state half-way in a way a later request
        // could observe broken (locks it holds are poison-tolerant), so a panic ends the
        // request, not the connection.
        let (resp, stamp) = match AssertUnwindSafe(self.handler.handle(req, self.info))
            .catch_unwind()
            .await
        {
            Ok(resp) => resp,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(not a string)");
                self.handler.panicked(self.info, message)
            }
        };
        let resp = resp.map(|body| Counted {
            body,
            _in_flight: in_flight,
        });
        (resp, stamp)
    }
}

/// What a connection is driven by besides its own bytes: its watchdog and timer, and
/// the gateway's shutdown signal.
struct Controls {
    watchdog: Watchdog,
    activity: Arc<Activity>,
    timer: Pin<Box<tokio::time::Sleep>>,
    control: Arc<ControlWake>,
    control_waker: std::task::Waker,
    shutdown: watch::Receiver<Lifecycle>,
    phase: Lifecycle,
    watching: bool,
    /// The connection was asked to close gracefully.
    closing: bool,
}

impl Controls {
    fn new(limits: &Limits, activity: Arc<Activity>, mut shutdown: watch::Receiver<Lifecycle>) -> Self {
        let watchdog = Watchdog::new(
            limits.header_read_timeout,
            limits.idle_timeout,
            tokio::time::Instant::now(),
        );
        let timer = Box::pin(tokio::time::sleep(watchdog.period()));
        let (control, control_waker) = ControlWake::waker();
        let phase = *shutdown.borrow_and_update();
        Self {
            watchdog,
            activity,
            timer,
            control,
            control_waker,
            shutdown,
            phase,
            watching: true,
            closing: false,
        }
    }

    /// Polls `conn` to its end, asking it to close gracefully (`graceful`) on drain or
    /// when the watchdog says so. `None`: the connection is to be dropped now (the drain
    /// deadline passed, or it did not close when asked).
    async fn drive<C: Future>(
        &mut self,
        mut conn: Pin<&mut C>,
        mut graceful: impl FnMut(Pin<&mut C>),
        info: &ConnInfo,
    ) -> Option<C::Output> {
        let mut told = false;
        loop {
            if self.phase == Lifecycle::Closing {
                tracing::debug!(peer = %info.peer, "drain deadline passed: closing the connection");
                return None;
            }
            if self.phase == Lifecycle::Draining {
                self.closing = true;
            }
            if self.closing && !told {
                graceful(conn.as_mut());
                told = true;
            }
            // The connection is polled at every wake-up; the timer and the shutdown signal
            // only when they woke the task (see `ControlWake`). A new shutdown future must
            // be polled once to register.
            self.control.mark();
            let event = {
                let watching = self.watching;
                let shutdown = &mut self.shutdown;
                let changed = async move {
                    if watching {
                        shutdown.changed().await
                    } else {
                        std::future::pending().await
                    }
                };
                let mut changed = std::pin::pin!(changed);
                let (control, control_waker, timer) = (&self.control, &self.control_waker, &mut self.timer);
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(out) = conn.as_mut().poll(cx) {
                        return Poll::Ready(Event::Ended(out));
                    }
                    if control.take(cx.waker()) {
                        let mut controls = Context::from_waker(control_waker);
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
                Event::Ended(out) => return Some(out),
                Event::Check => {
                    let now = tokio::time::Instant::now();
                    match self.watchdog.check(now, &self.activity) {
                        Verdict::Keep => {}
                        Verdict::Close(reason) => {
                            tracing::debug!(peer = %info.peer, reason, "closing the connection");
                            self.closing = true;
                        }
                        Verdict::CloseNow => {
                            tracing::debug!(peer = %info.peer, "connection still open a period after it was asked to close: closing it now");
                            return None;
                        }
                    }
                    self.timer.as_mut().reset(now + self.watchdog.period());
                }
                Event::Shutdown(true) => self.phase = *self.shutdown.borrow_and_update(),
                // The gateway is gone: drain.
                Event::Shutdown(false) => {
                    self.watching = false;
                    self.phase = self.phase.max(Lifecycle::Draining);
                }
            }
        }
    }
}

/// What woke the connection's loop with something to do.
enum Event<T> {
    Ended(T),
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
