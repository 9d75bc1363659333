//! The error responses: generic bodies, challenges and Retry-After.

use super::*;

// Error bodies carry code, generic message and request id, and never the internal detail.
#[tokio::test]
async fn body_is_generic() {
    use http_body_util::BodyExt;
    let err = GatewayError::UpstreamUnreachable {
        upstream: "shop".into(),
        source: "connect to 10.1.2.3:8081 refused".into(),
    };
    let resp = err.to_response("req-1");
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "bad_gateway");
    assert_eq!(v["request_id"], "req-1");
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains("10.1.2.3") && !text.contains("shop"), "{text}");
}

// A 401 challenges with Bearer, and says invalid_token when a token was refused.
#[test]
fn unauthorized_challenges() {
    let plain = GatewayError::Unauthenticated {
        reason: "no token".into(),
        invalid_token: false,
    };
    assert_eq!(plain.to_response("r").headers()[WWW_AUTHENTICATE], "Bearer");
    let bad = GatewayError::Unauthenticated {
        reason: "expired".into(),
        invalid_token: true,
    };
    assert_eq!(
        bad.to_response("r").headers()[WWW_AUTHENTICATE],
        "Bearer error=\"invalid_token\""
    );
}

// RFC 9470: a stale second factor is a 401 that names the error and the age needed.
#[test]
fn step_up_challenge() {
    let e = GatewayError::InsufficientUserAuthentication {
        max_age: 300,
        reason: "stale".into(),
    };
    let resp = e.to_response("r");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()[WWW_AUTHENTICATE],
        "Bearer error=\"insufficient_user_authentication\", max_age=300"
    );
}

// Retry-After rounds up to whole seconds and is never zero.
#[test]
fn retry_after_rounds_up() {
    let e = GatewayError::RateLimited {
        retry_after: Duration::from_millis(1500),
    };
    assert_eq!(e.to_response("r").headers()[RETRY_AFTER], "2");
    let e = GatewayError::RateLimited {
        retry_after: Duration::ZERO,
    };
    assert_eq!(e.to_response("r").headers()[RETRY_AFTER], "1");
}

// A route's field list refuses with 415 for a body that is not JSON and 422 otherwise,
// each with its own code; the field named is the one refused.
#[test]
fn field_refusals() {
    let cases = [
        (FieldRefusal::NotJson, 415, "unsupported_media_type"),
        (FieldRefusal::NotObject, 422, "not_an_object"),
        (FieldRefusal::Unknown("role".into()), 422, "unknown_field"),
        (FieldRefusal::Duplicate("name".into()), 422, "duplicate_field"),
    ];
    for (why, status, code) in cases {
        let err = GatewayError::RequestFields(why);
        assert_eq!(err.status().as_u16(), status);
        assert_eq!(err.code(), code);
    }
    let err = GatewayError::RequestFields(FieldRefusal::Unknown(crate::refusal::shown("ro\u{7}le")));
    assert_eq!(err.message(), "the field \"ro?le\" is not accepted here");
}
