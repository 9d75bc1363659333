//! Route policy: files in `policies/`, compiled once into an immutable [`PolicySet`].
//!
//! Deny by default: a request no route matches is refused with 404; a route that matches
//! but whose conditions fail refuses with 401 (no caller) or 403 (a caller not allowed).
//! Several routes may match one request; it is allowed if any of them allows it, and the
//! first allowing route (in file order, files sorted by name) decides where it goes.
//!
//! [`PolicySet::decide`] is the one decision function: the live gateway, `policy explain`
//! and `policy test` all call it.
//!
//! `decide` holds the decision ([`Decision`], [`Refused`], [`evaluate`]); `explain` its
//! route-by-route account; `cases` the `[[test]]` cases `policy test` runs; `file` the
//! policy file format, `owner` its `owner` key; `matcher` the path trie; `lint` the
//! warnings; `reload` the swap.

mod cases;
mod decide;
mod explain;
mod fields;
mod file;
pub mod lint;
pub mod matcher;
mod owner;
pub mod reload;
pub mod roles;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use http::Method;

use crate::config::Config;
use crate::source::SourceError;
use crate::units::Rate;
use matcher::{Matcher, Pattern};

pub use cases::{run_case, TestCase, TestExpect, TestIdentity};
pub use decide::{evaluate, Decision, Refused};
pub use explain::{Explanation, Step};
pub use fields::{FieldList, ResponseFields, MAX_FIELDS};

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Position in the set: earlier routes come first.
    pub index: usize,
    /// The route's name, or `file:line` when it has none.
    pub name: String,
    pub file: PathBuf,
    pub line: usize,
    pub methods: Vec<Method>,
    pub path: String,
    pub pattern: Pattern,
    pub public: bool,
    /// `None` (no `roles` key): any authenticated caller. `Some(list)`: a caller holding
    /// any of these roles; an empty list (`roles = []`) allows nobody, since an operator
    /// who empties a list means to take access away, not to give it to everyone.
    pub roles: Option<Vec<String>>,
    /// The path parameter that must equal the caller's id, or one of its attributes.
    pub owner: Option<Owner>,
    pub mfa: bool,
    /// `mfa_max_age`, in seconds: the caller's second factor must be at most this old.
    pub mfa_max_age: Option<u64>,
    pub rate_limit: Option<Rate>,
    pub upstream: String,
    pub enforce: bool,
    pub audit: bool,
    /// Browsers on the `[cors]` origins may call this route (`cors = false` turns it off).
    pub cors: bool,
    /// `request_fields`: the only top-level fields a JSON request body may carry.
    pub request_fields: Option<std::sync::Arc<FieldList>>,
    /// `response_fields` (and `response_fields_by_role`): what a JSON response keeps.
    pub response_fields: Option<std::sync::Arc<ResponseFields>>,
}

impl Route {
    pub fn accepts_method(&self, method: &Method) -> bool {
        self.methods
            .iter()
            .any(|m| m == method || (method == Method::HEAD && m == Method::GET))
    }
}

/// A route's `owner` rule: which path parameter must equal what of the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// `owner = "id"`: the `{id}` segment must be the caller's user id.
    User { param: String },
    /// `owner = { segment = "id", attribute = "customer_id" }`: the `{id}` segment must
    /// equal the caller's attribute `customer_id`; a caller without it is refused.
    Attribute { param: String, attribute: String },
}

impl Owner {
    /// The path parameter compared.
    pub fn param(&self) -> &str {
        match self {
            Self::User { param } | Self::Attribute { param, .. } => param,
        }
    }
}

/// An authenticated caller, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub email: String,
    pub roles: Vec<String>,
    /// The token comes from a login that passed TOTP.
    pub mfa: bool,
    /// When the caller last passed the second factor (or the password, without one),
    /// Unix seconds: what a route's `mfa_max_age` is held to.
    pub auth_time: u64,
    /// The account's attributes (from the token's `attrs` claim), for `owner` rules
    /// that compare one.
    pub attributes: crate::attributes::Attributes,
}

