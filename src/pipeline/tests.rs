//! Which refusals the outer handler audits.

use super::*;

// Access refusals of proxied requests and every rate-limit and upstream failure are
// audited; refusals under /auth/ (audited by their flows) and transport or internal
// failures are not.
#[test]
fn audited_refusals() {
    let denied = GatewayError::Forbidden { reason: "x".into() };
    assert_eq!(refusal_event(&denied, true), Some(EventKind::AccessDenied));
    assert_eq!(refusal_event(&denied, false), None);
    assert_eq!(
        refusal_event(&GatewayError::NoRoute, true),
        Some(EventKind::AccessDenied)
    );
    let limited = GatewayError::RateLimited {
        retry_after: std::time::Duration::from_secs(1),
    };
    assert_eq!(refusal_event(&limited, false), Some(EventKind::RateLimited));
    let timeout = GatewayError::UpstreamTimeout {
        upstream: "u".into(),
        timeout: std::time::Duration::from_secs(1),
    };
    assert_eq!(refusal_event(&timeout, true), Some(EventKind::UpstreamError));
    for quiet in [
        GatewayError::PayloadTooLarge { limit: 1 },
        GatewayError::Malformed("x".into()),
        GatewayError::RequestTimeout,
        GatewayError::InvalidCredentials,
    ] {
        assert_eq!(refusal_event(&quiet, true), None, "{quiet}");
    }
}
