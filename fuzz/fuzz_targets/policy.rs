//! The policy parser and compiler: any text is a compiled `PolicySet` or located errors;
//! it never panics. A compiled set's lints, test cases and explanations run, and every
//! route is found by the matcher for a path its own pattern describes.

#![no_main]

use std::collections::BTreeSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portcullis::policy::matcher::PatternSegment;
use portcullis::policy::{lint, reload, run_case, Decision, PolicySet, Principal, Refused, Route};

/// A concrete request path the route's pattern matches.
fn path_for(route: &Route) -> String {
    let mut path = String::new();
    for segment in &route.pattern.segments {
        path.push('/');
        match segment {
            PatternSegment::Literal(l) => path.push_str(l),
            PatternSegment::Param(_) => path.push_str("u-1"),
            // A one-segment remainder, so an `owner` on a catch-all is the caller too.
            PatternSegment::CatchAll(_) => path.push_str("u-1"),
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("policies/fuzz.toml");
    let upstream_exists = |name: &str| matches!(name, "shop" | "admin");
    let set = match PolicySet::from_source(file, src, &upstream_exists) {
        Ok(set) => set,
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors {
                assert_eq!(e.file, file);
                let _ = e.to_string();
            }
            return;
        }
    };

    let roles: BTreeSet<String> = ["customer", "admin"].into_iter().map(String::from).collect();
    for warning in lint::lint(&set, &Some(roles)).iter().chain(&lint::lint(&set, &None)) {
        let _ = warning.to_string();
    }
    let summary = reload::diff(&PolicySet::default(), &set);
    assert_eq!(summary.routes, set.routes.len());
    for case in &set.tests {
        let _ = run_case(&set, case);
    }

    for route in &set.routes {
        let path = path_for(route);
        let canonical = portcullis::path::canonical_path(&path)
            .unwrap_or_else(|why| panic!("route {:?}: {path:?} is refused ({why})", route.path));
        assert_eq!(
            canonical, path,
            "route {:?}: pattern literals are not canonical",
            route.path
        );
        let method = &route.methods[0];
        assert!(
            set.candidates(method, &path).any(|(r, _)| r.index == route.index),
            "route {:?} does not match {path:?}",
            route.path
        );
        // A caller who owns every `{param}`, passed MFA and holds the roles the refusals
        // ask for is let through, unless a route refuses for an empty role list
        // (`roles = []` allows nobody). The roles are learnt from the refusals.
        let mut caller = Principal {
            id: "u-1".into(),
            email: "u-1@example.com".into(),
            roles: Vec::new(),
            mfa: true,
            auth_time: 0,
            attributes: Default::default(),
        };
        let mut settled = false;
        for _ in 0..=set.routes.len() {
            match set.decide(method, &path, Some(&caller)) {
                Decision::Allow { .. } => {
                    settled = true;
                    break;
                }
                Decision::Forbidden {
                    why: Refused::MissingRole { required },
                    ..
                } if !required.is_empty() => {
                    // One of the roles is enough: a caller holding one is not refused for roles.
                    assert!(
                        !required.iter().any(|r| caller.roles.contains(r)),
                        "{path:?}: {required:?}"
                    );
                    caller.roles.extend(required);
                }
                // An owner-by-attribute route: the caller's attribute is the segment.
                Decision::Forbidden {
                    why: Refused::NotOwner {
                        attribute: Some(attribute),
                        ..
                    },
                    ..
                } if !caller.attributes.contains_key(&attribute) => {
                    caller.attributes.insert(attribute, "u-1".into());
                }
                // `roles = []` allows nobody.
                Decision::Forbidden {
                    why: Refused::NoRoleAllowed,
                    ..
                } => {
                    settled = true;
                    break;
                }
                other => panic!("{path:?}: {other:?} for a caller who owns the path"),
            }
        }
        assert!(settled, "{path:?}: the refusals never end");
        for who in [None, Some(&caller)] {
            let explained = set.explain(method, &path, who);
            let decided = set.decide(method, &path, who);
            assert_eq!(
                std::mem::discriminant(&explained.decision),
                std::mem::discriminant(&decided)
            );
            if route.public {
                assert!(matches!(decided, Decision::Allow { .. }), "{path:?}: {decided:?}");
            }
        }
    }
});
