//! Route policy: files in `policies/`, compiled once into an immutable [`PolicySet`].
//!
//! Deny by default: a request no route matches is refused with 404; a route that matches
//! but whose conditions fail refuses with 401 (no caller) or 403 (a caller not allowed).
//! Several routes may match one request; it is allowed if any of them allows it, and the
//! first allowing route (in file order, files sorted by name) decides where it goes.
//!
//! [`decide`] is the one decision function: the live gateway, `policy explain` and
//! `policy test` all call it.

mod file;
pub mod lint;
pub mod matcher;
pub mod reload;

use std::path::{Path, PathBuf};

use http::Method;

use crate::config::Config;
use crate::source::SourceError;
use crate::units::Rate;
use matcher::{Matcher, Pattern};

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
    /// The path parameter that must equal the caller's id.
    pub owner: Option<String>,
    pub mfa: bool,
    pub rate_limit: Option<Rate>,
    pub upstream: String,
    pub enforce: bool,
    pub audit: bool,
}

impl Route {
    pub fn accepts_method(&self, method: &Method) -> bool {
        self.methods
            .iter()
            .any(|m| m == method || (method == Method::HEAD && m == Method::GET))
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
}

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

/// The outcome of [`decide`].
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
        Self::load_dir_with(dir, &exists)
    }

    /// Like [`PolicySet::load_dir`], with the set of known upstreams given as a predicate.
    pub fn load_dir_with(dir: &Path, upstream_exists: &dyn Fn(&str) -> bool) -> Result<Self, Vec<SourceError>> {
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
            match file::parse_file(&path, &src, upstream_exists) {
                Ok(parsed) => {
                    routes.extend(parsed.routes);
                    tests.extend(parsed.tests);
                }
                Err(e) => errors.extend(e),
            }
        }
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

/// How one route saw a request, for `policy explain`.
#[derive(Debug, Clone)]
pub struct Step<'a> {
    pub route: &'a Route,
    pub path_matched: bool,
    pub method_matched: bool,
    /// The route's conditions, when both path and method matched.
    pub outcome: Option<Result<(), Refused>>,
}

/// Every route's view of a request, and the decision the gateway takes.
#[derive(Debug, Clone)]
pub struct Explanation<'a> {
    pub steps: Vec<Step<'a>>,
    pub decision: Decision<'a>,
}

impl PolicySet {
    /// Explains a decision route by route. The final decision is [`PolicySet::decide`]'s,
    /// and each route's conditions are checked by the same [`evaluate`] the gateway uses.
    pub fn explain(&self, method: &Method, path: &str, caller: Option<&Principal>) -> Explanation<'_> {
        let found = self.matcher.find(path);
        let steps = self
            .routes
            .iter()
            .map(|route| {
                let captures = found.iter().find(|m| m.route == route.index).map(|m| &m.captures);
                let method_matched = route.accepts_method(method);
                Step {
                    route,
                    path_matched: captures.is_some(),
                    method_matched,
                    outcome: captures.filter(|_| method_matched).map(|c| evaluate(route, c, caller)),
                }
            })
            .collect();
        Explanation {
            steps,
            decision: self.decide(method, path, caller),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const SHOPLIKE: &str = r#"
upstream = "shop"

[[route]]
name = "browse"
methods = ["GET"]
path = "/api/products/{id}"
public = true

[[route]]
name = "own particulars"
methods = ["GET", "PUT"]
path = "/api/customers/{id}"
roles = ["customer"]
owner = "id"

[[route]]
name = "support reads customers"
methods = ["GET"]
path = "/api/customers/{id}"
roles = ["support", "admin"]

[[route]]
name = "staff"
methods = ["GET", "POST", "PUT", "DELETE"]
path = "/api/staff/{*rest}"
roles = ["admin"]
mfa = true
"#;

    fn set() -> PolicySet {
        PolicySet::from_source(Path::new("shop.toml"), SHOPLIKE, &|u| u == "shop").unwrap()
    }

    fn who(id: &str, roles: &[&str], mfa: bool) -> Principal {
        Principal {
            id: id.into(),
            email: format!("{id}@example.com"),
            roles: roles.iter().map(|r| (*r).to_string()).collect(),
            mfa,
        }
    }

    fn verdict(set: &PolicySet, method: Method, path: &str, p: Option<&Principal>) -> &'static str {
        match set.decide(&method, path, p) {
            Decision::Allow { .. } => "allow",
            Decision::NotFound => "not_found",
            Decision::Unauthenticated { .. } => "unauthenticated",
            Decision::Forbidden { .. } => "deny",
        }
    }

