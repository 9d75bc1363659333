//! Header fields a request gets on its way upstream that are not in its map: the
//! forward phase's own (`Host`, the forwarding headers, the caller's identity), handed
//! to [`super::UpstreamTarget::send`] beside the request instead of inserted into its
//! header map. An in-task exchange writes them straight into the request's head, after
//! its request line; a request for hyper's client has them inserted into its map first,
//! since that client takes requests rather than bytes. Either way the upstream sees the
//! same fields.
//!
//! The request's map must not hold fields of the same names (the forward phase strips
//! them): written beside it, a field would otherwise go twice.

use http::header::{HeaderMap, HeaderName};

/// Fields added to a request's head.
pub trait AddedFields: Sync {
    /// Writes each field as `name: value\r\n`: a valid lower-case field name, and a
    /// value without CR, LF or NUL, so nothing written can end the head early.
    fn write(&self, out: &mut Vec<u8>);

    /// Inserts the same fields into `headers`, each in place of any of its name.
    fn insert_into(&self, headers: &mut HeaderMap);
}

/// The fields to add to a request, if any.
pub type Added<'a> = Option<&'a dyn AddedFields>;

/// Writes one field, `name: value\r\n`. The name is a `HeaderName`, so it is a valid,
/// lower-case field name; the value is the caller's to keep free of CR, LF and NUL.
#[inline]
pub fn write_field(out: &mut Vec<u8>, name: &HeaderName, value: &[u8]) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether `bytes` is a field value of visible ASCII, space and tab only: no control
/// character (so no CR, LF, NUL or DEL) and no byte from 0x80 up, which `http` would
/// take; so whatever passes, `HeaderValue` takes too.
pub fn is_field_value(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
}
