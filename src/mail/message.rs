//! One message as the spool keeps it: built with lettre's message builder, and stored
//! behind a first line holding its envelope (`<sender> <recipient>`).

use std::time::SystemTime;

use lettre::address::Envelope;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
use lettre::{Address, Message};

/// A spooled message, read back for delivery.
pub struct Spooled {
    pub envelope: Envelope,
    /// The RFC 5322 message, as built.
    pub bytes: Vec<u8>,
}

impl Spooled {
    /// The recipient, for the log and the audit trail.
    pub fn recipient(&self) -> String {
        self.envelope.to().first().map(ToString::to_string).unwrap_or_default()
    }
}

/// Builds a text/plain UTF-8 message from `from` to `to`, dated `date`, with the
/// Message-ID `<id@domain of from>`. Returns the spool file's contents.
pub fn build(
    from: &Mailbox,
    to: &str,
    subject: &str,
    body: &str,
    date: SystemTime,
    id: &str,
) -> Result<Vec<u8>, String> {
    let to: Address = to.parse().map_err(|e| format!("not a mail address: {e}"))?;
    let body = seven_bit(body).unwrap_or_else(|| Body::new(body.to_owned()));
    let message = Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to.clone()))
        .subject(subject)
        .date(date)
        .message_id(Some(format!("<{id}@{}>", from.email.domain())))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| format!("cannot build the message: {e}"))?;
    let mut out = format!("{} {}\n", from.email, to).into_bytes();
    out.extend_from_slice(&message.formatted());
    Ok(out)
}

/// The body as 7bit when RFC 2045 allows it (ASCII without NUL or a lone CR, lines of at
/// most 998 octets), so links stay as they are; lettre would pick quoted-printable for
/// any line over 76 characters, which breaks a long link for readers of the raw text.
fn seven_bit(body: &str) -> Option<Body> {
    let text = body.replace("\r\n", "\n");
    let fits = text.bytes().all(|b| b.is_ascii() && b != 0 && b != b'\r') && text.split('\n').all(|l| l.len() <= 998);
    fits.then(|| {
        let mut crlf = text.replace('\n', "\r\n");
        if !crlf.ends_with("\r\n") {
            crlf.push_str("\r\n");
        }
        Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::SevenBit)
    })
}

/// Reads back what [`build`] wrote; `None` when the file is not a spooled message.
pub fn parse(file: &[u8]) -> Option<Spooled> {
    let nl = file.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&file[..nl]).ok()?;
    let (from, to) = line.split_once(' ')?;
    let from: Address = from.parse().ok()?;
    let to: Address = to.parse().ok()?;
    let envelope = Envelope::new(Some(from), vec![to]).ok()?;
    Some(Spooled {
        envelope,
        bytes: file[nl + 1..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A built message parses back to its envelope, with the headers the contract names.
    #[test]
    fn build_then_parse() {
        let from: Mailbox = "Shop <no-reply@shop.example>".parse().unwrap();
        let link = format!("https://shop.example/auth/confirm?token={}", "a".repeat(43));
        let file = build(
            &from,
            "you@example.com",
            "Confirm",
            &format!("Open {link}\n"),
            SystemTime::now(),
            "abc",
        )
        .unwrap();
        let m = parse(&file).unwrap();
        assert_eq!(m.recipient(), "you@example.com");
        assert_eq!(m.envelope.from().unwrap().to_string(), "no-reply@shop.example");
        let text = String::from_utf8(m.bytes).unwrap();
        for h in [
            "From: Shop <no-reply@shop.example>",
            "To: you@example.com",
            "Subject: Confirm",
            "Date: ",
            "Message-ID: <abc@shop.example>",
            "Content-Type: text/plain; charset=utf-8",
        ] {
            assert!(text.contains(h), "{h} missing in {text}");
        }
        assert!(text.contains(&link), "the link is not intact: {text}");
        assert!(text.contains("Content-Transfer-Encoding: 7bit"), "{text}");
        // Text that 7bit cannot carry is still sent, encoded by lettre.
        let file = build(&from, "you@example.com", "Grüße", "Grüße\n", SystemTime::now(), "u").unwrap();
        assert!(parse(&file).is_some());
        assert!(build(&from, "not an address", "s", "b", SystemTime::now(), "x").is_err());
        assert!(parse(b"garbage").is_none());
    }
}
