//! From a schema to the top-level field names of the JSON object it describes: `$ref`s
//! to the same document resolved, `allOf` merged, `oneOf`/`anyOf` united.
//!
//! Choices: `allOf` takes the properties of every member (a member without properties
//! constrains nothing). `oneOf`/`anyOf` take the union of the alternatives' properties
//! (a body valid for any alternative passes); an alternative that is an object without
//! listed properties makes the whole free-form, while one that is not an object (e.g.
//! FastAPI's `{"type": "null"}` for an optional model) adds nothing. A schema whose
//! `additionalProperties` is allowed explicitly is free-form. A `$ref` already being
//! resolved (a cycle) adds nothing more; resolution stops past [`MAX_DEPTH`] nested
//! schemas and after [`MAX_STEPS`] schemas visited for one list, and then the schema
//! counts as free-form: a list is emitted only when it is known whole.

use std::collections::BTreeSet;

use serde_json::Value;

/// The deepest chain of `$ref`/`allOf`/`oneOf`/`anyOf` followed.
pub const MAX_DEPTH: usize = 64;
/// The most schemas visited while computing one field list.
pub const MAX_STEPS: usize = 10_000;

/// What a schema says about the top level of a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// An object with exactly these properties listed.
    Fields(BTreeSet<String>),
    /// An object whose properties are not (all) listed, or a schema that could not be
    /// followed; the string says why.
    FreeForm(String),
    /// An object without listed properties and without `additionalProperties`: inside
    /// `allOf` it constrains nothing; alone it is free-form.
    Empty,
    /// Not an object (a string, a number, an array, null).
    NotObject,
}

/// Resolves `#/...` JSON pointers within one document.
pub struct Resolver<'d> {
    root: &'d Value,
}

impl<'d> Resolver<'d> {
    pub fn new(root: &'d Value) -> Self {
        Self { root }
    }

    /// Follows `$ref`s (same-document only) until a schema without one, guarding against
    /// cycles; an error says why a reference cannot be followed.
    pub fn deref(&self, mut v: &'d Value) -> Result<&'d Value, String> {
        let mut seen = Vec::new();
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            if seen.contains(&r) || seen.len() >= MAX_DEPTH {
                return Err(format!("$ref {r:?} refers to itself"));
            }
            seen.push(r);
            v = self.pointer(r)?;
        }
        Ok(v)
    }

    fn pointer(&self, r: &str) -> Result<&'d Value, String> {
        let Some(pointer) = r.strip_prefix('#') else {
            return Err(format!("$ref {r:?} is outside this document"));
        };
        // JSON pointer escapes are understood by `Value::pointer`; percent-escapes of a
        // URI fragment are rare in practice and not decoded.
        self.root
            .pointer(pointer)
            .ok_or_else(|| format!("$ref {r:?} does not resolve"))
    }

    /// The shape of a schema's top level.
    pub fn shape(&self, schema: &'d Value) -> Shape {
        let mut walk = Walk {
            resolver: self,
            stack: Vec::new(),
            steps: 0,
        };
        walk.shape(schema, 0)
    }

    /// For a response: an array's items' shape, else the schema's own.
    pub fn response_shape(&self, schema: &'d Value) -> Shape {
        match self.deref(schema) {
            Ok(s) if is_array(s) => match s.get("items") {
                Some(items) => self.shape(items),
                None => Shape::FreeForm("an array whose items are not described".into()),
            },
            Ok(s) => self.shape(s),
            Err(why) => Shape::FreeForm(why),
        }
    }
}

fn is_array(s: &Value) -> bool {
    match s.get("type") {
        Some(Value::String(t)) => t == "array",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "array") && !ts.iter().any(|t| t == "object"),
        _ => false,
    }
}

/// Whether `type` allows an object (no `type` at all does).
fn may_be_object(s: &Value) -> bool {
    match s.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => s.get("items").is_none() && s.get("enum").is_none() && s.get("const").is_none(),
    }
}

struct Walk<'r, 'd> {
    resolver: &'r Resolver<'d>,
    /// The `$ref`s being resolved, outermost first.
    stack: Vec<&'d str>,
    steps: usize,
}

impl<'d> Walk<'_, 'd> {
    fn shape(&mut self, schema: &'d Value, depth: usize) -> Shape {
        self.steps += 1;
        if depth > MAX_DEPTH || self.steps > MAX_STEPS {
            return Shape::FreeForm("the schema nests too deeply to follow".into());
        }
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            if self.stack.contains(&r) {
                // A cycle: the outer resolution already counts this schema's properties.
                return Shape::NotObject;
            }
            let target = match self.resolver.pointer(r) {
                Ok(t) => t,
                Err(why) => return Shape::FreeForm(why),
            };
            self.stack.push(r);
            let shape = self.shape(target, depth + 1);
            self.stack.pop();
            // In 3.1 a `$ref` may have sibling `properties`; they are listed too.
            if let Some(p) = schema.get("properties").and_then(Value::as_object) {
                let siblings = p.keys().filter(|k| !k.is_empty()).cloned().collect();
                return merge_all(shape, Shape::Fields(siblings));
            }
            return shape;
        }
        if !schema.is_object() {
            // `true` (anything) in 3.1.
            return if schema == &Value::Bool(false) {
                Shape::NotObject
            } else {
                Shape::FreeForm("the schema allows any value".into())
            };
        }
        let mut fields: Option<BTreeSet<String>> = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().filter(|k| !k.is_empty()).cloned().collect());
        let open = schema
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
            || schema.get("patternProperties").is_some();
        if let Some(members) = schema.get("allOf").and_then(Value::as_array) {
            for m in members {
                match self.shape(m, depth + 1) {
                    Shape::Fields(f) => fields.get_or_insert_with(BTreeSet::new).extend(f),
                    Shape::FreeForm(why) => return Shape::FreeForm(why),
                    Shape::Empty | Shape::NotObject => {}
                }
            }
        }
        for key in ["oneOf", "anyOf"] {
            let Some(alternatives) = schema.get(key).and_then(Value::as_array) else {
                continue;
            };
            let mut union = BTreeSet::new();
            let mut any_object = false;
            for a in alternatives {
                match self.shape(a, depth + 1) {
                    Shape::Fields(f) => {
                        any_object = true;
                        union.extend(f);
                    }
                    Shape::FreeForm(why) => return Shape::FreeForm(format!("{why} (in {key})")),
                    Shape::Empty => return Shape::FreeForm(format!("an object without listed properties (in {key})")),
                    Shape::NotObject => {}
                }
            }
            if any_object {
                fields.get_or_insert_with(BTreeSet::new).extend(union);
            }
        }
        match fields {
            Some(_) if open => Shape::FreeForm("an object with additionalProperties allowed".into()),
            Some(f) if !f.is_empty() => Shape::Fields(f),
            _ if open => Shape::FreeForm("an object with additionalProperties allowed".into()),
            _ if may_be_object(schema) => Shape::Empty,
            _ => Shape::NotObject,
        }
    }
}

