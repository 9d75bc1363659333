//! The JSON side of response filtering: one pass over the upstream's bytes that writes
//! out only the allowed top-level fields, in their original order.
//!
//! Kept values are copied as the upstream wrote them (borrowed as [`RawValue`], never
//! re-serialised); only the object punctuation around them is written anew. A top-level
//! array has each object element filtered the same way, its other elements kept; any
//! other JSON value has no fields and is kept whole. Bytes that are not one JSON value
//! are an error: the caller refuses them.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// `input` with every top-level field `allowed` refuses removed (from the object, or
/// from each object of a top-level array). `None`: the value has no fields to remove
/// (a scalar), and `input` is the answer as it is.
pub fn filter(input: &[u8], allowed: &dyn Fn(&str) -> bool) -> Result<Option<Vec<u8>>, serde_json::Error> {
    let first = input.iter().find(|b| !b.is_ascii_whitespace());
    let mut out = Vec::with_capacity(input.len());
    let mut de = serde_json::Deserializer::from_slice(input);
    match first {
        Some(b'{') => de.deserialize_map(Object { out: &mut out, allowed })?,
        Some(b'[') => de.deserialize_seq(Array { out: &mut out, allowed })?,
        _ => {
            // Checked to be one JSON value, then kept as it is.
            <&RawValue as serde::Deserialize>::deserialize(&mut de)?;
            de.end()?;
            return Ok(None);
        }
    }
    de.end()?;
    Ok(Some(out))
}

/// Filters one object's bytes into `out`. `raw` is one JSON object that has already been
/// read as valid JSON (an array element, borrowed as [`RawValue`]), so its members are
/// found by a plain scan instead of a second parse; a name with escapes is decoded by
/// serde_json before it is judged.
fn filter_object(raw: &str, out: &mut Vec<u8>, allowed: &dyn Fn(&str) -> bool) -> Result<(), serde_json::Error> {
    let b = raw.as_bytes();
    let broken = || <serde_json::Error as serde::de::Error>::custom("malformed object");
    let mut i = skip_ws(b, 1);
    out.push(b'{');
    let mut first = true;
    while b.get(i) == Some(&b'"') {
        let key_end = string_end(b, i).ok_or_else(broken)?;
        // The name with its quotes.
        let quoted = raw.get(i..key_end).ok_or_else(broken)?;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return Err(broken());
        }
        let value_start = skip_ws(b, i + 1);
        let value_end = value_end(b, value_start).ok_or_else(broken)?;
        let name = &quoted[1..quoted.len() - 1];
        let keep = if name.contains('\\') {
            allowed(&serde_json::from_str::<String>(quoted)?)
        } else {
            allowed(name)
        };
        if keep {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(quoted.as_bytes());
            out.push(b':');
            out.extend_from_slice(&b[value_start..value_end]);
        }
        i = skip_ws(b, value_end);
        if b.get(i) == Some(&b',') {
            i = skip_ws(b, i + 1);
        }
    }
    if b.get(i) != Some(&b'}') {
        return Err(broken());
    }
    out.push(b'}');
    Ok(())
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index just past the string that opens at `start` (a `"`).
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
        match b[i] {
            b'"' => return Some(i + 1),
            _ => i += 2,
        }
    }
}

