//! `response_fields` and `response_fields_by_role` (contract §13): what a route's JSON
//! responses keep.
//!
//! On such a route the upstream is asked for `Accept-Encoding: identity` and for the
//! whole representation (`Range`, `If-Range` and `If-None-Match` are not forwarded),
//! its body is read whole within `[limits] max_filtered_response` (the size after
//! decoding, when an upstream answers gzip or deflate anyway) and within the upstream
//! timeout, and only the fields the caller may see are sent on, with `Content-Length`
//! set to the filtered size. Anything that cannot be filtered (not JSON by
//! `Content-Type` or by its bytes, too large, another encoding) becomes a 502: a body is
//! never passed through unfiltered.
//!
//! Every status's JSON body is filtered: an error body leaks as well as a 200. Responses
//! without a body pass: 204, 304, the answer to `HEAD`, and an empty body. Validators
//! that describe the unfiltered bytes (`ETag`, `Content-MD5`, `Digest`,
//! `Content-Digest`, `Repr-Digest`) and the range headers are dropped; `Content-Type`
//! and `Last-Modified` are kept. Routes without the keys never come here: their bodies
//! stream untouched.

pub mod json;

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::response::Parts;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use smallvec::SmallVec;

use crate::error::GatewayError;
use crate::policy::{FieldList, Principal, ResponseFields};
use crate::upstream::body::GatewayBody;
use crate::upstream::pool::PooledBody;

/// Headers of the upstream's response that describe its unfiltered bytes.
const UNFILTERED_VALIDATORS: [HeaderName; 7] = [
    header::ETAG,
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
    HeaderName::from_static("content-md5"),
    HeaderName::from_static("digest"),
    HeaderName::from_static("content-digest"),
];
const REPR_DIGEST: HeaderName = HeaderName::from_static("repr-digest");

/// The fields one caller may see: the route's list, and the lists of the roles the
/// caller holds (borrowed; a caller with up to four such roles allocates nothing).
pub struct Allowed<'a> {
    base: &'a FieldList,
    by_role: SmallVec<[&'a FieldList; 4]>,
}

impl<'a> Allowed<'a> {
    pub fn new(fields: &'a ResponseFields, caller: Option<&Principal>) -> Self {
        let roles = caller.map_or(&[][..], |p| p.roles.as_slice());
        Self {
            base: &fields.base,
            by_role: fields
                .by_role
                .iter()
                .filter(|(role, _)| roles.iter().any(|r| r == role))
                .map(|(_, list)| list)
                .collect(),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.base.contains(name) || self.by_role.iter().any(|l| l.contains(name))
    }
}

/// Rewrites the request headers of a filtered route: the whole representation, unencoded.
pub fn prepare_request(headers: &mut HeaderMap) {
    headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    headers.remove(header::RANGE);
    headers.remove(header::IF_RANGE);
    headers.remove(header::IF_NONE_MATCH);
}

/// What the upstream's answer was, for a route whose responses are filtered.
pub struct Upstream<'a> {
    pub name: &'a str,
    /// `[limits] max_filtered_response`.
    pub limit: u64,
    /// `[limits] upstream_timeout`: the whole body must arrive within it.
    pub timeout: Duration,
    /// The request was `HEAD`: the answer has no body.
    pub head: bool,
}

