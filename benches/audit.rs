//! What one audit record costs, part by part: encoding the event's fields as the request
//! path does, putting the record around them and hashing it (the writer), and appending
//! it to the sled store (its trail file) in batches of 1, 16, 128 and 512 records (one
//! `audit_append`, as the writer makes per batch). Prints microseconds per record. `RECORDS=N` sets how many records each part
//! measures (20,000).

use std::time::Instant;

use portcullis::audit::{Address, EventKind, EventRef, Fields, Record, GENESIS};

/// The fields of an audited request's record, from borrowed text as the pipeline has it.
fn fields(ip: &std::net::IpAddr, path: &str, request_id: &str) -> Fields {
    let mut ev = EventRef::new(EventKind::Request);
    ev.user_id = Some("0192f1f6-5a3c-7d2e-9b1a-3c4d5e6f7a8b");
    ev.email = Some("customer@example.com");
    ev.ip = Some(Address::Ip(*ip));
    ev.method = Some("GET");
    ev.path = Some(path);
    ev.route = Some("audited");
    ev.status = Some(200);
    ev.request_id = Some(request_id);
    ev.latency_ms = Some(1);
    Fields::of_kind(EventKind::Request, &ev)
}

fn per_record(label: &str, n: usize, started: Instant) {
    let us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("{label:<44} {us:>8.2} µs/record");
}

fn main() {
    let n: usize = std::env::var("RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let time = portcullis::audit::rfc3339(1_764_000_000_000);

    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let paths: Vec<(String, String)> = (0..n)
        .map(|i| (format!("/api/audited/{i}"), format!("01J{i:023}")))
        .collect();
    let started = Instant::now();
    let events: Vec<Fields> = paths.iter().map(|(p, id)| fields(&ip, p, id)).collect();
    per_record("encode the event's fields", n, started);

    let started = Instant::now();
    let mut prev = GENESIS.to_owned();
    let mut encoded = Vec::with_capacity(n);
    for (seq, ev) in (1u64..).zip(&events) {
        let (bytes, hash) = Record::encode(seq, &time, ev, &prev);
        encoded.push((seq, bytes));
        prev = hash;
    }
    per_record("encode and hash", n, started);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for batch in [1usize, 16, 128, 512] {
        let dir = tempfile::tempdir().unwrap();
        let store = portcullis::store::Store::open(dir.path()).unwrap();
        let started = Instant::now();
        rt.block_on(async {
            for chunk in encoded.chunks(batch) {
                let mut records = Some(chunk.to_vec());
                let mut chain = |_head: Option<(u64, Vec<u8>)>| records.take().unwrap_or_default();
                store.backend().audit_append(&mut chain).await.unwrap();
            }
            store.flush().await.unwrap();
        });
        per_record(&format!("append to the store, {batch} a batch, and flush"), n, started);
    }
}
