//! The policy parser and compiler: any text is a compiled `PolicySet` or located errors;
//! it never panics. A compiled set's lints, test cases and explanations run, and every
//! route is found by the matcher for a path its own pattern describes.

#![no_main]

use std::collections::BTreeSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portcullis::policy::matcher::PatternSegment;
use portcullis::policy::{lint, reload, run_case, Decision, PolicySet, Principal, Route};

/// A concrete request path the route's pattern matches.
fn path_for(route: &Route) -> String {
    let mut path = String::new();
    for segment in &route.pattern.segments {
        path.push('/');
        match segment {
            PatternSegment::Literal(l) => path.push_str(l),
            PatternSegment::Param(_) => path.push_str("u-1"),
            PatternSegment::CatchAll(_) => path.push_str("x/y"),
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
        let canonical = portcullis::pipeline::normalize::canonical_path(&path)
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
        // A caller with every role the route names, its owner id and MFA is let through
        // (an empty role list is left out: what it allows is the policy's own decision).
        let caller = Principal {
            id: "u-1".into(),
            email: "u-1@example.com".into(),
            roles: route.roles.clone(),
            mfa: true,
        };
        if !route.roles.is_empty() {
            let decision = set.decide(method, &path, Some(&caller));
            assert!(matches!(decision, Decision::Allow { .. }), "{path:?}: {decision:?}");
        }
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
