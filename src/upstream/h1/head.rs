//! The heads of an in-task HTTP/1.1 exchange: the request head as written, and the
//! response head as read, with how its body is framed (RFC 9112 §6.3) and whether the
//! connection may carry another exchange after it.
//!
//! Framing is decided once, here, from the head alone, and strictly: a response whose
//! framing is ambiguous is refused (a `502`), never guessed at, and a connection is kept
//! only when the response's end is certain.
//!
//! The fields about the connection itself are read off the head in the same pass
//! ([`Fields`]) and not kept in the response: the hop-by-hop ones
//! ([`HOP_BY_HOP`](crate::upstream::HOP_BY_HOP)) and those `Connection` names. So the
//! framing is decided from the head's bytes, without looking fields up in a map.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use crate::upstream::added::{write_field, Added};
use crate::upstream::HOP_BY_HOP;

/// The largest response head read, and the most header fields it may hold: the limits
/// hyper's client has, so a response passes or fails the same on either path.
pub const MAX_HEAD: usize = 8192 + 4096 * 100;
pub const MAX_HEADERS: usize = 100;

/// Header fields parsed without a second try: most responses have far fewer, and the
/// parser's slots are initialised for each parse.
const FEW_HEADERS: usize = 24;

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a response to `HEAD`, a `204` or a `304`.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the upstream closes the connection.
    Close,
}

/// A response head: what the client is answered with, the body's framing, and whether
/// the connection may be used again once the body has been read to its end.
#[derive(Debug)]
pub struct Head {
    pub parts: http::response::Parts,
    pub framing: Framing,
    pub reusable: bool,
}

/// What the bytes read so far hold.
#[derive(Debug)]
pub enum Parsed {
    /// A final response head, removed from the buffer (the body's first bytes may follow).
    Head(Head),
    /// An interim (`1xx`) response, removed from the buffer: the final one follows.
    Interim,
    /// Not a whole head yet.
    Partial,
}

/// Why a response head was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("malformed response head: {0}")]
    Malformed(&'static str),
    #[error("response head above {MAX_HEAD} bytes")]
    TooLarge,
    #[error("response framing refused: {0}")]
    Framing(&'static str),
}

/// A request head as written to an upstream. It is kept in place of the request, whose
/// head is let go as soon as it is written (while its memory is still in cache, rather
/// than once the upstream has answered), for sending the request again on another
/// connection.
pub struct Written {
    bytes: Vec<u8>,
    /// The request is `HEAD`: its response has no body whatever its headers say.
    pub head_request: bool,
}

impl Written {
    /// `req`'s head with the `added` fields (see [`encode_request`]), written into `buf`.
    pub fn new<B>(req: &http::Request<B>, added: Added<'_>, mut buf: Vec<u8>) -> Self {
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        encode_request(req.method(), target, added, req.headers(), &mut buf);
        Self {
            bytes: buf,
            head_request: req.method() == Method::HEAD,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The buffer back, for the connection's next request (the head is gone then).
    pub fn take_buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }

    /// The request's head again (its method, target and fields as written), for a
    /// client that takes requests rather than bytes.
    pub fn to_parts(&self) -> Result<http::request::Parts, crate::upstream::BoxError> {
        // At least as many slots as the head has fields: one per line.
        let lines = self.bytes.windows(2).filter(|w| *w == b"\r\n").count();
        let mut fields = vec![httparse::EMPTY_HEADER; lines];
        let mut head = httparse::Request::new(&mut fields);
        let Ok(httparse::Status::Complete(_)) = head.parse(&self.bytes) else {
            return Err("a written request head did not parse".into());
        };
        let mut req = http::Request::builder()
            .method(head.method.unwrap_or_default())
            .uri(head.path.unwrap_or_default());
        for field in head.headers.iter() {
            req = req.header(field.name, field.value);
        }
        Ok(req.body(())?.into_parts().0)
    }
}

/// Writes the request head: `method target HTTP/1.1`, the `added` fields, then each
/// field of `headers`. The target is in origin form; names and values come from
/// `http`'s types, which hold no CR, LF or NUL (and the added fields promise the same),
/// so nothing written here can end the head early.
pub fn encode_request(method: &Method, target: &str, added: Added<'_>, headers: &HeaderMap, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(added) = added {
        added.write(out);
    }
    for (name, value) in headers {
        write_field(out, name, value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses the response head at the start of `buf`. `head_request`: the request was
/// `HEAD`, so the response has no body whatever its headers say. `scratch` is reused
/// between calls to hold the fields while the head is cut from the buffer.
pub fn parse_response(
    buf: &mut BytesMut,
    head_request: bool,
    scratch: &mut Vec<(HeaderName, usize, usize)>,
) -> Result<Parsed, HeadError> {
    match parse_with::<FEW_HEADERS>(buf, head_request, scratch) {
        Err(Retry::MoreFields) => parse_with::<MAX_HEADERS>(buf, head_request, scratch),
        other => other,
    }
    .map_err(|e| match e {
        Retry::MoreFields => HeadError::Malformed("more than 100 header fields"),
        Retry::Refused(e) => e,
    })
}

enum Retry {
    MoreFields,
    Refused(HeadError),
}

impl From<HeadError> for Retry {
    fn from(e: HeadError) -> Self {
        Self::Refused(e)
    }
}

fn parse_with<const N: usize>(
    buf: &mut BytesMut,
    head_request: bool,
    scratch: &mut Vec<(HeaderName, usize, usize)>,
) -> Result<Parsed, Retry> {
    let mut fields = [httparse::EMPTY_HEADER; N];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge.into()),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) if N < MAX_HEADERS => return Err(Retry::MoreFields),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::Malformed("more than 100 header fields").into()),
        Err(_) => return Err(HeadError::Malformed("not an HTTP/1.x response head").into()),
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge.into());
    }
    let version = match response.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(HeadError::Malformed("unknown HTTP version").into()),
    };
    let status = response
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(HeadError::Malformed("bad status code"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // The gateway never asks for an upgrade.
        return Err(HeadError::Framing("101 Switching Protocols without an upgrade asked for").into());
    }
    if status.is_informational() {
        let _ = buf.split_to(len);
        return Ok(Parsed::Interim);
    }
    // Names now, values once the head is cut out of the buffer (they share its bytes).
    scratch.clear();
    for field in response.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| HeadError::Malformed("invalid header field name"))?;
        let (start, end) = span(buf, field.value, len).ok_or(HeadError::Malformed("field value outside the head"))?;
        scratch.push((name, start, end));
    }
    let bytes: Bytes = buf.split_to(len).freeze();
    let fields = Fields::read(scratch, &bytes);
    let (framing, reusable) = fields.framing(status, version, head_request)?;
    // Room for the headers the gateway adds to the response as well.
    let mut headers = crate::header_maps::take(scratch.len() + 8);
    for (name, start, end) in scratch.drain(..) {
        if fields.is_hop_by_hop(&name) {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(bytes.slice(start..end))
            .map_err(|_| HeadError::Malformed("invalid header field value"))?;
        headers.append(name, value);
    }
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Parsed::Head(Head {
        parts,
        framing,
        reusable,
    }))
}

