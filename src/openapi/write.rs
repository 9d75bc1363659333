//! Rendering the generated policy: a header comment, `upstream`, one `[[route]]` per
//! operation and one `[[test]]` per route; then the text is parsed back with the policy
//! parser and its cases run, so what is printed is a policy `policy check` reads.

use std::fmt::Write as _;
use std::path::Path;

use http::Method;

use super::{paths, About, Fields, Operation};
use crate::policy::{run_case, PolicySet, TestExpect};

/// A TOML string literal (quoted and escaped by the toml crate).
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Text made safe for one comment line: control characters (a newline would end the
/// comment) become spaces, runs of spaces one, and long text is cut.
fn comment(s: &str) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut words = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    if words.chars().count() > 160 {
        words = words.chars().take(157).collect::<String>() + "...";
    }
    words
}

fn list(key: &str, names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| quote(n)).collect();
    let one_line = format!("{key} = [{}]", quoted.join(", "));
    if one_line.len() <= 90 {
        return one_line + "\n";
    }
    let mut out = format!("{key} = [\n");
    for q in quoted {
        let _ = writeln!(out, "    {q},");
    }
    out + "]\n"
}

fn fields(out: &mut String, key: &str, f: Option<&Fields>) {
    match f {
        Some(Fields::List(names)) => out.push_str(&list(key, names)),
        Some(Fields::Omitted(why)) => {
            let _ = writeln!(out, "# no {key}: {}", comment(why));
        }
        None => {}
    }
}

/// Whether a sample path can stand in a test case's `request` as it is.
fn plain(target: &str) -> bool {
    target
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#' && b != b'%')
}

fn header(out: &mut String, about: &About, upstream: &str) {
    let _ = writeln!(out, "# Access policy for the upstream {}, written by", quote(upstream));
    let _ = writeln!(
        out,
        "#     portcullis policy init --from-openapi {}",
        comment(&about.source)
    );
    let _ = writeln!(
        out,
        "# from {} version {} (OpenAPI {}).",
        quote(&comment(&about.title)),
        quote(&comment(&about.version)),
        comment(&about.openapi)
    );
    out.push_str(
        "#\n\
         # Deny by default: every route below has `roles = []`, which allows nobody (403 to\n\
         # every caller) until you name the roles that may call it; no route is public.\n\
         # A request no route matches is answered 404 and never forwarded.\n\
         # request_fields: the only top-level fields a JSON request body may carry (others: 422).\n\
         # response_fields: the only top-level fields of a JSON response the caller sees.\n\
         # Both come from the document's schemas; a route without them passes bodies as they are.\n",
    );
    match &about.prefix {
        Ok(p) if !p.is_empty() => {
            let _ = writeln!(
                out,
                "# Paths start with {}, the path of the document's first server URL: clients\n\
                 # send it and the gateway forwards the path unchanged.",
                quote(p)
            );
        }
        Ok(_) => {}
        Err(why) => {
            let _ = writeln!(out, "# No server path prefix: {}.", comment(why));
        }
    }
    if about.skipped_trace > 0 {
        let _ = writeln!(
            out,
            "# {} TRACE operation(s) left out: the gateway never proxies TRACE.",
            about.skipped_trace
        );
    }
    out.push_str("# Check it with `portcullis policy check` and `portcullis policy test`.\n\n");
    let _ = writeln!(out, "upstream = {}", quote(upstream));
}

fn route(out: &mut String, op: &Operation) {
    out.push('\n');
    if let Some(s) = op.summary.as_deref().map(comment).filter(|s| !s.is_empty()) {
        let _ = writeln!(out, "# {s}");
    }
    match &op.path {
        Ok(path) => {
            let _ = writeln!(
                out,
                "[[route]]\nname = {}\nmethods = [{}]",
                quote(&op.name),
                quote(&op.method)
            );
            let _ = writeln!(out, "path = {}", quote(path));
            out.push_str(
                "# roles = [] allows nobody: fill in who may call this, e.g. roles = [\"reader\"]\nroles = []\n",
            );
            fields(out, "request_fields", op.request.as_ref());
            fields(out, "response_fields", Some(&op.response));
        }
        Err(why) => {
            let _ = writeln!(
                out,
                "# Left out, {} has no policy equivalent: {}",
                quote(&op.template),
                comment(why)
            );
            let _ = writeln!(
                out,
                "# [[route]]\n# name = {}\n# methods = [{}]",
                quote(&op.name),
                quote(&op.method)
            );
            let _ = writeln!(out, "# path = {}", quote(&comment(&op.template)));
            out.push_str("# roles = []\n");
        }
    }
}

fn test(out: &mut String, op: &Operation) {
    let Ok(path) = &op.path else { return };
    let target = paths::sample(path);
    if !plain(&target) {
        return;
    }
    let _ = writeln!(
        out,
        "\n# {}: a signed-in caller without roles is refused; once the route names roles,\n\
         # give the caller one of them and expect \"allow\".\n\
         [[test]]\nrequest = {}\nas = {{ user = \"u-1\", roles = [] }}\nexpect = \"deny\"",
        comment(&op.name),
        quote(&format!("{} {target}", op.method))
    );
}

