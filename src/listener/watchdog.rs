//! A connection's own clock: what it counts of its requests, the checks that close it
//! when a head is too slow to arrive or the connection is idle, and the waker that lets
//! the connection's task look at its timer and the shutdown signal only when one of them
//! woke it.
//!
//! The per-request path touches no timer here: a request start or end is two relaxed
//! counter updates. The watchdog looks at the counters every `period` (an eighth of the
//! shorter of the two timeouts), so a timeout takes effect between its length and its
//! length plus two periods, never before.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::time::Instant;

/// Counts requests started and ended on a connection, and those in flight.
#[derive(Default)]
pub(super) struct Activity {
    events: AtomicU64,
    in_flight: AtomicUsize,
    /// The connection speaks HTTP/2 (ALPN chose it, or a request came in on it): the
    /// header read timeout is HTTP/1's and does not apply.
    h2: AtomicBool,
    /// The connection is in its lingering close: its end is bounded there, and the
    /// watchdog does not cut it short.
    lingering: AtomicBool,
}

impl Activity {
    pub(super) fn new(h2: bool) -> Self {
        let a = Self::default();
        a.h2.store(h2, Ordering::Relaxed);
        a
    }

    pub(super) fn saw_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
    }

    pub(super) fn lingering(&self) {
        self.lingering.store(true, Ordering::Relaxed);
    }
}

/// One request in flight on a connection, from its head until its response body has
/// been sent.
pub(super) struct InFlight(Arc<Activity>);

