//! `portcullis policy init --from-openapi FILE`: a starter policy from an OpenAPI 3.0 or
//! 3.1 document (contract §13).
//!
//! [`load`] reads the document (JSON or YAML) into a [`serde_json::Value`]; [`schema`]
//! turns request and response schemas into top-level field names (`$ref`, `allOf`,
//! `oneOf`/`anyOf`); [`paths`] converts path templates; [`write`] renders the policy.
//! Every route is deny by default (`roles = []`), and what is written is parsed back
//! with the policy parser and its test cases run before it is returned.

pub mod load;
pub mod paths;
pub mod schema;
mod write;

use std::path::Path;

use serde_json::Value;

use schema::{Resolver, Shape};

/// The methods an OpenAPI path item may have, in the order routes are written. `TRACE`
/// is never proxied and has no route.
const METHODS: &[&str] = &["get", "head", "post", "put", "patch", "delete", "options"];

/// The most names written in one field list (the policy's own limit; the written policy
/// is parsed back, so a change there cannot go unnoticed).
const MAX_LISTED: usize = 1024;

/// The most operations turned into routes.
pub const MAX_OPERATIONS: usize = 10_000;

/// A field list for a route key, or why the key is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fields {
    List(Vec<String>),
    Omitted(String),
}

/// One operation of the document, ready to be written.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: String,
    /// The path as the document writes it.
    pub template: String,
    /// The policy path, or why the operation cannot be a route.
    pub path: Result<String, String>,
    pub name: String,
    pub summary: Option<String>,
    /// `None` for methods without a body (GET, DELETE, ...).
    pub request: Option<Fields>,
    pub response: Fields,
}

/// What the header comment says about the document.
#[derive(Debug, Clone)]
pub struct About {
    pub source: String,
    pub title: String,
    pub version: String,
    pub openapi: String,
    pub prefix: Result<String, String>,
    pub skipped_trace: usize,
}

