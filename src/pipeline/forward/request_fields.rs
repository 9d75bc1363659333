//! A route's `request_fields` (contract §13), enforced before anything goes upstream.
//!
//! A request with a body is read once, whole, within `max_body` and the body's deadlines;
//! it must be JSON (a JSON `Content-Type` and bytes that parse), a JSON object, with no
//! top-level field outside the list and none given twice. The check walks the top-level
//! keys without building a tree (values are skipped without recursion: serde_json keeps
//! its own stack, at most the body's length), so it costs no allocation per key. What goes upstream is exactly the
//! bytes checked, with their `Content-Length`. JSON that is not an object is refused
//! (422 `not_an_object`): a field list cannot hold an array or a string to anything.
//! A request without a body passes.

use std::fmt;

use http::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::error::{FieldRefusal, GatewayError};
use crate::policy::FieldList;
use crate::refusal::shown;
use crate::upstream::request::RequestBody;

/// Reads and checks the body of a request on a route with `request_fields`; on success
/// the body holds the checked bytes and the headers announce their length.
pub async fn enforce(
    headers: &mut HeaderMap,
    body: &mut RequestBody,
    fields: &FieldList,
    max_body: u64,
) -> Result<(), GatewayError> {
    use hyper::body::Body;
    if body.is_end_stream() {
        return Ok(());
    }
    if !is_json(headers.get(CONTENT_TYPE)) {
        return Err(GatewayError::RequestFields(FieldRefusal::NotJson));
    }
    let bytes = match body.read_whole(max_body).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(GatewayError::PayloadTooLarge { limit: max_body }),
        Err(e) => {
            return Err(
                crate::error::client_body_error(&e, max_body).unwrap_or_else(|| GatewayError::Malformed(e.to_string()))
            )
        }
    };
    if bytes.is_empty() {
        // `Transfer-Encoding: chunked` with no chunk: no body after all.
        headers.remove(TRANSFER_ENCODING);
        headers.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
        return Ok(());
    }
    check(&bytes, fields).map_err(GatewayError::RequestFields)?;
    headers.remove(TRANSFER_ENCODING);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len() as u64));
    body.set_checked(bytes);
    Ok(())
}

/// `application/json`, or any `type/subtype+json`, parameters aside.
pub fn is_json(value: Option<&HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    if !token(kind) || !token(sub) {
        return false;
    }
    (kind.eq_ignore_ascii_case("application") && sub.eq_ignore_ascii_case("json"))
        || (sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// Checks a whole body against the list.
pub fn check(bytes: &[u8], fields: &FieldList) -> Result<(), FieldRefusal> {
    let first = bytes.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        // Not an object: JSON of another kind, or not JSON at all.
        return match serde_json::from_slice::<IgnoredAny>(bytes) {
            Ok(_) => Err(FieldRefusal::NotObject),
            Err(_) => Err(FieldRefusal::NotJson),
        };
    }
    let mut refused = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let walked = de
        .deserialize_map(TopLevel {
            fields,
            refused: &mut refused,
        })
        .and_then(|()| de.end());
    match (refused, walked) {
        (Some(why), _) => Err(why),
        (None, Err(_)) => Err(FieldRefusal::NotJson),
        (None, Ok(())) => Ok(()),
    }
}

/// The most names a list holds, checked when the policy is read.
const MAX_NAMES: usize = crate::policy::MAX_FIELDS;

/// Which of the list's names were seen: one bit per name, on the stack. A name past
/// [`MAX_NAMES`] (no valid policy has one) reads as seen: refused, not allowed.
struct Seen([u64; MAX_NAMES.div_ceil(64)]);

impl Seen {
    /// Marks `i`; false when it was marked already.
    fn mark(&mut self, i: usize) -> bool {
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        let Some(w) = self.0.get_mut(word) else {
            return false;
        };
        let fresh = *w & bit == 0;
        *w |= bit;
        fresh
    }
}

/// The top-level object: each key looked up, each value skipped. A refusal is put in
/// `refused` and ends the walk with an error.
struct TopLevel<'a> {
    fields: &'a FieldList,
    refused: &'a mut Option<FieldRefusal>,
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = Seen([0; MAX_NAMES.div_ceil(64)]);
        while let Some(key) = map.next_key_seed(Key(self.fields))? {
            let why = match key {
                Ok(i) if seen.mark(i) => None,
                Ok(i) => Some(FieldRefusal::Duplicate(shown(&self.fields.names()[i]))),
                Err(why) => Some(why),
            };
            if let Some(why) = why {
                *self.refused = Some(why);
                return Err(de::Error::custom("field refused"));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

/// A top-level key: its index in the list, or the refusal naming it.
struct Key<'a>(&'a FieldList);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Result<usize, FieldRefusal>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Result<usize, FieldRefusal>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self
            .0
            .names()
            .binary_search_by(|n| n.as_str().cmp(name))
            .map_err(|_| FieldRefusal::Unknown(shown(name))))
    }
}
