//! The request heads the gateway's own HTTP/1.1 server takes: a request line and
//! fields parsed with httparse, as hyper's server parses them (the same parser and
//! settings), made into the request's parts with the values sharing the head's bytes.
//!
//! Only the plainest requests are taken: HTTP/1.1, `GET`, `DELETE` or `OPTIONS`, a target
//! in origin form, and none of the fields that give a request a body or change what the
//! connection does (`Content-Length`, `Transfer-Encoding`, `Expect`, `Upgrade`, a
//! `Connection` other than `keep-alive`). Anything else, malformed heads and heads over
//! the limits included, is handed to hyper with the bytes read so far, so it is refused
//! or served exactly as before.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{Method, Uri, Version};

use crate::upstream::h1::head::span;

/// Field slots on the stack. A limit above this is hyper's to apply: a head with more
/// fields is handed over.
const MAX_FIELDS: usize = 100;
/// The longest target hyper takes (its own limit, answered with 414).
const MAX_TARGET: usize = (u16::MAX - 1) as usize;

/// What the bytes at the start of a connection's buffer are.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "returned and matched at once: the parts move on into the request, a box would be one more allocation"
)]
pub(super) enum Parsed {
    /// The head is not complete yet.
    Partial,
    /// A request the gateway serves itself; its head's bytes are gone from the buffer.
    Request(http::request::Parts),
    /// A request for hyper to serve (or refuse): the buffer is untouched.
    HandOff,
}

/// Parses the request head at the start of `buf`, within `max_head` bytes and
/// `max_fields` fields. `scratch` holds the fields' names and value offsets while the
/// head is cut from the buffer; it is kept between requests.
pub(super) fn parse(
    buf: &mut BytesMut,
    max_head: usize,
    max_fields: usize,
    scratch: &mut Vec<(HeaderName, usize, usize)>,
) -> Parsed {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let slots = &mut slots[..max_fields.min(MAX_FIELDS)];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, slots) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Parsed::Partial,
        _ => return Parsed::HandOff,
    };
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("DELETE") => Method::DELETE,
        Some("OPTIONS") => Method::OPTIONS,
        _ => return Parsed::HandOff,
    };
    let Some(target) = req.path.filter(|t| t.starts_with('/') && t.len() <= MAX_TARGET) else {
        return Parsed::HandOff;
    };
    if req.version != Some(1) {
        return Parsed::HandOff;
    }
    let Some(target) = span(buf, target.as_bytes(), len) else {
        return Parsed::HandOff;
    };
    scratch.clear();
    for field in req.headers.iter() {
        if changes_framing(field) {
            return Parsed::HandOff;
        }
        let Ok(name) = HeaderName::from_bytes(field.name.as_bytes()) else {
            return Parsed::HandOff;
        };
        let Some((start, end)) = span(buf, field.value, len) else {
            return Parsed::HandOff;
        };
        scratch.push((name, start, end));
    }
    let head: Bytes = buf.split_to(len).freeze();
    let Some(parts) = request_parts(method, &head, target, scratch) else {
        // Taken by httparse but not by `http` (a target `Uri` refuses): hyper answers it
        // as it always has, from the same bytes, put back in front of the buffer.
        let mut whole = BytesMut::with_capacity(head.len() + buf.len());
        whole.extend_from_slice(&head);
        whole.extend_from_slice(buf);
        *buf = whole;
        scratch.clear();
        return Parsed::HandOff;
    };
    Parsed::Request(parts)
}

/// The request's parts, their target and values sharing `head`'s bytes.
fn request_parts(
    method: Method,
    head: &Bytes,
    target: (usize, usize),
    scratch: &mut Vec<(HeaderName, usize, usize)>,
) -> Option<http::request::Parts> {
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.1)).ok()?;
    let mut headers = crate::header_maps::take(scratch.len() + 8);
    for (name, start, end) in scratch.drain(..) {
        headers.append(name, HeaderValue::from_maybe_shared(head.slice(start..end)).ok()?);
    }
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    Some(parts)
}

/// Whether a field gives the request a body or changes what its connection does: such
/// a request is hyper's to serve. Names are compared without regard to case.
fn changes_framing(field: &httparse::Header<'_>) -> bool {
    let name = field.name.as_bytes();
    let is = |want: &str| name.eq_ignore_ascii_case(want.as_bytes());
    match name.len() {
        6 => is("expect"),
        7 => is("upgrade"),
        10 => {
            is("connection")
                && crate::upstream::connection_options(field.value).any(|t| !t.eq_ignore_ascii_case(b"keep-alive"))
        }
        14 => is("content-length"),
        17 => is("transfer-encoding"),
        _ => false,
    }
}
