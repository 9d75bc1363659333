//! Reading an OpenAPI document: JSON (serde_json) or YAML (serde_yaml_ng) into one
//! [`serde_json::Value`], bounded in size, with the version checked.

use serde_json::Value;

/// The largest document read; a real API description is far smaller.
pub const MAX_DOCUMENT: usize = 16 * 1024 * 1024;

/// Which OpenAPI 3 minor version the document declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V3_0,
    V3_1,
}

/// A parsed document and its version.
#[derive(Debug)]
pub struct Document {
    pub root: Value,
    pub version: Version,
    /// The `openapi` field as written, e.g. "3.0.3".
    pub declared: String,
}

/// Parses `text` as JSON when it starts with `{`, else as YAML (a superset of JSON), and
/// checks it is an OpenAPI 3.0 or 3.1 document. Errors carry the parser's line and
/// column when it gives them.
pub fn parse(text: &str) -> Result<Document, String> {
    if text.len() > MAX_DOCUMENT {
        return Err(format!(
            "the document is {} bytes; at most {MAX_DOCUMENT} are read",
            text.len()
        ));
    }
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let root: Value = if trimmed.starts_with('{') {
        serde_json::from_str(trimmed)
            .map_err(|e| format!("not valid JSON: line {} column {}: {e}", e.line(), e.column()))?
    } else {
        // serde_yaml_ng bounds nesting and alias expansion (a "billion laughs" document
        // is refused); its messages name the line and column.
        serde_yaml_ng::from_str(trimmed).map_err(|e| format!("not valid YAML: {e}"))?
    };
    let declared = match root.get("openapi") {
        Some(Value::String(v)) => v.clone(),
        Some(other) => {
            return Err(format!(
                "`openapi` must be a version string like \"3.1.0\", not {other}"
            ))
        }
        None if root.get("swagger").is_some() => {
            return Err("this is a Swagger 2.0 document; convert it to OpenAPI 3 first".into())
        }
        None => return Err("not an OpenAPI document: no `openapi` version field".into()),
    };
    let version = if declared == "3.0" || declared.starts_with("3.0.") {
        Version::V3_0
    } else if declared == "3.1" || declared.starts_with("3.1.") {
        Version::V3_1
    } else {
        return Err(format!("OpenAPI {declared:?} is not supported: only 3.0 and 3.1 are"));
    };
    if !root.get("paths").is_none_or(Value::is_object) {
        return Err("`paths` must be a map of path templates".into());
    }
    Ok(Document {
        root,
        version,
        declared,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_both_read() {
        let json = parse(r#"{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{}}"#).unwrap();
        assert_eq!(json.version, Version::V3_1);
        let yaml = parse("openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: {}\n").unwrap();
        assert_eq!(yaml.version, Version::V3_0);
        assert_eq!(yaml.declared, "3.0.3");
    }

    #[test]
    fn other_versions_and_documents_are_refused() {
        assert!(parse("swagger: '2.0'\npaths: {}\n")
            .unwrap_err()
            .contains("Swagger 2.0"));
        assert!(parse("openapi: 4.0.0\n").unwrap_err().contains("only 3.0 and 3.1"));
        assert!(parse("title: hello\n").unwrap_err().contains("no `openapi`"));
        // A YAML float is not a version string.
        assert!(parse("openapi: 3.0\n").unwrap_err().contains("version string"));
    }

    #[test]
    fn parse_errors_name_the_line() {
        let e = parse("openapi: 3.0.0\npaths:\n  /a: [\n").unwrap_err();
        assert!(e.contains("line"), "{e}");
        let e = parse("{\"openapi\": \"3.1.0\",\n \"paths\": {,}}").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn oversized_documents_are_refused() {
        let big = " ".repeat(MAX_DOCUMENT + 1);
        assert!(parse(&big).unwrap_err().contains("at most"));
    }
}
