//! Errors that say what to do, over real TLS: token refusals with their RFC 6750
//! `error_description` (body and `WWW-Authenticate`), a reused TOTP code said as such,
//! field-level messages for malformed `/auth/*` bodies that never echo a value, and
//! login's answers identical for unknown emails and wrong passwords.

mod common;

use std::time::Duration;

use common::{Recorder, Setup, TestGateway, PASSWORD};
use portcullis::auth::totp;
use portcullis::clock::{Clock, ManualClock};
use serde_json::{json, Value};

const POLICY: &str = r#"
upstream = "rec"

[[route]]
name = "orders"
methods = ["GET"]
path = "/api/orders"
roles = ["customer"]
"#;

async fn gateway(clock: Option<&ManualClock>) -> (TestGateway, Recorder) {
    let rec = Recorder::start().await;
    let mut setup = Setup::new(&[("rec", rec.url())], POLICY).many_auth_requests();
    if let Some(clock) = clock {
        setup = setup.with_clock(clock);
    }
    (setup.start().await, rec)
}

/// `GET /api/orders` with `token`: status, `WWW-Authenticate` (or "") and the body.
async fn orders(gw: &TestGateway, token: &str) -> (u16, String, Value) {
    gw.get_challenged("/api/orders", token).await
}

/// Asserts a 401 that refuses the token for `why`, in the header and the body, with a
/// message that says what to do (`advice`).
fn refused_for(answer: &(u16, String, Value), why: &str, advice: &str) {
    let (status, challenge, body) = answer;
    assert_eq!(*status, 401, "{why}: {body}");
    assert_eq!(
        challenge,
        &format!("Bearer error=\"invalid_token\", error_description=\"{why}\""),
        "{why}"
    );
    assert_eq!(body["error"], "invalid_token", "{body}");
    assert_eq!(body["error_description"], why, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(advice), "{why}: {message}");
}

// Malformed, forged, revoked (after logout) and expired tokens are each refused with
// their own error_description and a message that says what to do; a good token passes.
#[tokio::test]
async fn token_refusals_say_why() {
    let clock = ManualClock::new();
    let (gw, _rec) = gateway(Some(&clock)).await;
    let (_, token) = gw.signed_in("casey@example.com", &["customer"]).await;
    let (_, other) = gw.signed_in("robin@example.com", &["customer"]).await;
    assert_eq!(orders(&gw, &token).await.0, 200);

    refused_for(&orders(&gw, "not-a-jwt").await, "malformed", "Authorization: Bearer");
    refused_for(&orders(&gw, "e30.e30.e30").await, "malformed", "Authorization: Bearer");

    // Casey's header and claims with Robin's signature.
    let (head, _) = token.rsplit_once('.').unwrap();
    let (_, signature) = other.rsplit_once('.').unwrap();
    let forged = format!("{head}.{signature}");
    refused_for(&orders(&gw, &forged).await, "bad_signature", "log in again");

    let (status, _, _) = gw.post_with("/auth/logout", &other, json!({})).await;
    assert_eq!(status, 204);
    refused_for(&orders(&gw, &other).await, "revoked", "log in again");

    clock.advance(Duration::from_secs(2 * 3600));
    refused_for(&orders(&gw, &token).await, "expired", "POST /auth/refresh");
    // No field of the answer repeats the token.
    let (_, _, body) = orders(&gw, &token).await;
    assert!(!body.to_string().contains(&token[..20]), "{body}");
}