/// The shape of a schema and its `allOf`-like siblings together.
fn merge_all(a: Shape, b: Shape) -> Shape {
    match (a, b) {
        (Shape::Fields(mut x), Shape::Fields(y)) => {
            x.extend(y);
            Shape::Fields(x)
        }
        (Shape::FreeForm(why), _) | (_, Shape::FreeForm(why)) => Shape::FreeForm(why),
        (Shape::Fields(x), _) | (_, Shape::Fields(x)) => Shape::Fields(x),
        (Shape::Empty, _) | (_, Shape::Empty) => Shape::Empty,
        (Shape::NotObject, Shape::NotObject) => Shape::NotObject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(shape: Shape) -> Vec<String> {
        match shape {
            Shape::Fields(f) => f.into_iter().collect(),
            other => panic!("expected fields, got {other:?}"),
        }
    }

    #[test]
    fn refs_and_all_of_are_merged() {
        let doc = json!({"components": {"schemas": {
            "NewPet": {"type": "object", "properties": {"name": {}, "tag": {}}},
            "Pet": {"allOf": [{"$ref": "#/components/schemas/NewPet"},
                              {"type": "object", "properties": {"id": {}}}]}
        }}});
        let r = Resolver::new(&doc);
        assert_eq!(
            names(r.shape(&json!({"$ref": "#/components/schemas/Pet"}))),
            ["id", "name", "tag"]
        );
        let list = json!({"type": "array", "items": {"$ref": "#/components/schemas/Pet"}});
        assert_eq!(names(r.response_shape(&list)), ["id", "name", "tag"]);
    }

    #[test]
    fn one_of_is_a_union_and_null_adds_nothing() {
        let doc = json!({"components": {"schemas": {
            "A": {"type": "object", "properties": {"a": {}}},
            "B": {"type": "object", "properties": {"b": {}}}
        }}});
        let r = Resolver::new(&doc);
        let s = json!({"oneOf": [{"$ref": "#/components/schemas/A"}, {"$ref": "#/components/schemas/B"}, {"type": "null"}]});
        assert_eq!(names(r.shape(&s)), ["a", "b"]);
        let open = json!({"anyOf": [{"$ref": "#/components/schemas/A"}, {"type": "object"}]});
        assert!(matches!(r.shape(&open), Shape::FreeForm(_)));
    }

    #[test]
    fn cycles_and_bad_refs_do_not_loop() {
        let doc = json!({"components": {"schemas": {
            "Node": {"type": "object", "properties": {"value": {}, "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}},
                     "allOf": [{"$ref": "#/components/schemas/Node"}]},
            "Loop": {"$ref": "#/components/schemas/Loop"},
            "A": {"allOf": [{"$ref": "#/components/schemas/B"}], "properties": {"a": {}}},
            "B": {"allOf": [{"$ref": "#/components/schemas/A"}], "properties": {"b": {}}}
        }}});
        let r = Resolver::new(&doc);
        assert_eq!(
            names(r.shape(&json!({"$ref": "#/components/schemas/Node"}))),
            ["children", "value"]
        );
        assert_eq!(names(r.shape(&json!({"$ref": "#/components/schemas/A"}))), ["a", "b"]);
        assert!(matches!(
            r.shape(&json!({"$ref": "#/components/schemas/Loop"})),
            Shape::NotObject
        ));
        assert!(r.deref(&json!({"$ref": "#/components/schemas/Loop"})).is_err());
        assert!(matches!(r.shape(&json!({"$ref": "#/nowhere"})), Shape::FreeForm(_)));
        assert!(matches!(r.shape(&json!({"$ref": "other.yaml#/X"})), Shape::FreeForm(_)));
    }

    #[test]
    fn deep_nesting_stops() {
        let mut s = json!({"type": "object", "properties": {"x": {}}});
        for _ in 0..(MAX_DEPTH + 10) {
            s = json!({"allOf": [s]});
        }
        let doc = json!({});
        assert!(matches!(Resolver::new(&doc).shape(&s), Shape::FreeForm(_)));
    }

    #[test]
    fn free_form_and_scalars() {
        let doc = json!({});
        let r = Resolver::new(&doc);
        assert_eq!(r.shape(&json!({"type": "object"})), Shape::Empty);
        assert!(matches!(
            r.shape(&json!({"type": "object", "additionalProperties": true, "properties": {"a": {}}})),
            Shape::FreeForm(_)
        ));
        assert_eq!(r.shape(&json!({"type": "string"})), Shape::NotObject);
    }
}
