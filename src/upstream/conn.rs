//! What a pool holds: its connections, of either kind, and each one's place in it.

use std::sync::{Arc, Mutex, Weak};

use hyper::client::conn::http1::SendRequest;
use tokio::sync::OwnedSemaphorePermit;

use super::h1;
use super::line::{room, Line};
use super::request::UpstreamBody;

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
