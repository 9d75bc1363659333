//! The `[[test]]` cases of policy files, and how `policy test` runs one.

use std::path::PathBuf;

use http::Method;

use super::{Decision, PolicySet, Principal};

/// One `[[test]]` case of a policy file.
#[derive(Debug, Clone)]
pub struct TestCase {
    pub file: PathBuf,
    pub line: usize,
    pub method: Method,
    pub target: String,
    pub identity: Option<TestIdentity>,
    pub expect: TestExpect,
}

#[derive(Debug, Clone)]
pub struct TestIdentity {
    pub user: String,
    pub roles: Vec<String>,
    pub mfa: bool,
    pub email: Option<String>,
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
    });
    match set.decide(&case.method, &path, principal.as_ref()) {
        Decision::Allow { route } => (TestExpect::Allow, format!("allowed by {:?}", route.name)),
        Decision::NotFound => (TestExpect::NotFound, "no route matches".into()),
        Decision::Unauthenticated { route } => (TestExpect::Unauthenticated, format!("{:?} needs a token", route.name)),
        Decision::Forbidden { route, why } => (TestExpect::Deny, format!("{:?}: {why}", route.name)),
    }
}
