//! Path matching: a segment trie that finds every route whose pattern matches a path.
//!
//! Several routes may match one request and the request is allowed if any of them allows
//! it, so the matcher returns all matches (in route order), not just the most specific
//! one. Patterns: literal segments, `{name}` for one non-empty segment, and `{*name}` as
//! the last segment for the non-empty remainder.

use std::collections::HashMap;

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub segments: Vec<PatternSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternSegment {
    Literal(String),
    Param(String),
    CatchAll(String),
}

impl Pattern {
    /// Parses `/api/customers/{id}`; literal segments are canonicalized like request paths.
    pub fn parse(path: &str) -> Result<Self, String> {
        if !path.starts_with('/') {
            return Err(format!("path {path:?} must start with /"));
        }
        let raw: Vec<&str> = path[1..].split('/').collect();
        let mut segments = Vec::with_capacity(raw.len());
        let mut names = Vec::new();
        for (i, seg) in raw.iter().enumerate() {
            let last = i + 1 == raw.len();
            if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let (catch_all, name) = match inner.strip_prefix('*') {
                    Some(n) => (true, n),
                    None => (false, inner),
                };
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(format!(
                        "path {path:?}: parameter name {name:?} must be letters, digits or _"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("path {path:?}: parameter {name:?} appears twice"));
                }
                names.push(name);
                if catch_all {
                    if !last {
                        return Err(format!("path {path:?}: {{*{name}}} must be the last segment"));
                    }
                    segments.push(PatternSegment::CatchAll(name.to_owned()));
                } else {
                    segments.push(PatternSegment::Param(name.to_owned()));
                }
            } else if seg.contains('{') || seg.contains('}') {
                return Err(format!(
                    "path {path:?}: a parameter must be a whole segment, {{name}} or {{*name}}"
                ));
            } else {
                if seg.is_empty() && !last {
                    return Err(format!("path {path:?}: empty segment (//)"));
                }
                let canonical = crate::path::canonical_path(&format!("/{seg}"))
                    .map_err(|why| format!("path {path:?}: segment {seg:?} is not a valid path segment ({why})"))?;
                segments.push(PatternSegment::Literal(canonical[1..].to_owned()));
            }
        }
        Ok(Self { segments })
    }

    /// Names of the parameters, in order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            PatternSegment::Param(n) | PatternSegment::CatchAll(n) => Some(n.as_str()),
            PatternSegment::Literal(_) => None,
        })
    }
}

/// A node's literal children. The keys are the policy's own segments; a request's
/// segment is only looked up, never inserted, so a fast hash with a per-process seed is
/// enough.
type Literals = HashMap<String, Node, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct Node {
    literals: Literals,
    param: Option<Box<Node>>,
    /// Routes whose pattern ends here.
    routes: Vec<usize>,
    /// Routes whose pattern ends here with a catch-all.
    catch_all: Vec<usize>,
}

/// A match: the route index and its captured values, in parameter order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match<'p> {
    pub route: usize,
    pub captures: Captures<'p>,
}

/// The values captured by a pattern's parameters, in order.
pub type Captures<'p> = smallvec::SmallVec<[&'p str; 2]>;
/// The routes matching one path.
pub type Matches<'p> = smallvec::SmallVec<[Match<'p>; 2]>;

/// Every pattern of a policy set, compiled into one trie.
#[derive(Debug, Default)]
pub struct Matcher {
    root: Node,
}

impl Matcher {
    pub fn insert(&mut self, pattern: &Pattern, route: usize) {
        let mut node = &mut self.root;
        for seg in &pattern.segments {
            match seg {
                PatternSegment::Literal(l) => node = node.literals.entry(l.clone()).or_default(),
                PatternSegment::Param(_) => node = node.param.get_or_insert_with(Box::default),
                PatternSegment::CatchAll(_) => {
                    node.catch_all.push(route);
                    return;
                }
            }
        }
        node.routes.push(route);
    }

