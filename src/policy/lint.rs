//! Lints for `policy check`: policies that parse but are probably not what their author
//! meant. Each is a warning (exit 0); errors are found when files are parsed.

use std::collections::BTreeSet;
use std::path::PathBuf;

use http::Method;

use super::matcher::PatternSegment;
use super::{PolicySet, Route};

/// One warning, located at the route it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Roles known to the configuration: `[roles]`, plus `customer`, the role of
/// self-registered accounts. `None` skips the role lint.
pub type KnownRoles = Option<BTreeSet<String>>;

fn methods_cover(earlier: &Route, later: &Route) -> bool {
    later.methods.iter().all(|m| earlier.accepts_method(m))
}

/// Whether every path `later` matches is matched by `earlier`.
fn pattern_covers(earlier: &Route, later: &Route) -> bool {
    let (e, l) = (&earlier.pattern.segments, &later.pattern.segments);
    for (i, es) in e.iter().enumerate() {
        match (es, l.get(i)) {
            (PatternSegment::CatchAll(_), Some(_)) => return true,
            (PatternSegment::Param(_), Some(PatternSegment::Literal(lit))) => {
                if lit.is_empty() {
                    return false;
                }
            }
            (PatternSegment::Param(_), Some(PatternSegment::Param(_))) => {}
            (PatternSegment::Literal(a), Some(PatternSegment::Literal(b))) if a == b => {}
            _ => return false,
        }
    }
    e.len() == l.len()
}

/// Whether `earlier` allows every caller `later` allows (so `later` never decides).
fn at_least_as_permissive(earlier: &Route, later: &Route) -> bool {
    if earlier.public {
        return true;
    }
    if later.public || earlier.owner.is_some() || (earlier.mfa && !later.mfa) || !earlier.enforce {
        return false;
    }
    match (&earlier.roles, &later.roles) {
        (None, _) => true,
        (Some(_), None) => false,
        // A later route that allows nobody is reported as such, not as shadowed.
        (Some(e), Some(l)) => !l.is_empty() && l.iter().all(|r| e.contains(r)),
    }
}

fn same_shape(a: &Route, b: &Route) -> bool {
    a.pattern.segments.len() == b.pattern.segments.len()
        && a.pattern
            .segments
            .iter()
            .zip(&b.pattern.segments)
            .all(|(x, y)| match (x, y) {
                (PatternSegment::Literal(p), PatternSegment::Literal(q)) => p == q,
                (PatternSegment::Param(_), PatternSegment::Param(_))
                | (PatternSegment::CatchAll(_), PatternSegment::CatchAll(_)) => true,
                _ => false,
            })
}

/// Every warning for a policy set.
pub fn lint(set: &PolicySet, roles: &KnownRoles) -> Vec<Warning> {
    let mut out = Vec::new();
    let warn = |r: &Route, message: String| Warning {
        file: r.file.clone(),
        line: r.line,
        message: format!("route {:?}: {message}", r.name),
    };
    for (i, later) in set.routes.iter().enumerate() {
        if let Some(e) = set.routes[..i]
            .iter()
            .find(|e| methods_cover(e, later) && pattern_covers(e, later) && at_least_as_permissive(e, later))
        {
            out.push(warn(
                later,
                format!(
                    "wholly shadowed by {:?} ({}:{}), which allows everything it allows; it never decides",
                    e.name,
                    e.file.display(),
                    e.line
                ),
            ));
        }
        if let Some(e) = set.routes[..i].iter().find(|e| {
            e.upstream != later.upstream && same_shape(e, later) && later.methods.iter().any(|m| e.accepts_method(m))
        }) {
            out.push(warn(
                later,
                format!(
                    "sends the same method and path as {:?} ({}:{}) to another upstream ({} vs {})",
                    e.name,
                    e.file.display(),
                    e.line,
                    later.upstream,
                    e.upstream
                ),
            ));
        }
        match &later.roles {
            None if !later.public => out.push(warn(
                later,
                "open to every signed-in account whatever its role; list roles, or say public = true".into(),
            )),
            Some(list) if list.is_empty() => out.push(warn(
                later,
                "roles = [] allows nobody: every caller is refused; list roles, or remove the route".into(),
            )),
            _ => {}
        }
        if let Some(known) = roles {
            for role in later.roles.iter().flatten().filter(|r| !known.contains(*r)) {
                out.push(warn(
                    later,
                    format!("role {role:?} is not declared in gateway.toml [roles]"),
                ));
            }
        }
        out.extend(field_lints(later).into_iter().map(|m| warn(later, m)));
    }
    out
}

