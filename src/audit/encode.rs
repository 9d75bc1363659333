//! A record's bytes, built once: the event's fields are encoded where the event happens
//! ([`Fields`], one buffer, from borrowed text), and the writer puts the sequence number,
//! time and chain hashes around them ([`Record::encode`]). The bytes are those of
//! `serde_json::to_vec` of the [`Record`], so `audit verify` and `audit list` read them
//! as they always did.

use std::borrow::Cow;
use std::fmt::Display;

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
    /// Anything shown as text (an address is written as it is formatted, with no
    /// string made of it first).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_text")]
    pub ip: Option<&'a dyn Display>,
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

fn as_text<S: Serializer>(value: &Option<&dyn Display>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
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
            ip: self.ip.as_ref().map(|s| s as &dyn Display),
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
    texts(&mut out, &[("user_id", event.user_id), ("email", event.email)]);
    if let Some(ip) = event.ip {
        key(&mut out, "ip");
        // Formatted and escaped as it is written; encoding into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &format_args!("{ip}"));
    }
    texts(
        &mut out,
        &[("method", event.method), ("path", event.path), ("route", event.route)],
    );
    if let Some(status) = event.status {
        key(&mut out, "status");
        out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    }
    texts(&mut out, &[("reason", event.reason), ("request_id", event.request_id)]);
    if let Some(ms) = event.latency_ms {
        key(&mut out, "latency_ms");
        out.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes());
    }
    out.push(b'}');
    out
}

/// Each text field that is present, as `,"name":"value"`, in the order given.
fn texts(out: &mut Vec<u8>, fields: &[(&str, Option<&str>)]) {
    for (name, value) in fields {
        if let Some(value) = value {
            key(out, name);
            text(out, value);
        }
    }
}

/// `,"name":` (every key after the first two, which are always there).
fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// `value` as a JSON string, byte for byte as serde_json writes it: copied whole when it
/// holds nothing serde_json escapes (control characters, `"` and `\\`; it leaves DEL
/// and non-ASCII as they are), else written by serde_json.
fn text(out: &mut Vec<u8>, value: &str) {
    // No early exit, so the scan runs many bytes at a time.
    let plain = value
        .bytes()
        .fold(true, |plain, b| plain & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(out, value);
    }
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