    /// All routes matching a canonical path, in route order. A handful of matches with a
    /// handful of captures each (the usual case) allocate nothing.
    pub fn find<'p>(&self, path: &'p str) -> Matches<'p> {
        let mut out = Matches::new();
        let Some(rest) = path.strip_prefix('/') else {
            return out;
        };
        let mut captures = Captures::new();
        walk(&self.root, rest, &mut captures, &mut out);
        out.sort_by_key(|m| m.route);
        out
    }
}

fn walk<'p>(node: &Node, rest: &'p str, captures: &mut Captures<'p>, out: &mut Matches<'p>) {
    // `rest` is what remains after the `/` that ends the previous segment.
    // A byte scan: segments are a few bytes, shorter than a `char` searcher's set-up.
    let (segment, tail) = match rest.bytes().position(|b| b == b'/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if !rest.is_empty() {
        for &route in &node.catch_all {
            let mut c = captures.clone();
            c.push(rest);
            out.push(Match { route, captures: c });
        }
    }
    let descend = |child: &Node, captured: Option<&'p str>, captures: &mut Captures<'p>, out: &mut Matches<'p>| {
        if let Some(v) = captured {
            captures.push(v);
        }
        match tail {
            None => out.extend(child.routes.iter().map(|&route| Match {
                route,
                captures: captures.clone(),
            })),
            Some(t) => walk(child, t, captures, out),
        }
        if captured.is_some() {
            captures.pop();
        }
    };
    if let Some(child) = node.literals.get(segment) {
        descend(child, None, captures, out);
    }
    if let (Some(child), false) = (&node.param, segment.is_empty()) {
        descend(child, Some(segment), captures, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(patterns: &[&str]) -> Matcher {
        let mut m = Matcher::default();
        for (i, p) in patterns.iter().enumerate() {
            m.insert(&Pattern::parse(p).unwrap(), i);
        }
        m
    }

    fn routes(m: &Matcher, path: &str) -> Vec<usize> {
        m.find(path).into_iter().map(|m| m.route).collect()
    }

    // Literal, parameter and catch-all patterns match what they should and nothing else.
    #[test]
    fn matching() {
        let m = matcher(&["/api/products", "/api/products/{id}", "/api/staff/{*rest}", "/"]);
        assert_eq!(routes(&m, "/api/products"), [0]);
        assert_eq!(routes(&m, "/api/products/12"), [1]);
        assert_eq!(m.find("/api/products/12")[0].captures.as_slice(), ["12"]);
        assert_eq!(routes(&m, "/api/products/"), Vec::<usize>::new());
        assert_eq!(routes(&m, "/api/products/12/x"), Vec::<usize>::new());
        assert_eq!(routes(&m, "/api/staff/3/notes"), [2]);
        assert_eq!(m.find("/api/staff/3/notes")[0].captures.as_slice(), ["3/notes"]);
        assert_eq!(routes(&m, "/api/staff"), Vec::<usize>::new());
        assert_eq!(routes(&m, "/"), [3]);
        assert_eq!(routes(&m, "/api"), Vec::<usize>::new());
    }

    // Overlapping patterns all match, in route order, whatever their specificity.
    #[test]
    fn all_matches_returned() {
        let m = matcher(&[
            "/api/{*rest}",
            "/api/customers/{id}",
            "/api/customers/me",
            "/api/{section}/{id}",
        ]);
        assert_eq!(routes(&m, "/api/customers/me"), [0, 1, 2, 3]);
        let found = m.find("/api/customers/u-1");
        assert_eq!(found.iter().map(|m| m.route).collect::<Vec<_>>(), [0, 1, 3]);
        assert_eq!(found[2].captures.as_slice(), ["customers", "u-1"]);
    }

    // Bad patterns are refused with a reason.
    #[test]
    fn bad_patterns() {
        for p in [
            "api",
            "/a/{*rest}/b",
            "/a/x{id}",
            "/a/{}",
            "/a/{id}/{id}",
            "/a//b",
            "/a/../b",
            "/a/{i-d}",
        ] {
            assert!(Pattern::parse(p).is_err(), "{p}");
        }
    }

    // Literal segments are canonicalized the way request paths are.
    #[test]
    fn literal_canonicalized() {
        let m = matcher(&["/api/%70roducts"]);
        assert_eq!(routes(&m, "/api/products"), [0]);
    }
}
