//! The request-target normalizer: any target either becomes a canonical path or is
//! refused; it never panics, and an accepted path is unambiguous, keeps the meaning of
//! the target it came from, and is a fixed point of normalization.

#![no_main]

use http::{HeaderMap, HeaderValue, Method, Uri, Version};
use libfuzzer_sys::fuzz_target;
use portcullis::path::canonical_path;
use portcullis::pipeline::normalize::normalize_request;
use portcullis_fuzz::{check_canonical, percent_decode};

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = std::str::from_utf8(data) {
        if let Ok(path) = canonical_path(raw) {
            check_canonical(&path);
            // Canonicalizing changes how bytes are written, never which bytes they are.
            assert_eq!(percent_decode(&path), percent_decode(raw), "{raw:?} -> {path:?}");
        }
    }

    // The target as hyper hands it over: a parsed `Uri`, with or without `Host`.
    let Ok(uri) = Uri::try_from(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    if let Some(authority) = uri.authority() {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            headers.insert(http::header::HOST, host);
        }
    }
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let Ok(target) = normalize_request(&Method::GET, &uri, version, &headers) else {
            continue;
        };
        check_canonical(&target.path);
        assert_eq!(target.query.as_deref(), uri.query());
        // What the upstream receives is itself a target that normalizes to the same.
        let forwarded = target.path_and_query_under("");
        let again: Uri = forwarded
            .parse()
            .unwrap_or_else(|e| panic!("{forwarded:?} is not a URI: {e}"));
        // It goes out in origin form with the upstream's own `Host` (HTTP/1.1 needs one).
        let mut upstream_host = HeaderMap::new();
        upstream_host.insert(http::header::HOST, HeaderValue::from_static("upstream.internal"));
        let again = normalize_request(&Method::GET, &again, version, &upstream_host)
            .unwrap_or_else(|e| panic!("{forwarded:?} is refused: {e}"));
        assert_eq!(again, target);
    }
});