/// Reads `file` and writes the policy for `upstream`.
pub fn from_file(file: &Path, upstream: &str) -> Result<String, String> {
    let meta = std::fs::metadata(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if meta.len() > load::MAX_DOCUMENT as u64 {
        return Err(format!(
            "{}: the document is {} bytes; at most {} are read",
            file.display(),
            meta.len(),
            load::MAX_DOCUMENT
        ));
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    generate(&text, &file.display().to_string(), upstream).map_err(|e| format!("{}: {e}", file.display()))
}

/// The policy for the document `text` (named `source` in the header), forwarding to
/// `upstream`.
pub fn generate(text: &str, source: &str, upstream: &str) -> Result<String, String> {
    let doc = load::parse(text)?;
    let root = &doc.root;
    let info = root.get("info");
    let text_of = |key: &str| {
        info.and_then(|i| i.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let prefix = paths::server_prefix(root.get("servers"));
    let resolver = Resolver::new(root);
    let mut ops = Vec::new();
    let mut skipped_trace = 0;
    let mut templates: Vec<(&String, &Value)> = root
        .get("paths")
        .and_then(Value::as_object)
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    // Sorted here, whatever order the JSON map keeps.
    templates.sort_by(|a, b| a.0.cmp(b.0));
    for (template, item) in templates {
        let item = resolver.deref(item).map_err(|e| format!("paths.{template}: {e}"))?;
        if item.get("trace").is_some() {
            skipped_trace += 1;
        }
        for method in METHODS {
            let Some(op) = item.get(*method) else { continue };
            if ops.len() >= MAX_OPERATIONS {
                return Err(format!("more than {MAX_OPERATIONS} operations"));
            }
            ops.push(operation(
                &resolver,
                item,
                template,
                method,
                op,
                prefix.as_deref().unwrap_or(""),
            ));
        }
    }
    let about = About {
        source: source.to_owned(),
        title: text_of("title"),
        version: text_of("version"),
        openapi: doc.declared.clone(),
        prefix,
        skipped_trace,
    };
    write::policy(&about, upstream, &ops)
}

fn operation(
    resolver: &Resolver<'_>,
    item: &Value,
    template: &str,
    method: &str,
    op: &Value,
    doc_prefix: &str,
) -> Operation {
    // An operation's or path item's own `servers` override the document's.
    let own_servers = op.get("servers").or_else(|| item.get("servers"));
    let path = match own_servers {
        Some(s) => paths::server_prefix(Some(s)),
        None => Ok(doc_prefix.to_owned()),
    }
    .and_then(|prefix| paths::convert(&prefix, template));
    let upper = method.to_ascii_uppercase();
    let name = match op.get("operationId").and_then(Value::as_str) {
        Some(id) if !id.trim().is_empty() => id.to_owned(),
        _ => format!("{upper} {template}"),
    };
    let summary = op
        .get("summary")
        .or_else(|| item.get("summary"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let request = matches!(method, "post" | "put" | "patch").then(|| request_fields(resolver, op));
    Operation {
        method: upper,
        template: template.to_owned(),
        path,
        name,
        summary,
        request,
        response: response_fields(resolver, op),
    }
}

/// Whether a media type is JSON (`application/json`, `application/problem+json`, ...).
fn is_json(media: &str) -> bool {
    let media = media.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// The shape of the one JSON schema of a `content` map, or why there is none to use.
fn content_shape<'d>(
    resolver: &Resolver<'d>,
    content: Option<&'d Value>,
    what: &str,
    shape: impl Fn(&Resolver<'d>, &'d Value) -> Shape,
) -> Fields {
    let Some(content) = content.and_then(Value::as_object).filter(|c| !c.is_empty()) else {
        return Fields::Omitted(format!("the {what} has no documented body"));
    };
    if let Some(other) = content.keys().find(|m| !is_json(m)) {
        return Fields::Omitted(format!(
            "the {what} may be {other}, not JSON, which a field list would refuse"
        ));
    }
    let mut media: Vec<&String> = content.keys().collect();
    media.sort();
    let Some(schema) = media.first().and_then(|m| content[m.as_str()].get("schema")) else {
        return Fields::Omitted(format!("the {what} has no schema"));
    };
    match shape(resolver, schema) {
        Shape::Fields(f) if f.len() > MAX_LISTED => {
            Fields::Omitted(format!("the {what} has {} properties, more than a list holds", f.len()))
        }
        Shape::Fields(f) => Fields::List(f.into_iter().collect()),
        Shape::FreeForm(why) => Fields::Omitted(format!("the {what} schema is free-form: {why}")),
        Shape::Empty => Fields::Omitted(format!("the {what} schema is an object without listed properties")),
        Shape::NotObject => Fields::Omitted(format!("the {what} is not a JSON object")),
    }
}

fn request_fields(resolver: &Resolver<'_>, op: &Value) -> Fields {
    let Some(body) = op.get("requestBody") else {
        return Fields::Omitted("no request body is documented".into());
    };
    match resolver.deref(body) {
        Ok(body) => content_shape(resolver, body.get("content"), "request body", Resolver::shape),
        Err(why) => Fields::Omitted(why),
    }
}

fn response_fields(resolver: &Resolver<'_>, op: &Value) -> Fields {
    let Some(responses) = op.get("responses").and_then(Value::as_object) else {
        return Fields::Omitted("no responses are documented".into());
    };
    // The first 2xx: exact codes in order, then the `2XX` range.
    let mut codes: Vec<&String> = responses
        .keys()
        .filter(|c| {
            c.len() == 3
                && c.starts_with('2')
                && (c[1..].bytes().all(|b| b.is_ascii_digit()) || c[1..].eq_ignore_ascii_case("xx"))
        })
        .collect();
    codes.sort_by_key(|c| (c[1..].eq_ignore_ascii_case("xx"), c.to_string()));
    let Some(code) = codes.first() else {
        return Fields::Omitted("no 2xx response is documented".into());
    };
    match resolver.deref(&responses[code.as_str()]) {
        Ok(r) => content_shape(
            resolver,
            r.get("content"),
            &format!("{code} response"),
            Resolver::response_shape,
        ),
        Err(why) => Fields::Omitted(why),
    }
}