// A TOTP code used once is refused as already used (the mfa_token is spent: log in
// again), and said apart from a wrong code; both are audited as mfa_failure.
#[tokio::test]
async fn reused_totp_code_says_so() {
    let clock = ManualClock::new();
    let (gw, _rec) = gateway(Some(&clock)).await;
    let enrolled = gw.enrolled(&clock, "admin@example.com", &["admin"]).await;
    let code = totp::code_at(&enrolled.secret, clock.now()).unwrap();

    let mfa_token = gw.mfa_token("admin@example.com").await;
    let (status, body) = gw
        .post("/auth/mfa", json!({ "mfa_token": mfa_token, "code": code }))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_code");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("already used") && message.contains("log in again"),
        "{message}"
    );
    // The challenge is spent, as for any failure.
    let (status, again) = gw
        .post("/auth/mfa", json!({ "mfa_token": mfa_token, "code": code }))
        .await;
    assert_eq!(
        (status, again["error"].as_str()),
        (401, Some("invalid_token")),
        "{again}"
    );

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let mfa_token = gw.mfa_token("admin@example.com").await;
    let (status, body) = gw
        .post("/auth/mfa", json!({ "mfa_token": mfa_token, "code": wrong }))
        .await;
    assert_eq!(status, 401);
    assert!(!body["message"].as_str().unwrap().contains("already used"), "{body}");
    let reasons: Vec<String> = gw
        .audit_events("mfa_failure")
        .await
        .into_iter()
        .filter_map(|r| r.event.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "reused code"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "wrong code"), "{reasons:?}");
}

/// `POST /auth/login` with a raw body and content type: status and JSON answer.
async fn login_raw(gw: &TestGateway, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let resp = gw
        .client
        .post(gw.url("/auth/login"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

// Malformed bodies get a message naming the field and what is wrong with it (missing,
// wrong type, a form instead of JSON, not JSON, too large), and never a value sent.
#[tokio::test]
async fn malformed_bodies_name_the_field() {
    let (gw, _rec) = gateway(None).await;
    let secret = "Hunter2-secret-value";
    let json_type = "application/json";
    let cases = [
        (
            json_type,
            json!({ "email": "a@example.com" }).to_string(),
            "the field `password` is required",
        ),
        (
            json_type,
            json!({ "email": "a@example.com", "password": 12345 }).to_string(),
            "the field `password` must be a string",
        ),
        (
            json_type,
            json!({ "email": "a@example.com", "password": [secret] }).to_string(),
            "the field `password` must be a string",
        ),
        (
            json_type,
            json!({ "email": 7, "password": secret }).to_string(),
            "the field `email` must be a string",
        ),
        (
            "application/x-www-form-urlencoded",
            format!("email=a%40example.com&password={secret}"),
            "the body must be JSON (Content-Type: application/json), not a form",
        ),
        (
            json_type,
            format!("{{\"email\": \"a@example.com\", \"password\": \"{secret}\""),
            "the body must be JSON (Content-Type: application/json)",
        ),
        (json_type, format!("[\"{secret}\"]"), "the body must be a JSON object"),
    ];
    for (content_type, body, expected) in cases {
        let (status, answer) = login_raw(&gw, content_type, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"], "bad_request", "{answer}");
        assert_eq!(answer["message"], expected, "{body}");
        assert!(!answer.to_string().contains(secret), "{answer}");
    }
    let (status, answer) = login_raw(&gw, json_type, vec![b' '; 20 * 1024]).await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("at most 16384 bytes"),
        "{answer}"
    );
    // Other endpoints name their own fields.
    let (status, answer) = gw.post("/auth/refresh", json!({})).await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (400, Some("the field `refresh_token` is required"))
    );
}

// Login answers an unknown email and a wrong password alike: the same status and body
// but for the request id.
#[tokio::test]
async fn login_refusals_identical() {
    let (gw, _rec) = gateway(None).await;
    gw.add_user("known@example.com", &["customer"]).await;
    let (s1, mut unknown) = gw.login("nobody@example.com", PASSWORD).await;
    let (s2, mut wrong) = gw.login("known@example.com", "Wr0ng!Password").await;
    assert_eq!((s1, s2), (401, 401));
    assert_ne!(unknown["request_id"], wrong["request_id"]);
    unknown["request_id"] = Value::Null;
    wrong["request_id"] = Value::Null;
    assert_eq!(unknown, wrong);
}
