//! Account attributes: the bounds every attribute obeys, wherever it comes from (the
//! command line, `[registration] default_attributes`, a policy's `owner`, a test case).
//!
//! A key is 1 to 64 of `[a-z0-9_]`; a value at most 256 bytes of printable text (no
//! control characters, so it is always a valid header value); an account has at most 32.
//! Upstreams receive each one as `X-Auth-Attr-<key>`, `_` written `-`.

use std::collections::BTreeMap;

/// The most attributes one account may carry.
pub const MAX_ATTRIBUTES: usize = 32;
/// The longest attribute key, in bytes.
pub const MAX_KEY: usize = 64;
/// The longest attribute value, in bytes.
pub const MAX_VALUE: usize = 256;

/// An account's attributes: key to value, in key order.
pub type Attributes = BTreeMap<String, String>;

/// Whether `key` is 1 to 64 of `[a-z0-9_]`.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks a key, with a message saying what is wrong.
pub fn check_key(key: &str) -> Result<(), String> {
    if valid_key(key) {
        Ok(())
    } else {
        Err(format!(
            "attribute key {key:?} must be 1 to {MAX_KEY} characters of a-z, 0-9 and _"
        ))
    }
}

/// Checks a value: at most 256 bytes, no control characters, no leading or trailing
/// whitespace (it would not survive a header). Empty values are refused: an attribute is
/// removed, not emptied, so an owner check never meets an empty value.
pub fn check_value(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!(
            "attribute {key:?}: the value is empty (use `user attr unset` to remove it)"
        ));
    }
    if value.len() > MAX_VALUE {
        return Err(format!("attribute {key:?}: the value is longer than {MAX_VALUE} bytes"));
    }
    if value.chars().any(char::is_control) || value.trim() != value {
        return Err(format!(
            "attribute {key:?}: the value has control characters or surrounding spaces"
        ));
    }
    Ok(())
}

/// Checks a whole set of attributes: every key, every value, and the count.
pub fn check(attrs: &Attributes) -> Result<(), String> {
    if attrs.len() > MAX_ATTRIBUTES {
        return Err(format!("an account carries at most {MAX_ATTRIBUTES} attributes"));
    }
    for (k, v) in attrs {
        check_key(k)?;
        check_value(k, v)?;
    }
    Ok(())
}

/// Parses `KEY=VALUE` (the command line's form).
pub fn parse_assignment(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    check_key(k)?;
    check_value(k, v)?;
    Ok((k.to_owned(), v.to_owned()))
}

/// The header an attribute travels in upstream: `x-auth-attr-` and the key, `_` as `-`.
pub fn header_name(key: &str) -> String {
    format!("x-auth-attr-{}", key.replace('_', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Keys are lower-case identifiers; values are bounded printable text.
    #[test]
    fn bounds() {
        assert!(valid_key("customer_id"));
        assert!(valid_key(&"a".repeat(64)));
        for bad in ["", "Customer", "customer-id", "a b", "é", &"a".repeat(65)] {
            assert!(!valid_key(bad), "{bad:?}");
        }
        assert!(check_value("k", "42").is_ok());
        assert!(check_value("k", &"x".repeat(256)).is_ok());
        for bad in ["", " 42", "4\r\n2", &"x".repeat(257)] {
            assert!(check_value("k", bad).is_err(), "{bad:?}");
        }
        let many: Attributes = (0..33).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(check(&many).is_err());
        assert_eq!(
            parse_assignment("customer_id=4=2").unwrap(),
            ("customer_id".into(), "4=2".into())
        );
        assert!(parse_assignment("customer_id").is_err());
        assert_eq!(header_name("customer_id"), "x-auth-attr-customer-id");
    }
}
