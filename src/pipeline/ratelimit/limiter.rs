//! The rate limiter: a GCRA limiter (a token bucket stored as one timestamp per key)
//! over a concurrent map with a hard cap on its size.
//!
//! At the cap, idle keys (whose bucket has refilled completely) are evicted first; if the
//! table is still full, a request from a key not yet in it is refused with 429: under a
//! flood from very many distinct callers, callers already known keep their own budgets and
//! memory stays bounded. The sweep for idle keys runs at most once per [`SWEEP_EVERY`]
//! (besides the minutely [`Limiter::evict_idle`]): a flood of unknown callers against a full
//! table costs a failed lookup each, not a pass over the whole table each.
//!
//! Time is the clock's monotonic microseconds, so a wall clock set back cannot freeze a
//! bucket and rates up to 1,000,000 per second are exact. Callers by IP are keyed with
//! [`ip_key`]: an IPv6 client holds a whole /64, so it counts as one caller.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use crate::clock::SharedClock;
use crate::units::Rate;

/// Keys kept at most, per limiter.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// How often, at most, a full table is swept for idle keys on a request's behalf.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The rate-limit key of a client address: IPv4 as is (an IPv4-mapped IPv6 address as its
/// IPv4 address), IPv6 by its /64 prefix, the smallest block one subscriber is given, so
/// that one client cannot spread its requests over 2^64 addresses.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
        )),
        v4 => v4,
    }
}

