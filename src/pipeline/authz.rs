//! Phase 3: the policy decides. The only way to obtain an [`Authorized`] request is
//! [`authorize`], and [`super::forward`] accepts nothing else: a request that was not
//! allowed cannot reach an upstream.

use std::sync::Arc;

use http::Method;

use super::normalize::Target;
use crate::error::GatewayError;
use crate::policy::{Decision, PolicySet, Principal, Route};

/// A request the policy allowed: the route that allowed it, the caller, and the exact
/// target that was judged.
#[derive(Debug)]
pub struct Authorized {
    policy: Arc<PolicySet>,
    route: usize,
    principal: Option<Principal>,
    target: Target,
}

impl Authorized {
    pub fn route(&self) -> &Route {
        &self.policy.routes[self.route]
    }

    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
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
    principal: Option<Principal>,
) -> Result<Authorized, GatewayError> {
    let route = match policy.decide(method, &target.path, principal.as_ref()) {
        Decision::Allow { route } => route.index,
        Decision::NotFound => return Err(GatewayError::NoRoute),
        Decision::Unauthenticated { route } => {
            return Err(GatewayError::Unauthenticated {
                reason: format!("route {:?} needs a token", route.name),
                invalid_token: false,
            })
        }
        Decision::Forbidden { route, why } => {
            return Err(GatewayError::Forbidden {
                reason: format!("route {:?}: {why}", route.name),
            })
        }
    };
    Ok(Authorized {
        policy,
        route,
        principal,
        target,
    })
}
