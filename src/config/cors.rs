//! `[cors]`: which browser origins may call the API through the gateway, validated at
//! start-up. Origins are exact `scheme://host[:port]` strings (no path, no wildcard
//! subdomain); `"*"` is accepted only alone and never with `allow_credentials`.

use std::ops::Range;
use std::time::Duration;

use http::{HeaderName, Method};
use serde::Deserialize;
use toml::Spanned;

use crate::units::HumanDuration;

/// `max_age` when absent.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);
/// The longest `max_age` accepted (browsers cap it lower anyway).
pub const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The most entries one list may have.
const MAX_ENTRIES: usize = 64;
/// Methods a CORS request may be allowed to use.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCors {
    allowed_origins: Spanned<Vec<Spanned<String>>>,
    allowed_methods: Option<Vec<Spanned<String>>>,
    allowed_headers: Option<Vec<Spanned<String>>>,
    expose_headers: Option<Vec<Spanned<String>>>,
    allow_credentials: Option<Spanned<bool>>,
    max_age: Option<Spanned<HumanDuration>>,
}

/// Which origins `[cors]` lets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `["*"]`: any origin, answered with `Access-Control-Allow-Origin: *`.
    Any,
    /// These exact origins (lower case, as browsers send them; `"null"` only if listed).
    List(Vec<String>),
}

/// `[cors]`, validated.
#[derive(Debug, Clone)]
pub struct Cors {
    pub origins: CorsOrigins,
    /// Methods a preflight may ask for (default GET, HEAD, POST).
    pub methods: Vec<Method>,
    /// Request headers a preflight may ask for, lower case (default authorization,
    /// content-type).
    pub headers: Vec<HeaderName>,
    /// Response headers a page may read beyond the safelisted ones.
    pub expose_headers: Vec<HeaderName>,
    /// `Access-Control-Allow-Credentials: true` (never with `"*"`).
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight's answer.
    pub max_age: Duration,
}

impl Cors {
    /// Whether `origin` (the request's `Origin` header, bytes as sent) is allowed.
    pub fn allows(&self, origin: &[u8]) -> bool {
        match &self.origins {
            CorsOrigins::Any => origin != b"null",
            CorsOrigins::List(list) => list.iter().any(|o| o.as_bytes() == origin),
        }
    }

    /// `"null"` is listed: sandboxed frames and `file:` pages share that origin.
    pub fn allows_null(&self) -> bool {
        matches!(&self.origins, CorsOrigins::List(l) if l.iter().any(|o| o == "null"))
    }
}

/// An error: the span of the value at fault, the key, the message.
pub(super) type CorsError = (Range<usize>, String, String);

fn err(span: Range<usize>, key: &str, msg: impl Into<String>) -> CorsError {
    (span, format!("[cors] {key}"), msg.into())
}

/// Validates `[cors]`.
pub(super) fn validate(raw: RawCors) -> Result<Cors, CorsError> {
    let list = raw.allowed_origins.get_ref();
    if list.is_empty() {
        return Err(err(
            raw.allowed_origins.span(),
            "allowed_origins",
            "no origin listed: remove [cors] to turn CORS off",
        ));
    }
    if list.len() > MAX_ENTRIES {
        return Err(err(
            raw.allowed_origins.span(),
            "allowed_origins",
            format!("at most {MAX_ENTRIES} origins"),
        ));
    }
    let origins = if list.iter().any(|o| o.get_ref() == "*") {
        if list.len() > 1 {
            return Err(err(
                raw.allowed_origins.span(),
                "allowed_origins",
                "\"*\" allows every origin: it cannot be listed with others",
            ));
        }
        CorsOrigins::Any
    } else {
        let mut out = Vec::with_capacity(list.len());
        for o in list {
            out.push(parse_origin(o.get_ref()).map_err(|m| err(o.span(), "allowed_origins", m))?);
        }
        CorsOrigins::List(out)
    };

    let allow_credentials = raw.allow_credentials.as_ref().is_some_and(|c| *c.get_ref());
    if allow_credentials && origins == CorsOrigins::Any {
        let span = raw
            .allow_credentials
            .as_ref()
            .map_or(raw.allowed_origins.span(), Spanned::span);
        return Err(err(
            span,
            "allow_credentials",
            "credentials cannot be allowed for any origin (\"*\"): list the origins",
        ));
    }

    let methods = match &raw.allowed_methods {
        None => vec![Method::GET, Method::HEAD, Method::POST],
        Some(list) => {
            bounded(list, "allowed_methods")?;
            let mut out = Vec::with_capacity(list.len());
            for m in list {
                let upper = m.get_ref().to_ascii_uppercase();
                match upper.parse::<Method>() {
                    Ok(method) if METHODS.contains(&upper.as_str()) => out.push(method),
                    _ => {
                        return Err(err(
                            m.span(),
                            "allowed_methods",
                            format!(
                                "unknown method {:?}; expected some of {}",
                                m.get_ref(),
                                METHODS.join(", ")
                            ),
                        ))
                    }
                }
            }
            out
        }
    };
    let headers = match &raw.allowed_headers {
        None => vec![http::header::AUTHORIZATION, http::header::CONTENT_TYPE],
        Some(list) => header_names(list, "allowed_headers")?,
    };
    let expose_headers = match &raw.expose_headers {
        None => [
            "x-request-id",
            "www-authenticate",
            "retry-after",
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
        ]
        .into_iter()
        .map(HeaderName::from_static)
        .collect(),
        Some(list) => header_names(list, "expose_headers")?,
    };
    let max_age = match &raw.max_age {
        None => DEFAULT_MAX_AGE,
        Some(d) if d.get_ref().0 > MAX_MAX_AGE => {
            return Err(err(d.span(), "max_age", "at most 24h"));
        }
        Some(d) => d.get_ref().0,
    };
    Ok(Cors {
        origins,
        methods,
        headers,
        expose_headers,
        allow_credentials,
        max_age,
    })
}

