//! A record's bytes, built once: the event's fields are encoded where the event happens
//! ([`Fields`], one buffer, from borrowed text), and the writer puts the sequence number,
//! time and chain hashes around them ([`Record::encode`]). The bytes are those of
//! `serde_json::to_vec` of the [`Record`], so `audit verify` and `audit list` read them
//! as they always did.

use std::borrow::Cow;
use std::io::Write as _;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

use super::{Event, EventKind, Record};

/// An [`Event`] as borrowed text: the same fields, in the same order, omitted when
/// absent, so that it encodes to the same JSON.
#[derive(Serialize)]
pub struct EventRef<'a> {
    pub event: &'a str,
    pub outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<Address<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// A record's client address: an address, written as it is formatted with no string
/// made of it first, or text (an [`Event`]'s).
#[derive(Debug, Clone, Copy)]
pub enum Address<'a> {
    Ip(IpAddr),
    Text(&'a str),
}

impl Serialize for Address<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Ip(ip) => s.collect_str(ip),
            Self::Text(t) => s.serialize_str(t),
        }
    }
}

impl EventRef<'_> {
    /// An event of `kind` with no other field.
    pub fn new(kind: EventKind) -> Self {
        Self {
            event: kind.name(),
            outcome: kind.outcome().as_str(),
            user_id: None,
            email: None,
            ip: None,
            method: None,
            path: None,
            route: None,
            status: None,
            reason: None,
            request_id: None,
            latency_ms: None,
        }
    }
}

impl Event {
    /// The event as borrowed text.
    pub fn borrowed(&self) -> EventRef<'_> {
        EventRef {
            event: &self.event,
            outcome: &self.outcome,
            user_id: self.user_id.as_deref(),
            email: self.email.as_deref(),
            ip: self.ip.as_deref().map(Address::Text),
            method: self.method.as_deref(),
            path: self.path.as_deref(),
            route: self.route.as_deref(),
            status: self.status,
            reason: self.reason.as_deref(),
            request_id: self.request_id.as_deref(),
            latency_ms: self.latency_ms,
        }
    }
}

/// An event's JSON (whose fields, without the braces, go inside its record), and its
/// name, which the queue counts by when it drops one.
#[derive(Debug, Clone)]
pub struct Fields {
    pub(super) name: Cow<'static, str>,
    pub(super) bytes: Vec<u8>,
}

impl Fields {
    /// The fields of `event`, whose name is `kind`'s (so no copy of the name is made).
    pub fn of_kind(kind: EventKind, event: &EventRef<'_>) -> Self {
        debug_assert_eq!(kind.name(), event.event);
        Self {
            name: Cow::Borrowed(kind.name()),
            bytes: encode_fields(event),
        }
    }
}

impl From<Event> for Fields {
    fn from(event: Event) -> Self {
        let bytes = encode_fields(&event.borrowed());
        Self {
            name: Cow::Owned(event.event),
            bytes,
        }
    }
}

/// `serde_json::to_vec(event)`, written field by field: the same keys in the same order,
/// absent ones left out, text escaped as serde_json escapes it. Text with nothing to
/// escape (nearly all of it) is copied whole instead of looked at byte by byte, which is
/// most of what encoding an event costs.
fn encode_fields(event: &EventRef<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(320);
    out.extend_from_slice(b"{\"event\":");
    text(&mut out, event.event);
    out.extend_from_slice(b",\"outcome\":");
    text(&mut out, event.outcome);
    texts(
        &mut out,
        &[(b",\"user_id\":", event.user_id), (b",\"email\":", event.email)],
    );
    if let Some(ip) = event.ip {
        out.extend_from_slice(b",\"ip\":");
        address(&mut out, ip);
    }
    texts(
        &mut out,
        &[
            (b",\"method\":", event.method),
            (b",\"path\":", event.path),
            (b",\"route\":", event.route),
        ],
    );
    if let Some(status) = event.status {
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    }
    texts(
        &mut out,
        &[(b",\"reason\":", event.reason), (b",\"request_id\":", event.request_id)],
    );
    if let Some(ms) = event.latency_ms {
        out.extend_from_slice(b",\"latency_ms\":");
        out.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes());
    }
    out.push(b'}');
    out
}