/// A compiled, immutable set of routes (and the test cases that came with them).
#[derive(Debug, Default)]
pub struct PolicySet {
    pub routes: Vec<Route>,
    pub tests: Vec<TestCase>,
    matcher: Matcher,
}

impl PolicySet {
    /// Compiles routes in the order given.
    pub fn new(mut routes: Vec<Route>, tests: Vec<TestCase>) -> Self {
        let mut matcher = Matcher::default();
        for (i, r) in routes.iter_mut().enumerate() {
            r.index = i;
            matcher.insert(&r.pattern, i);
        }
        Self { routes, tests, matcher }
    }

    /// Loads every `*.toml` file of `dir`. All errors of all files are returned together.
    pub fn load_dir(dir: &Path, config: &Config) -> Result<Self, Vec<SourceError>> {
        let exists = |name: &str| config.upstreams.contains_key(name);
        Self::load_dir_checked(dir, &exists, roles::declared(config).as_ref())
    }

    /// Like [`PolicySet::load_dir`], with the set of known upstreams given as a predicate.
    pub fn load_dir_with(dir: &Path, upstream_exists: &dyn Fn(&str) -> bool) -> Result<Self, Vec<SourceError>> {
        Self::load_dir_checked(dir, upstream_exists, None)
    }

    /// Like [`PolicySet::load_dir_with`]; with `declared` roles, a route naming another
    /// role is an error. Every file's errors are reported, in file order.
    pub fn load_dir_checked(
        dir: &Path,
        upstream_exists: &dyn Fn(&str) -> bool,
        declared: Option<&std::collections::BTreeSet<String>>,
    ) -> Result<Self, Vec<SourceError>> {
        let files = file::policy_files(dir).map_err(|e| vec![e])?;
        let mut routes = Vec::new();
        let mut tests = Vec::new();
        let mut errors = Vec::new();
        for path in files {
            let src = match std::fs::read_to_string(&path) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(SourceError::whole_file(&path, format!("cannot read: {e}")));
                    continue;
                }
            };
            let undeclared = declared.map(|d| roles::undeclared(&path, &src, d)).unwrap_or_default();
            match file::parse_file(&path, &src, upstream_exists) {
                Ok(parsed) if undeclared.is_empty() => {
                    routes.extend(parsed.routes);
                    tests.extend(parsed.tests);
                }
                Ok(_) => errors.extend(undeclared),
                Err(e) => errors.extend(e.into_iter().chain(undeclared)),
            }
        }
        crate::source::in_file_order(&mut errors);
        if errors.is_empty() {
            Ok(Self::new(routes, tests))
        } else {
            Err(errors)
        }
    }

    /// Parses one file's text (for tests and tools).
    pub fn from_source(
        path: &Path,
        src: &str,
        upstream_exists: &dyn Fn(&str) -> bool,
    ) -> Result<Self, Vec<SourceError>> {
        let parsed = file::parse_file(path, src, upstream_exists)?;
        Ok(Self::new(parsed.routes, parsed.tests))
    }

    /// Whether some route matches the canonical `path` for `method` (a CORS preflight is
    /// answered only then), and whether one of those lets browsers in (`cors`).
    pub fn routed(&self, method: &Method, path: &str) -> Option<bool> {
        let mut found = None;
        for (route, _) in self.candidates(method, path) {
            if route.cors {
                return Some(true);
            }
            found = Some(false);
        }
        found
    }

    /// The routes matching a method and canonical path, with their captures, in order.
    pub fn candidates<'a, 'p, 'm>(
        &'a self,
        method: &'m Method,
        path: &'p str,
    ) -> impl Iterator<Item = (&'a Route, matcher::Captures<'p>)> + use<'a, 'p, 'm> {
        self.matcher
            .find(path)
            .into_iter()
            .map(|m| (&self.routes[m.route], m.captures))
            .filter(move |(r, _)| r.accepts_method(method))
    }
}
