//! What idle-session tracking keeps in memory (`[tokens] idle_timeout`): per session, an
//! [`Activity`] (its last-used second, an atomic) in one map; see `idle` for the flows
//! that read and end them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::tokens::Claims;

/// When one session was last used.
#[derive(Debug)]
pub struct Activity {
    /// Unix seconds of the last use.
    pub(super) last: AtomicU64,
    /// The value last written to the store.
    pub(super) saved: AtomicU64,
}

impl Activity {
    pub(super) fn new(last: u64, saved: u64) -> Self {
        Self {
            last: AtomicU64::new(last),
            saved: AtomicU64::new(saved),
        }
    }

    /// Notes a use at `now`, unless the session has been idle for `timeout` seconds:
    /// then it stays idle and this returns false.
    #[inline]
    pub fn touch(&self, now: u64, timeout: u64) -> bool {
        let last = self.last.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= timeout {
            return false;
        }
        if last < now {
            self.last.store(now, Ordering::Relaxed);
        }
        true
    }
}

/// The idle timeout and the sessions' activity.
#[derive(Debug, Default)]
pub(super) struct IdleSessions {
    /// Seconds; 0 when off.
    pub(super) timeout: u64,
    pub(super) map: DashMap<String, Arc<Activity>>,
}

impl IdleSessions {
    pub(super) fn new(timeout: Option<std::time::Duration>) -> Self {
        Self {
            timeout: timeout.map_or(0, |d| d.as_secs()),
            map: DashMap::new(),
        }
    }

    /// The activity of the token's session, for its cache entry (when a token is first
    /// verified). A session not tracked yet was last used no earlier than the token was
    /// issued.
    pub(super) fn attach(&self, claims: &Claims) -> Option<Arc<Activity>> {
        if self.timeout == 0 {
            return None;
        }
        if let Some(a) = self.map.get(&claims.sid) {
            return Some(a.clone());
        }
        Some(
            self.map
                .entry(claims.sid.clone())
                .or_insert_with(|| Arc::new(Activity::new(claims.iat, 0)))
                .clone(),
        )
    }

    /// Notes a use of session `sid` at `now` (issue, refresh).
    pub(super) fn used(&self, sid: &str, now: u64) {
        if self.timeout == 0 {
            return;
        }
        match self.map.get(sid) {
            Some(a) => a.last.store(now, Ordering::Relaxed),
            None => {
                self.map.insert(sid.to_owned(), Arc::new(Activity::new(now, 0)));
            }
        }
    }

    /// Whether session `sid` has been idle too long at `now`; `fallback` is its last use
    /// when it is not tracked.
    pub(super) fn is_idle(&self, sid: &str, now: u64, fallback: u64) -> bool {
        let last = self.map.get(sid).map_or(fallback, |a| a.last.load(Ordering::Relaxed));
        now.saturating_sub(last) >= self.timeout
    }
}
