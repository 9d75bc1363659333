//! Phase 3: the policy decides. The only way to obtain an [`Authorized`] request is
//! [`authorize`], and [`super::forward`] accepts nothing else: a request that was not
//! allowed cannot reach an upstream.
//!
//! Shadow mode is decided here too: when the route that refuses a request has
//! `enforce = false` (or the gateway runs with `[policy] mode = "shadow"`), the request
//! is let through marked with the reason it would have been refused, for the audit trail.
//! A path that no route matches is refused even in shadow mode: there is no route to
//! say where it would go.

use std::sync::Arc;

use http::Method;

use super::normalize::Target;
use crate::error::GatewayError;
use crate::policy::{Decision, PolicySet, Principal, Route};

/// A request the policy allowed: the route that allowed it, the caller, and the exact
/// target that was judged.
#[derive(Debug)]
/// A route of a policy set, kept alive by the set it belongs to.
#[derive(Clone)]
pub struct RouteRef {
    policy: Arc<PolicySet>,
    index: usize,
}

impl RouteRef {
    pub fn name(&self) -> &str {
        &self.policy.routes[self.index].name
    }
}

pub struct Authorized {
    policy: Arc<PolicySet>,
    route: usize,
    principal: Option<Arc<Principal>>,
    target: Target,
    would_deny: Option<(u16, String)>,
}

impl Authorized {
    pub fn route(&self) -> &Route {
        &self.policy.routes[self.route]
    }

    /// The route that allowed the request, held without copying its name.
    pub fn route_ref(&self) -> RouteRef {
        RouteRef {
            policy: self.policy.clone(),
            index: self.route,
        }
    }

    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_deref()
    }

    /// The status and reason the policy would have refused this request with, when
    /// shadow mode let it through.
    pub fn would_deny(&self) -> Option<(u16, &str)> {
        self.would_deny.as_ref().map(|(s, r)| (*s, r.as_str()))
    }

    /// The judged target; the upstream receives exactly this.
    pub fn target(&self) -> &Target {
        &self.target
    }
}

/// Decides a request with one whole policy set (the set in force when it arrived).
pub fn authorize(
    policy: Arc<PolicySet>,
    method: &Method,
    target: Target,
    principal: Option<Arc<Principal>>,
    shadow: bool,
) -> Result<Authorized, GatewayError> {
    let (route, refusal) = match policy.decide(method, &target.path, principal.as_deref()) {
        Decision::Allow { route } => (route.index, None),
        Decision::NotFound => return Err(GatewayError::NoRoute),
        Decision::Unauthenticated { route } => (
            route.index,
            Some(GatewayError::Unauthenticated {
                reason: format!("route {:?} needs a token", route.name),
                invalid_token: false,
            }),
        ),
        Decision::Forbidden { route, why } => (
            route.index,
            Some(GatewayError::Forbidden {
                reason: format!("route {:?}: {why}", route.name),
            }),
        ),
    };
    let would_deny = match refusal {
        None => None,
        Some(err) if shadow || !policy.routes[route].enforce => Some((err.status().as_u16(), err.to_string())),
        Some(err) => return Err(err),
    };
    Ok(Authorized {
        policy,
        route,
        principal,
        target,
        would_deny,
    })
}
