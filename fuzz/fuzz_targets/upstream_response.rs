//! The in-task client's reading of an upstream's answer: any bytes, split anywhere across
//! reads, give a response head and body or an error, never a panic; the body never holds
//! more bytes than arrived; a connection is left reusable only with nothing unread; and
//! the same bytes in other pieces give the same result.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use portcullis::upstream::h1::body::{Decoder, Step};
use portcullis::upstream::h1::head::{parse_response, Framing, Parsed};

/// What the bytes gave: the status, framing, whether reusable, the body, and what was
/// left unread; or `None` for an error or bytes that ran out.
type Outcome = Option<(u16, Framing, bool, Vec<u8>, usize)>;

fn read(data: &[u8], head_request: bool, piece: usize) -> Outcome {
    let mut buf = BytesMut::new();
    let mut scratch = Vec::new();
    let mut fed = 0;
    let mut feed = |buf: &mut BytesMut| {
        if fed == data.len() {
            return false;
        }
        let n = piece.min(data.len() - fed);
        buf.extend_from_slice(&data[fed..fed + n]);
        fed += n;
        true
    };
    let head = loop {
        match parse_response(&mut buf, head_request, &mut scratch) {
            Ok(Parsed::Head(h)) => break h,
            Ok(Parsed::Interim) => {}
            Ok(Parsed::Partial) => {
                if !feed(&mut buf) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    };
    let mut decoder = Decoder::new(head.framing);
    let mut body = Vec::new();
    loop {
        match decoder.step(&mut buf) {
            Ok(Step::Data(d)) => {
                assert!(!d.is_empty(), "an empty data frame");
                body.extend_from_slice(&d);
            }
            Ok(Step::Done) => break,
            Ok(Step::More) => {
                if !feed(&mut buf) {
                    decoder.closed().ok()?;
                }
            }
            Err(_) => return None,
        }
    }
    assert!(body.len() <= data.len());
    let unread = buf.len() + data.len() - fed;
    if head.framing == Framing::Close {
        assert!(!head.reusable, "a body ended by the close never leaves its connection");
    }
    Some((head.parts.status.as_u16(), head.framing, head.reusable, body, unread))
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, data)) = input.split_first() else {
        return;
    };
    let head_request = flags & 1 == 1;
    let piece = usize::from(flags >> 1).max(1);
    let whole = read(data, head_request, usize::MAX);
    let pieces = read(data, head_request, piece);
    assert_eq!(whole, pieces, "{piece}-byte pieces read differently");
});
