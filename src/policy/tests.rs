//! The policy's decisions, explanations and test cases, from policy file text.

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
        auth_time: 0,
        attributes: Default::default(),
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
            assert_eq!(
                why,
                Refused::NotOwner {
                    param: "id".into(),
                    attribute: None
                }
            );
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
    let errs = PolicySet::from_source(Path::new("p.toml"), "upstream = \"shop\"\n[[route]\n", &|_| true).unwrap_err();
    assert_eq!(errs[0].line, Some(2), "{}", errs[0]);
}

const STEP_UP: &str = r#"
upstream = "shop"

[[route]]
name = "transfers"
methods = ["POST"]
path = "/api/transfers"
roles = ["customer"]
mfa_max_age = "5m"

[[test]]
request = "POST /api/transfers"
as = { user = "u-1", roles = ["customer"], mfa = true }
expect = "allow"

[[test]]
request = "POST /api/transfers"
as = { user = "u-1", roles = ["customer"], mfa = true }
auth_age = "5m"
expect = "allow"

[[test]]
request = "POST /api/transfers"
as = { user = "u-1", roles = ["customer"], mfa = true }
auth_age = "10m"
expect = "unauthenticated"

[[test]]
request = "POST /api/transfers"
as = { user = "u-1", roles = ["customer"] }
expect = "unauthenticated"

[[test]]
request = "POST /api/transfers"
as = { user = "u-1", roles = ["support"], mfa = true }
expect = "deny"
"#;

// `mfa_max_age`: a second factor at most that old passes; an older one, or none, is the
// step-up refusal (not a plain 403), at the time given and with no leeway.
#[test]
fn mfa_max_age_decisions() {
    let set = PolicySet::from_source(Path::new("p.toml"), STEP_UP, &|_| true).unwrap();
    assert_eq!(set.routes[0].mfa_max_age, Some(300));
    let post = Method::POST;
    let mut caller = who("u-1", &["customer"], true);
    caller.auth_time = 1_000;
    for (now, allowed) in [(1_000, true), (1_300, true), (1_301, false), (5_000, false)] {
        match set.decide_at(&post, "/api/transfers", Some(&caller), now) {
            Decision::Allow { .. } => assert!(allowed, "allowed at {now}"),
            Decision::Forbidden { why, .. } => {
                assert!(!allowed, "refused at {now}");
                assert_eq!(why, Refused::StaleMfa { max_age: 300 });
            }
            other => panic!("{other:?}"),
        }
    }
    // `decide` (explain and tests without a time) takes the second factor as fresh.
    assert!(matches!(
        set.decide(&post, "/api/transfers", Some(&caller)),
        Decision::Allow { .. }
    ));
    caller.mfa = false;
    assert!(matches!(
        set.decide_at(&post, "/api/transfers", Some(&caller), 1_000),
        Decision::Forbidden {
            why: Refused::StaleMfa { max_age: 300 },
            ..
        }
    ));
    let e = set.explain_at(&post, "/api/transfers", Some(&caller), 1_000);
    assert_eq!(e.steps[0].outcome, Some(Err(Refused::StaleMfa { max_age: 300 })));
}

// `policy test` cases with `auth_age`: fresh and at the limit pass, older is a 401, and
// each case's expectation is what the run gets.
#[test]
fn auth_age_cases() {
    let set = PolicySet::from_source(Path::new("p.toml"), STEP_UP, &|_| true).unwrap();
    assert_eq!(set.tests.len(), 5);
    assert_eq!(set.tests[2].auth_age, Some(600));
    for case in &set.tests {
        let (got, why) = run_case(&set, case);
        assert_eq!(got, case.expect, "line {}: {why}", case.line);
    }
    let mut stale = set.tests[1].clone();
    stale.auth_age = Some(301);
    assert_eq!(run_case(&set, &stale).0, TestExpect::Unauthenticated);
}

// `mfa_max_age` is checked where it is written: not on a public route, not zero.
#[test]
fn mfa_max_age_validated() {
    let src = "upstream = \"shop\"\n[[route]]\nmethods = [\"GET\"]\npath = \"/p\"\npublic = true\nmfa_max_age = \"5m\"\n[[route]]\nmethods = [\"GET\"]\npath = \"/z\"\nmfa_max_age = \"0s\"\n[[route]]\nmethods = [\"GET\"]\npath = \"/b\"\nmfa_max_age = \"soon\"\n";
    let errs = PolicySet::from_source(Path::new("p.toml"), src, &|_| true).unwrap_err();
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(text.iter().any(|t| t.contains("invalid duration")), "{text:#?}");
    let src = "upstream = \"shop\"\n[[route]]\nmethods = [\"GET\"]\npath = \"/p\"\npublic = true\nmfa_max_age = \"5m\"\n[[route]]\nmethods = [\"GET\"]\npath = \"/z\"\nmfa_max_age = \"0s\"\n";
    let errs = PolicySet::from_source(Path::new("p.toml"), src, &|_| true).unwrap_err();
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|t| t.starts_with("p.toml:6:15: route[1].mfa_max_age: a public route")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("p.toml:10:15: route[2].mfa_max_age: mfa_max_age must be")),
        "{text:#?}"
    );
}

#[test]
fn field_lists_are_read_and_checked() {
    let src = r#"
upstream = "shop"
[[route]]
methods = ["GET", "PUT"]
path = "/api/customers/{id}"
request_fields = ["name", "phone"]
response_fields = ["id", "name"]
response_fields_by_role = { support = ["phone", "email"] }
"#;
    let set = PolicySet::from_source(Path::new("f.toml"), src, &|u| u == "shop").unwrap();
    let route = &set.routes[0];
    let request = route.request_fields.as_ref().unwrap();
    assert!(request.contains("name") && request.contains("phone") && !request.contains("role"));
    let response = route.response_fields.as_ref().unwrap();
    assert_eq!(response.base.names(), ["id", "name"]);
    assert_eq!(response.by_role[0].0, "support");
    assert!(response.by_role[0].1.contains("email"));

    for (bad, key) in [
        (
            "response_fields_by_role = { support = [\"x\"] }",
            "response_fields_by_role",
        ),
        ("request_fields = [\"a\", \"a\"]", "request_fields"),
        ("response_fields = [\"\"]", "response_fields"),
    ] {
        let src = format!("upstream = \"shop\"\n[[route]]\nmethods = [\"GET\"]\npath = \"/x\"\n{bad}\n");
        let errors = PolicySet::from_source(Path::new("f.toml"), &src, &|u| u == "shop").unwrap_err();
        assert_eq!(
            errors[0].key.as_deref(),
            Some(format!("route[1].{key}").as_str()),
            "{bad}"
        );
    }
}