    // Deny by default: unmatched paths and unlisted methods are not found.
    #[test]
    fn deny_by_default() {
        let s = set();
        assert_eq!(verdict(&s, Method::GET, "/api/other", None), "not_found");
        assert_eq!(verdict(&s, Method::DELETE, "/api/products/1", None), "not_found");
        assert_eq!(verdict(&s, Method::GET, "/api/products/1", None), "allow");
        assert_eq!(verdict(&s, Method::HEAD, "/api/products/1", None), "allow");
    }

    // Roles, ownership and MFA each refuse on their own.
    #[test]
    fn conditions() {
        let s = set();
        let alice = who("u-alice", &["customer"], false);
        assert_eq!(
            verdict(&s, Method::GET, "/api/customers/u-alice", None),
            "unauthenticated"
        );
        assert_eq!(
            verdict(&s, Method::GET, "/api/customers/u-alice", Some(&alice)),
            "allow"
        );
        assert_eq!(verdict(&s, Method::PUT, "/api/customers/u-bob", Some(&alice)), "deny");
        let support = who("u-s", &["support"], false);
        assert_eq!(
            verdict(&s, Method::GET, "/api/customers/u-bob", Some(&support)),
            "allow"
        );
        assert_eq!(verdict(&s, Method::PUT, "/api/customers/u-bob", Some(&support)), "deny");
        let admin = who("u-a", &["admin"], false);
        assert_eq!(verdict(&s, Method::GET, "/api/staff/1", Some(&admin)), "deny");
        let admin = who("u-a", &["admin"], true);
        assert_eq!(verdict(&s, Method::GET, "/api/staff/1", Some(&admin)), "allow");
    }

    // The refusal names the first matching route's reason.
    #[test]
    fn refusal_reason() {
        let s = set();
        let alice = who("u-alice", &["customer"], false);
        match s.decide(&Method::PUT, "/api/customers/u-bob", Some(&alice)) {
            Decision::Forbidden { route, why } => {
                assert_eq!(route.name, "own particulars");
                assert_eq!(why, Refused::NotOwner { param: "id".into() });
            }
            other => panic!("{other:?}"),
        }
    }

    // Explain's decision is decide's, and its trace marks which routes refused.
    #[test]
    fn explain_traces() {
        let s = set();
        let alice = who("u-alice", &["customer"], false);
        let e = s.explain(&Method::PUT, "/api/customers/u-bob", Some(&alice));
        assert!(matches!(e.decision, Decision::Forbidden { .. }));
        let matched: Vec<(&str, bool)> = e
            .steps
            .iter()
            .filter_map(|st| st.outcome.as_ref().map(|o| (st.route.name.as_str(), o.is_ok())))
            .collect();
        assert_eq!(
            matched,
            [("own particulars", false)],
            "support's GET-only route is not a candidate for PUT"
        );
        assert_eq!(e.steps.len(), s.routes.len());
    }

