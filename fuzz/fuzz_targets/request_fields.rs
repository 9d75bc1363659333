//! A route's `request_fields` check on any body: it never panics; a body it passes is a
//! JSON object whose top-level keys are all listed, each once; a body it calls not JSON
//! does not parse; a refused field name is bounded and free of control characters.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::error::FieldRefusal;
use portcullis::pipeline::forward::request_fields::check;
use portcullis::policy::FieldList;

fuzz_target!(|data: &[u8]| {
    let list = FieldList::new(["name", "address", "phone", "n\u{e9}"].map(String::from));
    match check(data, &list) {
        Ok(()) => {
            // A value nested deeper than serde_json's tree allows is skipped by the check.
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(data) {
                assert!(map.keys().all(|k| list.contains(k)), "{map:?}");
            }
            assert!(serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok());
        }
        Err(FieldRefusal::NotJson) => {
            let object = data.iter().find(|b| !b" \t\n\r".contains(b)) == Some(&b'{');
            if !object {
                assert!(serde_json::from_slice::<serde::de::IgnoredAny>(data).is_err());
            }
        }
        Err(FieldRefusal::NotObject) => {
            assert!(serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok());
        }
        Err(FieldRefusal::Unknown(name) | FieldRefusal::Duplicate(name)) => {
            assert!(name.chars().count() <= 65, "{name:?}");
            assert!(!name.chars().any(char::is_control), "{name:?}");
        }
    }
});
