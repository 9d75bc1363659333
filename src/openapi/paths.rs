//! From OpenAPI path templates to policy paths: the server's path prefix, whole-segment
//! `{param}`s, and a sample path for test cases.
//!
//! The policy matches the path clients send to the gateway, which forwards it unchanged,
//! so a server URL's path (`https://api.example.com/v2` → `/v2`, or a relative `/v2`)
//! is put in front of every path, with `{variables}` in it replaced by their defaults.
//! A parameter that is not a whole segment (`/files/{name}.json`) has no policy
//! equivalent: such an operation is written commented out, never as a wider route.

use serde_json::Value;

use crate::policy::matcher::Pattern;

/// The path prefix of a `servers` list's first entry, without a trailing `/` (empty for
/// none), or why it cannot be used.
pub fn server_prefix(servers: Option<&Value>) -> Result<String, String> {
    let Some(server) = servers.and_then(Value::as_array).and_then(|s| s.first()) else {
        return Ok(String::new());
    };
    let Some(url) = server.get("url").and_then(Value::as_str) else {
        return Ok(String::new());
    };
    let mut url = url.to_owned();
    if let Some(vars) = server.get("variables").and_then(Value::as_object) {
        for (name, var) in vars {
            if let Some(default) = var.get("default").and_then(Value::as_str) {
                url = url.replace(&format!("{{{name}}}"), default);
            }
        }
    }
    let path = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            rest.find('/').map_or("", |j| &rest[j..])
        }
        None if url.starts_with('/') => url.as_str(),
        // A relative URL such as "" or "." means the document's own location.
        None => "",
    };
    let path = path.split(['?', '#']).next().unwrap_or("").trim_end_matches('/');
    if path.contains(['{', '}']) {
        return Err(format!(
            "the server URL {url:?} has a variable without a default in its path"
        ));
    }
    Ok(path.to_owned())
}

/// The policy path for `prefix` + an OpenAPI template, or why there is none.
pub fn convert(prefix: &str, template: &str) -> Result<String, String> {
    if !template.starts_with('/') {
        return Err("the path does not start with /".into());
    }
    let mut out = String::from(prefix);
    let mut used: Vec<String> = Vec::new();
    for seg in template[1..].split('/') {
        out.push('/');
        match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) if !name.contains(['{', '}']) => {
                // Policy parameter names are letters, digits and `_`; only `owner` ever
                // refers to them, so a renamed one loses nothing.
                let mut clean: String = name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
                    .collect();
                if clean.is_empty() {
                    clean.push('p');
                }
                let base = clean.clone();
                let mut n = 2;
                while used.contains(&clean) {
                    clean = format!("{base}_{n}");
                    n += 1;
                }
                used.push(clean.clone());
                out.push('{');
                out.push_str(&clean);
                out.push('}');
            }
            _ if seg.contains(['{', '}']) => {
                return Err(format!(
                    "the segment {seg:?} mixes a parameter with text; a policy parameter is a whole segment"
                ))
            }
            _ => out.push_str(seg),
        }
    }
    Pattern::parse(&out).map_err(|why| format!("not a policy path: {why}"))?;
    Ok(out)
}

/// The policy path with every parameter filled with `1`.
pub fn sample(policy_path: &str) -> String {
    policy_path
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "1"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_prefixes() {
        let p = |v: Value| server_prefix(Some(&v));
        assert_eq!(p(json!([{"url": "https://petstore.swagger.io/v2"}])).unwrap(), "/v2");
        assert_eq!(p(json!([{"url": "https://api.example.com/"}])).unwrap(), "");
        assert_eq!(p(json!([{"url": "/api/v3"}])).unwrap(), "/api/v3");
        assert_eq!(p(json!([{"url": "."}])).unwrap(), "");
        assert_eq!(
            p(json!([{"url": "{scheme}://x.org/{base}", "variables": {"scheme": {"default": "https"}, "base": {"default": "ds-api"}}}]))
                .unwrap(),
            "/ds-api"
        );
        assert!(p(json!([{"url": "https://x.org/{base}"}])).is_err());
        assert_eq!(server_prefix(None).unwrap(), "");
    }

    #[test]
    fn templates() {
        assert_eq!(convert("", "/pets/{id}").unwrap(), "/pets/{id}");
        assert_eq!(convert("/v2", "/pets").unwrap(), "/v2/pets");
        assert_eq!(convert("", "/a/{pet-id}/{pet_id}").unwrap(), "/a/{pet_id}/{pet_id_2}");
        assert!(convert("", "/files/{name}.json").unwrap_err().contains("whole segment"));
        assert!(convert("", "pets").is_err());
        assert!(convert("", "/a//b").is_err());
        assert_eq!(sample("/v2/pets/{id}/x/{y}"), "/v2/pets/1/x/1");
    }
}
