//! The JSON side of response filtering: one pass over the upstream's bytes that checks
//! they are one JSON value ([`scan`]: as strictly as serde_json reads it) and writes out
//! only the allowed top-level fields, in their original order.
//!
//! Kept members are copied as the upstream wrote them, name and value (and what lies
//! between members kept one after another); only the object punctuation around them is
//! written anew. A top-level array has each object element filtered the same way, its
//! other elements kept; any other JSON value has no fields and is kept whole. Bytes that
//! are not one JSON value are an error: the caller refuses them. A name with escapes is
//! decoded (by serde_json) before it is judged: `"s\u0065cret"` is `secret`, as a
//! client reads it.

mod scan;

use scan::ws;
pub use scan::Broken;

/// `input` with every top-level field `allowed` refuses removed (from the object, or
/// from each object of a top-level array). `None`: the value has no fields to remove
/// (a scalar), and `input` is the answer as it is.
pub fn filter(input: &[u8], allowed: &dyn Fn(&str) -> bool) -> Result<Option<Vec<u8>>, Broken> {
    let text = std::str::from_utf8(input).map_err(|e| Broken::at(e.valid_up_to(), "invalid UTF-8"))?;
    let start = ws(input, 0);
    let mut out = Vec::with_capacity(input.len());
    let end = match input.get(start) {
        Some(b'{') => object(text, start, &mut out, allowed)?,
        Some(b'[') => array(text, start, &mut out, allowed)?,
        _ => {
            finish(input, scan::value(input, start)?)?;
            return Ok(None);
        }
    };
    finish(input, end)?;
    Ok(Some(out))
}

/// Nothing but whitespace may follow the value, which ends at `end`.
fn finish(b: &[u8], end: usize) -> Result<(), Broken> {
    let end = ws(b, end);
    if end == b.len() {
        Ok(())
    } else {
        Err(Broken::at(end, "trailing characters"))
    }
}

/// Filters the array at `start` into `out`: its objects filtered, its other elements
/// kept as they are; the index just past it.
fn array(text: &str, start: usize, out: &mut Vec<u8>, allowed: &dyn Fn(&str) -> bool) -> Result<usize, Broken> {
    let b = text.as_bytes();
    out.push(b'[');
    let mut i = ws(b, start + 1);
    if b.get(i) == Some(&b']') {
        out.push(b']');
        return Ok(i + 1);
    }
    loop {
        if b.get(i) == Some(&b'{') {
            i = object(text, i, out, allowed)?;
        } else {
            let end = scan::value(b, i)?;
            out.extend_from_slice(&b[i..end]);
            i = end;
        }
        i = ws(b, i);
        match b.get(i) {
            Some(b',') => {
                out.push(b',');
                i = ws(b, i + 1);
            }
            Some(b']') => {
                out.push(b']');
                return Ok(i + 1);
            }
            _ => return Err(Broken::at(i, "expected `,` or `]`")),
        }
    }
}