/// Each text field that is present, as its key (`,"name":`, every key after the first
/// two, which are always there) and `"value"`, in the order given.
fn texts(out: &mut Vec<u8>, fields: &[(&[u8], Option<&str>)]) {
    for (key, value) in fields {
        if let Some(value) = value {
            out.extend_from_slice(key);
            text(out, value);
        }
    }
}

/// `ip` as a JSON string. An IPv4 address is written octet by octet (what its `Display`
/// writes, without the formatting machinery, which cost a third of encoding the
/// fields); an IPv6 one as it is formatted: hex digits, colons and dots, nothing to
/// escape.
fn address(out: &mut Vec<u8>, ip: Address<'_>) {
    match ip {
        Address::Ip(IpAddr::V4(v4)) => {
            let [a, b, c, d] = v4.octets();
            out.push(b'"');
            for (i, octet) in [a, b, c, d].into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
            }
            out.push(b'"');
        }
        // Writing into a Vec cannot fail.
        Address::Ip(v6) => {
            let _ = write!(out, "\"{v6}\"");
        }
        Address::Text(t) => text(out, t),
    }
}

/// `value` as a JSON string, byte for byte as serde_json writes it: copied whole when it
/// holds nothing serde_json escapes (control characters, `"` and `\\`; it leaves DEL
/// and non-ASCII as they are), else written by serde_json.
fn text(out: &mut Vec<u8>, value: &str) {
    if escapes(value.as_bytes()) {
        let _ = serde_json::to_writer(out, value);
    } else {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    }
}

/// Whether `text` holds a byte serde_json escapes: one below 0x20, `"` or `\\`.
pub(super) fn escapes(text: &[u8]) -> bool {
    crate::json_text::special(text).is_some()
}

impl Fields {
    /// The fields without the braces: never empty, as the event and outcome are always
    /// there.
    fn inner(&self) -> &[u8] {
        self.bytes
            .get(1..self.bytes.len().saturating_sub(1))
            .unwrap_or_default()
    }
}

/// `path` cut to its first 2048 characters, as records keep it.
pub fn clip(path: &str) -> &str {
    const MOST: usize = 2048;
    if path.len() <= MOST {
        return path;
    }
    match path.char_indices().nth(MOST) {
        Some((end, _)) => &path[..end],
        None => path,
    }
}

impl Record {
    /// The stored bytes and hash of the record `seq` of the event `fields` at `time`
    /// chained onto `prev_hash`: byte for byte `serde_json::to_vec` of the [`Record`]
    /// with [`Record::compute_hash`] as its hash.
    pub fn encode(seq: u64, time: &str, fields: &Fields, prev_hash: &str) -> (Vec<u8>, String) {
        let mut bytes = Vec::with_capacity(fields.bytes.len() + time.len() + 180);
        bytes.extend_from_slice(b"{\"seq\":");
        bytes.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
        bytes.extend_from_slice(b",\"time\":");
        text(&mut bytes, time);
        bytes.push(b',');
        bytes.extend_from_slice(fields.inner());
        bytes.extend_from_slice(b",\"prev_hash\":");
        text(&mut bytes, prev_hash);
        // Hashed with `hash` empty; the hash then goes between its quotes (hex needs no
        // escaping, so this is what encoding the hashed record gives).
        bytes.extend_from_slice(b",\"hash\":\"\"}");
        let hash = super::hex_sha256(&bytes);
        bytes.truncate(bytes.len() - 2);
        bytes.extend_from_slice(hash.as_bytes());
        bytes.extend_from_slice(b"\"}");
        (bytes, hash)
    }
}
