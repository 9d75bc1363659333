//! Errors as log text: an error and its sources joined into one line. A leaf, so that
//! every module may log this way.

/// An error and its sources as one line of text, `outer: cause: root cause`, for logs
/// (never Debug values: a log line reads as a sentence).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let next = e.to_string();
        // Some errors repeat their source's text in their own; say it once.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cur = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    // A log line carries the error and its sources as text, not Debug.
    #[test]
    fn chain_joins_sources() {
        let err = crate::error::GatewayError::UpstreamUnreachable {
            upstream: "shop".into(),
            source: Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            )),
        };
        assert_eq!(chain(&err), "upstream shop unreachable: connection refused");
    }
}
