//! The upstreams: keep-alive connection pools per upstream and connection worker, the
//! body types on both sides of the gateway, and the upstream call with its timeout.
//!
//! Below the pipeline and the error map: nothing here knows about policies or about how
//! a failure becomes a response. [`UpstreamTarget::send`] says what went wrong with a
//! [`SendError`]; the forward phase turns it into a `GatewayError`.

pub mod added;
pub mod body;
mod conn;
pub mod h1;
mod line;
pub mod pool;
pub mod request;
#[cfg(test)]
mod tests;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response};

use crate::config::{Config, Upstream};
use crate::workers::deadlines::Deadline;
use added::Added;
use pool::{Pool, PooledBody};
use request::{BodyProgress, UpstreamBody};

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy `Keep-Alive` and
/// `Proxy-Connection`): meaningful for one connection only, never forwarded. The in-task
/// client reads them off a response head and leaves them out of the response; the
/// forward phase strips them (and those `Connection` names) from both directions.
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The options a `Connection` field's value lists (RFC 9110 §7.6.1): split at commas,
/// trimmed, empty ones left out; compared without regard to case by the caller.
pub fn connection_options(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// An error of any kind, sent between threads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request sent upstream got no response.
#[derive(Debug)]
pub enum SendError {
    /// The upstream took longer than the upstream timeout (time spent waiting on the
    /// client's body not counted).
    TimedOut,
    /// No connection, or the exchange failed; the client's own body failing is among
    /// these, told apart by the error's type.
    Failed(BoxError),
}

/// One configured upstream.
pub struct UpstreamTarget {
    upstream: Upstream,
    /// `Host` for this upstream, made once (clones share the bytes).
    host: HeaderValue,
    /// One keep-alive pool per connection worker. A request uses its worker's pool, so
    /// the upstream connection it gets runs on the same thread as the request.
    pools: Vec<Arc<Pool>>,
}

impl UpstreamTarget {
    /// The path prefix every request to this upstream is sent under (empty for none).
    pub fn base_path(&self) -> &str {
        &self.upstream.base_path
    }

    /// The upstream's own authority, as `Host`.
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// Sends a request on the pool of connection worker `worker` and waits for the
    /// response head for at most `timeout`. The upstream's time runs while the gateway
    /// waits on the upstream, not while it waits on a client still sending the body
    /// (the body's own deadlines bound that): the timer is re-armed whenever `progress`
    /// finds the client the one awaited. The pool's future is made here and held once,
    /// in the [`Timed`] future (see [`crate::pipeline`] on keeping futures small).
    /// `added`: fields the request gets beside its own (see [`added`]).
    pub fn send<'a>(
        &'a self,
        req: Request<UpstreamBody>,
        added: Added<'a>,
        worker: usize,
        timeout: Duration,
        progress: Option<BodyProgress>,
    ) -> Timed<impl Future<Output = Result<Response<PooledBody>, BoxError>> + Send + 'a> {
        Timed {
            send: self.pools[worker % self.pools.len()].send(req, added),
            timer: Deadline::after(timeout),
            timeout,
            progress,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request on its way upstream, raced against the upstream timeout: the send is
    /// polled first, so a response that is ready wins over a timer that fired with it.
    pub struct Timed<F> {
        #[pin]
        send: F,
        timer: Deadline,
        timeout: Duration,
        progress: Option<BodyProgress>,
    }
}

impl<F: Future<Output = Result<Response<PooledBody>, BoxError>>> Future for Timed<F> {
    type Output = Result<Response<PooledBody>, SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(sent) = this.send.poll(cx) {
            return Poll::Ready(sent.map_err(SendError::Failed));
        }
        while Pin::new(&mut *this.timer).poll(cx).is_ready() {
            if !this.progress.as_ref().is_some_and(BodyProgress::waiting_on_client) {
                return Poll::Ready(Err(SendError::TimedOut));
            }
            this.timer.reset(*this.timeout);
        }
        Poll::Pending
    }
}

/// The upstreams of the configuration, each with keep-alive pools per connection worker.
pub struct Upstreams {
    /// By name; looked up once per request with a route's upstream, a configured name.
    targets: HashMap<String, UpstreamTarget, foldhash::fast::RandomState>,
    timeout: Duration,
    max_body: u64,
    max_filtered_response: u64,
}

impl Upstreams {
    /// The upstreams' pools, with a TLS client for each `https://` upstream; an error
    /// (no root certificates on the system, a refused client certificate) names the
    /// upstream's table.
    pub fn new(config: &Config) -> Result<Self, String> {
        let mut system_roots = tls::SystemRoots::default();
        let targets = config
            .upstreams
            .iter()
            .map(|(name, upstream)| {
                let addr = format!("{}:{}", upstream.authority.host(), upstream.port());
                let tls = match config.upstream_tls.get(name) {
                    Some(settings) => Some(tls::target(name, settings, &mut system_roots)?),
                    None if upstream.scheme == http::uri::Scheme::HTTPS => {
                        return Err(format!("upstream {name:?}: https:// without TLS settings"))
                    }
                    None => None,
                };
                let connect_timeout = config.limits.upstream_timeout.min(Duration::from_secs(10));
                let pools = (0..config.server.workers.max(1))
                    .map(|_| Arc::new(Pool::new(addr.clone(), connect_timeout, &config.limits, tls.clone())))
                    .collect();
                Ok((
                    name.clone(),
                    UpstreamTarget {
                        upstream: upstream.clone(),
                        host: HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(
                            upstream.authority.as_str().as_bytes(),
                        ))
                        .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
                        pools,
                    },
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            targets,
            timeout: config.limits.upstream_timeout,
            max_body: config.limits.max_body,
            max_filtered_response: config.limits.max_filtered_response,
        })
    }

    /// The upstream configured under `name`.
    pub fn get(&self, name: &str) -> Option<&UpstreamTarget> {
        self.targets.get(name)
    }

    /// Closes the upstream connections idle for longer than the upstream idle timeout.
    pub fn reap(&self) {
        for target in self.targets.values() {
            for pool in &target.pools {
                pool.reap();
            }
        }
    }

    /// `[limits] max_body`: the most a request body may hold.
    pub fn max_body(&self) -> u64 {
        self.max_body
    }

    /// `[limits] max_filtered_response`: the largest body a route with `response_fields`
    /// filters.
    pub fn max_filtered_response(&self) -> u64 {
        self.max_filtered_response
    }

    /// `[limits] upstream_timeout`: how long an upstream may take to answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}
