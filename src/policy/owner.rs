//! A route's `owner` key, validated into an [`Owner`]: a path parameter compared with
//! the caller's user id (`owner = "id"`) or with one of its attributes
//! (`owner = { segment = "id", attribute = "customer_id" }`).

use super::matcher::{Pattern, PatternSegment};
use super::Owner;

/// What an `owner` value must look like, for messages.
const FORMS: &str =
    "owner is \"param\" (compared with the caller's id) or { segment = \"param\", attribute = \"key\" }";

/// Validates an `owner` value against the route's path.
pub(super) fn compile(value: &toml::Value, pattern: &Pattern, path: &str) -> Result<Owner, String> {
    let owner = match value {
        toml::Value::String(param) => Owner::User { param: param.clone() },
        toml::Value::Table(t) => {
            if let Some(k) = t.keys().find(|k| !matches!(k.as_str(), "segment" | "attribute")) {
                return Err(format!("unknown key {k:?}: {FORMS}"));
            }
            let text = |k: &str| match t.get(k) {
                Some(toml::Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!("{k} must be a string: {FORMS}")),
                None => Err(format!("{k} is missing: {FORMS}")),
            };
            let param = text("segment")?;
            let attribute = text("attribute")?;
            crate::attributes::check_key(&attribute)?;
            Owner::Attribute { param, attribute }
        }
        _ => return Err(FORMS.into()),
    };
    let param = owner.param();
    let segment = pattern.segments.iter().find(|s| match s {
        PatternSegment::Param(n) | PatternSegment::CatchAll(n) => n == param,
        PatternSegment::Literal(_) => false,
    });
    match (segment, &owner) {
        (None, _) => Err(format!(
            "owner names {{{param}}}, which the path {path:?} does not have"
        )),
        // An attribute may hold `/`: compared with a remainder of several segments it
        // could own paths nobody meant it to.
        (Some(PatternSegment::CatchAll(_)), Owner::Attribute { .. }) => Err(format!(
            "owner compares {{*{param}}}, a catch-all: an attribute is compared with one segment, e.g. {{{param}}}"
        )),
        _ => Ok(owner),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use http::Method;

    use super::super::{run_case, Decision, PolicySet, Principal, Refused, TestExpect};

    const SRC: &str = r#"
upstream = "api"

[[route]]
name = "own record"
methods = ["GET"]
path = "/api/users/{id}"
owner = { segment = "id", attribute = "customer_id" }

[[route]]
name = "own account"
methods = ["GET"]
path = "/api/accounts/{id}"
owner = "id"

[[test]]
request = "GET /api/users/42"
as = { user = "u-1", attributes = { customer_id = "42" } }
expect = "allow"

[[test]]
request = "GET /api/users/43"
as = { user = "u-1", attributes = { customer_id = "42" } }
expect = "deny"

[[test]]
request = "GET /api/users/42"
as = { user = "u-1" }
expect = "deny"
"#;

    fn set() -> PolicySet {
        PolicySet::from_source(Path::new("p.toml"), SRC, &|u| u == "api").unwrap()
    }

    fn caller(attrs: &[(&str, &str)]) -> Principal {
        Principal {
            id: "u-1".into(),
            email: "a@example.com".into(),
            roles: Vec::new(),
            mfa: false,
            auth_time: 0,
            attributes: attrs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    fn refusal(set: &PolicySet, path: &str, p: &Principal) -> Option<Refused> {
        match set.decide(&Method::GET, path, Some(p)) {
            Decision::Allow { .. } => None,
            Decision::Forbidden { why, .. } => Some(why),
            other => panic!("{path}: {other:?}"),
        }
    }

    // The segment is compared with the caller's attribute: equal allows, anything else
    // (another value, no attribute, an empty one, the user id) refuses, naming it.
    #[test]
    fn owner_by_attribute() {
        let s = set();
        let c42 = caller(&[("customer_id", "42")]);
        assert_eq!(refusal(&s, "/api/users/42", &c42), None);
        let not_owner = Some(Refused::NotOwner {
            param: "id".into(),
            attribute: Some("customer_id".into()),
        });
        assert_eq!(refusal(&s, "/api/users/43", &c42), not_owner);
        assert_eq!(refusal(&s, "/api/users/042", &c42), not_owner);
        assert_eq!(refusal(&s, "/api/users/42", &caller(&[])), not_owner);
        assert_eq!(refusal(&s, "/api/users/42", &caller(&[("other", "42")])), not_owner);
        assert_eq!(
            refusal(&s, "/api/users/u-1", &caller(&[])),
            not_owner,
            "the user id is not the attribute"
        );
        assert!(not_owner
            .as_ref()
            .is_some_and(|r| r.to_string().contains("customer_id")));
        // `owner = "id"` still compares the user id, never an attribute.
        assert_eq!(refusal(&s, "/api/accounts/u-1", &c42), None);
        assert!(refusal(&s, "/api/accounts/42", &c42).is_some());
        // Explain agrees with the decision.
        let e = s.explain(&Method::GET, "/api/users/43", Some(&c42));
        assert!(matches!(e.steps[0].outcome, Some(Err(Refused::NotOwner { .. }))));
    }

    // `[[test]]` cases carry attributes, and a wrong expectation fails.
    #[test]
    fn cases_with_attributes() {
        let s = set();
        assert_eq!(s.tests.len(), 3);
        for case in &s.tests {
            assert_eq!(run_case(&s, case).0, case.expect, "{case:?}");
        }
        let mut flipped = s.tests[0].clone();
        flipped.identity.as_mut().unwrap().attributes.clear();
        assert_eq!(run_case(&s, &flipped).0, TestExpect::Deny);
    }

    // The segment must be a `{param}` of the path (not a catch-all), the attribute key
    // must have the attribute syntax, and the table takes only its two keys; each error
    // names file, line and column.
    #[test]
    fn validation() {
        let route = |owner: &str, path: &str| {
            format!("upstream = \"api\"\n[[route]]\nmethods = [\"GET\"]\npath = \"{path}\"\nowner = {owner}\n")
        };
        for (owner, path, want) in [
            (
                r#"{ segment = "nope", attribute = "customer_id" }"#,
                "/u/{id}",
                "owner names {nope}",
            ),
            (
                r#"{ segment = "id", attribute = "Customer-Id" }"#,
                "/u/{id}",
                "attribute key \"Customer-Id\"",
            ),
            (r#"{ segment = "id" }"#, "/u/{id}", "attribute is missing"),
            (
                r#"{ segment = "id", attribute = "a", extra = 1 }"#,
                "/u/{id}",
                "unknown key \"extra\"",
            ),
            (r#"{ segment = "rest", attribute = "a" }"#, "/u/{*rest}", "a catch-all"),
            ("42", "/u/{id}", "owner is \"param\""),
        ] {
            let errs = PolicySet::from_source(Path::new("p.toml"), &route(owner, path), &|_| true).unwrap_err();
            let text = errs[0].to_string();
            assert!(text.starts_with("p.toml:5:9: route[1].owner:"), "{text}");
            assert!(text.contains(want), "{text}");
        }
        let bad_case = "upstream = \"api\"\n[[route]]\nmethods = [\"GET\"]\npath = \"/u\"\n[[test]]\nrequest = \"GET /u\"\nas = { user = \"u\", attributes = { \"A\" = \"1\" } }\nexpect = \"allow\"\n";
        let errs = PolicySet::from_source(Path::new("p.toml"), bad_case, &|_| true).unwrap_err();
        assert!(errs[0].to_string().contains("test[1].as.attributes"), "{}", errs[0]);
    }
}
