//! A route's field lists (contract §13): `request_fields`, the top-level fields a JSON
//! request body may carry, and `response_fields` with `response_fields_by_role`, the
//! top-level fields of a JSON response a caller may see.

use std::collections::BTreeMap;
use std::sync::Arc;

use smallvec::SmallVec;
use toml::Spanned;

/// The most names one list may hold: a policy is operator-written, but a generated one
/// (`policy init --from-openapi`) should not grow without bound either.
pub const MAX_FIELDS: usize = 1024;

/// A list of top-level field names, kept sorted for lookups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldList {
    sorted: Vec<String>,
    /// For each length below [`INDEXED`], the positions in `sorted` of the names that
    /// long (in order): a lookup compares a name only with names of its length. Longer
    /// names are searched in `sorted`.
    by_length: Vec<SmallVec<[u16; 2]>>,
}

/// Names shorter than this are found through [`FieldList::by_length`].
const INDEXED: usize = 64;

impl FieldList {
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        let mut sorted: Vec<String> = names.into_iter().collect();
        sorted.sort();
        sorted.dedup();
        let longest = sorted.iter().map(String::len).filter(|&n| n < INDEXED).max();
        let mut by_length = vec![SmallVec::new(); longest.map_or(0, |n| n + 1)];
        for (at, name) in sorted.iter().enumerate() {
            // A policy's lists hold at most MAX_FIELDS names, well within u16.
            if let (Some(same), Ok(at)) = (by_length.get_mut(name.len()), u16::try_from(at)) {
                same.push(at);
            }
        }
        Self { sorted, by_length }
    }

    /// Asked once per field of every filtered response.
    pub fn contains(&self, name: &str) -> bool {
        let Some(same) = self.by_length.get(name.len()) else {
            return name.len() >= INDEXED && self.sorted.binary_search_by(|n| n.as_str().cmp(name)).is_ok();
        };
        let at = |k: &u16| self.sorted[usize::from(*k)].as_str();
        if same.len() <= 8 {
            same.iter().any(|k| at(k) == name)
        } else {
            same.binary_search_by(|k| at(k).cmp(name)).is_ok()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The names, sorted.
    pub fn names(&self) -> &[String] {
        &self.sorted
    }

    /// This list together with `other`'s names.
    pub fn union(&self, other: &FieldList) -> FieldList {
        FieldList::new(self.sorted.iter().chain(&other.sorted).cloned())
    }
}

/// `response_fields` and the lists `response_fields_by_role` adds for callers holding a
/// role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseFields {
    pub base: FieldList,
    /// Role name to the fields it adds, sorted by role.
    pub by_role: Vec<(String, FieldList)>,
}

/// The raw keys as a policy file writes them (borrowed from the raw route).
pub(super) struct RawFields<'a> {
    pub(super) request_fields: Option<&'a Spanned<Vec<String>>>,
    pub(super) response_fields: Option<&'a Spanned<Vec<String>>>,
    pub(super) response_fields_by_role: Option<&'a Spanned<BTreeMap<String, Vec<String>>>>,
}

/// A route's compiled field lists.
#[derive(Debug, Clone, Default)]
pub(super) struct Compiled {
    pub(super) request: Option<Arc<FieldList>>,
    pub(super) response: Option<Arc<ResponseFields>>,
}

/// Checks the raw keys; `err(span, key, message)` reports a problem. `public` routes have
/// no caller, so `response_fields_by_role` is refused on them.
pub(super) fn compile(
    raw: &RawFields<'_>,
    public: bool,
    err: &mut dyn FnMut(std::ops::Range<usize>, &str, String),
) -> Compiled {
    fn check(
        list: &Spanned<Vec<String>>,
        key: &str,
        err: &mut dyn FnMut(std::ops::Range<usize>, &str, String),
    ) -> FieldList {
        let names = list.get_ref();
        if names.len() > MAX_FIELDS {
            err(list.span(), key, format!("at most {MAX_FIELDS} field names"));
        }
        if names.iter().any(|n| n.is_empty()) {
            err(list.span(), key, "a field name cannot be empty".into());
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
            err(list.span(), key, format!("{dup:?} is listed twice"));
        }
        FieldList::new(names.iter().cloned())
    }
    let request = raw.request_fields.map(|l| Arc::new(check(l, "request_fields", err)));
    let base = raw.response_fields.map(|l| check(l, "response_fields", err));
    let mut by_role = Vec::new();
    if let Some(roles) = raw.response_fields_by_role {
        if base.is_none() {
            err(
                roles.span(),
                "response_fields_by_role",
                "response_fields_by_role widens response_fields: set response_fields too".into(),
            );
        }
        if public {
            err(
                roles.span(),
                "response_fields_by_role",
                "a public route has no caller whose roles could widen the list".into(),
            );
        }
        for (role, names) in roles.get_ref() {
            if role.is_empty() {
                err(
                    roles.span(),
                    "response_fields_by_role",
                    "a role name cannot be empty".into(),
                );
            }
            let list = Spanned::new(roles.span(), names.clone());
            by_role.push((role.clone(), check(&list, "response_fields_by_role", err)));
        }
    }
    Compiled {
        request,
        response: base.map(|base| Arc::new(ResponseFields { base, by_role })),
    }
}

#[cfg(test)]
mod tests {
    use super::FieldList;
    use proptest::prelude::*;

    proptest! {
        /// A name is found exactly when it is listed, whatever the lengths (long names
        /// included) and however many share one.
        #[test]
        fn contains_what_is_listed(names in prop::collection::vec("[a-c]{0,3}|[a-c]{60,70}", 0..40), asked in "[a-c]{0,3}|[a-c]{60,70}") {
            let list = FieldList::new(names.iter().cloned());
            prop_assert_eq!(list.contains(&asked), names.contains(&asked));
            for name in &names {
                prop_assert!(list.contains(name));
            }
        }
    }
}
