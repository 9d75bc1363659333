//! What a pool holds: its connections, of either kind, each one's place in it, and how
//! a connection's socket is opened.

use std::sync::{Arc, Mutex, Weak};

use hyper::client::conn::http1::SendRequest;
use tokio::sync::OwnedSemaphorePermit;

use super::h1;
use super::line::{room, Line};
use super::request::UpstreamBody;
use super::BoxError;

/// A pooled connection: run by hyper's client in a task of its own, or in-task.
pub(super) enum Conn {
    Hyper(SendRequest<UpstreamBody>),
    InTask(h1::Connection<Slot>),
}

impl Conn {
    pub fn is_closed(&mut self) -> bool {
        match self {
            Self::Hyper(s) => s.is_closed(),
            Self::InTask(c) => c.is_closed(),
        }
    }
}

/// A connection's place in its pool, held while the connection is open: given back,
/// and the first request waiting told, when it closes. It locks the line as it goes, so
/// it is never dropped with the line locked.
pub(super) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    line: Weak<Mutex<Line<Conn>>>,
}

impl Slot {
    pub fn new(permit: OwnedSemaphorePermit, line: &Arc<Mutex<Line<Conn>>>) -> Self {
        Self {
            permit: Some(permit),
            line: Arc::downgrade(line),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        if let Some(line) = self.line.upgrade() {
            room(&line);
        }
    }
}

/// Connects to the first address of `addr` that accepts, with Nagle off and TCP
/// keep-alive on.
pub(super) async fn open(addr: &str) -> Result<tokio::net::TcpStream, BoxError> {
    let mut last: Option<std::io::Error> = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_keepalive(true)?;
        match socket.connect(a).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| format!("{addr} resolves to no address").into(), Into::into))
}
