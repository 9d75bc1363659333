//! The one policy decision: the live gateway, `policy explain` and `policy test` call it.

use http::Method;

use super::{PolicySet, Principal, Route};

/// Why a matching route did not allow a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The route needs a token and the request had none.
    NeedsToken,
    /// The caller has none of the route's roles.
    MissingRole { required: Vec<String> },
    /// The route lists no roles at all (`roles = []`): nobody is allowed.
    NoRoleAllowed,
    /// The `owner` segment is not the caller's id.
    NotOwner { param: String },
    /// The route needs a login that passed TOTP.
    NeedsMfa,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NeedsToken => write!(f, "a bearer token is required"),
            Self::MissingRole { required } => {
                write!(f, "needs one of the roles [{}]", required.join(", "))
            }
            Self::NoRoleAllowed => write!(f, "roles = [] allows nobody"),
            Self::NotOwner { param } => write!(f, "the {{{param}}} segment is not the caller's id"),
            Self::NeedsMfa => write!(f, "needs a login that passed two-factor authentication"),
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

/// Checks one matching route's conditions against a caller.
pub fn evaluate(route: &Route, captures: &[&str], caller: Option<&Principal>) -> Result<(), Refused> {
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
    if let Some(param) = &route.owner {
        let value = route
            .pattern
            .param_names()
            .zip(captures)
            .find(|(name, _)| name == param)
            .map(|(_, v)| *v);
        // Constant-time is not needed: user ids are not secrets, and the caller knows theirs.
        if value != Some(p.id.as_str()) {
            return Err(Refused::NotOwner { param: param.clone() });
        }
    }
    if route.mfa && !p.mfa {
        return Err(Refused::NeedsMfa);
    }
    Ok(())
}

impl PolicySet {
    /// The policy decision for a request. `path` must be canonical (see `normalize`).
    pub fn decide(&self, method: &Method, path: &str, caller: Option<&Principal>) -> Decision<'_> {
        let mut first_refusal: Option<(&Route, Refused)> = None;
        for (route, captures) in self.candidates(method, path) {
            match evaluate(route, &captures, caller) {
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
