//! Phase 4: rate limits. A GCRA limiter (a token bucket stored as one timestamp per key)
//! over a concurrent map with a hard cap on its size.
//!
//! At the cap, idle keys (whose bucket has refilled completely) are evicted first; if the
//! table is still full, a request from a key not yet in it is refused with 429: under a
//! flood from very many distinct callers, callers already known keep their own budgets and
//! memory stays bounded.

use std::hash::Hash;
use std::time::Duration;

use dashmap::DashMap;

use crate::clock::SharedClock;
use crate::units::Rate;

/// Keys kept at most, per limiter.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

pub struct Limiter<K: Eq + Hash> {
    /// Milliseconds between requests at the steady rate.
    interval_ms: u64,
    /// How far ahead of now the theoretical arrival time may run: the burst.
    burst_ms: u64,
    /// Key -> theoretical arrival time (Unix ms) of the next request.
    tat: DashMap<K, u64>,
    max_keys: usize,
    clock: SharedClock,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `reset`: when the bucket is full again.
    Allowed {
        remaining: u32,
        reset: Duration,
    },
    Limited {
        retry_after: Duration,
    },
}

impl<K: Eq + Hash + Clone> Limiter<K> {
    pub fn new(rate: Rate, max_keys: usize, clock: SharedClock) -> Self {
        let per_ms = u64::try_from(rate.per.as_millis()).unwrap_or(u64::MAX);
        let interval_ms = (per_ms / u64::from(rate.count)).max(1);
        Self {
            interval_ms,
            burst_ms: interval_ms * u64::from(rate.count),
            tat: DashMap::new(),
            max_keys,
            clock,
        }
    }

    /// Counts one request for `key`.
    pub fn check(&self, key: &K) -> Verdict {
        let now = self.clock.now_ms();
        if !self.tat.contains_key(key) && self.tat.len() >= self.max_keys {
            self.tat.retain(|_, tat| *tat > now);
            if self.tat.len() >= self.max_keys {
                return Verdict::Limited {
                    retry_after: Duration::from_millis(self.interval_ms),
                };
            }
        }
        let mut entry = self.tat.entry(key.clone()).or_insert(now);
        let tat = (*entry).max(now);
        let next = tat + self.interval_ms;
        if next > now + self.burst_ms {
            return Verdict::Limited {
                retry_after: Duration::from_millis(next - self.burst_ms - now),
            };
        }
        *entry = next;
        let used = (next - now).div_ceil(self.interval_ms);
        let capacity = self.burst_ms / self.interval_ms;
        Verdict::Allowed {
            remaining: u32::try_from(capacity.saturating_sub(used)).unwrap_or(u32::MAX),
            reset: Duration::from_millis(next - now),
        }
    }

    /// Drops keys whose bucket is full again (nothing left to remember).
    pub fn evict_idle(&self) {
        let now = self.clock.now_ms();
        self.tat.retain(|_, tat| *tat > now);
    }

    /// The number of requests a full bucket holds.
    pub fn limit(&self) -> u64 {
        self.burst_ms / self.interval_ms
    }

    pub fn len(&self) -> usize {
        self.tat.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tat.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    fn limiter(count: u32, per: u64, max: usize) -> (Limiter<u32>, ManualClock) {
        let clock = ManualClock::new();
        let rate = Rate {
            count,
            per: Duration::from_secs(per),
        };
        (Limiter::new(rate, max, Arc::new(clock.clone())), clock)
    }

    // N requests pass, the N+1th is limited with a Retry-After, and the bucket refills.
    #[test]
    fn burst_then_refill() {
        let (l, clock) = limiter(3, 60, 10);
        for expected in [2, 1, 0] {
            let Verdict::Allowed { remaining, .. } = l.check(&1) else {
                panic!("limited early")
            };
            assert_eq!(remaining, expected);
        }
        let Verdict::Limited { retry_after } = l.check(&1) else {
            panic!("not limited")
        };
        assert_eq!(retry_after, Duration::from_secs(20));
        clock.advance(Duration::from_secs(20));
        assert!(matches!(l.check(&1), Verdict::Allowed { .. }));
        assert!(matches!(l.check(&1), Verdict::Limited { .. }));
        assert!(matches!(l.check(&2), Verdict::Allowed { .. }), "keys share a bucket");
    }

    // A flood of distinct keys never grows the table past its cap.
    #[test]
    fn table_bounded() {
        let (l, clock) = limiter(5, 1, 1000);
        for k in 0..10_000 {
            l.check(&k);
        }
        assert!(l.len() <= 1000);
        clock.advance(Duration::from_secs(2));
        assert!(
            matches!(l.check(&20_000), Verdict::Allowed { .. }),
            "idle keys not evicted"
        );
        assert!(l.len() <= 1000);
    }
}
