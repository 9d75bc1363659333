//! Roles a policy may name. When `gateway.toml` declares `[roles]`, a route naming any
//! other role is an error, located at the role itself (file, line, column): at start-up
//! the gateway refuses to start, a reload is refused with the old policy kept, and
//! `policy check` exits 1. Without `[roles]`, nothing is checked here (the lint of
//! `policy check` warns instead).

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::config::Config;
use crate::source::SourceError;

/// The declared roles, when the configuration declares any.
pub fn declared(config: &Config) -> Option<BTreeSet<String>> {
    (!config.roles.is_empty()).then(|| config.roles.keys().cloned().collect())
}

/// Only what this check reads of a policy file: the other keys are the parser's.
#[derive(Deserialize)]
struct Names {
    #[serde(default)]
    route: Vec<RouteRoles>,
}

#[derive(Deserialize)]
struct RouteRoles {
    roles: Option<Vec<Spanned<String>>>,
}

/// Every role of a policy file's routes that is not in `declared`, located. A file that
/// does not parse yields nothing here: the parser reports it.
pub fn undeclared(path: &Path, src: &str, declared: &BTreeSet<String>) -> Vec<SourceError> {
    let Ok(names) = toml::from_str::<Names>(src) else {
        return Vec::new();
    };
    let list = declared.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    for (i, route) in names.route.iter().enumerate() {
        for role in route.roles.iter().flatten() {
            let name = role.get_ref();
            if name.is_empty() || declared.contains(name) {
                continue;
            }
            let hint = closest(name, declared).map_or_else(String::new, |c| format!("did you mean {c:?}? "));
            out.push(SourceError::at(
                path,
                src,
                Some(role.span()),
                Some(format!("route[{}].roles", i + 1)),
                format!("role {name:?} is not declared in gateway.toml [roles]; {hint}declared: {list}"),
            ));
        }
    }
    out
}

/// The declared role nearest to a typo (at most two edits away).
fn closest<'a>(name: &str, declared: &'a BTreeSet<String>) -> Option<&'a str> {
    declared
        .iter()
        .map(|d| (edits(name, d), d))
        .filter(|(n, _)| *n <= 2)
        .min_by_key(|(n, _)| *n)
        .map(|(_, d)| d.as_str())
}

/// Levenshtein distance, with a swap of two neighbours counted as one edit.
fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    // An undeclared role is an error at its own line and column, with the likely fix.
    #[test]
    fn typo_is_located() {
        let declared: BTreeSet<String> = ["inventory", "admin"].iter().map(|s| (*s).to_owned()).collect();
        let src = "upstream = \"s\"\n[[route]]\npath = \"/a\"\nroles = [\"admin\", \"inventroy\"]\n";
        let e = undeclared(Path::new("p.toml"), src, &declared);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].line, e[0].column), (Some(4), Some(19)));
        assert!(e[0].message.contains("did you mean \"inventory\""), "{}", e[0]);
        assert!(undeclared(Path::new("p.toml"), "[[route]]\nroles = [\"admin\"]\n", &declared).is_empty());
    }
}