/// The index just past the (valid) JSON value that starts at `start`.
fn value_end(b: &[u8], start: usize) -> Option<usize> {
    match b.get(start)? {
        b'"' => string_end(b, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match b.get(i)? {
                    b'"' => {
                        i = string_end(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = start;
            while b
                .get(i)
                .is_some_and(|c| !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

struct Object<'o, 'f> {
    out: &'o mut Vec<u8>,
    allowed: &'f dyn Fn(&str) -> bool,
}

impl<'de> Visitor<'de> for Object<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.out.push(b'{');
        let mut first = true;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value: &RawValue = map.next_value()?;
            if !(self.allowed)(key.as_str()) {
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            match key {
                // Read without escapes: its text is the name itself.
                Key::Borrowed(name) => {
                    self.out.push(b'"');
                    self.out.extend_from_slice(name.as_bytes());
                    self.out.push(b'"');
                }
                Key::Owned(name) => {
                    serde_json::to_writer(&mut *self.out, &name).map_err(serde::de::Error::custom)?;
                }
            }
            self.out.push(b':');
            self.out.extend_from_slice(value.get().as_bytes());
        }
        self.out.push(b'}');
        Ok(())
    }
}

struct Array<'o, 'f> {
    out: &'o mut Vec<u8>,
    allowed: &'f dyn Fn(&str) -> bool,
}

impl<'de> Visitor<'de> for Array<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        let mut first = true;
        while let Some(element) = seq.next_element::<&RawValue>()? {
            if !first {
                self.out.push(b',');
            }
            first = false;
            let text = element.get();
            if text.starts_with('{') {
                filter_object(text, self.out, self.allowed).map_err(serde::de::Error::custom)?;
            } else {
                self.out.extend_from_slice(text.as_bytes());
            }
        }
        self.out.push(b']');
        Ok(())
    }
}

/// A field name: borrowed from the input when it has no escapes, decoded otherwise.
/// Decoded names are what the allow-list is checked against (`"s\u0065cret"` is
/// `secret`), as they are what a client reads.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::filter;

    fn run(input: &str, keep: &[&str]) -> String {
        let allowed = |name: &str| keep.contains(&name);
        match filter(input.as_bytes(), &allowed).unwrap() {
            Some(out) => String::from_utf8(out).unwrap(),
            None => input.to_owned(),
        }
    }

    #[test]
    fn keeps_allowed_fields_in_order_with_their_text() {
        let input = r#" { "b" : [1, 2.50, {"x": 1}], "secret": {"k": "v"}, "a": "\u00e9" } "#;
        assert_eq!(run(input, &["a", "b"]), r#"{"b":[1, 2.50, {"x": 1}],"a":"\u00e9"}"#);
        assert_eq!(run(r#"{"secret":1}"#, &["a"]), "{}");
    }

    #[test]
    fn arrays_filter_their_objects_and_keep_other_elements() {
        let input = r#"[{"id":1,"cost":2},3,"s",[{"cost":1}],null,{"cost":5}]"#;
        assert_eq!(run(input, &["id"]), r#"[{"id":1},3,"s",[{"cost":1}],null,{}]"#);
        assert_eq!(run("[]", &["id"]), "[]");
        // Elements are scanned, not parsed again: spacing, nesting, strings holding
        // brackets, quotes and escaped names.
        let input = r#"[ { "id" : 1 , "n" : { "x" : "}]\"" } , "s\u0065cret" : [1, {"a": "]"}], "z": -1.5e3 } , {} ]"#;
        assert_eq!(
            run(input, &["id", "n", "z"]),
            r#"[{"id":1,"n":{ "x" : "}]\"" },"z":-1.5e3},{}]"#
        );
        assert_eq!(run(input, &["secret"]), r#"[{"s\u0065cret":[1, {"a": "]"}]},{}]"#);
    }

    #[test]
    fn escaped_names_are_judged_decoded() {
        assert_eq!(run(r#"{"s\u0065cret":1,"\u0069d":2}"#, &["id"]), r#"{"id":2}"#);
    }

    #[test]
    fn scalars_pass_and_broken_input_is_refused() {
        assert_eq!(run(" 42 ", &[]), " 42 ");
        let refuse = |_: &str| false;
        for bad in [
            "",
            "{",
            "{\"a\":1} x",
            "<html>",
            "[1,]",
            "{\"a\":1,}",
            "[{\"a\":}]",
            "\"\\x\"",
        ] {
            assert!(filter(bad.as_bytes(), &refuse).is_err(), "{bad:?}");
        }
    }
}