/// Requests counted per key against one rate, in a table of bounded size.
pub struct Limiter<K: Eq + Hash> {
    /// Microseconds between requests at the steady rate.
    interval_us: u64,
    /// How far ahead of now the theoretical arrival time may run: the burst.
    burst_us: u64,
    /// Key -> theoretical arrival time (monotonic µs) of the next request.
    tat: DashMap<K, u64>,
    max_keys: usize,
    /// When a full table was last swept for a new key (monotonic µs, plus one; 0: never).
    last_sweep: AtomicU64,
    /// Sweeps made on a request's behalf, for tests and diagnostics.
    sweeps: AtomicU64,
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
        let per_us = u64::try_from(rate.per.as_micros()).unwrap_or(u64::MAX);
        let interval_us = (per_us / u64::from(rate.count)).max(1);
        Self {
            interval_us,
            burst_us: interval_us.saturating_mul(u64::from(rate.count)),
            tat: DashMap::new(),
            max_keys,
            last_sweep: AtomicU64::new(0),
            sweeps: AtomicU64::new(0),
            clock,
        }
    }

    /// Counts one request for `key`.
    pub fn check(&self, key: &K) -> Verdict {
        let now = self.clock.monotonic_us();
        if self.tat.len() >= self.max_keys && !self.tat.contains_key(key) {
            if self.sweep_due(now) {
                self.sweeps.fetch_add(1, Ordering::Relaxed);
                self.tat.retain(|_, tat| *tat > now);
            }
            if self.tat.len() >= self.max_keys {
                return Verdict::Limited {
                    retry_after: Duration::from_micros(self.interval_us),
                };
            }
        }
        let mut entry = self.tat.entry(key.clone()).or_insert(now);
        let tat = (*entry).max(now);
        let next = tat + self.interval_us;
        if next > now + self.burst_us {
            return Verdict::Limited {
                retry_after: Duration::from_micros(next - self.burst_us - now),
            };
        }
        *entry = next;
        let used = (next - now).div_ceil(self.interval_us);
        let capacity = self.burst_us / self.interval_us;
        Verdict::Allowed {
            remaining: u32::try_from(capacity.saturating_sub(used)).unwrap_or(u32::MAX),
            reset: Duration::from_micros(next - now),
        }
    }

    /// Claims the sweep of a full table when none ran in the last [`SWEEP_EVERY`]; one
    /// caller wins the claim, the others go on without sweeping.
    fn sweep_due(&self, now: u64) -> bool {
        let every = u64::try_from(SWEEP_EVERY.as_micros()).unwrap_or(u64::MAX);
        let last = self.last_sweep.load(Ordering::Relaxed);
        (last == 0 || now.saturating_sub(last - 1) >= every)
            && self
                .last_sweep
                .compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Drops keys whose bucket is full again (nothing left to remember).
    pub fn evict_idle(&self) {
        let now = self.clock.monotonic_us();
        self.tat.retain(|_, tat| *tat > now);
    }

    /// The number of requests a full bucket holds.
    pub fn limit(&self) -> u64 {
        self.burst_us / self.interval_us
    }

    /// How many times a full table was swept on a request's behalf.
    pub fn sweeps(&self) -> u64 {
        self.sweeps.load(Ordering::Relaxed)
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

    // A full table is swept at most once per SWEEP_EVERY on a request's behalf: a flood
    // of new callers costs one sweep, and keys that went idle since wait for the next one.
    #[test]
    fn full_table_swept_at_most_once_per_interval() {
        let (l, clock) = limiter(5, 1, 1000);
        for k in 0..1000 {
            l.check(&k);
        }
        for k in 1000..11_000 {
            assert!(matches!(l.check(&k), Verdict::Limited { .. }));
        }
        assert_eq!(l.sweeps(), 1, "one sweep for the whole flood");
        // Every bucket has refilled, but the last sweep is too recent.
        clock.advance(Duration::from_millis(300));
        assert!(matches!(l.check(&20_000), Verdict::Limited { .. }));
        assert_eq!(l.sweeps(), 1);
        clock.advance(SWEEP_EVERY);
        assert!(matches!(l.check(&20_001), Verdict::Allowed { .. }));
        assert_eq!(l.sweeps(), 2);
    }

    // Rates above 1000/s are exact: 5000/sec refills 500 requests in 100 ms.
    #[test]
    fn rates_above_a_thousand_per_second() {
        let (l, clock) = limiter(5000, 1, 10);
        for _ in 0..5000 {
            assert!(matches!(l.check(&1), Verdict::Allowed { .. }));
        }
        assert!(matches!(l.check(&1), Verdict::Limited { .. }));
        assert_eq!(l.limit(), 5000);
        clock.advance(Duration::from_millis(100));
        let allowed = (0..1000)
            .filter(|_| matches!(l.check(&1), Verdict::Allowed { .. }))
            .count();
        assert_eq!(allowed, 500);
    }

    /// A wall clock that an operator (or NTP) can set back, over a monotonic one.
    struct SetBack {
        wall_ms: AtomicU64,
        mono_us: AtomicU64,
    }

    impl crate::clock::Clock for SetBack {
        fn now_ms(&self) -> u64 {
            self.wall_ms.load(Ordering::SeqCst)
        }
        fn monotonic_us(&self) -> u64 {
            self.mono_us.load(Ordering::SeqCst)
        }
    }

    // Setting the wall clock back an hour neither freezes a bucket nor grants a new one.
    #[test]
    fn wall_clock_set_back() {
        let clock = Arc::new(SetBack {
            wall_ms: AtomicU64::new(10_000_000_000),
            mono_us: AtomicU64::new(5_000_000),
        });
        let rate = Rate {
            count: 2,
            per: Duration::from_secs(1),
        };
        let l: Limiter<u32> = Limiter::new(rate, 10, clock.clone());
        assert!(matches!(l.check(&1), Verdict::Allowed { .. }));
        assert!(matches!(l.check(&1), Verdict::Allowed { .. }));
        clock.wall_ms.fetch_sub(3_600_000, Ordering::SeqCst);
        assert!(
            matches!(l.check(&1), Verdict::Limited { .. }),
            "set back: a fresh bucket"
        );
        clock.mono_us.fetch_add(500_000, Ordering::SeqCst);
        assert!(
            matches!(l.check(&1), Verdict::Allowed { .. }),
            "set back: a frozen bucket"
        );
    }

    // IPv6 clients are keyed by their /64; IPv4 (and IPv4-mapped IPv6) by the address.
    #[test]
    fn ip_keys() {
        let k = |s: &str| ip_key(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2:aaaa::1"), k("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_eq!(k("2001:db8:1:2::7"), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.7"), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_ne!(k("192.0.2.7"), k("192.0.2.8"));
    }
}
