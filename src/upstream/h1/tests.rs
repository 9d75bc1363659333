//! The in-task client's heads and body decoder on bytes alone: framing as RFC 9112 §6.3
//! has it, ambiguous framing refused, and a body decoded the same however its bytes are
//! split across reads.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode};

use super::body::{Decoder, Step};
use super::head::{encode_request, parse_response, Framing, Head, Parsed, Written, MAX_HEAD};

fn parse(raw: &[u8], head_request: bool) -> Result<Parsed, super::head::HeadError> {
    parse_response(&mut BytesMut::from(raw), head_request, &mut Vec::new())
}

fn head(raw: &str) -> Head {
    match parse(raw.as_bytes(), false) {
        Ok(Parsed::Head(h)) => h,
        other => panic!("{raw:?}: {other:?}"),
    }
}

fn framing(raw: &str) -> (Framing, bool) {
    let h = head(raw);
    (h.framing, h.reusable)
}

fn refused(raw: &str) -> String {
    match parse(raw.as_bytes(), false) {
        Err(e) => e.to_string(),
        other => panic!("{raw:?} accepted: {other:?}"),
    }
}

#[test]
fn framing_follows_rfc_9112() {
    let ok = "HTTP/1.1 200 OK\r\n";
    assert_eq!(
        framing(&format!("{ok}content-length: 5\r\n\r\n")),
        (Framing::Length(5), true)
    );
    assert_eq!(
        framing(&format!("{ok}content-length: 5, 5\r\ncontent-length: 5\r\n\r\n")),
        (Framing::Length(5), true)
    );
    assert_eq!(
        framing(&format!("{ok}transfer-encoding: chunked\r\n\r\n")),
        (Framing::Chunked, true)
    );
    assert_eq!(
        framing(&format!("{ok}transfer-encoding: gzip, Chunked\r\n\r\n")),
        (Framing::Chunked, true)
    );
    // Both framings: chunked wins, and the connection is not trusted after it.
    assert_eq!(
        framing(&format!("{ok}transfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n")),
        (Framing::Chunked, false)
    );
    // Not chunked last, or no length at all: the body runs to the close.
    assert_eq!(
        framing(&format!("{ok}transfer-encoding: gzip\r\n\r\n")),
        (Framing::Close, false)
    );
    assert_eq!(framing(&format!("{ok}\r\n")), (Framing::Close, false));
    assert_eq!(
        framing(&format!(
            "{ok}connection: keep-alive, Close\r\ncontent-length: 1\r\n\r\n"
        )),
        (Framing::Length(1), false)
    );
    assert_eq!(
        framing("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n"),
        (Framing::Length(1), false)
    );
    assert_eq!(
        framing("HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n"),
        (Framing::Empty, true)
    );
    assert_eq!(framing("HTTP/1.1 304 Not Modified\r\n\r\n"), (Framing::Empty, true));
    match parse(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", true) {
        Ok(Parsed::Head(h)) => assert_eq!(h.framing, Framing::Empty, "a response to HEAD has no body"),
        other => panic!("{other:?}"),
    }
}

// The fields about the upstream connection are read for the framing and not kept:
// the hop-by-hop ones and those `Connection` names, in any case, whatever their order.
#[test]
fn hop_by_hop_fields_read_and_left_out() {
    let h = head(
        "HTTP/1.1 200 OK\r\nX-Secret: 1\r\nConnection: X-SECRET , keep-alive\r\nKeep-Alive: timeout=5\r\n\
         Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\nUpgrade: h2c\r\nConnection: x-other\r\n\
         X-Other: 2\r\nX-Kept: 3\r\n\r\n",
    );
    assert_eq!((h.framing, h.reusable), (Framing::Chunked, true));
    let names: Vec<_> = h.parts.headers.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["content-type", "x-kept"]);
    let h = head("HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 2\r\n\r\n");
    assert_eq!((h.framing, h.reusable), (Framing::Length(2), false));
    assert_eq!(
        h.parts.headers.get("content-length").unwrap(),
        "2",
        "Content-Length is passed on"
    );
    assert!(h.parts.headers.get("connection").is_none());
    // However many names `Connection` lists, one that names a field of the head counts.
    let many: Vec<String> = (0..300).map(|i| format!("x-{i}")).collect();
    let h = head(&format!(
        "HTTP/1.1 200 OK\r\nConnection: {}, x-late\r\nX-Late: 1\r\nContent-Length: 0\r\n\r\n",
        many.join(", ")
    ));
    assert!(h.parts.headers.get("x-late").is_none());
}

