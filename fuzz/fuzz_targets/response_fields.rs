//! A route's `response_fields` filter on any body: it never panics; what it keeps of a JSON
//! object, or of each object of a top-level array, is exactly the listed fields with their
//! values; anything it accepts is JSON, and JSON it is given is accepted.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::pipeline::forward::response_fields::json::filter;
use serde_json::Value;

const KEEP: [&str; 4] = ["id", "name", "n\u{e9}", ""];

fn expected(value: Value) -> Value {
    let keep = |v: Value| match v {
        Value::Object(map) => Value::Object(map.into_iter().filter(|(k, _)| KEEP.contains(&k.as_str())).collect()),
        other => other,
    };
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(keep).collect()),
        other => keep(other),
    }
}

fuzz_target!(|data: &[u8]| {
    let allowed = |name: &str| KEEP.contains(&name);
    let filtered = filter(data, &allowed);
    // serde_json's tree refuses what is nested too deep; the filter does not build one.
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let out = match filtered {
        Ok(Some(out)) => out,
        Ok(None) => data.to_vec(),
        Err(e) => panic!("valid JSON refused: {e}"),
    };
    let got: Value = serde_json::from_slice(&out).expect("the filter wrote JSON");
    assert_eq!(got, expected(value));
});
