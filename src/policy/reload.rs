//! Hot reload: the policies directory is watched (debounced) and SIGHUP asks for a
//! reload too. A reload parses and validates the whole set; only a valid set replaces
//! the one in force, in one atomic swap, so no request ever sees half of each. A broken
//! set leaves the old policy in force; the failure is logged with file, line and column
//! and audited as `policy_reload_failed`. A good one is audited as `policy_reload` with
//! the routes added, removed and changed.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{PolicySet, Route};

/// How long the directory must be quiet before a reload: editors write in bursts.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// The names and contents of the `*.toml` files of a directory: equal fingerprints mean
/// a reload would load exactly what is in force.
pub fn fingerprint_dir(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    super::file::policy_files(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_default();
            (p, bytes)
        })
        .collect()
}

/// What a reload changed, by route name (or `file:line` for unnamed routes).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub routes: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} routes; added [{}]; removed [{}]; changed [{}]",
            self.routes,
            self.added.join(", "),
            self.removed.join(", "),
            self.changed.join(", ")
        )
    }
}

/// The parts of a route that decide anything (not its place in the file).
fn fingerprint(r: &Route) -> String {
    format!(
        "{:?}|{}|{}|{:?}|{:?}|{}|{:?}|{}|{}|{}",
        r.methods, r.path, r.public, r.roles, r.owner, r.mfa, r.rate_limit, r.upstream, r.enforce, r.audit
    )
}

fn by_name(set: &PolicySet) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &set.routes {
        map.entry(r.name.clone()).or_default().push(fingerprint(r));
    }
    map
}

/// Compares two policy sets route by route.
pub fn diff(old: &PolicySet, new: &PolicySet) -> Summary {
    let (old, new_map) = (by_name(old), by_name(new));
    let mut s = Summary {
        routes: new.routes.len(),
        ..Summary::default()
    };
    for (name, fp) in &new_map {
        match old.get(name) {
            None => s.added.push(name.clone()),
            Some(o) if o != fp => s.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    s.removed = old.keys().filter(|k| !new_map.contains_key(*k)).cloned().collect();
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn set(src: &str) -> PolicySet {
        PolicySet::from_source(Path::new("p.toml"), src, &|_| true).unwrap()
    }

    // The summary names what was added, removed and changed.
    #[test]
    fn summary() {
        let a = set("upstream = \"s\"\n[[route]]\nname = \"a\"\nmethods = [\"GET\"]\npath = \"/a\"\npublic = true\n[[route]]\nname = \"b\"\nmethods = [\"GET\"]\npath = \"/b\"\npublic = true\n");
        let b = set("upstream = \"s\"\n\n[[route]]\nname = \"a\"\nmethods = [\"GET\"]\npath = \"/a\"\nroles = [\"x\"]\n[[route]]\nname = \"c\"\nmethods = [\"GET\"]\npath = \"/c\"\npublic = true\n");
        let s = diff(&a, &b);
        assert_eq!(
            (s.added, s.removed, s.changed),
            (vec!["c".into()], vec!["b".into()], vec!["a".into()])
        );
        assert!(diff(&a, &a).changed.is_empty(), "moving nothing changed something");
    }
}
