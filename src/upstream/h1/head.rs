//! The heads of an in-task HTTP/1.1 exchange: the request head as written, and the
//! response head as read, with how its body is framed (RFC 9112 §6.3) and whether the
//! connection may carry another exchange after it.
//!
//! Framing is decided once, here, from the head alone, and strictly: a response whose
//! framing is ambiguous is refused (a `502`), never guessed at, and a connection is kept
//! only when the response's end is certain.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

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

/// Writes the request head: `method target HTTP/1.1`, then each header field. The
/// target is in origin form; names and values come from `http`'s types, which hold no
/// CR, LF or NUL, so nothing written here can end the head early.
pub fn encode_request(method: &Method, target: &str, headers: &HeaderMap, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
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
    let base = buf.as_ptr() as usize;
    scratch.clear();
    for field in response.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| HeadError::Malformed("invalid header field name"))?;
        let start = (field.value.as_ptr() as usize).wrapping_sub(base);
        let end = start.wrapping_add(field.value.len());
        if start > len || end > len {
            return Err(HeadError::Malformed("field value outside the head").into());
        }
        scratch.push((name, start, end));
    }
    let bytes: Bytes = buf.split_to(len).freeze();
    // Room for the headers the gateway adds to the response as well.
    let mut headers = HeaderMap::with_capacity(scratch.len() + 8);
    for (name, start, end) in scratch.drain(..) {
        let value = HeaderValue::from_maybe_shared(bytes.slice(start..end))
            .map_err(|_| HeadError::Malformed("invalid header field value"))?;
        headers.append(name, value);
    }
    let (framing, reusable) = framing(status, version, &headers, head_request)?;
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

/// The body's framing (RFC 9112 §6.3) and whether the connection outlives it.
pub fn framing(
    status: StatusCode,
    version: Version,
    headers: &HeaderMap,
    head_request: bool,
) -> Result<(Framing, bool), HeadError> {
    let mut reusable = version == Version::HTTP_11 && !has_token(headers, &header::CONNECTION, "close");
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Empty, reusable));
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if version != Version::HTTP_11 {
            return Err(HeadError::Framing("Transfer-Encoding in an HTTP/1.0 response"));
        }
        // Both framings: Transfer-Encoding wins, and the connection is not trusted after.
        if headers.contains_key(header::CONTENT_LENGTH) {
            reusable = false;
        }
        return Ok(if last_coding_is_chunked(headers) {
            (Framing::Chunked, reusable)
        } else {
            (Framing::Close, false)
        });
    }
    let mut length: Option<u64> = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
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

/// Whether the last transfer coding of all `Transfer-Encoding` fields is `chunked`.
fn last_coding_is_chunked(headers: &HeaderMap) -> bool {
    let last = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|v| v.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii).next_back());
    last.is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"))
}

/// Whether a comma-separated field holds `token` (any case).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// A non-empty run of ASCII digits as a number; `None` for anything else or an overflow.
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}
