//! An `[upstreams]` entry: an `http://` or `https://` URL with a host and an optional
//! path prefix, nothing else (no credentials, no query).

use super::Upstream;

/// The upstream `name` at `url`, or why the URL cannot be one.
pub(super) fn parse_upstream(name: &str, url: &str) -> Result<Upstream, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("upstream {name:?}: {url:?} is not a valid URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "upstream {name:?}: scheme {other:?} is not supported; expected http:// or https:// (TLS settings: [upstream_tls.NAME])"
            ))
        }
        None => return Err(format!("upstream {name:?}: {url:?} needs a scheme, e.g. \"http://127.0.0.1:8081\"")),
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("upstream {name:?}: {url:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("upstream {name:?}: credentials in the URL are not supported"));
    }
    if uri.query().is_some() {
        return Err(format!(
            "upstream {name:?}: a query string is not allowed in an upstream URL"
        ));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok(Upstream {
        name: name.to_owned(),
        scheme: uri.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP),
        authority,
        base_path,
    })
}
