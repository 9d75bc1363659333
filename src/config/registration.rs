//! `[registration]`: whether anyone may make an account, with which roles and
//! attributes, and from which email domains.
//!
//! Off unless the file turns it on: a gateway in front of an internal API must not let
//! whoever reaches it make an account. Turned on, `default_roles` must name at least
//! one role, each declared in `[roles]` when the file declares roles at all.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::attributes::{self, Attributes};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistration {
    enabled: Option<Spanned<bool>>,
    default_roles: Option<Spanned<Vec<Spanned<String>>>>,
    allowed_domains: Option<Spanned<Vec<Spanned<String>>>>,
    default_attributes: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

/// `[registration]`, validated.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    /// `POST /auth/register` exists at all (404 otherwise, like a path without a route).
    pub enabled: bool,
    /// The roles a self-registered account gets.
    pub default_roles: Vec<String>,
    /// Lower-cased domains an address must be in (exactly; not their subdomains). Empty:
    /// any domain.
    pub allowed_domains: Vec<String>,
    /// The attributes a self-registered account starts with.
    pub default_attributes: Attributes,
}

impl Registration {
    /// Whether an address (already lower-cased) may register: its domain is one of the
    /// allowed ones, compared whole, or no list is set.
    pub fn domain_allowed(&self, email: &str) -> bool {
        if self.allowed_domains.is_empty() {
            return true;
        }
        let domain = email.rsplit_once('@').map_or("", |(_, d)| d);
        self.allowed_domains.iter().any(|d| d == domain)
    }
}

/// A refusal: where in the file, which key, and what is wrong.
pub(super) type Refusal = (Range<usize>, &'static str, String);

/// Validates the table; `declared` holds the roles of `[roles]` (empty: none declared).
/// `table` is the span of the table, for the errors about a key that is missing.
pub(super) fn validate(
    raw: RawRegistration,
    declared: &dyn Fn(&str) -> bool,
    any_declared: bool,
    table: Option<Range<usize>>,
) -> Result<Registration, Refusal> {
    let enabled = raw.enabled.as_ref().is_some_and(|e| *e.get_ref());
    let mut default_roles = Vec::new();
    if let Some(roles) = &raw.default_roles {
        for r in roles.get_ref() {
            let name = r.get_ref();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err((
                    r.span(),
                    "[registration] default_roles",
                    format!("{name:?} is not a role name (letters, digits, - and _)"),
                ));
            }
            if any_declared && !declared(name) {
                return Err((
                    r.span(),
                    "[registration] default_roles",
                    format!("role {name:?} is not declared in [roles]"),
                ));
            }
            default_roles.push(name.clone());
        }
    }
    if enabled && default_roles.is_empty() {
        let span = raw
            .default_roles
            .as_ref()
            .map(Spanned::span)
            .or_else(|| raw.enabled.as_ref().map(Spanned::span))
            .or(table)
            .unwrap_or(0..0);
        return Err((
            span,
            "[registration] default_roles",
            "registration is enabled: name the roles a new account gets, e.g. default_roles = [\"customer\"]".into(),
        ));
    }
    let mut allowed_domains = Vec::new();
    if let Some(domains) = &raw.allowed_domains {
        if domains.get_ref().is_empty() {
            return Err((
                domains.span(),
                "[registration] allowed_domains",
                "an empty list lets nobody register: remove the key to allow every domain, or set enabled = false"
                    .into(),
            ));
        }
        for d in domains.get_ref() {
            let domain = d.get_ref().trim().trim_start_matches('@').to_lowercase();
            let plausible = domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !plausible {
                return Err((
                    d.span(),
                    "[registration] allowed_domains",
                    format!("{:?} is not a domain name, e.g. \"shop.example\"", d.get_ref()),
                ));
            }
            allowed_domains.push(domain);
        }
    }
    let mut default_attributes = Attributes::new();
    if let Some(attrs) = &raw.default_attributes {
        if attrs.get_ref().len() > attributes::MAX_ATTRIBUTES {
            return Err((
                attrs.span(),
                "[registration] default_attributes",
                format!("at most {} attributes", attributes::MAX_ATTRIBUTES),
            ));
        }
        for (k, v) in attrs.get_ref() {
            attributes::check_key(k)
                .and_then(|()| attributes::check_value(k, v.get_ref()))
                .map_err(|m| (v.span(), "[registration] default_attributes", m))?;
            default_attributes.insert(k.clone(), v.get_ref().clone());
        }
    }
    Ok(Registration {
        enabled,
        default_roles,
        allowed_domains,
        default_attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Domains are compared whole and lower-cased: no subdomain, no suffix trick.
    #[test]
    fn domains() {
        let r = Registration {
            allowed_domains: vec!["shop.example".into()],
            ..Registration::default()
        };
        assert!(r.domain_allowed("x@shop.example"));
        for bad in [
            "x@evil.shop.example",
            "x@shop.example.evil",
            "x@hop.example",
            "shop.example",
        ] {
            assert!(!r.domain_allowed(bad), "{bad}");
        }
        assert!(Registration::default().domain_allowed("x@anything.example"));
    }
}
