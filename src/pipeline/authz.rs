//! Phase 3: the policy decides. The only way to obtain an [`Authorized`] request is
//! [`authorize`], and [`forward`](super::forward::forward) accepts nothing else: a request that was not
//! allowed cannot reach an upstream.
//!
//! Shadow mode is decided here too: when the route that refuses a request has
//! `enforce = false` (or the gateway runs with `[policy] mode = "shadow"`), the request
//! is let through as a [`Judgement::WouldDeny`], with the status and reason it would
//! have been refused with, for the audit trail. A path that no route matches is refused
//! even in shadow mode: there is no route to say where it would go.
//!
//! The decision itself is [`judge`], a pure function of the policy, the method, the
//! canonical target and the principal: the gateway and `policy explain` both call it.

use std::borrow::Borrow;
use std::sync::Arc;

use http::{Method, Request};

use super::normalize::Target;
use crate::auth::Verified;
use crate::error::GatewayError;
use crate::policy::{Decision, PolicySet, Principal, Refused, Route};

/// A route of a policy set, kept alive by the set it belongs to.
#[derive(Clone)]
pub struct RouteRef {
    policy: Arc<PolicySet>,
    index: usize,
}

impl RouteRef {
    pub fn route(&self) -> &Route {
        &self.policy.routes[self.index]
    }

    pub fn name(&self) -> &str {
        &self.route().name
    }
}

/// What the policy decided about one request, before anything is forwarded.
#[derive(Debug)]
pub enum Verdict {
    /// The route at this index of the policy's routes allows the request.
    Allow { route: usize },
    /// The route at this index would refuse the request, but it does not enforce
    /// (shadow mode): the request goes through, audited with this refusal.
    WouldDeny { route: usize, refusal: GatewayError },
    /// Refused: no route matches (404), or the matching route refuses (401 / 403).
    Deny(GatewayError),
}

/// Decides a request with one policy set: the one decision the gateway and `policy
/// explain` share. `target` is the canonical target; `now` the time (Unix seconds) a
/// route's `mfa_max_age` is held to; `shadow` is `[policy] mode = "shadow"` (a route
/// with `enforce = false` is shadowed whatever it says).
pub fn judge(
    policy: &PolicySet,
    method: &Method,
    target: &Target,
    principal: Option<&Principal>,
    now: u64,
    shadow: bool,
) -> Verdict {
    let (route, refusal) = match policy.decide_at(method, &target.path, principal, now) {
        Decision::Allow { route } => return Verdict::Allow { route: route.index },
        Decision::NotFound => return Verdict::Deny(GatewayError::NoRoute),
        Decision::Unauthenticated { route } => (
            route.index,
            GatewayError::Unauthenticated {
                reason: format!("route {:?} needs a token", route.name),
                invalid_token: false,
            },
        ),
        Decision::Forbidden {
            route,
            why: Refused::StaleMfa { max_age },
        } => (
            route.index,
            GatewayError::InsufficientUserAuthentication {
                max_age,
                reason: format!("route {:?} needs a second factor passed within {max_age}s", route.name),
            },
        ),
        Decision::Forbidden { route, why } => (
            route.index,
            GatewayError::Forbidden {
                reason: format!("route {:?}: {why}", route.name),
            },
        ),
    };
    if shadow || !policy.routes[route].enforce {
        Verdict::WouldDeny { route, refusal }
    } else {
        Verdict::Deny(refusal)
    }
}

/// A request the policy allowed, owned: the request itself, the exact target that was
/// judged, the route that allowed it and the caller it was judged for. Made only by
/// [`authorize`]; [`forward`](super::forward::forward) consumes it.
pub struct Authorized<R> {
    request: R,
    target: Target,
    policy: Arc<PolicySet>,
    route: usize,
    caller: Option<Arc<Verified>>,
}

impl<R> Authorized<R> {
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

    /// The caller the request was judged for; `None` for an anonymous request.
    pub fn principal(&self) -> Option<&Principal> {
        self.caller.as_deref().map(|c| &*c.principal)
    }

    /// The verified token the request was judged with: its principal and the identity
    /// headers made for it.
    pub fn caller(&self) -> Option<&Verified> {
        self.caller.as_deref()
    }

    /// The request that was judged.
    pub fn request(&self) -> &R {
        &self.request
    }

    /// The judged target; the upstream receives exactly this.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Takes the judgement apart for the forward phase, which consumes it: the request,
    /// the judged target, the caller and the route that allowed it.
    pub fn into_parts(self) -> (R, Target, Option<Arc<Verified>>, RouteRef) {
        let route = RouteRef {
            policy: self.policy,
            index: self.route,
        };
        (self.request, self.target, self.caller, route)
    }
}