/// Filters the object at `start` into `out`, keeping the members whose names `allowed`
/// accepts; the index just past it. Members kept one after another are copied as one
/// run of the upstream's text, with what it wrote between them.
fn object(text: &str, start: usize, out: &mut Vec<u8>, allowed: &dyn Fn(&str) -> bool) -> Result<usize, Broken> {
    let b = text.as_bytes();
    out.push(b'{');
    let mut i = ws(b, start + 1);
    if b.get(i) == Some(&b'}') {
        out.push(b'}');
        return Ok(i + 1);
    }
    // The kept members not yet copied: from the first one's name to the last one's value.
    let mut run: Option<(usize, usize)> = None;
    let mut first = true;
    let mut copy = |run: (usize, usize), out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(&b[run.0..run.1]);
    };
    loop {
        let (name_end, escaped, value_start) = scan::member(b, i)?;
        let value_end = scan::value(b, value_start)?;
        // The quotes are ASCII, so the name's bounds are character boundaries.
        let quoted = &text[i..name_end];
        let keep = if escaped {
            let name: String =
                serde_json::from_str(quoted).map_err(|_| Broken::at(i, "a name that cannot be decoded"))?;
            allowed(&name)
        } else {
            allowed(&quoted[1..quoted.len() - 1])
        };
        run = match (keep, run) {
            (true, Some((from, _))) => Some((from, value_end)),
            (true, None) => Some((i, value_end)),
            (false, Some(kept)) => {
                copy(kept, out);
                None
            }
            (false, None) => None,
        };
        i = ws(b, value_end);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => {
                if let Some(kept) = run {
                    copy(kept, out);
                }
                out.push(b'}');
                return Ok(i + 1);
            }
            _ => return Err(Broken::at(i, "expected `,` or `}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::filter;
    use proptest::prelude::*;
    use serde_json::Value;

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
        assert_eq!(run(input, &["a", "b"]), r#"{"b" : [1, 2.50, {"x": 1}],"a": "\u00e9"}"#);
        assert_eq!(
            run(input, &["a", "b", "secret"]),
            r#"{"b" : [1, 2.50, {"x": 1}], "secret": {"k": "v"}, "a": "\u00e9"}"#
        );
        assert_eq!(run(r#"{"secret":1}"#, &["a"]), "{}");
    }

    #[test]
    fn arrays_filter_their_objects_and_keep_other_elements() {
        let input = r#"[{"id":1,"cost":2},3,"s",[{"cost":1}],null,{"cost":5}]"#;
        assert_eq!(run(input, &["id"]), r#"[{"id":1},3,"s",[{"cost":1}],null,{}]"#);
        assert_eq!(run("[]", &["id"]), "[]");
        // Spacing, nesting, strings holding brackets, quotes and escaped names.
        let input = r#"[ { "id" : 1 , "n" : { "x" : "}]\"" } , "s\u0065cret" : [1, {"a": "]"}], "z": -1.5e3 } , {} ]"#;
        assert_eq!(
            run(input, &["id", "n", "z"]),
            r#"[{"id" : 1 , "n" : { "x" : "}]\"" },"z": -1.5e3},{}]"#
        );
        assert_eq!(run(input, &["secret"]), r#"[{"s\u0065cret" : [1, {"a": "]"}]},{}]"#);
    }

    #[test]
    fn escaped_names_are_judged_decoded() {
        assert_eq!(run(r#"{"s\u0065cret":1,"\u0069d":2}"#, &["id"]), r#"{"\u0069d":2}"#);
        assert_eq!(
            run(r#"[{"s\u0065cret":1},{"\u0069d":2}]"#, &["id"]),
            r#"[{},{"\u0069d":2}]"#
        );
    }

    #[test]
    fn scalars_pass_and_broken_input_is_refused() {
        assert_eq!(run(" 42 ", &[]), " 42 ");
        let refuse = |_: &str| false;
        for bad in [
            &b""[..],
            b"{",
            b"{\"a\":1} x",
            b"<html>",
            b"[1,]",
            b"{\"a\":1,}",
            b"[{\"a\":}]",
            b"\"\\x\"",
            b"[{\"a\":1},{\"a\":}]",
            b"[{\"a\":1}",
            b"[{\"a\":1}] [",
            b"[{\"a\":\"\xff\"}]",
            b"{\"\\ud800\":1}",
        ] {
            assert!(filter(bad, &refuse).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// What the filter must leave of `value` when it keeps `KEEP`.
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

    const KEEP: [&str; 3] = ["id", "name", "n\u{e9}"];

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            // Quarters: read back exactly (serde_json's fast float reading can round).
            (-4000i32..4000).prop_map(|n| Value::from(f64::from(n) / 4.0)),
            "[a-z\"\\\\\u{e9}\u{1}]{0,6}".prop_map(Value::from),
        ];
        let name = prop::sample::select(vec!["id", "name", "n\u{e9}", "cost", "secret", "", "i\"d"]);
        leaf.prop_recursive(4, 40, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((name.clone().prop_map(String::from), inner), 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Tokens that make near-JSON when strung together.
    const TOKENS: [&str; 28] = [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        " ",
        "\"id\"",
        "\"s\\u0065cret\"",
        "\"\\ud83d\\ude00\"",
        "\"a\\\"b\"",
        "1",
        "-0",
        "0.5e+3",
        "01",
        "1.",
        "-",
        "e5",
        "true",
        "nul",
        "null",
        "\"\\x\"",
        "\"\\u12g4\"",
        "\"\t\"",
        "\"\u{e9}\"",
        "\"",
        "\n",
        "x",
    ];

    proptest! {
        /// On JSON: accepted, and what is kept is exactly the listed fields with their
        /// values, whether written compactly or spaced out.
        #[test]
        fn keeps_exactly_the_listed_fields(value in json(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_vec_pretty(&value) } else { serde_json::to_vec(&value) }.unwrap();
            let out = filter(&text, &|n| KEEP.contains(&n)).unwrap().unwrap_or(text);
            prop_assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), expected(value));
        }

        /// A JSON text with one byte changed, taken away or added: accepted exactly when
        /// serde_json reads it as one value.
        #[test]
        fn accepts_what_serde_json_accepts(value in json(), at in any::<prop::sample::Index>(), byte in prop::sample::select(b"{}[],:\" \\-.0e1tnu\x01\xff".to_vec()), how in 0..3u8) {
            let mut text = serde_json::to_vec(&value).unwrap();
            let i = at.index(text.len() + 1);
            match how {
                0 if i < text.len() => text[i] = byte,
                1 if i < text.len() => { text.remove(i); }
                _ => text.insert(i, byte),
            }
            let serde = serde_json::from_slice::<&serde_json::value::RawValue>(&text).is_ok();
            prop_assert_eq!(filter(&text, &|_| true).is_ok(), serde, "{}", String::from_utf8_lossy(&text));
        }

        #[test]
        fn token_soups_are_judged_as_serde_json_judges_them(tokens in prop::collection::vec(prop::sample::select(TOKENS.to_vec()), 0..16)) {
            let text = tokens.concat();
            let serde = serde_json::from_str::<&serde_json::value::RawValue>(&text).is_ok();
            prop_assert_eq!(filter(text.as_bytes(), &|_| true).is_ok(), serde, "{}", text);
        }
    }
}