/// The filtered response; `parts` have had their hop-by-hop headers removed.
pub async fn filter_response(
    mut parts: Parts,
    body: PooledBody,
    allowed: &Allowed<'_>,
    upstream: &Upstream<'_>,
) -> Result<Response<GatewayBody>, GatewayError> {
    let refuse = |reason: String| GatewayError::UnfilterableResponse {
        upstream: upstream.name.to_owned(),
        reason,
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    for name in &UNFILTERED_VALIDATORS {
        parts.headers.remove(name);
    }
    parts.headers.remove(REPR_DIGEST);
    let no_body = upstream.head
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED
        || parts.status.is_informational();
    if no_body {
        return Ok(Response::from_parts(parts, GatewayBody::empty()));
    }
    if let Some(len) = declared.filter(|&n| n > upstream.limit) {
        return Err(refuse(format!(
            "Content-Length {len} is above max_filtered_response ({} bytes)",
            upstream.limit
        )));
    }
    let encoding = Encoding::of(&parts.headers).map_err(refuse)?;
    let limit = usize::try_from(upstream.limit).unwrap_or(usize::MAX);
    let raw = match tokio::time::timeout(upstream.timeout, Limited::new(body, limit).collect()).await {
        Err(_) => {
            return Err(GatewayError::UpstreamTimeout {
                upstream: upstream.name.to_owned(),
                timeout: upstream.timeout,
            })
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(refuse(format!(
                "body above max_filtered_response ({} bytes)",
                upstream.limit
            )))
        }
        Ok(Err(e)) => {
            return Err(GatewayError::UpstreamUnreachable {
                upstream: upstream.name.to_owned(),
                source: e,
            })
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let decoded = encoding.decode(raw, limit).map_err(refuse)?;
    parts.headers.remove(header::CONTENT_ENCODING);
    let filtered = if decoded.is_empty() {
        decoded
    } else {
        if !is_json(parts.headers.get(header::CONTENT_TYPE)) {
            let ct = parts.headers.get(header::CONTENT_TYPE);
            return Err(refuse(format!("Content-Type {ct:?} is not JSON")));
        }
        match json::filter(&decoded, &|name| allowed.contains(name)) {
            Ok(Some(out)) => Bytes::from(out),
            Ok(None) => decoded,
            Err(e) => return Err(refuse(format!("body is not JSON: {e}"))),
        }
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(filtered.len()));
    Ok(Response::from_parts(parts, GatewayBody::full(filtered)))
}

/// `application/json` or any `application/*+json`, parameters aside.
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// The upstream's `Content-Encoding`, of those the gateway can undo.
#[derive(Clone, Copy)]
enum Encoding {
    Identity,
    Gzip,
    Deflate,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Result<Self, String> {
        let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
        let Some(value) = values.next() else {
            return Ok(Self::Identity);
        };
        let text = value.to_str().unwrap_or("").trim();
        if values.next().is_some() || text.contains(',') {
            return Err("more than one Content-Encoding".into());
        }
        match text.to_ascii_lowercase().as_str() {
            "identity" | "" => Ok(Self::Identity),
            "gzip" | "x-gzip" => Ok(Self::Gzip),
            "deflate" => Ok(Self::Deflate),
            _ => Err(format!("Content-Encoding {text:?} cannot be decoded")),
        }
    }

    /// The decoded body, refused past `limit` bytes once decoded (a small body can
    /// inflate to gigabytes).
    fn decode(self, raw: Bytes, limit: usize) -> Result<Bytes, String> {
        fn inflate(reader: impl Read, limit: usize) -> Result<Bytes, String> {
            let mut out = Vec::new();
            let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
            reader
                .take(cap)
                .read_to_end(&mut out)
                .map_err(|e| format!("body cannot be decoded: {e}"))?;
            if out.len() > limit {
                return Err(format!("decoded body above max_filtered_response ({limit} bytes)"));
            }
            Ok(Bytes::from(out))
        }
        match self {
            Self::Identity => Ok(raw),
            _ if raw.is_empty() => Ok(raw),
            Self::Gzip => inflate(flate2::read::MultiGzDecoder::new(&raw[..]), limit),
            // RFC 9110 §8.4.1.2: zlib; some servers send the raw deflate stream instead.
            Self::Deflate => inflate(flate2::read::ZlibDecoder::new(&raw[..]), limit)
                .or_else(|_| inflate(flate2::read::DeflateDecoder::new(&raw[..]), limit)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;
    use http::HeaderValue;

    #[test]
    fn json_content_types() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
        ] {
            assert!(is_json(Some(&HeaderValue::from_static(yes))), "{yes}");
        }
        for no in ["text/html", "application/jsonp", "text/json", "application/+json", ""] {
            assert!(!is_json(Some(&HeaderValue::from_static(no))), "{no}");
        }
        assert!(!is_json(None));
    }
}
