//! The response heads the gateway's own HTTP/1.1 server writes, as hyper's server
//! writes them: the status line with its canonical reason, the fields with lower-case
//! names, the body's framing (`content-length` when the length is known, else
//! `transfer-encoding: chunked`; none for `204` and `304`), `connection: close` when the
//! connection ends after the response, and `date` when the response has none.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap};
use http::StatusCode;
use hyper::body::SizeHint;

use crate::listener::stamp::Stamp;
use crate::upstream::added::write_field;

/// How a response's body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// Exactly this many bytes: more is cut off, fewer ends the connection.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// No body (`204`, `304`): whatever the response's body holds is dropped.
    Nothing,
}

/// Writes the response head into `out` and says how its body is framed: the
/// response's fields, those of `stamp` in place of any of theirs. `hint` and
/// `ended` are the body's size hint and whether it is already over; `close`: the
/// connection ends after this response (also when the response itself says so: the
/// returned flag).
pub(super) fn encode_head(
    status: StatusCode,
    headers: &HeaderMap,
    stamp: &Stamp,
    hint: &SizeHint,
    ended: bool,
    close: bool,
    out: &mut Vec<u8>,
) -> (Framing, bool) {
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let mut length = None;
    let mut lengths_agree = true;
    let (mut close, mut said_close, mut dated) = (close, false, false);
    for (name, value) in headers {
        if stamp.replaces(name) {
            continue;
        }
        match *name {
            // The body's framing is the server's own.
            header::TRANSFER_ENCODING => continue,
            header::CONTENT_LENGTH => {
                let n = crate::upstream::h1::head::digits(value.as_bytes().trim_ascii());
                match (length, n) {
                    (None, Some(n)) => length = Some(n),
                    (Some(l), Some(n)) if l == n => {}
                    _ => lengths_agree = false,
                }
                continue;
            }
            header::CONNECTION => {
                let closes =
                    crate::upstream::connection_options(value.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close"));
                close |= closes;
                said_close |= closes;
            }
            header::DATE => dated = true,
            _ => {}
        }
        write_field(out, name, value.as_bytes());
    }
    stamp.write(out);
    let framing = if bodiless {
        Framing::Nothing
    } else {
        // The body's own length when it knows it (as hyper frames it); else the one the
        // response states, when it states one.
        let known = if ended { Some(0) } else { hint.exact() };
        match known.or(length.filter(|_| lengths_agree)) {
            Some(n) => {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                out.extend_from_slice(b"\r\n");
                Framing::Length(n)
            }
            None => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
        }
    };
    if close && !said_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        with_date(|d| out.extend_from_slice(d));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (framing, close)
}

/// Writes the start of a chunk of `len` bytes (its size line).
pub(super) fn chunk_start(len: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    // Writing to a `Vec` cannot fail.
    let _ = write!(out, "{len:X}\r\n");
}

/// The end of a chunked body: the last chunk, no trailers.
pub(super) const CHUNKED_END: &[u8] = b"0\r\n\r\n";

/// The `date` value, formatted once a second per thread.
fn with_date(f: impl FnOnce(&[u8])) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != secs || date.1.is_empty() {
            *date = (secs, httpdate::fmt_http_date(now));
        }
        f(date.1.as_bytes());
    });
}