/// The whole policy, checked by parsing it back and running its cases.
pub fn policy(about: &About, upstream: &str, ops: &[Operation]) -> Result<String, String> {
    let mut out = String::new();
    header(&mut out, about, upstream);
    if ops.is_empty() {
        out.push_str("\n# The document describes no operations.\n");
    }
    for op in ops {
        route(&mut out, op);
    }
    out.push_str("\n# --- test cases: `portcullis policy test` runs them -------------------------------\n");
    for op in ops {
        test(&mut out, op);
    }
    // What the document does not describe is not forwarded; say so with a case when some
    // path is indeed matched by no route.
    let set = parse_back(&out)?;
    let prefix = about.prefix.as_deref().unwrap_or("");
    let probe = format!("{prefix}/undocumented");
    if set.routed(&Method::GET, &probe).is_none() {
        let _ = writeln!(
            out,
            "\n# deny by default: a path the document does not describe is not forwarded\n\
             [[test]]\nrequest = {}\nas = {{ user = \"u-1\", roles = [] }}\nexpect = \"not_found\"",
            quote(&format!("GET {probe}"))
        );
    }
    let set = parse_back(&out)?;
    for case in &set.tests {
        let (got, why) = run_case(&set, case);
        if got != case.expect {
            return Err(format!(
                "internal error: the generated case at line {} expects {} but got {got:?} ({why})",
                case.line, case.expect
            ));
        }
    }
    debug_assert!(set.tests.iter().all(|c| c.expect != TestExpect::Allow));
    Ok(out)
}

fn parse_back(text: &str) -> Result<PolicySet, String> {
    PolicySet::from_source(Path::new("generated.toml"), text, &|_| true).map_err(|errors| {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!(
            "internal error: the generated policy does not parse: {}",
            all.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::generate;

    const DOC: &str = r#"
openapi: 3.1.0
info: {title: "Odd \"names\"\nhere", version: "2"}
servers: [{url: "https://x.example/api/"}]
paths:
  /files/{name}.json:
    get: {operationId: getFile, responses: {"200": {description: ok}}}
  /users/{user-id}:
    patch:
      operationId: "say \"hi\" ]\n[[route]]"
      summary: "line one\nname = \"evil\""
      requestBody:
        content:
          multipart/form-data: {schema: {type: object, properties: {file: {}}}}
      responses: {"200": {description: ok, content: {text/plain: {schema: {type: string}}}}}
    put:
      requestBody:
        $ref: '#/components/requestBodies/Free'
      responses:
        2XX: {description: ok, content: {application/json: {schema: {type: object, properties: {a: {}, b: {}}}}}}
    trace: {responses: {}}
components:
  requestBodies:
    Free: {content: {application/json: {schema: {type: object}}}}
"#;

    #[test]
    fn odd_documents_give_a_policy_that_parses() {
        let out = generate(DOC, "odd.yaml", "api").unwrap();
        assert_eq!(out, generate(DOC, "odd.yaml", "api").unwrap(), "deterministic");
        let value: toml::Table = toml::from_str(&out).unwrap();
        let routes = value["route"].as_array().unwrap();
        // The partial-segment template is written commented out, never as a route.
        assert_eq!(routes.len(), 2, "{out}");
        assert!(
            out.contains("# Left out, \"/files/{name}.json\" has no policy equivalent"),
            "{out}"
        );
        assert!(out.contains("# path = \"/files/{name}.json\""), "{out}");
        // Names are escaped; a summary cannot break out of its comment.
        assert_eq!(routes[1]["name"].as_str(), Some("say \"hi\" ]\n[[route]]"));
        assert!(out.contains("# line one name = \"evil\"\n"), "{out}");
        assert_eq!(routes[0]["path"].as_str(), Some("/api/users/{user_id}"));
        assert_eq!(routes[0]["name"].as_str(), Some("PUT /users/{user-id}"));
        // A free-form body has no list; a non-JSON one neither (it would be refused).
        assert!(routes.iter().all(|r| r.get("request_fields").is_none()));
        assert!(out.contains("# no request_fields: the request body schema is an object without listed properties"));
        assert!(out.contains("# no request_fields: the request body may be multipart/form-data, not JSON"));
        // The 2XX range counts as a success response.
        assert_eq!(routes[0]["response_fields"].as_array().unwrap().len(), 2);
        assert!(out.contains("# no response_fields: the 200 response may be text/plain, not JSON"));
        assert!(out.contains("1 TRACE operation(s) left out"));
        assert!(out.contains("request = \"GET /api/undocumented\""));
    }

    #[test]
    fn an_empty_document_still_parses() {
        let out = generate(
            "{\"openapi\": \"3.0.3\", \"info\": {\"title\": \"t\", \"version\": \"1\"}, \"paths\": {}}",
            "e.json",
            "api",
        )
        .unwrap();
        assert!(out.contains("describes no operations"));
        assert!(out.contains("expect = \"not_found\""));
    }
}
