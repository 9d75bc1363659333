//! `[totp] issuer`: the name an authenticator app shows beside the account (in the
//! `otpauth://` URI and its QR code).

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

/// The issuer when `[totp] issuer` is absent.
pub const DEFAULT_ISSUER: &str = "Portcullis";
/// The longest issuer accepted, in characters.
const MAX_ISSUER: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTotp {
    issuer: Option<Spanned<String>>,
}

/// `[totp]`, validated.
#[derive(Debug, Clone)]
pub struct Totp {
    pub issuer: String,
}

impl Default for Totp {
    fn default() -> Self {
        Self {
            issuer: DEFAULT_ISSUER.to_owned(),
        }
    }
}

/// Validates `[totp]`: the issuer is non-empty, at most 64 characters, with no `:`
/// (it separates issuer and account in the URI's label) and no control character.
pub(super) fn validate(raw: Option<RawTotp>) -> Result<Totp, (Range<usize>, String)> {
    let Some(issuer) = raw.and_then(|r| r.issuer) else {
        return Ok(Totp::default());
    };
    let s = issuer.get_ref();
    let problem = if s.trim().is_empty() {
        Some("the issuer cannot be empty")
    } else if s.chars().count() > MAX_ISSUER {
        Some("the issuer is at most 64 characters")
    } else if s.contains(':') {
        Some("the issuer cannot contain ':' (it separates issuer and account in the otpauth URI)")
    } else if s.chars().any(char::is_control) {
        Some("the issuer cannot contain control characters")
    } else {
        None
    };
    match problem {
        Some(m) => Err((issuer.span(), m.to_owned())),
        None => Ok(Totp {
            issuer: s.trim().to_owned(),
        }),
    }
}
