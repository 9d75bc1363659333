//! `policy explain`: how every route saw a request, beside the decision the gateway takes.

use http::Method;

use super::{evaluate, Decision, PolicySet, Principal, Refused, Route};

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
    /// The caller is taken to have just passed its second factor.
    pub fn explain(&self, method: &Method, path: &str, caller: Option<&Principal>) -> Explanation<'_> {
        self.explain_at(method, path, caller, caller.map_or(0, |p| p.auth_time))
    }

    /// Like [`PolicySet::explain`], at `now` (Unix seconds).
    pub fn explain_at(&self, method: &Method, path: &str, caller: Option<&Principal>, now: u64) -> Explanation<'_> {
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
                    outcome: captures
                        .filter(|_| method_matched)
                        .map(|c| evaluate(route, c, caller, now)),
                }
            })
            .collect();
        Explanation {
            steps,
            decision: self.decide_at(method, path, caller, now),
        }
    }
}