/// The fields of a response head that are about its connection and its framing, read
/// from the head's bytes in one pass: `Connection` (its `close`, and the names it lists),
/// `Transfer-Encoding` and `Content-Length`.
struct Fields<'a> {
    /// `Connection` names `close`.
    close: bool,
    /// The other names `Connection` lists that name a field of the head: those fields are
    /// this connection's too.
    listed: smallvec::SmallVec<[&'a [u8]; 4]>,
    /// The value of every `Transfer-Encoding` field, in order.
    transfer_encoding: smallvec::SmallVec<[&'a [u8]; 1]>,
    /// The value of every `Content-Length` field, in order.
    content_length: smallvec::SmallVec<[&'a [u8]; 1]>,
}

impl<'a> Fields<'a> {
    fn read(scratch: &[(HeaderName, usize, usize)], bytes: &'a [u8]) -> Self {
        let mut fields = Self {
            close: false,
            listed: smallvec::SmallVec::new(),
            transfer_encoding: smallvec::SmallVec::new(),
            content_length: smallvec::SmallVec::new(),
        };
        for (name, start, end) in scratch {
            let value = &bytes[*start..*end];
            if name == header::CONNECTION {
                for token in crate::upstream::connection_options(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        fields.close = true;
                    } else if !fields.listed.iter().any(|t| t.eq_ignore_ascii_case(token))
                        && scratch
                            .iter()
                            .any(|(n, ..)| n.as_str().as_bytes().eq_ignore_ascii_case(token))
                    {
                        // Only names of fields the head has, once each: at most one per field.
                        fields.listed.push(token);
                    }
                }
            } else if name == header::TRANSFER_ENCODING {
                fields.transfer_encoding.push(value);
            } else if name == header::CONTENT_LENGTH {
                fields.content_length.push(value);
            }
        }
        fields
    }

    /// Whether a field is hop-by-hop (RFC 9110 §7.6.1): one of those that are always
    /// (`Connection`, `Keep-Alive`, `Transfer-Encoding`, ...), or one `Connection` names.
    /// Such a field is read here and not passed on; `Content-Length` is passed on.
    fn is_hop_by_hop(&self, name: &HeaderName) -> bool {
        HOP_BY_HOP.contains(name)
            || self
                .listed
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name.as_str().as_bytes()))
    }

    /// The body's framing (RFC 9112 §6.3) and whether the connection outlives it.
    fn framing(&self, status: StatusCode, version: Version, head_request: bool) -> Result<(Framing, bool), HeadError> {
        let mut reusable = version == Version::HTTP_11 && !self.close;
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Ok((Framing::Empty, reusable));
        }
        if let Some(last) = self.transfer_encoding.last() {
            if version != Version::HTTP_11 {
                return Err(HeadError::Framing("Transfer-Encoding in an HTTP/1.0 response"));
            }
            // Both framings: Transfer-Encoding wins, and the connection is not trusted after.
            if !self.content_length.is_empty() {
                reusable = false;
            }
            // Whether the last transfer coding of all the fields is `chunked`.
            let chunked = last
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .next_back()
                .is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"));
            return Ok(if chunked {
                (Framing::Chunked, reusable)
            } else {
                (Framing::Close, false)
            });
        }
        let mut length: Option<u64> = None;
        for value in &self.content_length {
            for item in value.split(|&b| b == b',') {
                let n = digits(item.trim_ascii()).ok_or(HeadError::Framing("invalid Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::Framing("Content-Length values differ"));
                }
                length = Some(n);
            }
        }
        Ok(match length {
            Some(n) => (Framing::Length(n), reusable),
            None => (Framing::Close, false),
        })
    }
}

/// Where `part`, a slice httparse returned from `buf`, lies in `buf`'s first `len` bytes
/// (the head): its start and end offsets, so that it can be cut from the head once the
/// head is cut from the buffer; `None` if it is not within them.
pub fn span(buf: &[u8], part: &[u8], len: usize) -> Option<(usize, usize)> {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    let end = start.wrapping_add(part.len());
    (start <= end && end <= len).then_some((start, end))
}

/// A non-empty run of ASCII digits as a number; `None` for anything else or an overflow.
pub fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}
