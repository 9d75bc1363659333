//! The response body type: either bytes the gateway made, or the upstream's streamed body.
//!
//! An enum rather than a boxed trait object, so proxying allocates nothing for the body.
//! The request body type, with its deadlines, is [`super::request::RequestBody`].

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};

use super::pool::PooledBody;
use super::BoxError;

/// What the gateway answers a client with.
pub enum GatewayBody {
    Full(Full<Bytes>),
    Upstream(PooledBody),
}

impl GatewayBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Full::new(bytes.into()))
    }

    pub fn empty() -> Self {
        Self::Full(Full::new(Bytes::new()))
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Full(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
            Self::Upstream(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(b) => b.is_end_stream(),
            Self::Upstream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(b) => b.size_hint(),
            Self::Upstream(b) => b.size_hint(),
        }
    }
}
