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
    pub fn new(clock: SharedClock) -> Self {
        Self {
            limiters: DashMap::new(),
            clock,
        }
    }

    /// Counts a request against its route's `rate_limit`, per caller: the user id, or
    /// the client IP (see [`ip_key`]) for an anonymous caller. `None` when the route has
    /// no limit; 429 when the caller is over it.
    pub fn check(
        &self,
        route: &Route,
        principal: Option<&Principal>,
        peer: IpAddr,
    ) -> Result<Option<Quota>, GatewayError> {
        let Some(rate) = route.rate_limit else {
            return Ok(None);
        };
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
