//! A route's `owner` key, validated into an [`Owner`]: a path parameter compared with
//! the caller's user id (`owner = "id"`) or with one of its attributes
//! (`owner = { segment = "id", attribute = "customer_id" }`).

use super::matcher::{Pattern, PatternSegment};
use super::Owner;

/// What an `owner` value must look like, for messages.
const FORMS: &str = "owner is \"param\" (compared with the caller's id) or { segment = \"param\", attribute = \"key\" }";

/// Validates an `owner` value against the route's path.
pub(super) fn compile(value: &toml::Value, pattern: &Pattern, path: &str) -> Result<Owner, String> {
    let owner = match value {
        toml::Value::String(param) => Owner::User { param: param.clone() },
        toml::Value::Table(t) => {
            if let Some(k) = t.keys().find(|k| !matches!(k.as_str(), "segment" | "attribute")) {
                return Err(format!("unknown key {k:?}: {FORMS}"));
            }
            let text = |k: &str| match t.get(k) {
                Some(toml::Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!("{k} must be a string: {FORMS}")),
                None => Err(format!("{k} is missing: {FORMS}")),
            };
            let param = text("segment")?;
            let attribute = text("attribute")?;
            crate::attributes::check_key(&attribute)?;
            Owner::Attribute { param, attribute }
        }
        _ => return Err(FORMS.into()),
    };
    let param = owner.param();
    let segment = pattern.segments.iter().find(|s| match s {
        PatternSegment::Param(n) | PatternSegment::CatchAll(n) => n == param,
        PatternSegment::Literal(_) => false,
    });
    match (segment, &owner) {
        (None, _) => Err(format!("owner names {{{param}}}, which the path {path:?} does not have")),
        // An attribute may hold `/`: compared with a remainder of several segments it
        // could own paths nobody meant it to.
        (Some(PatternSegment::CatchAll(_)), Owner::Attribute { .. }) => Err(format!(
            "owner compares {{*{param}}}, a catch-all: an attribute is compared with one segment, e.g. {{{param}}}"
        )),
        _ => Ok(owner),
    }
}