#[test]
fn ambiguous_framing_refused() {
    let ok = "HTTP/1.1 200 OK\r\n";
    for cl in ["5, 6", "-1", "+5", "0x10", "5 5", "", "99999999999999999999"] {
        let e = refused(&format!("{ok}content-length: {cl}\r\n\r\n"));
        assert!(e.contains("Content-Length"), "{cl:?}: {e}");
    }
    assert!(refused(&format!("{ok}content-length: 5\r\ncontent-length: 6\r\n\r\n")).contains("differ"));
    assert!(refused("HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").contains("HTTP/1.0"));
    assert!(refused("HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n").contains("101"));
    assert!(refused("HTTP/1.1 200 OK\r\nbad header\r\n\r\n").contains("malformed"));
    assert!(refused("HTTP/2 200 OK\r\n\r\n").contains("malformed"));
    assert!(
        refused("HTTP/1.1 200 OK\r\nx: a\r\n b\r\n\r\n").contains("malformed"),
        "obs-fold"
    );
}

#[test]
fn heads_whole_interim_partial_and_bounded() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 2\r\n\r\nhi"[..]);
    let mut scratch = Vec::new();
    assert!(matches!(
        parse_response(&mut buf, false, &mut scratch),
        Ok(Parsed::Interim)
    ));
    let Ok(Parsed::Head(h)) = parse_response(&mut buf, false, &mut scratch) else {
        panic!("no final head")
    };
    assert_eq!(h.parts.status, StatusCode::OK);
    let values: Vec<_> = h.parts.headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(&buf[..], b"hi", "the body's bytes stay in the buffer");

    assert!(matches!(
        parse(b"HTTP/1.1 200 OK\r\ncontent-le", false),
        Ok(Parsed::Partial)
    ));
    // More fields than the first try makes room for, and more than allowed.
    let many = |n: usize| {
        let mut s = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..n {
            s.push_str(&format!("x-{i}: {i}\r\n"));
        }
        s + "content-length: 0\r\n\r\n"
    };
    assert_eq!(head(&many(60)).parts.headers.len(), 61);
    assert!(refused(&many(100)).contains("100"));
    // A head that never ends is cut off at the limit.
    let mut long = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
    long.resize(MAX_HEAD + 1, b'a');
    assert!(matches!(parse(&long, false), Err(super::head::HeadError::TooLarge)));
}

#[test]
fn request_head_written_in_origin_form() {
    let mut headers = HeaderMap::new();
    headers.insert("host", "shop:8080".parse().unwrap());
    headers.append("x-b", "1".parse().unwrap());
    headers.append("x-b", "2".parse().unwrap());
    let mut out = Vec::new();
    encode_request(&Method::GET, "/a?b=c", None, &headers, &mut out);
    assert_eq!(
        out,
        b"GET /a?b=c HTTP/1.1\r\nhost: shop:8080\r\nx-b: 1\r\nx-b: 2\r\n\r\n"
    );
}

#[test]
fn a_written_head_gives_back_the_request_it_was_written_from() {
    let req = http::Request::builder()
        .method(Method::HEAD)
        .uri("http://shop:8080/a/b?c=d&e")
        .header("host", "shop:8080")
        .header("x-b", "1")
        .header("x-b", "2")
        .header("x-forwarded-for", "10.0.0.1")
        .body(())
        .unwrap();
    let mut written = Written::new(&req, None, Vec::with_capacity(7));
    assert!(written.head_request);
    let parts = written.to_parts().unwrap();
    assert_eq!(parts.method, Method::HEAD);
    // In origin form, as it was written.
    assert_eq!(parts.uri, "/a/b?c=d&e");
    assert_eq!(parts.headers, *req.headers());
    let order: Vec<_> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(
        order,
        [
            ("host", "shop:8080"),
            ("x-b", "1"),
            ("x-b", "2"),
            ("x-forwarded-for", "10.0.0.1")
        ]
    );
    let get = http::Request::get("/").body(()).unwrap();
    assert!(!Written::new(&get, None, written.take_buffer()).head_request);
}

