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

/// The request's future stays small (see the module's notes): it is written whole into
/// the connection's slot for each request, memory that is out of the CPU's cache when
/// many connections are busy. Written as `async fn`s, the functions on the proxied path
/// made it 5,592 bytes (release build); with the request captured unboxed by each
/// level, 3,200; now it is about 1,800.
#[test]
fn the_request_future_stays_small() {
    fn size_of_future<'a, F: std::future::Future>(_: fn(&'a Pipeline, Request<RequestBody>, ConnInfo) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    let size = size_of_future(<Pipeline as Handler>::handle);
    assert!(size <= 2_100, "the request's future is {size} bytes");
}
