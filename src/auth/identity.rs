//! The identity headers an upstream receives for a verified caller: `X-Auth-User`,
//! `X-Auth-Email`, `X-Auth-Roles` and one `X-Auth-Attr-<key>` per attribute, made once
//! per token and cached with it.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::policy::Principal;

pub const X_AUTH_USER: HeaderName = HeaderName::from_static("x-auth-user");
pub const X_AUTH_EMAIL: HeaderName = HeaderName::from_static("x-auth-email");
pub const X_AUTH_ROLES: HeaderName = HeaderName::from_static("x-auth-roles");

/// `X-Auth-User`, `X-Auth-Email` and `X-Auth-Roles` for one caller. Ids, emails and role
/// names are validated when accounts are made; a value that still cannot be a header is
/// left out rather than forwarded half-formed.
#[derive(Debug, Clone, Default)]
pub struct IdentityHeaders {
    user: Option<HeaderValue>,
    email: Option<HeaderValue>,
    roles: Option<HeaderValue>,
    /// `X-Auth-Attr-<key>` (`_` as `-`) for each attribute; empty (no allocation) for
    /// an account without attributes.
    attrs: Vec<(HeaderName, HeaderValue)>,
}

impl IdentityHeaders {
    /// The headers of `p`, made once per verified token.
    pub fn of(p: &Principal) -> Self {
        // Shared bytes: every request that clones these shares one copy.
        let value = |s: &str| HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(s.as_bytes())).ok();
        Self {
            user: value(&p.id),
            email: value(&p.email),
            roles: value(&p.roles.join(",")),
            attrs: p
                .attributes
                .iter()
                .filter_map(|(k, v)| {
                    let name = HeaderName::from_bytes(crate::attributes::header_name(k).as_bytes()).ok()?;
                    Some((name, value(v)?))
                })
                .collect(),
        }
    }

    /// The caller's fields, each once: `X-Auth-User`, `X-Auth-Email` and `X-Auth-Roles`
    /// (those that could be made), then the attributes' (distinct, since attribute keys
    /// hold no `-`).
    pub fn fields(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        static NAMES: [HeaderName; 3] = [X_AUTH_USER, X_AUTH_EMAIL, X_AUTH_ROLES];
        let named = [&self.user, &self.email, &self.roles]
            .into_iter()
            .zip(&NAMES)
            .filter_map(|(value, name)| Some((name, value.as_ref()?)));
        named.chain(self.attrs.iter().map(|(name, value)| (name, value)))
    }

    /// Sets the caller's headers on a request going upstream (the client's own were
    /// stripped before).
    #[inline]
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        for (name, value) in self.fields() {
            headers.insert(name.clone(), value.clone());
        }
    }
}