fn bounded(list: &[Spanned<String>], key: &str) -> Result<(), CorsError> {
    match list.get(MAX_ENTRIES) {
        Some(extra) => Err(err(extra.span(), key, format!("at most {MAX_ENTRIES} entries"))),
        None => Ok(()),
    }
}

fn header_names(list: &[Spanned<String>], key: &str) -> Result<Vec<HeaderName>, CorsError> {
    bounded(list, key)?;
    list.iter()
        .map(|h| {
            if h.get_ref() == "*" {
                return Err(err(h.span(), key, "\"*\" is not accepted: list the header names"));
            }
            HeaderName::from_bytes(h.get_ref().as_bytes())
                .map_err(|_| err(h.span(), key, format!("{:?} is not a header name", h.get_ref())))
        })
        .collect()
}

/// One configured origin, as browsers serialize it: `scheme://host[:port]` in lower
/// case, no default port, no path, no trailing slash; or `"null"`.
fn parse_origin(s: &str) -> Result<String, String> {
    if s == "null" {
        return Ok(s.to_owned());
    }
    let hint = "an origin is \"scheme://host[:port]\", e.g. \"https://app.example.com\"";
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!("{s:?} is not an origin: {hint}"));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(format!("{s:?}: the scheme must be https or http"));
    }
    if rest.contains(['/', '?', '#']) {
        return Err(format!("{s:?} has a path, a query or a trailing slash: {hint}"));
    }
    if rest.contains('*') {
        return Err(format!("{s:?}: wildcards are not supported, list each origin"));
    }
    if rest.is_empty() || rest.contains('@') || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{s:?} is not an origin: {hint}"));
    }
    let authority: http::uri::Authority = rest.parse().map_err(|_| format!("{s:?} is not an origin: {hint}"))?;
    if authority.host().is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    if authority.port_u16() == Some(default_port) {
        return Err(format!(
            "{s:?}: browsers send the origin without its default port {default_port}; remove it"
        ));
    }
    if rest.ends_with(':') {
        return Err(format!("{s:?} is not an origin: {hint}"));
    }
    Ok(format!("{scheme}://{}", rest.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Origins are exact and canonical; anything a browser would never send is refused.
    #[test]
    fn origins() {
        for ok in [
            "https://app.example.com",
            "http://localhost:5173",
            "https://[::1]:8443",
            "null",
        ] {
            assert_eq!(parse_origin(ok).unwrap(), ok);
        }
        assert_eq!(
            parse_origin("HTTPS://App.Example.com").unwrap(),
            "https://app.example.com"
        );
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://*.example.com",
            "https://app.example.com:443",
            "http://app.example.com:80",
            "ftp://app.example.com",
            "https://user@app.example.com",
            "https://",
            "https://app.example.com:",
            "https://app.example.com?x",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    fn parse(toml: &str) -> Result<Cors, CorsError> {
        validate(toml::from_str(toml).unwrap())
    }

    // `"*"` works alone and without credentials only; defaults are the safe ones.
    #[test]
    fn star_and_credentials() {
        let any = parse("allowed_origins = [\"*\"]").unwrap();
        assert_eq!(any.origins, CorsOrigins::Any);
        assert!(any.allows(b"https://x.example") && !any.allows(b"null"));
        assert!(!any.allow_credentials);
        assert_eq!(any.max_age, DEFAULT_MAX_AGE);
        let (_, key, msg) = parse("allowed_origins = [\"*\"]\nallow_credentials = true").unwrap_err();
        assert_eq!(key, "[cors] allow_credentials");
        assert!(msg.contains("credentials"), "{msg}");
        assert!(parse("allowed_origins = [\"*\", \"https://a.example\"]").is_err());
        assert!(parse("allowed_origins = []").is_err());
        assert!(parse("allowed_origins = [\"https://a.example\"]\nmax_age = \"2d\"").is_err());
        assert!(parse("allowed_origins = [\"https://a.example\"]\nallowed_headers = [\"*\"]").is_err());
        assert!(parse("allowed_origins = [\"https://a.example\"]\nallowed_methods = [\"TRACE\"]").is_err());
        let listed = parse("allowed_origins = [\"https://a.example\"]\nallow_credentials = true").unwrap();
        assert!(listed.allows(b"https://a.example"));
        assert!(!listed.allows(b"https://a.example.evil"));
        assert!(!listed.allows(b"https://A.example") && !listed.allows(b"null"));
        assert!(!listed.allows_null());
    }
}