    proptest::proptest! {
        // Over random callers, methods and paths: explain's decision is decide's, the
        // route that allows has an allowing step, a refusal has none, and a 404 has no
        // candidate at all.
        #[test]
        fn explain_consistent_with_decide(
            roles in proptest::collection::vec(proptest::sample::select(vec!["customer", "support", "admin", "other"]), 0..3),
            user in proptest::sample::select(vec!["u-alice", "u-bob"]),
            anonymous in proptest::bool::ANY,
            mfa in proptest::bool::ANY,
            method in proptest::sample::select(vec![Method::GET, Method::PUT, Method::POST, Method::DELETE, Method::HEAD]),
            path in proptest::sample::select(vec![
                "/api/products/1", "/api/customers/u-alice", "/api/customers/u-bob", "/api/staff/1",
                "/api/staff/a/b", "/api/staff", "/api", "/", "/api/customers",
            ]),
        ) {
            let s = set();
            let caller = (!anonymous).then(|| who(user, &roles, mfa));
            let e = s.explain(&method, path, caller.as_ref());
            let d = s.decide(&method, path, caller.as_ref());
            let allowing: Vec<usize> = e.steps.iter().filter(|st| matches!(st.outcome, Some(Ok(())))).map(|st| st.route.index).collect();
            let candidates = e.steps.iter().filter(|st| st.outcome.is_some()).count();
            match (&e.decision, &d) {
                (Decision::Allow { route: a }, Decision::Allow { route: b }) => {
                    proptest::prop_assert_eq!(a.index, b.index);
                    proptest::prop_assert_eq!(allowing.first().copied(), Some(a.index));
                }
                (Decision::NotFound, Decision::NotFound) => proptest::prop_assert_eq!(candidates, 0),
                (Decision::Unauthenticated { route: a }, Decision::Unauthenticated { route: b })
                | (Decision::Forbidden { route: a, .. }, Decision::Forbidden { route: b, .. }) => {
                    proptest::prop_assert_eq!(a.index, b.index);
                    proptest::prop_assert!(allowing.is_empty());
                    proptest::prop_assert!(candidates > 0);
                }
                (x, y) => proptest::prop_assert!(false, "explain {x:?} but decide {y:?}"),
            }
        }
    }

    // A policy file's errors are all reported, each with file, line and column.
    #[test]
    fn errors_located() {
        let src = r#"
upstream = "nowhere"

[[route]]
methods = ["GET", "FETCH"]
path = "/api/{id"
owner = "id"

[[route]]
methods = ["GET"]
path = "/api/customers/{id}"
owner = "customer"
public = true
roles = ["x"]
"#;
        let errs = PolicySet::from_source(Path::new("p.toml"), src, &|u| u == "shop").unwrap_err();
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let want = [
            "p.toml:2:12: upstream: upstream \"nowhere\"",
            "p.toml:5:19: route[1].methods: unknown method \"FETCH\"",
            "p.toml:6:8: route[1].path:",
            "p.toml:12:9: route[2].owner: owner names {customer}",
            "p.toml:14:9: route[2].roles: a public route cannot also list roles",
        ];
        for w in want {
            assert!(text.iter().any(|t| t.starts_with(w)), "missing {w:?} in {text:#?}");
        }
    }

    // `roles = []` allows nobody, not everybody signed in; leaving `roles` out still
    // allows every signed-in caller; `public` with any roles list is refused.
    #[test]
    fn empty_roles_allow_nobody() {
        let src = "upstream = \"shop\"\n[[route]]\nname = \"emptied\"\nmethods = [\"GET\"]\npath = \"/e\"\nroles = []\n[[route]]\nname = \"open\"\nmethods = [\"GET\"]\npath = \"/o\"\n";
        let set = PolicySet::from_source(Path::new("p.toml"), src, &|_| true).unwrap();
        let get = Method::GET;
        for roles in [&[][..], &["admin"][..], &["customer", "support"][..]] {
            let caller = who("u-1", roles, true);
            match set.decide(&get, "/e", Some(&caller)) {
                Decision::Forbidden { why, .. } => assert_eq!(why, Refused::NoRoleAllowed),
                other => panic!("roles = [] allowed {roles:?}: {other:?}"),
            }
            assert!(matches!(set.decide(&get, "/o", Some(&caller)), Decision::Allow { .. }));
        }
        assert!(matches!(set.decide(&get, "/e", None), Decision::Unauthenticated { .. }));
        assert_eq!(Refused::NoRoleAllowed.to_string(), "roles = [] allows nobody");
        let public = "upstream = \"shop\"\n[[route]]\nmethods = [\"GET\"]\npath = \"/p\"\npublic = true\nroles = []\n";
        let errs = PolicySet::from_source(Path::new("p.toml"), public, &|_| true).unwrap_err();
        assert!(
            errs[0].to_string().contains("a public route cannot also list roles"),
            "{}",
            errs[0]
        );
    }

    // A syntax error is located too.
    #[test]
    fn syntax_error_located() {
        let errs =
            PolicySet::from_source(Path::new("p.toml"), "upstream = \"shop\"\n[[route]\n", &|_| true).unwrap_err();
        assert_eq!(errs[0].line, Some(2), "{}", errs[0]);
    }
}