impl InFlight {
    pub(super) fn new(a: Arc<Activity>) -> Self {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        a.events.fetch_add(1, Ordering::Relaxed);
        Self(a)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the watchdog decided at a check.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Keep,
    /// No request in flight and none started or ended for the idle timeout (or, on
    /// HTTP/1, the header read timeout: no complete head since the last response): ask
    /// the connection to close gracefully.
    Close(&'static str),
    /// Asked to close a period ago and still open (a head half sent keeps HTTP/1 from
    /// closing gracefully): close it now.
    CloseNow,
}

/// The connection's timeouts, checked against its [`Activity`] at times it is given.
pub(super) struct Watchdog {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    period: Duration,
    last_seen: u64,
    /// When the counters were last seen to change (or the connection began): an upper
    /// bound on when the last request started or ended.
    quiet_since: Instant,
    /// When a graceful close was asked for.
    asked: Option<Instant>,
}

impl Watchdog {
    pub(super) fn new(header_read_timeout: Duration, idle_timeout: Duration, now: Instant) -> Self {
        let shorter = header_read_timeout.min(idle_timeout);
        Self {
            header_read_timeout,
            idle_timeout,
            period: (shorter / 8).max(Duration::from_millis(10)),
            last_seen: 0,
            quiet_since: now,
            asked: None,
        }
    }

    /// How long after a check the next one is due.
    pub(super) fn period(&self) -> Duration {
        self.period
    }

    pub(super) fn check(&mut self, now: Instant, activity: &Activity) -> Verdict {
        let seen = activity.events.load(Ordering::Relaxed);
        if seen != self.last_seen {
            self.last_seen = seen;
            self.quiet_since = now;
            self.asked = None;
        }
        if activity.in_flight.load(Ordering::Relaxed) > 0 {
            self.asked = None;
            return Verdict::Keep;
        }
        if let Some(asked) = self.asked {
            if now.saturating_duration_since(asked) >= self.period && !activity.lingering.load(Ordering::Relaxed) {
                return Verdict::CloseNow;
            }
            return Verdict::Keep;
        }
        let quiet = now.saturating_duration_since(self.quiet_since);
        let reason = if !activity.h2.load(Ordering::Relaxed) && quiet >= self.header_read_timeout {
            "no complete request head within the header read timeout"
        } else if quiet >= self.idle_timeout {
            "idle"
        } else {
            return Verdict::Keep;
        };
        self.asked = Some(now);
        Verdict::Close(reason)
    }
}

/// The waker the connection's timer and shutdown signal are polled with: it marks that
/// one of them may be ready, then wakes the connection's task. The task polls them only
/// when the mark is set, so the wake-ups that come from its sockets (several per
/// request) cost one atomic swap instead of a poll of each.
#[derive(Default)]
pub(super) struct ControlWake {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl ControlWake {
    /// A new mark, set: whatever is polled with it must be polled once to register.
    pub(super) fn waker() -> (Arc<Self>, Waker) {
        let this = Arc::new(Self::default());
        this.woken.store(true, Ordering::Relaxed);
        let waker = Waker::from(this.clone());
        (this, waker)
    }

    /// Registers the task to wake, then takes the mark: true when the controls are to
    /// be polled. Registering first means a wake between the two is never lost.
    pub(super) fn take(&self, task: &Waker) -> bool {
        self.task.register(task);
        self.woken.swap(false, Ordering::AcqRel)
    }

    /// Sets the mark again, so the next poll polls the controls (a control future was
    /// replaced and must register).
    pub(super) fn mark(&self) {
        self.woken.store(true, Ordering::Release);
    }
}

impl Wake for ControlWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_head_not_complete_in_time_closes_http1_and_then_closes_it_hard() {
        let start = Instant::now();
        let a = Activity::new(false);
        let mut w = Watchdog::new(HEAD, IDLE, start);
        assert_eq!(w.period(), Duration::from_millis(1250));
        assert_eq!(w.check(at(start, 9_999), &a), Verdict::Keep);
        assert!(matches!(w.check(at(start, 10_000), &a), Verdict::Close(r) if r.contains("header")));
        assert_eq!(
            w.check(at(start, 11_000), &a),
            Verdict::Keep,
            "hard close before a period"
        );
        assert_eq!(w.check(at(start, 11_250), &a), Verdict::CloseNow);
    }

    #[test]
    fn requests_restart_the_wait_and_one_in_flight_is_never_closed() {
        let start = Instant::now();
        let a = Arc::new(Activity::new(false));
        let mut w = Watchdog::new(HEAD, IDLE, start);
        let request = InFlight::new(a.clone());
        assert_eq!(w.check(at(start, 5_000), &a), Verdict::Keep);
        assert_eq!(w.check(at(start, 500_000), &a), Verdict::Keep, "in flight");
        drop(request);
        // The end is seen at 501 s: the wait runs from there.
        assert_eq!(w.check(at(start, 501_000), &a), Verdict::Keep);
        assert_eq!(w.check(at(start, 510_999), &a), Verdict::Keep);
        assert!(matches!(w.check(at(start, 511_000), &a), Verdict::Close(_)));
    }

    #[test]
    fn http2_waits_for_the_idle_timeout_only() {
        let start = Instant::now();
        let a = Activity::new(true);
        let mut w = Watchdog::new(HEAD, IDLE, start);
        assert_eq!(w.check(at(start, 59_999), &a), Verdict::Keep);
        assert_eq!(w.check(at(start, 60_000), &a), Verdict::Close("idle"));
        let b = Activity::new(false);
        b.saw_h2();
        let mut w = Watchdog::new(HEAD, IDLE, start);
        assert_eq!(w.check(at(start, 30_000), &b), Verdict::Keep);
    }

    #[test]
    fn a_shorter_idle_timeout_closes_first_and_a_lingering_close_is_not_cut() {
        let start = Instant::now();
        let a = Activity::new(false);
        let mut w = Watchdog::new(Duration::from_secs(30), Duration::from_secs(1), start);
        assert_eq!(w.period(), Duration::from_millis(125));
        assert_eq!(w.check(at(start, 999), &a), Verdict::Keep);
        assert_eq!(w.check(at(start, 1_000), &a), Verdict::Close("idle"));
        a.lingering();
        assert_eq!(w.check(at(start, 5_000), &a), Verdict::Keep);
    }

    #[test]
    fn the_control_mark_is_set_by_a_wake_and_taken_once() {
        let (control, waker) = ControlWake::waker();
        let task = futures_util::task::noop_waker();
        assert!(control.take(&task), "set at first");
        assert!(!control.take(&task));
        waker.wake_by_ref();
        assert!(control.take(&task));
        assert!(!control.take(&task));
        control.mark();
        assert!(control.take(&task));
    }
}