/// The field lists of a route that cannot do what their author meant: `request_fields`
/// on a route that takes no body-carrying method, and lists left empty.
fn field_lints(route: &Route) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(list) = &route.request_fields {
        let takes_body = [Method::POST, Method::PUT, Method::PATCH]
            .iter()
            .any(|m| route.methods.contains(m));
        if !takes_body {
            out.push("request_fields on a route without POST, PUT or PATCH: it has no body to check".into());
        }
        if list.is_empty() {
            out.push("request_fields = [] refuses every field: only an empty object {} passes".into());
        }
    }
    if let Some(fields) = &route.response_fields {
        if fields.base.is_empty() {
            out.push("response_fields = [] removes every field: callers see only empty objects".into());
        }
        for (role, _) in fields.by_role.iter().filter(|(_, l)| l.is_empty()) {
            out.push(format!(
                "response_fields_by_role: the list of {role:?} is empty and widens nothing"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn lints(src: &str, roles: &[&str]) -> Vec<String> {
        let set = PolicySet::from_source(Path::new("p.toml"), &format!("upstream = \"a\"\n{src}"), &|_| true).unwrap();
        let known = Some(roles.iter().map(|r| (*r).to_owned()).collect());
        lint(&set, &known).into_iter().map(|w| w.message).collect()
    }

    const R: &str = "[[route]]\n";

    // A route behind a broader, more permissive one is reported; one that adds nothing
    // narrower is not.
    #[test]
    fn shadowed() {
        let src = format!("{R}name = \"all\"\nmethods = [\"GET\", \"PUT\"]\npath = \"/x/{{*rest}}\"\nroles = [\"a\", \"b\"]\n{R}name = \"one\"\nmethods = [\"GET\"]\npath = \"/x/{{id}}\"\nroles = [\"a\"]\n");
        assert!(lints(&src, &["a", "b"])
            .iter()
            .any(|m| m.contains("\"one\": wholly shadowed by \"all\"")));
        let src = format!("{R}name = \"narrow\"\nmethods = [\"GET\"]\npath = \"/x/{{id}}\"\nroles = [\"a\"]\n{R}name = \"wide\"\nmethods = [\"GET\"]\npath = \"/x/{{*rest}}\"\nroles = [\"a\", \"b\"]\n");
        assert!(!lints(&src, &["a", "b"]).iter().any(|m| m.contains("shadowed")));
        let src = format!("{R}name = \"own\"\nmethods = [\"GET\"]\npath = \"/c/{{id}}\"\nroles = [\"a\"]\nowner = \"id\"\n{R}name = \"staff\"\nmethods = [\"GET\"]\npath = \"/c/{{id}}\"\nroles = [\"a\"]\n");
        assert!(
            !lints(&src, &["a"]).iter().any(|m| m.contains("shadowed")),
            "an owner route shadows nothing"
        );
    }

    // The same method and path to two upstreams is reported.
    #[test]
    fn two_upstreams() {
        let src = format!("{R}name = \"1\"\nmethods = [\"GET\"]\npath = \"/p/{{id}}\"\npublic = true\n{R}name = \"2\"\nmethods = [\"GET\"]\npath = \"/p/{{x}}\"\nroles = [\"a\"]\nupstream = \"b\"\n");
        assert!(lints(&src, &["a"]).iter().any(|m| m.contains("another upstream")));
        let src = format!("{R}name = \"1\"\nmethods = [\"GET\"]\npath = \"/p/{{id}}\"\npublic = true\n{R}name = \"2\"\nmethods = [\"PUT\"]\npath = \"/p/{{x}}\"\nroles = [\"a\"]\nupstream = \"b\"\n");
        assert!(!lints(&src, &["a"]).iter().any(|m| m.contains("another upstream")));
    }

    // A route with neither roles nor public, and an undeclared role, are reported.
    #[test]
    fn open_and_unknown_roles() {
        let src = format!("{R}name = \"open\"\nmethods = [\"GET\"]\npath = \"/o\"\n{R}name = \"typo\"\nmethods = [\"GET\"]\npath = \"/t\"\nroles = [\"amdin\"]\n");
        let l = lints(&src, &["admin"]);
        assert!(l
            .iter()
            .any(|m| m.contains("\"open\": open to every signed-in account")));
        assert!(l.iter().any(|m| m.contains("role \"amdin\" is not declared")));
        let src = format!("{R}name = \"fine\"\nmethods = [\"GET\"]\npath = \"/f\"\nroles = [\"admin\"]\n");
        assert!(lints(&src, &["admin"]).is_empty());
    }

    // request_fields on a route that takes no body, and each empty field list, are
    // reported, naming the route; sensible lists are not.
    #[test]
    fn field_lists() {
        let src = format!("{R}name = \"read\"\nmethods = [\"GET\"]\npath = \"/r\"\nroles = [\"a\"]\nrequest_fields = [\"x\"]\n{R}name = \"empty\"\nmethods = [\"PATCH\"]\npath = \"/e\"\nroles = [\"a\"]\nrequest_fields = []\nresponse_fields = []\nresponse_fields_by_role = {{ a = [] }}\n");
        let l = lints(&src, &["a"]);
        assert_eq!(l.len(), 4, "{l:?}");
        assert!(
            l[0].starts_with("route \"read\": request_fields on a route without POST, PUT or PATCH"),
            "{l:?}"
        );
        assert!(l[1].starts_with("route \"empty\": request_fields = []"), "{l:?}");
        assert!(l[2].starts_with("route \"empty\": response_fields = []"), "{l:?}");
        assert!(l[3].contains("the list of \"a\" is empty"), "{l:?}");
        let src = format!("{R}name = \"fine\"\nmethods = [\"GET\", \"PUT\"]\npath = \"/f\"\nroles = [\"a\"]\nrequest_fields = [\"x\"]\nresponse_fields = [\"x\"]\nresponse_fields_by_role = {{ a = [\"y\"] }}\n");
        assert!(lints(&src, &["a"]).is_empty());
    }

    // An emptied roles list is reported as allowing nobody, not as open or shadowed.
    #[test]
    fn empty_roles_reported() {
        let src = format!("{R}name = \"all\"\nmethods = [\"GET\"]\npath = \"/x/{{*rest}}\"\nroles = [\"a\"]\n{R}name = \"emptied\"\nmethods = [\"GET\"]\npath = \"/x/{{id}}\"\nroles = []\n");
        let l = lints(&src, &["a"]);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(l[0].contains("\"emptied\": roles = [] allows nobody"), "{l:?}");
    }
}
