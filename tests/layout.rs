//! The house kept in shape: file sizes, `main.rs`'s size, a `//!` line atop every file, no
//! import cycle between modules (nor between the files of one module), and no audit event
//! name written as a string literal outside `src/audit/event.rs`. Pure file reading: no
//! build of anything.
//!
//! The cycle check reads every `crate::…` (and, in the binary, `portcullis::…`) path and
//! every `super::`/`self::` path of `src/**/*.rs`, test code left out (a file declared as
//! `#[cfg(test)] mod x;`, and a file's text from `#[cfg(test)] mod tests {` on). A path
//! names the deepest module it reaches; an item a `mod.rs` re-exports (`pub use x::Item`,
//! `pub use x::*`) counts as the file `x` that defines it. Arrows between top-level
//! modules make one graph; arrows between the files of one directory make another, where
//! a `mod.rs` declaring and re-exporting its own files is not an arrow (it is the door).
//! Run it alone with `cargo test --test layout`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most lines a file under `src/` may have.
const MAX_LINES: usize = 400;
/// The most lines `src/main.rs` may have.
const MAX_MAIN_LINES: usize = 150;

/// Lines where an event's name is another word of the contract, not an event: a field of
/// an admin answer, the error code of a 429, a policy file key, the access log's message.
/// A line is exempt when it (trimmed, with a newline after) contains one of these.
const NOT_EVENTS: &[&str] = &[
    "\"sessions_revoked\": ",
    "=> \"rate_limited\"",
    "key(\"request\")",
    "\"request\"\n",
    "\"status\": \"password_changed\"",
];

/// Files that map errors to responses or events to outcomes: no `_ =>` arm in them, so a
/// new variant must be placed by hand. `src/pipeline/mod.rs` is the outer handler, which
/// picks each request's audit event from its error.
const NO_WILDCARD: &[&str] = &["src/audit/event.rs", "src/error.rs", "src/pipeline/mod.rs"];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, as `src/…` relative paths with their text.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    std::fs::read_to_string(&path).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&src_dir(), &mut out);
    out
}

// --- sizes -------------------------------------------------------------------------------

#[test]
fn no_file_over_400_lines() {
    let mut offenders = Vec::new();
    for (path, text) in sources() {
        let lines = text.lines().count();
        if lines > MAX_LINES {
            offenders.push(format!("{path}: {lines} lines"));
        }
    }
    assert!(
        offenders.is_empty(),
        "files over {MAX_LINES} lines:\n  {}",
        offenders.join("\n  ")
    );
}

// Every file starts with a `//!` line saying what it owns.
#[test]
fn every_file_says_what_it_owns() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| !text.starts_with("//!"))
        .map(|(path, _)| path)
        .collect();
    assert!(missing.is_empty(), "files without a leading `//!` line: {missing:?}");
}

#[test]
fn main_is_short() {
    let lines = std::fs::read_to_string(src_dir().join("main.rs"))
        .unwrap()
        .lines()
        .count();
    assert!(
        lines < MAX_MAIN_LINES,
        "src/main.rs has {lines} lines, at most {MAX_MAIN_LINES} wanted"
    );
}

