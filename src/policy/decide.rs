//! The one policy decision: the live gateway, `policy explain` and `policy test` call it.

use http::Method;

use super::{Owner, PolicySet, Principal, Route};

/// Why a matching route did not allow a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The route needs a token and the request had none.
    NeedsToken,
    /// The caller has none of the route's roles.
    MissingRole { required: Vec<String> },
    /// The route lists no roles at all (`roles = []`): nobody is allowed.
    NoRoleAllowed,
    /// The `owner` segment is not the caller's id, or (with `attribute`) not the value
    /// of that attribute of the caller, or the caller has no such attribute.
    NotOwner { param: String, attribute: Option<String> },
    /// The route needs a login that passed TOTP.
    NeedsMfa,
    /// The route has `mfa_max_age`: the caller's token has no second factor, or passed it
    /// more than `max_age` seconds ago (RFC 9470: 401, step up and retry).
    StaleMfa { max_age: u64 },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NeedsToken => write!(f, "a bearer token is required"),
            Self::MissingRole { required } => {
                write!(f, "needs one of the roles [{}]", required.join(", "))
            }
            Self::NoRoleAllowed => write!(f, "roles = [] allows nobody"),
            Self::NotOwner { param, attribute: None } => write!(f, "the {{{param}}} segment is not the caller's id"),
            Self::NotOwner {
                param,
                attribute: Some(a),
            } => write!(
                f,
                "the {{{param}}} segment is not the caller's attribute {a:?} (or the caller has none)"
            ),
            Self::NeedsMfa => write!(f, "needs a login that passed two-factor authentication"),
            Self::StaleMfa { max_age } => {
                write!(f, "needs the second factor passed within the last {max_age}s (step-up)")
            }
        }
    }
}

/// The outcome of [`PolicySet::decide`].
#[derive(Debug, Clone)]
pub enum Decision<'a> {
    Allow { route: &'a Route },
    NotFound,
    Unauthenticated { route: &'a Route },
    Forbidden { route: &'a Route, why: Refused },
}

/// Checks one matching route's conditions against a caller, at `now` (Unix seconds, the
/// gateway's clock; `mfa_max_age` is held to it without any leeway).
pub fn evaluate(route: &Route, captures: &[&str], caller: Option<&Principal>, now: u64) -> Result<(), Refused> {
    if route.public {
        return Ok(());
    }
    let Some(p) = caller else {
        return Err(Refused::NeedsToken);
    };
    match &route.roles {
        None => {}
        Some(roles) if roles.is_empty() => return Err(Refused::NoRoleAllowed),
        Some(roles) if !roles.iter().any(|r| p.roles.contains(r)) => {
            return Err(Refused::MissingRole {
                required: roles.clone(),
            });
        }
        Some(_) => {}
    }
    if let Some(owner) = &route.owner {
        let param = owner.param();
        let value = route
            .pattern
            .param_names()
            .zip(captures)
            .find(|(name, _)| *name == param)
            .map(|(_, v)| *v);
        let (expected, attribute) = match owner {
            Owner::User { .. } => (Some(p.id.as_str()), None),
            Owner::Attribute { attribute, .. } => (p.attributes.get(attribute).map(String::as_str), Some(attribute)),
        };
        // Constant-time is not needed: ids and attributes are not secrets, and the
        // caller knows its own. A missing value, or an empty one, owns nothing.
        if value.is_none() || value == Some("") || value != expected {
            return Err(Refused::NotOwner {
                param: param.to_owned(),
                attribute: attribute.cloned(),
            });
        }
    }
    if let Some(max_age) = route.mfa_max_age {
        if !p.mfa || now.saturating_sub(p.auth_time) > max_age {
            return Err(Refused::StaleMfa { max_age });
        }
    }
    if route.mfa && !p.mfa {
        return Err(Refused::NeedsMfa);
    }
    Ok(())
}

impl PolicySet {
    /// The policy decision for a request. `path` must be canonical (see `normalize`).
    /// The caller is taken to have just passed its second factor (see
    /// [`PolicySet::decide_at`] for the decision at a given time).
    pub fn decide(&self, method: &Method, path: &str, caller: Option<&Principal>) -> Decision<'_> {
        self.decide_at(method, path, caller, caller.map_or(0, |p| p.auth_time))
    }

    /// The policy decision for a request at `now` (Unix seconds): what the gateway asks.
    pub fn decide_at(&self, method: &Method, path: &str, caller: Option<&Principal>, now: u64) -> Decision<'_> {
        let mut first_refusal: Option<(&Route, Refused)> = None;
        for (route, captures) in self.candidates(method, path) {
            match evaluate(route, &captures, caller, now) {
                Ok(()) => return Decision::Allow { route },
                Err(why) => {
                    first_refusal.get_or_insert((route, why));
                }
            }
        }
        match first_refusal {
            None => Decision::NotFound,
            Some((route, Refused::NeedsToken)) => Decision::Unauthenticated { route },
            Some((route, why)) => Decision::Forbidden { route, why },
        }
    }
}
