//! Unit tests of a record's encoding: the one-pass form is byte for byte serde_json's,
//! from owned or borrowed text, for every character.

use super::*;

/// The writer's one-pass encoding is byte for byte the record's JSON with its
/// canonical hash, for an event with every field, with none, and with text to escape.
/// An event encoded from borrowed text where it happens (an address formatted in
/// place) is the same record.
#[test]
fn one_pass_encoding_is_the_canonical_record() {
    let mut full = Event::new(EventKind::Request);
    full.user_id = Some("u1".into());
    full.email = Some("a\"b\\c\u{1}@example.com".into());
    full.ip = Some("127.0.0.1".into());
    full.method = Some("GET".into());
    full.path = Some("/api/ünï/\n".into());
    full.route = Some("r".into());
    full.status = Some(200);
    full.reason = Some("why".into());
    full.request_id = Some("rid".into());
    full.latency_ms = Some(7);
    for event in [full, Event::new(EventKind::AuditOverflow), Event::default()] {
        let time = rfc3339(1_700_000_000_123);
        let (bytes, hash) = Record::encode(42, &time, &Fields::from(event.clone()), GENESIS);
        let mut record = Record {
            seq: 42,
            time,
            event,
            prev_hash: GENESIS.to_owned(),
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        assert_eq!(hash, record.hash);
        assert_eq!(bytes, serde_json::to_vec(&record).unwrap());
        let back: Record = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.compute_hash(), hash);
    }
}

/// The field-by-field encoding is serde_json's, byte for byte: for every ASCII character
/// (those it escapes and those it does not), non-ASCII text, every field present and
/// every field absent; addresses of either family, or as text.
#[test]
fn field_encoding_is_serde_jsons() {
    let ips: Vec<std::net::IpAddr> = [
        "192.0.2.7",
        "0.0.0.0",
        "255.10.100.1",
        "2001:db8::1",
        "::ffff:10.0.0.1",
        "::",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    let mut texts: Vec<String> = (0u8..=0x7f).map(|b| format!("a{}b", b as char)).collect();
    texts.extend(["".into(), "ünï/€/😀".into(), "\u{2028}\u{2029}".into(), "x".repeat(300)]);
    for t in texts.iter().map(String::as_str) {
        let mut ev = EventRef::new(EventKind::Request);
        (ev.user_id, ev.email, ev.method, ev.path) = (Some(t), Some(t), Some(t), Some(t));
        (ev.route, ev.reason, ev.request_id) = (Some(t), Some(t), Some(t));
        (ev.status, ev.latency_ms) = (Some(404), Some(u64::MAX));
        let addresses = ips.iter().map(|ip| Address::Ip(*ip)).chain([Address::Text(t)]);
        for address in addresses {
            ev.ip = Some(address);
            assert_eq!(
                Fields::of_kind(EventKind::Request, &ev).bytes,
                serde_json::to_vec(&ev).unwrap(),
                "{t:?} {address:?}"
            );
        }
    }
    let bare = EventRef::new(EventKind::AuditOverflow);
    assert_eq!(
        Fields::of_kind(EventKind::AuditOverflow, &bare).bytes,
        serde_json::to_vec(&bare).unwrap()
    );
}

/// The request path's encoding (borrowed text, the address formatted in place, the path
/// clipped) gives the fields an [`Event`] with the same values gives.
#[test]
fn borrowed_fields_are_the_events() {
    let long = format!("/{}", "é".repeat(3000));
    let paths = ["/api/orders/7", "/a\"b\u{7f}", long.as_str()];
    for (path, ip) in paths
        .into_iter()
        .flat_map(|p| ["2001:db8::1", "203.0.113.200"].map(|ip| (p, ip)))
    {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let mut ev = EventRef::new(EventKind::AccessDenied);
        ev.ip = Some(Address::Ip(ip));
        ev.path = Some(clip(path));
        ev.status = Some(403);
        ev.reason = Some("no route");
        let fields = Fields::of_kind(EventKind::AccessDenied, &ev);
        let mut event = Event::new(EventKind::AccessDenied);
        event.ip = Some(ip.to_string());
        event.path = Some(path.chars().take(2048).collect());
        event.status = Some(403);
        event.reason = Some("no route".into());
        assert_eq!(fields.bytes, Fields::from(event.clone()).bytes);
        let json = serde_json::to_vec(&event).unwrap();
        assert_eq!(fields.bytes, json);
        assert_eq!(fields.name, "access_denied");
    }
    assert_eq!(clip(&long).chars().count(), 2048);
}

/// The word-at-a-time test finds a byte serde_json escapes wherever it is (in a word or
/// in the tail, at any of a word's eight places), among bytes of every other value,
/// and finds none where there is none.
#[test]
fn escapes_finds_every_byte_to_escape() {
    let escaped = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    use super::encode::escapes;
    for len in 0..=24 {
        for fill in [b'a', 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']', 0x20] {
            assert!(!escapes(&vec![fill; len]), "{len} x {fill:#x}");
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut text = vec![fill; len];
                    text[at] = b;
                    assert_eq!(escapes(&text), escaped(b), "{b:#x} at {at} of {len}, among {fill:#x}");
                }
            }
        }
    }
}