#[test]
fn no_wildcard_where_variants_are_mapped() {
    let sources = sources();
    let mut offenders = Vec::new();
    for path in NO_WILDCARD {
        let text = sources
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is gone: update NO_WILDCARD"));
        for (n, line) in code_of(text).lines().enumerate() {
            if line.trim_start().starts_with("_ =>") {
                offenders.push(format!("{path}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "wildcard arms where every variant must be listed:\n  {}",
        offenders.join("\n  ")
    );
}

// --- audit event names (test code left out, as for the cycles) ---------------------------

#[test]
fn event_names_only_in_the_event_enum() {
    let mut offenders = BTreeSet::new();
    for unit in units() {
        let path = unit.path;
        if path == "src/audit/event.rs" {
            continue;
        }
        for kind in portcullis::audit::EventKind::ALL {
            let literal = format!("\"{}\"", kind.name());
            for (n, line) in unit.code.lines().enumerate() {
                let line = format!("{}\n", line.trim());
                if line.contains(&literal) && !NOT_EVENTS.iter().any(|e| line.contains(e)) {
                    offenders.insert(format!("{path}:{}: {literal}", n + 1));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "audit event names as string literals (use portcullis::audit::EventKind):\n  {}",
        offenders.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}

// --- import cycles -----------------------------------------------------------------------

/// One source file as a module of the library or of the binary.
struct Unit {
    /// `src/…` path.
    path: String,
    /// The module path inside its crate: `[]` for the crate root.
    module: Vec<String>,
    /// Whether the file is the binary's (`main.rs` and the modules it declares).
    bin: bool,
    /// Whether the file is a `mod.rs` (or a crate root): its directory's door.
    door: bool,
    /// The text with comments and test code left out.
    code: String,
}

/// The module path of `src/…` file, and whether it is a `mod.rs`/crate root.
fn module_of(path: &str) -> (Vec<String>, bool) {
    let rel = path.trim_start_matches("src/").trim_end_matches(".rs");
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    let last = parts.last().cloned().unwrap_or_default();
    if last == "mod" || (parts.len() == 1 && (last == "lib" || last == "main")) {
        parts.pop();
        (parts, true)
    } else {
        (parts, false)
    }
}

/// The code of a file: comments removed, and nothing from an inline test module
/// (`#[cfg(test)] mod NAME {`) on.
fn code_of(text: &str) -> String {
    let text = &text[..inline_tests(text).unwrap_or(text.len())];
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string literal is rare in paths; cutting it costs nothing here.
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where a file's inline test module (`#[cfg(test)] mod NAME {`) starts, if it has one.
fn inline_tests(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = text[from..].find("#[cfg(test)]") {
        let at = from + at;
        from = at + "#[cfg(test)]".len();
        let next = text[from..].trim_start();
        let next = next.strip_prefix("pub(crate) ").unwrap_or(next);
        let Some(decl) = next.strip_prefix("mod ") else {
            continue;
        };
        let name_len = decl.chars().take_while(|c| c.is_alphanumeric() || *c == '_').count();
        if decl[name_len..].trim_start().starts_with('{') {
            return Some(at);
        }
    }
    None
}

/// `name` for each `#[cfg(test)] mod name;` of a file: test-only files.
fn test_modules(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        rest = &rest[at + "#[cfg(test)]".len()..];
        let next = rest.trim_start();
        let decl = next.strip_prefix("pub(crate) ").unwrap_or(next);
        if let Some(decl) = decl.strip_prefix("mod ") {
            let name: String = decl.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if decl[name.len()..].starts_with(';') {
                out.push(name);
            }
        }
    }
    out
}

fn units() -> Vec<Unit> {
    let sources = sources();
    // Test-only files: declared under `#[cfg(test)]` by their parent.
    let mut test_only = BTreeSet::new();
    for (path, text) in &sources {
        let (module, _) = module_of(path);
        let dir = if module.is_empty() {
            "src".to_owned()
        } else {
            format!("src/{}", module.join("/"))
        };
        for name in test_modules(text) {
            test_only.insert(format!("{dir}/{name}.rs"));
            test_only.insert(format!("{dir}/{name}/mod.rs"));
        }
    }
    // The binary's own modules: those `main.rs` declares.
    let bin_mods: Vec<String> = sources["src/main.rs"]
        .lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("pub ").unwrap_or(l.trim());
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.to_owned())
        })
        .collect();
    sources
        .iter()
        .filter(|(path, _)| !test_only.contains(*path))
        .map(|(path, text)| {
            let (module, door) = module_of(path);
            let bin = path == "src/main.rs" || module.first().is_some_and(|m| bin_mods.contains(m));
            Unit {
                path: path.clone(),
                module,
                bin,
                door,
                code: code_of(text),
            }
        })
        .collect()
}

/// Every path a file's code names: `use` trees expanded, and paths written inline.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `use` statements, braces expanded.
    let mut rest = code;
    while let Some(at) = find_word(rest, "use ") {
        let stmt_start = at + 4;
        let Some(end) = rest[stmt_start..].find(';') else { break };
        let tree = use_tree(&rest[stmt_start..stmt_start + end]);
        expand(&tree, &mut Vec::new(), &mut out);
        rest = &rest[stmt_start + end..];
    }
    // Inline paths: `crate::a::b`, `super::x`, `portcullis::y`.
    for start in ["crate::", "super::", "self::", "portcullis::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(path.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect());
        }
    }
    out
}

/// The position of `word` in `text` at the start of a statement (after `pub`, `pub(crate)`,
/// a newline or a `{`).
fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = text[from..].find(word) {
        let at = from + at;
        let before = text[..at].trim_end();
        if before.is_empty()
            || before.ends_with(['\n', ';', '{', '}', ']'])
            || before.ends_with("pub")
            || before.ends_with(')')
        {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// A `use` tree without whitespace, `x as y` written `x@y`.
fn use_tree(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" as ", "@")
        .replace(' ', "")
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim_start_matches("::");
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let n = prefix.len();
        prefix.extend(head);
        for part in split_top(inner) {
            expand(part, prefix, out);
        }
        prefix.truncate(n);
    } else {
        let tree = tree.split('@').next().unwrap_or(tree);
        let mut path = prefix.clone();
        path.extend(tree.split("::").filter(|s| !s.is_empty()).map(str::to_owned));
        out.push(path);
    }
}

/// Splits `a, b::{c, d}, e` at its top-level commas.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// Names a `mod.rs` re-exports, each with the child module defining it.
fn reexports(unit: &Unit, units: &[Unit]) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut paths = Vec::new();
    let mut rest = unit.code.as_str();
    while let Some(at) = rest.find("pub use ") {
        let start = at + "pub use ".len();
        let Some(end) = rest[start..].find(';') else { break };
        let tree = use_tree(&rest[start..start + end]);
        expand(&tree, &mut Vec::new(), &mut paths);
        rest = &rest[start + end..];
    }
    for path in paths {
        let path: Vec<&str> = path.iter().map(String::as_str).skip_while(|s| *s == "self").collect();
        let [child, .., item] = path.as_slice() else { continue };
        let mut child_module = unit.module.clone();
        child_module.push((*child).to_owned());
        let Some(child_unit) = units.iter().find(|u| u.bin == unit.bin && u.module == child_module) else {
            continue;
        };
        if *item == "*" {
            for name in pub_items(&child_unit.code) {
                map.entry(name).or_insert_with(|| (*child).to_owned());
            }
        } else {
            map.insert((*item).to_owned(), (*child).to_owned());
        }
    }
    map
}

/// The names of the `pub` items a file defines.
fn pub_items(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines() {
        let Some(rest) = line.strip_prefix("pub ") else {
            continue;
        };
        for kw in [
            "struct ",
            "enum ",
            "fn ",
            "async fn ",
            "trait ",
            "type ",
            "const ",
            "static ",
            "mod ",
        ] {
            if let Some(rest) = rest.strip_prefix(kw) {
                out.push(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
            }
        }
    }
    out
}

/// Where a path written in `unit` leads: the unit (index) of the deepest module it names.
fn resolve(unit: &Unit, path: &[String], units: &[Unit], exports: &[BTreeMap<String, String>]) -> Option<usize> {
    let (bin, mut abs): (bool, Vec<String>) = match path.first()?.as_str() {
        "crate" => (unit.bin, Vec::new()),
        "portcullis" => (false, Vec::new()),
        "super" | "self" => (unit.bin, unit.module.clone()),
        _ => {
            // A path relative to the file's own module, e.g. `use matcher::X` in a mod.rs.
            let mut m = unit.module.clone();
            m.push(path[0].clone());
            if !units.iter().any(|u| u.bin == unit.bin && u.module == m) {
                return None;
            }
            (unit.bin, unit.module.clone())
        }
    };
    let mut segs = path;
    if matches!(path[0].as_str(), "crate" | "portcullis") {
        segs = &path[1..];
    }
    let mut segs = segs.iter().peekable();
    while let Some(s) = segs.peek() {
        match s.as_str() {
            "super" => {
                abs.pop();
            }
            "self" => {}
            _ => break,
        }
        segs.next();
    }
    let find = |m: &[String]| units.iter().position(|u| u.bin == bin && u.module == m);
    let mut at = find(&abs)?;
    for s in segs {
        let mut deeper = abs.clone();
        deeper.push(s.clone());
        if let Some(i) = find(&deeper) {
            abs = deeper;
            at = i;
            continue;
        }
        // An item: follow a re-export to the file that defines it.
        if let Some(child) = exports[at].get(s) {
            let mut deeper = abs.clone();
            deeper.push(child.clone());
            if let Some(i) = find(&deeper) {
                at = i;
            }
        }
        break;
    }
    Some(at)
}

/// The strongly connected components with more than one node (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let lw = s.low[w.as_str()];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w.as_str()) {
                let iw = s.index[w.as_str()];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: Vec<&String> = graph.keys().collect();
    for v in nodes {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// One path through a component, from its first node back to it: what to read to break it.
fn one_loop(graph: &BTreeMap<String, BTreeSet<String>>, comp: &[String]) -> String {
    let inside: BTreeSet<&str> = comp.iter().map(String::as_str).collect();
    let start = comp[0].as_str();
    // Breadth-first from each successor of `start` back to `start`.
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut seen = BTreeSet::new();
    while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flatten().map(String::as_str) {
            if !inside.contains(w) {
                continue;
            }
            if w == start {
                let mut path = vec![start, v];
                let mut at = v;
                while at != start {
                    at = prev[at];
                    path.push(at);
                }
                path.reverse();
                return path.join(" -> ");
            }
            if seen.insert(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    comp.join(", ")
}

/// The module graph (top-level modules) and the file graph (files of one directory).
fn graphs() -> (BTreeMap<String, BTreeSet<String>>, BTreeMap<String, BTreeSet<String>>) {
    let units = units();
    let exports: Vec<_> = units
        .iter()
        .map(|u| if u.door { reexports(u, &units) } else { BTreeMap::new() })
        .collect();
    let top = |u: &Unit| {
        let name = u
            .module
            .first()
            .cloned()
            .unwrap_or_else(|| if u.bin { "main".into() } else { "lib".into() });
        if u.bin {
            format!("bin:{name}")
        } else {
            name
        }
    };
    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for u in &units {
        for path in paths_in(&u.code) {
            let Some(t) = resolve(u, &path, &units, &exports) else {
                continue;
            };
            let target = &units[t];
            if target.path == u.path {
                continue;
            }
            let (from, to) = (top(u), top(target));
            // The library's root only declares and re-exports.
            if from != to && !(u.door && u.module.is_empty() && !u.bin) {
                modules.entry(from).or_default().insert(to);
            } else if from == to && !u.module.is_empty() {
                // A door declaring and re-exporting its own files is not an arrow.
                let below = target.module.len() > u.module.len() && target.module.starts_with(&u.module);
                if !(u.door && below) {
                    files.entry(u.path.clone()).or_default().insert(target.path.clone());
                }
            }
        }
    }
    (modules, files)
}

fn check_cycles(graph: &BTreeMap<String, BTreeSet<String>>, what: &str) {
    let found: Vec<String> = cycles(graph)
        .iter()
        .map(|c| format!("{{{}}}: {}", c.join(", "), one_loop(graph, c)))
        .collect();
    assert!(
        found.is_empty(),
        "import cycles between {what}:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn no_import_cycle_between_modules() {
    let (modules, files) = graphs();
    if std::env::var_os("LAYOUT_GRAPH").is_some() {
        for (from, to) in modules.iter().chain(&files) {
            println!("{from} -> {}", to.iter().cloned().collect::<Vec<_>>().join(", "));
        }
    }
    check_cycles(&modules, "modules");
}

#[test]
fn no_import_cycle_between_files_of_a_module() {
    let (_, files) = graphs();
    check_cycles(&files, "the files of a module");
}

// The checker itself: a cycle is found and printed, `use` trees are expanded, comments
// and inline tests are left out.
#[test]
fn checker_finds_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.entry(a.into()).or_default().insert(b.into());
    }
    let found = cycles(&g);
    assert_eq!(found, vec![vec!["a".to_owned(), "b".into(), "c".into()]]);
    assert_eq!(one_loop(&g, &found[0]), "a -> b -> c -> a");
    let mut out = Vec::new();
    expand(&use_tree("crate::{a::{B, c::D as F}, e}"), &mut Vec::new(), &mut out);
    assert_eq!(
        out,
        [
            vec!["crate", "a", "B"],
            vec!["crate", "a", "c", "D"],
            vec!["crate", "e"]
        ]
    );
    let code = code_of(
        "use crate::a::B; // crate::y\nfn f() { crate::c::d(); }\n#[cfg(test)]\nmod tests {\n    use crate::z::Z;\n}\n",
    );
    let paths = paths_in(&code);
    assert!(
        paths.contains(&vec!["crate".to_owned(), "a".into(), "B".into()]),
        "{paths:?}"
    );
    assert!(
        paths.contains(&vec!["crate".to_owned(), "c".into(), "d".into()]),
        "{paths:?}"
    );
    assert!(!paths.iter().flatten().any(|s| s == "z" || s == "y"), "{paths:?}");
}
