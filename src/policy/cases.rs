//! The `[[test]]` cases of policy files, and how `policy test` runs one.

use std::path::PathBuf;

use http::Method;

use super::{Decision, PolicySet, Principal, Refused};

/// One `[[test]]` case of a policy file.
#[derive(Debug, Clone)]
pub struct TestCase {
    pub file: PathBuf,
    pub line: usize,
    pub method: Method,
    pub target: String,
    pub identity: Option<TestIdentity>,
    pub expect: TestExpect,
    /// `auth_age`: how many seconds ago the caller passed the second factor (for routes
    /// with `mfa_max_age`); none means just now.
    pub auth_age: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct TestIdentity {
    pub user: String,
    pub roles: Vec<String>,
    pub mfa: bool,
    pub email: Option<String>,
    /// `attributes = { customer_id = "42" }`: the caller's attributes.
    pub attributes: crate::attributes::Attributes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestExpect {
    Allow,
    Deny,
    Unauthenticated,
    NotFound,
}

impl std::fmt::Display for TestExpect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Unauthenticated => "unauthenticated",
            Self::NotFound => "not_found",
        })
    }
}

/// What a test case got, as a [`TestExpect`], with the deciding route and reason.
pub fn run_case(set: &PolicySet, case: &TestCase) -> (TestExpect, String) {
    let path = case.target.split('?').next().unwrap_or("");
    let path = match crate::path::canonical_path(path) {
        Ok(p) => p,
        Err(why) => return (TestExpect::Deny, format!("400: the target is refused ({why})")),
    };
    let principal = case.identity.as_ref().map(|i| Principal {
        id: i.user.clone(),
        email: i.email.clone().unwrap_or_default(),
        roles: i.roles.clone(),
        mfa: i.mfa,
        auth_time: 0,
        attributes: i.attributes.clone(),
    });
    // The caller passed its second factor at time 0; the case is judged `auth_age` later.
    match set.decide_at(&case.method, &path, principal.as_ref(), case.auth_age.unwrap_or(0)) {
        Decision::Allow { route } => (TestExpect::Allow, format!("allowed by {:?}", route.name)),
        Decision::NotFound => (TestExpect::NotFound, "no route matches".into()),
        Decision::Unauthenticated { route } => (TestExpect::Unauthenticated, format!("{:?} needs a token", route.name)),
        // The gateway answers a stale second factor with 401 and a step-up challenge.
        Decision::Forbidden {
            route,
            why: why @ Refused::StaleMfa { .. },
        } => (TestExpect::Unauthenticated, format!("{:?}: {why}", route.name)),
        Decision::Forbidden { route, why } => (TestExpect::Deny, format!("{:?}: {why}", route.name)),
    }
}