/// How the policy let a request through: allowed, or refused by a route that does not
/// enforce (shadow mode). A refused request is never a bare [`Authorized`].
pub enum Judgement<R> {
    Allowed(Authorized<R>),
    /// Shadow mode: forwarded, and audited with what the policy would have answered.
    WouldDeny {
        authorized: Authorized<R>,
        status: u16,
        reason: String,
    },
}

impl<R> Judgement<R> {
    /// The request as it is let through, whether allowed or shadowed.
    pub fn authorized(&self) -> &Authorized<R> {
        match self {
            Self::Allowed(a) | Self::WouldDeny { authorized: a, .. } => a,
        }
    }
}

/// Decides a request with one whole policy set (the set in force when it arrived), for
/// the caller of its verified token, if any, at `now` (Unix seconds). Refusals are
/// errors; what is let through owns the request (a `Request`, or a box holding one).
pub fn authorize<B, R: Borrow<Request<B>>>(
    policy: Arc<PolicySet>,
    request: R,
    target: Target,
    caller: Option<Arc<Verified>>,
    now: u64,
    shadow: bool,
) -> Result<Judgement<R>, GatewayError> {
    let principal = caller.as_deref().map(|c| &*c.principal);
    let verdict = judge(&policy, request.borrow().method(), &target, principal, now, shadow);
    let (route, would_deny) = match verdict {
        Verdict::Allow { route } => (route, None),
        Verdict::WouldDeny { route, refusal } => (route, Some(refusal)),
        Verdict::Deny(refusal) => return Err(refusal),
    };
    let authorized = Authorized {
        request,
        target,
        policy,
        route,
        caller,
    };
    Ok(match would_deny {
        None => Judgement::Allowed(authorized),
        Some(refusal) => Judgement::WouldDeny {
            authorized,
            status: refusal.status().as_u16(),
            reason: refusal.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn policy() -> PolicySet {
        let src = "upstream = \"s\"\n[[route]]\nname = \"trial\"\nmethods = [\"GET\"]\npath = \"/trial\"\nroles = [\"admin\"]\nenforce = false\n[[route]]\nname = \"strict\"\nmethods = [\"GET\"]\npath = \"/strict\"\nroles = [\"admin\"]\n[[route]]\nname = \"open\"\nmethods = [\"GET\"]\npath = \"/open\"\npublic = true\n";
        PolicySet::from_source(Path::new("t.toml"), src, &|_| true).unwrap()
    }

    fn target(path: &str) -> Target {
        Target {
            path: path.into(),
            query: None,
        }
    }

    // Allowed, refused, and shadowed (by the route's `enforce = false` or by shadow
    // mode); a path no route matches is refused even in shadow mode.
    #[test]
    fn judge_outcomes() {
        let p = policy();
        let get = Method::GET;
        assert!(matches!(
            judge(&p, &get, &target("/open"), None, 0, false),
            Verdict::Allow { route: 2 }
        ));
        assert!(matches!(
            judge(&p, &get, &target("/strict"), None, 0, false),
            Verdict::Deny(GatewayError::Unauthenticated { .. })
        ));
        assert!(matches!(
            judge(&p, &get, &target("/trial"), None, 0, false),
            Verdict::WouldDeny {
                route: 0,
                refusal: GatewayError::Unauthenticated { .. }
            }
        ));
        assert!(matches!(
            judge(&p, &get, &target("/strict"), None, 0, true),
            Verdict::WouldDeny { route: 1, .. }
        ));
        assert!(matches!(
            judge(&p, &get, &target("/nowhere"), None, 0, true),
            Verdict::Deny(GatewayError::NoRoute)
        ));
    }

    // A shadowed refusal is a WouldDeny carrying the status and reason, never Allowed.
    #[test]
    fn shadowed_is_not_allowed() {
        let req = Request::get("/trial").body(()).unwrap();
        let judged = authorize(Arc::new(policy()), req, target("/trial"), None, 0, false).unwrap();
        let Judgement::WouldDeny {
            authorized,
            status,
            reason,
        } = judged
        else {
            panic!("a refused request was allowed");
        };
        assert_eq!(status, 401);
        assert!(reason.contains("trial"), "{reason}");
        assert_eq!(authorized.route().name, "trial");
        assert_eq!(authorized.request().uri().path(), "/trial");
        let req = Request::get("/strict").body(()).unwrap();
        assert!(authorize(Arc::new(policy()), req, target("/strict"), None, 0, false).is_err());
    }
}
