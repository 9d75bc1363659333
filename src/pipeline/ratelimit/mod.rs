//! Phase 4: rate limits, per route and per caller. A route with `rate_limit` counts
//! each caller (the user id, or the client IP on public routes) in a limiter of its own;
//! over the rate, the request is refused with 429. An allowed request's response
//! carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`, written once
//! by [`Quota::write`]. Limiters live across policy reloads for as long as a route
//! keeps its file, name and rate; [`RouteLimits::prune`] drops the others.
//!
//! The limiter itself is in [`limiter`]; the gateway's `/auth/` endpoints use one per IP.

pub mod limiter;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use http::header::{HeaderMap, HeaderValue};

use crate::clock::SharedClock;
use crate::error::GatewayError;
use crate::policy::{PolicySet, Principal, Route};
pub use limiter::{ip_key, Limiter, Verdict, DEFAULT_MAX_KEYS};

/// The per-route limiters, keyed by route file, name and rate.
pub struct RouteLimits {
    limiters: DashMap<String, Arc<Limiter<String>>>,
    clock: SharedClock,
    /// The store whose budgets every gateway shares (PostgreSQL), when there is one:
    /// then a route's budget is spent there, exactly once per request whichever gateway
    /// takes it, and an unreachable store refuses the route (503) rather than let it
    /// through unlimited.
    shared: Option<crate::store::Store>,
}

/// What is left of a caller's budget on a route, for the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    limit: u64,
    remaining: u32,
    reset: Duration,
}

impl Quota {
    /// Writes the `RateLimit-*` headers of an allowed request onto its response.
    pub fn write(self, headers: &mut HeaderMap) {
        headers.insert("ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert(
            "ratelimit-reset",
            HeaderValue::from(crate::error::ceil_secs(self.reset)),
        );
    }
}

/// The key of a route's limiter: a route that changes its rate starts afresh.
fn limiter_key(route: &Route, rate: crate::units::Rate) -> String {
    format!("{}|{}|{rate}", route.file.display(), route.name)
}

impl RouteLimits {
    pub fn new(clock: SharedClock, shared: Option<crate::store::Store>) -> Self {
        Self {
            limiters: DashMap::new(),
            clock,
            shared,
        }
    }

    /// Counts a request against its route's `rate_limit`, per caller: the user id, or
    /// the client IP (see [`ip_key`]) for an anonymous caller. `None` when the route has
    /// no limit; 429 when the caller is over it.
    pub async fn check(
        &self,
        route: &Route,
        principal: Option<&Principal>,
        peer: IpAddr,
    ) -> Result<Option<Quota>, GatewayError> {
        let Some(rate) = route.rate_limit else {
            return Ok(None);
        };
        if let Some(store) = &self.shared {
            // By route name, not file: the gateways' policy directories may differ.
            // Boxed: the store's future stays out of the request's when it is not used.
            return Box::pin(self.check_shared(store, format!("{}|{rate}", route.name), rate, principal, peer)).await;
        }
        let id = limiter_key(route, rate);
        let limiter = match self.limiters.get(&id) {
            Some(l) => l.clone(),
            None => self
                .limiters
                .entry(id)
                .or_insert_with(|| Arc::new(Limiter::new(rate, DEFAULT_MAX_KEYS, self.clock.clone())))
                .clone(),
        };
        let caller = match principal {
            Some(p) => format!("user:{}", p.id),
            None => format!("ip:{}", ip_key(peer)),
        };
        match limiter.check(&caller) {
            Verdict::Allowed { remaining, reset } => Ok(Some(Quota {
                limit: limiter.limit(),
                remaining,
                reset,
            })),
            Verdict::Limited { retry_after } => Err(GatewayError::RouteRateLimited {
                retry_after,
                limit: limiter.limit(),
            }),
        }
    }

    /// The budget of a route in the shared store, kept in microseconds: a rate above
    /// 1,000 a second keeps its interval.
    async fn check_shared(
        &self,
        store: &crate::store::Store,
        id: String,
        rate: crate::units::Rate,
        principal: Option<&Principal>,
        peer: IpAddr,
    ) -> Result<Option<Quota>, GatewayError> {
        let interval_us = shared_interval_us(rate);
        let caller = match principal {
            Some(p) => format!("user:{}", p.id),
            None => format!("ip:{}", ip_key(peer)),
        };
        let key = format!("{id}|{caller}");
        let limit = u64::from(rate.count);
        match store
            .rate_take(&key, interval_us, rate.count, self.clock.now_ms().saturating_mul(1000))
            .await?
        {
            Some(crate::store::backend::Budget::Allowed { remaining, reset_us }) => Ok(Some(Quota {
                limit,
                remaining,
                reset: Duration::from_micros(reset_us),
            })),
            Some(crate::store::backend::Budget::Refused { retry_after_us }) => Err(GatewayError::RouteRateLimited {
                retry_after: Duration::from_micros(retry_after_us),
                limit,
            }),
            // A store that keeps no budgets: nothing to share.
            None => Ok(None),
        }
    }

    /// Drops the limiters of routes that the policy in force no longer has (or whose
    /// rate changed).
    pub fn prune(&self, policy: &PolicySet) {
        let live: std::collections::HashSet<String> = policy
            .routes
            .iter()
            .filter_map(|r| r.rate_limit.map(|rate| limiter_key(r, rate)))
            .collect();
        self.limiters.retain(|k, _| live.contains(k));
    }

    /// Drops, in every limiter, the callers whose bucket is full again.
    pub fn evict_idle(&self) {
        for l in self.limiters.iter() {
            l.evict_idle();
        }
    }
}

/// The interval between two requests of a shared budget, in microseconds (at least
/// one): `1000/sec` is 1,000, `4000/sec` 250.
fn shared_interval_us(rate: crate::units::Rate) -> u64 {
    let per_us = u64::try_from(rate.per.as_micros()).unwrap_or(u64::MAX);
    (per_us / u64::from(rate.count.max(1))).max(1)
}

#[cfg(test)]
mod tests {
    use super::shared_interval_us;

    // A rate above 1,000 a second keeps its interval: 4,000 a second is one request
    // every 250 µs sustained, not one a millisecond.
    #[test]
    fn shared_interval_below_a_millisecond() {
        let us = |s: &str| shared_interval_us(s.parse().unwrap());
        assert_eq!(us("4000/sec"), 250);
        assert_eq!(us("1000000/sec"), 1);
        assert_eq!(us("6/min"), 10_000_000);
        assert_eq!(us("1/hour"), 3_600_000_000);
    }
}
