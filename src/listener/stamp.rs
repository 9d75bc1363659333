//! The fields a handler puts on its whole response, whoever answered it (the handler
//! itself or an upstream): fixed fields, such as the gateway's security headers, and the
//! request's id, each in place of any field of the same name the response has.
//!
//! They go beside the response rather than into its header map: the gateway's own
//! HTTP/1.1 server writes them straight into the head it sends, so a response pays
//! neither the map's inserts nor a copy of the id; a response hyper sends (HTTP/2, or an
//! HTTP/1.1 connection handed to hyper) has them inserted into its map first. Either way
//! the client sees the same fields.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::upstream::added::{is_field_value, write_field};

/// Fields to put on a response.
#[derive(Debug, Default)]
pub struct Stamp {
    /// Fields of constant value.
    pub fixed: &'static [(HeaderName, HeaderValue)],
    /// The request's id, under `X-Request-Id`.
    pub request_id: Option<String>,
}

/// `X-Request-Id`: the id of the request a response answers.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl Stamp {
    /// The fields `fixed`, and `request_id` unless it could not be a field value (visible
    /// ASCII, space and tab: no CR, LF or NUL).
    pub fn new(fixed: &'static [(HeaderName, HeaderValue)], request_id: String) -> Self {
        let valid = is_field_value(request_id.as_bytes());
        Self {
            fixed,
            request_id: valid.then_some(request_id),
        }
    }

    /// Whether a response's own field named `name` gives way to one of these.
    #[inline]
    pub fn replaces(&self, name: &HeaderName) -> bool {
        self.fixed.iter().any(|(n, _)| n == name) || (self.request_id.is_some() && *name == X_REQUEST_ID)
    }

    /// Writes each field as `name: value\r\n`.
    pub fn write(&self, out: &mut Vec<u8>) {
        for (name, value) in self.fixed {
            write_field(out, name, value.as_bytes());
        }
        if let Some(id) = &self.request_id {
            write_field(out, &X_REQUEST_ID, id.as_bytes());
        }
    }

    /// Inserts the same fields into `headers`, each in place of any of its name.
    pub fn insert_into(self, headers: &mut HeaderMap) {
        for (name, value) in self.fixed {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(id) = self
            .request_id
            .and_then(|id| HeaderValue::from_maybe_shared(bytes::Bytes::from(id)).ok())
        {
            headers.insert(X_REQUEST_ID, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FIXED: [(HeaderName, HeaderValue); 2] = [
        (
            http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (http::header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];

    // Written or inserted, a stamp gives the same fields, each once and in place of the
    // response's own; an id that could not be a field value is left out.
    #[test]
    fn written_fields_are_the_inserted_ones() {
        for (id, kept) in [("gw-2a", true), ("bad\r\nid", false)] {
            let stamp = Stamp::new(&FIXED, id.into());
            let mut out = Vec::new();
            stamp.write(&mut out);
            let text = String::from_utf8(out).unwrap();
            let mut map = HeaderMap::new();
            map.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("public"));
            map.insert(X_REQUEST_ID, HeaderValue::from_static("up-1"));
            let own: Vec<_> = map.keys().filter(|n| !stamp.replaces(n)).cloned().collect();
            assert_eq!(own.len(), usize::from(!kept));
            stamp.insert_into(&mut map);
            let written: Vec<_> = text.split_terminator("\r\n").collect();
            let inserted: Vec<_> = map
                .iter()
                .filter(|(n, _)| !own.contains(n))
                .map(|(n, v)| format!("{}: {}", n, v.to_str().unwrap()))
                .collect();
            let mut sorted = written.clone();
            sorted.sort_unstable();
            let mut expected = inserted.clone();
            expected.sort_unstable();
            assert_eq!(sorted, expected, "{text:?}");
            assert_eq!(text.contains("x-request-id: gw-2a"), kept, "{text:?}");
            assert!(!text.contains("public"));
        }
    }
}
