//! The request body: what a client sends, with deadlines, and what goes upstream (the
//! same body, cut off at `max_body`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Limited;
use hyper::body::{Body, Frame, SizeHint};

/// The request body sent upstream: the client's, cut off at `max_body`.
pub type UpstreamBody = Limited<RequestBody>;

/// A request body as the client sends it, with deadlines: at most `read_timeout` between
/// two pieces of it, and all of it before the request's deadline (set when its head
/// arrived). A body that misses either ends with [`BodyError::TimedOut`]; one that is
/// malformed (a bad chunk size, a connection cut mid-body) with [`BodyError::Malformed`].
/// Both are the client's fault, told apart from the upstream's by their type.
///
/// The timer is made only when the client keeps the gateway waiting: a request without a
/// body, or whose body is already buffered, costs no allocation.
pub struct RequestBody {
    /// `None`: the request has no body (its head said so, and no hyper connection reads
    /// one).
    inner: Option<hyper::body::Incoming>,
    read_timeout: std::time::Duration,
    deadline: tokio::time::Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    progress: Option<BodyProgress>,
    /// The whole body, already read and checked (a route's `request_fields`): sent as
    /// is, once, in place of the client's stream, which is over.
    checked: Option<Bytes>,
}

/// Whether a request body is waiting on its client (asked for more, none came yet) or
/// on whoever reads it: what tells a slow client from a slow upstream while the body
/// streams upstream.
#[derive(Clone, Default)]
pub struct BodyProgress(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl BodyProgress {
    /// The body was asked for more and the client has not sent it yet.
    pub fn waiting_on_client(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set(&self, waiting: bool) {
        self.0.store(waiting, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Why a client's request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body not received in time")]
    TimedOut,
    #[error("malformed request body")]
    Malformed(#[source] hyper::Error),
}

impl RequestBody {
    pub fn new(
        inner: hyper::body::Incoming,
        read_timeout: std::time::Duration,
        deadline: tokio::time::Instant,
    ) -> Self {
        Self {
            inner: Some(inner),
            read_timeout,
            deadline,
            timer: None,
            progress: None,
            checked: None,
        }
    }

    /// The body of a request whose head says it has none.
    pub fn empty(read_timeout: std::time::Duration, deadline: tokio::time::Instant) -> Self {
        Self {
            inner: None,
            read_timeout,
            deadline,
            timer: None,
            progress: None,
            checked: None,
        }
    }

    /// Reads the whole body, at most `limit` bytes, under the same deadlines as a
    /// streamed one. `Ok(None)`: longer than `limit`. Trailers are dropped.
    pub async fn read_whole(&mut self, limit: u64) -> Result<Option<Bytes>, BodyError> {
        use http_body_util::BodyExt;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut first: Option<Bytes> = None;
        let mut rest: Vec<u8> = Vec::new();
        while let Some(frame) = self.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            let total = first.as_ref().map_or(0, Bytes::len) + rest.len() + data.len();
            if total > limit {
                return Ok(None);
            }
            // One piece (the usual case) is kept without a copy.
            match &first {
                None if rest.is_empty() => first = Some(data),
                _ => {
                    if let Some(f) = first.take() {
                        rest.extend_from_slice(&f);
                    }
                    rest.extend_from_slice(&data);
                }
            }
        }
        Ok(Some(first.unwrap_or_else(|| Bytes::from(rest))))
    }

    /// Makes `bytes` the body sent upstream; the client's body must be over (read by
    /// [`RequestBody::read_whole`]).
    pub fn set_checked(&mut self, bytes: Bytes) {
        self.checked = Some(bytes);
    }

    /// A handle that tells whether the body waits on its client; `None` for a body that
    /// is already complete (no allocation for requests without one).
    pub fn progress(&mut self) -> Option<BodyProgress> {
        if self.inner.as_ref().is_none_or(Body::is_end_stream) {
            return None;
        }
        Some(self.progress.get_or_insert_with(BodyProgress::default).clone())
    }

    fn next_deadline(&self) -> tokio::time::Instant {
        (tokio::time::Instant::now() + self.read_timeout).min(self.deadline)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(bytes) = this.checked.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if let Some(p) = &this.progress {
            p.set(polled.is_pending());
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                // Progress: the gap allowed before the next piece starts again.
                let next = this.next_deadline();
                if let Some(timer) = this.timer.as_mut() {
                    timer.as_mut().reset(next);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Malformed(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let next = this.next_deadline();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(next)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::TimedOut))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.checked.is_none() && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.checked {
            Some(bytes) => SizeHint::with_exact(bytes.len() as u64),
            None => self.inner.as_ref().map_or(SizeHint::with_exact(0), Body::size_hint),
        }
    }
}