/// Decodes `input` fed in pieces of `piece` bytes; the body's bytes, or the error.
fn decode(framing: Framing, input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), String> {
    let mut decoder = Decoder::new(framing);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    loop {
        match decoder.step(&mut buf).map_err(|e| e.to_string())? {
            Step::Data(d) => out.extend_from_slice(&d),
            Step::Done => return Ok((out, buf.len() + input.len() - fed)),
            Step::More if fed == input.len() => {
                decoder.closed().map_err(|e| e.to_string())?;
            }
            Step::More => {
                let n = piece.min(input.len() - fed);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
        }
    }
}

#[test]
fn bodies_decode_the_same_in_any_pieces() {
    let chunked = b"5;name=\"v\"\r\nhello\r\n6 \t; x\r\n world\r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\nx-u: 2\r\n\r\nNEXT";
    for piece in [1, 2, 3, 7, 64, 1 << 20] {
        let (body, left) = decode(Framing::Chunked, chunked, piece).unwrap();
        assert_eq!(body, b"hello world0123456789", "piece {piece}");
        assert_eq!(left, 4, "what follows the body is left unread");
        let (body, left) = decode(Framing::Length(5), b"abcdefg", piece).unwrap();
        assert_eq!((&body[..], left), (&b"abcde"[..], 2));
        let (body, left) = decode(Framing::Close, b"to the end", piece).unwrap();
        assert_eq!((&body[..], left), (&b"to the end"[..], 0));
    }
    assert_eq!(decode(Framing::Chunked, b"0\r\n\r\n", 1).unwrap().0, b"");
    assert_eq!(decode(Framing::Empty, b"", 1).unwrap().0, b"");
}

#[test]
fn malformed_bodies_refused() {
    let bad: [&[u8]; 11] = [
        b"5\r\nhelloXX0\r\n\r\n",          // no CRLF after the data
        b"5\nhello\r\n0\r\n\r\n",          // bare LF
        b"5\rx\nhello\r\n0\r\n\r\n",       // bare CR
        b"\r\nhello\r\n0\r\n\r\n",         // no size
        b"-5\r\nhello\r\n0\r\n\r\n",       // not hex
        b"5 5\r\nhello\r\n0\r\n\r\n",      // two numbers
        b"5;a\x00b\r\nhello\r\n0\r\n\r\n", // control character in an extension
        b"1000000000000000\r\n",           // 16 hex digits
        b"5\r\nhel",                       // closed mid-chunk
        b"0\r\nx-t: \x01\r\n\r\n",         // control character in a trailer
        b"0\r\nx-t: 1\r\n",                // closed in the trailers
    ];
    for input in bad {
        for piece in [1, 4, 1 << 20] {
            assert!(
                decode(Framing::Chunked, input, piece).is_err(),
                "{:?} in pieces of {piece}",
                Bytes::from(input)
            );
        }
    }
    let mut long = b"5;".to_vec();
    long.resize(5000, b'a');
    assert!(decode(Framing::Chunked, &long, 1 << 20)
        .unwrap_err()
        .contains("too long"));
    assert!(decode(Framing::Length(10), b"short", 2)
        .unwrap_err()
        .contains("before the body's end"));
}

/// A field's span is its offsets in the head when it lies within the head's length, and
/// nothing when it runs past it or is not part of the buffer at all.
#[test]
fn spans_lie_within_the_head() {
    use super::head::span;
    let buf = b"HTTP/1.1 200 OK\r\nx-a: 1\r\n\r\nbody".as_slice();
    let len = buf.len() - 4;
    assert_eq!(span(buf, &buf[22..23], len), Some((22, 23)));
    assert_eq!(span(buf, &buf[len..len], len), Some((len, len)));
    assert_eq!(span(buf, &buf[len - 1..len + 1], len), None);
    assert_eq!(span(buf, &buf[len + 1..], len), None);
    let elsewhere = b"1".to_vec();
    assert_eq!(span(buf, &elsewhere, len), None);
}
