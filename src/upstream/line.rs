//! A pool's line: its idle connections and the requests waiting for one, served in the
//! order they came. A connection that comes back goes straight to the first request
//! still waiting, never to the idle list while one waits, so a request arriving later
//! cannot take it first; a request that was told of room and lost it to another goes
//! back to the head of the line. A request that stops waiting just after being told of
//! room passes it on to the next, so no place is left unused while others wait.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::oneshot;

/// A connection back from use, and since when.
pub(super) struct Idle<C> {
    pub conn: C,
    pub since: Instant,
}

/// What a waiting request is handed.
pub(super) enum Handoff<C> {
    /// A connection that came back, to send on.
    Connection(C),
    /// A connection closed (or failed to open): its place may be taken.
    Room,
}

/// Idle connections (the most recently used last) and the requests waiting, the first
/// to come first; while one waits, no connection is idle.
pub(super) struct Line<C> {
    pub idle: Vec<Idle<C>>,
    waiting: VecDeque<oneshot::Sender<Handoff<C>>>,
}

impl<C> Default for Line<C> {
    fn default() -> Self {
        Self {
            idle: Vec::new(),
            waiting: VecDeque::new(),
        }
    }
}

impl<C> Line<C> {
    /// Puts a request in line (at its head if `first`): it is told when a connection or
    /// a place is its. Requests that stopped waiting (their deadline passed, their
    /// client left) leave their place behind: those at the head, the oldest, are dropped
    /// here, and the whole line is swept whenever its length reaches a power of two from
    /// 1,024 up, so it stays bounded by the requests in flight.
    pub fn wait(&mut self, first: bool) -> oneshot::Receiver<Handoff<C>> {
        while self.waiting.front().is_some_and(oneshot::Sender::is_closed) {
            self.waiting.pop_front();
        }
        if self.waiting.len() >= 1024 && self.waiting.len().is_power_of_two() {
            self.waiting.retain(|w| !w.is_closed());
        }
        let (tx, rx) = oneshot::channel();
        if first {
            self.waiting.push_front(tx);
        } else {
            self.waiting.push_back(tx);
        }
        rx
    }

    /// Gives a connection that came back to the first request still waiting; it comes
    /// back when none is (to be kept idle).
    pub fn give(&mut self, conn: C) -> Option<C> {
        match self.hand_over(Handoff::Connection(conn)) {
            Some(Handoff::Connection(conn)) => Some(conn),
            _ => None,
        }
    }

    /// Tells the first request still waiting, if any, that a connection's place is free.
    pub fn room(&mut self) {
        let _ = self.hand_over(Handoff::Room);
    }

    /// How many requests are in line (those gone included, until passed over).
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    fn hand_over(&mut self, mut handoff: Handoff<C>) -> Option<Handoff<C>> {
        while let Some(waiter) = self.waiting.pop_front() {
            match waiter.send(handoff) {
                Ok(()) => return None,
                // That request is gone.
                Err(back) => handoff = back,
            }
        }
        Some(handoff)
    }
}

/// `line`, locked. A panic while it was held leaves it usable: every change to it is
/// whole by the time its lock is let go.
pub(super) fn lock<C>(line: &Mutex<Line<C>>) -> MutexGuard<'_, Line<C>> {
    line.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Tells the first request waiting in `line`, if any, that a connection's place is free.
pub(super) fn room<C>(line: &Mutex<Line<C>>) {
    lock(line).room();
}

/// A request's place in line: ready with what it is handed (`None` if the line is gone).
/// Dropped with room handed to it and not taken, it passes the room on; a connection
/// handed to it and not taken is closed with it, which frees its place in turn.
pub(super) struct Turn<C> {
    rx: Option<oneshot::Receiver<Handoff<C>>>,
    line: Arc<Mutex<Line<C>>>,
}

impl<C> Turn<C> {
    /// Puts a request in `line` (see [`Line::wait`]); `waiting` is `line`, locked by the
    /// caller.
    pub fn new(line: &Arc<Mutex<Line<C>>>, waiting: &mut Line<C>, first: bool) -> Self {
        Self {
            rx: Some(waiting.wait(first)),
            line: line.clone(),
        }
    }
}

impl<C> Future for Turn<C> {
    type Output = Option<Handoff<C>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(rx) = self.rx.as_mut() else {
            return Poll::Ready(None);
        };
        let handed = std::task::ready!(Pin::new(rx).poll(cx)).ok();
        self.rx = None;
        Poll::Ready(handed)
    }
}

impl<C> Drop for Turn<C> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if let Ok(Handoff::Room) = rx.try_recv() {
                room(&self.line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn got(rx: &mut oneshot::Receiver<Handoff<u32>>) -> Option<u32> {
        match rx.try_recv() {
            Ok(Handoff::Connection(c)) => Some(c),
            Ok(Handoff::Room) => Some(0),
            Err(_) => None,
        }
    }

    // Connections that come back go to the waiting requests in the order they came, and
    // to the idle list only when none waits.
    #[test]
    fn first_come_first_served() {
        let mut line = Line::default();
        let (mut b, mut c) = (line.wait(false), line.wait(false));
        assert!(line.give(1).is_none());
        assert_eq!((got(&mut b), got(&mut c)), (Some(1), None));
        assert!(line.give(2).is_none());
        assert_eq!(got(&mut c), Some(2));
        assert_eq!(line.give(3), Some(3), "none waits: the connection is kept idle");
    }

    // A request that stopped waiting is passed over, and room goes to the next in line.
    #[test]
    fn gone_requests_passed_over() {
        let mut line = Line::default();
        let (b, mut c, mut d) = (line.wait(false), line.wait(false), line.wait(false));
        drop(b);
        assert!(line.give(1).is_none());
        assert_eq!(got(&mut c), Some(1));
        line.room();
        assert_eq!(got(&mut d), Some(0));
        line.room();
        assert_eq!(line.give(4), Some(4));
    }

    // A request that lost room to another goes back to the head of the line.
    #[test]
    fn overtaken_goes_first() {
        let mut line = Line::default();
        let mut b = line.wait(false);
        let mut again = line.wait(true);
        assert!(line.give(1).is_none());
        assert_eq!((got(&mut again), got(&mut b)), (Some(1), None));
    }

    // A request that stops waiting just after being told of room passes it on.
    #[test]
    fn room_not_taken_is_passed_on() {
        let line = Arc::new(Mutex::new(Line::<u32>::default()));
        let b = Turn::new(&line, &mut line.lock().unwrap(), false);
        let mut c = line.lock().unwrap().wait(false);
        line.lock().unwrap().room();
        assert_eq!(got(&mut c), None, "the room went to the first in line");
        drop(b);
        assert_eq!(got(&mut c), Some(0), "and on to the next when the first left");
    }

    // Requests that stopped waiting do not pile up.
    #[test]
    fn line_stays_bounded() {
        let mut line: Line<u32> = Line::default();
        let _live = line.wait(false);
        for _ in 0..10_000 {
            drop(line.wait(false));
        }
        assert!(line.waiting.len() <= 1025, "{}", line.waiting.len());
        let mut fresh = Line::<u32>::default();
        for _ in 0..10_000 {
            drop(fresh.wait(false));
        }
        assert!(fresh.waiting.len() <= 1, "{}", fresh.waiting.len());
    }
}
