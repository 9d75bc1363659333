//! Step-up authentication (RFC 9470) over real TLS: `auth_time` in tokens, the
//! `mfa_max_age` challenge, `POST /auth/step-up`, with the fake clock.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{Recorder, Setup, TestGateway};
use portcullis::auth::totp;
use portcullis::clock::{Clock, ManualClock};
use serde_json::{json, Value};

const CHALLENGE: &str = "Bearer error=\"insufficient_user_authentication\", max_age=300";

const POLICY: &str = r#"
upstream = "rec"

[[route]]
name = "transfers"
methods = ["POST"]
path = "/api/transfers"
roles = ["admin", "customer"]
mfa_max_age = "5m"

[[route]]
name = "balance"
methods = ["GET"]
path = "/api/balance"
roles = ["admin", "customer"]
"#;

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn gateway(clock: &ManualClock) -> (TestGateway, Recorder) {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], POLICY)
        .with_clock(clock)
        .extra("[tokens]\naccess_ttl = \"1h\"\n")
        .many_auth_requests()
        .start()
        .await;
    (gw, rec)
}

// A fresh second factor passes `mfa_max_age`; past the age the route answers 401 with the
// RFC 9470 challenge (audited as access_denied); a wrong step-up code is 401 and counted;
// a right one gives tokens of the same session with a fresh auth_time, the refresh token
// rotated, and the route passes again; a refresh keeps auth_time.
#[tokio::test]
async fn max_age_challenge_then_step_up() {
    let clock = ManualClock::new();
    let (gw, rec) = gateway(&clock).await;
    let e = gw.enrolled(&clock, "admin@example.com", &["admin"]).await;
    let access = e.access_token().to_owned();
    let first = claims_of(&access);
    assert_eq!(first["auth_time"], json!(clock.now()));

    let (status, _, _) = gw.post_with("/api/transfers", &access, json!({})).await;
    assert_eq!(status, 200);
    clock.advance(Duration::from_secs(300));
    assert_eq!(
        gw.post_with("/api/transfers", &access, json!({})).await.0,
        200,
        "at the limit"
    );
    clock.advance(Duration::from_secs(1));
    let (status, challenge, body) = gw.post_with("/api/transfers", &access, json!({})).await;
    assert_eq!((status, challenge.as_str()), (401, CHALLENGE), "{body}");
    assert_eq!(body["error"], "insufficient_user_authentication");
    assert_eq!(rec.requests().len(), 2, "a refused request must not reach the upstream");
    // A request record is queued, not written before the answer: wait for it.
    assert!(gw.wait_for_events("access_denied", 1).await.iter().any(|r| r
        .event
        .reason
        .as_deref()
        .is_some_and(|w| w.contains("transfers"))));
    // Routes without mfa_max_age do not care.
    assert_eq!(gw.get_with("/api/balance", &access).await.0, 200);

    // A wrong code: 401 invalid_code, counted toward the lockout, audited.
    let (status, _, body) = gw
        .post_with("/auth/step-up", &access, json!({ "code": "000000" }))
        .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_code")), "{body}");
    // Step-up spends no login: the message does not send the caller back to it.
    assert!(!body["message"].as_str().unwrap().contains("log in"), "{body}");
    assert_eq!(gw.auth().store().failures("admin@example.com").await.unwrap().count, 1);
    let refused = gw.audit_events("step_up").await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].event.outcome, "failure");

    // The right code: the same session, a fresh auth_time, a new refresh token.
    let code = totp::code_at(&e.secret, clock.now()).unwrap();
    let (status, _, pair) = gw.post_with("/auth/step-up", &access, json!({ "code": code })).await;
    assert_eq!(status, 200, "{pair}");
    let stepped = claims_of(pair["access_token"].as_str().unwrap());
    assert_eq!(stepped["sid"], first["sid"]);
    assert_eq!(stepped["auth_time"], json!(clock.now()));
    assert_eq!(stepped["amr"], json!(["pwd", "otp"]));
    assert_ne!(pair["refresh_token"], e.grant["refresh_token"]);
    assert_eq!(gw.auth().store().failures("admin@example.com").await.unwrap().count, 0);
    let events = gw.audit_events("step_up").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].event.outcome, "success");
    // The code is spent: the same one again is refused.
    assert_eq!(
        gw.post_with("/auth/step-up", &access, json!({ "code": code })).await.0,
        401
    );
    let stepped_access = pair["access_token"].as_str().unwrap();
    assert_eq!(gw.post_with("/api/transfers", stepped_access, json!({})).await.0, 200);

    // A refresh keeps auth_time (and the session); time moves on and the age shows.
    clock.advance(Duration::from_secs(200));
    let (status, refreshed) = gw
        .post("/auth/refresh", json!({ "refresh_token": pair["refresh_token"] }))
        .await;
    assert_eq!(status, 200, "{refreshed}");
    let again = claims_of(refreshed["access_token"].as_str().unwrap());
    assert_eq!(again["auth_time"], stepped["auth_time"]);
    assert_eq!(again["sid"], first["sid"]);
    let refreshed_access = refreshed["access_token"].as_str().unwrap();
    assert_eq!(gw.post_with("/api/transfers", refreshed_access, json!({})).await.0, 200);
    clock.advance(Duration::from_secs(101));
    let (status, challenge, _) = gw.post_with("/api/transfers", refreshed_access, json!({})).await;
    assert_eq!((status, challenge.as_str()), (401, CHALLENGE));

    // The refresh token the step-up replaced is no longer the current one.
    let (status, _) = gw
        .post("/auth/refresh", json!({ "refresh_token": e.grant["refresh_token"] }))
        .await;
    assert_eq!(status, 401);
}

// A token without `otp` gets the challenge too; an account without TOTP cannot step up
// (403); step-up needs a token (401) and a code (400).
#[tokio::test]
async fn without_a_second_factor() {
    let clock = ManualClock::new();
    let (gw, rec) = gateway(&clock).await;
    let (_, customer) = gw.signed_in("cust@example.com", &["customer"]).await;
    assert!(claims_of(&customer)["auth_time"].as_u64().unwrap() > 0);
    let (status, challenge, _) = gw.post_with("/api/transfers", &customer, json!({})).await;
    assert_eq!((status, challenge.as_str()), (401, CHALLENGE));
    assert_eq!(gw.get_with("/api/balance", &customer).await.0, 200);
    assert_eq!(rec.requests().len(), 1);

    let (status, _, body) = gw
        .post_with("/auth/step-up", &customer, json!({ "code": "123456" }))
        .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")), "{body}");
    let resp = gw
        .client
        .post(gw.url("/auth/step-up"))
        .json(&json!({ "code": "123456" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(gw.post_with("/auth/step-up", &customer, json!({})).await.0, 400);
}

// Wrong step-up codes add up to the account's lockout, like wrong codes at login: a
// bearer token gives no more guesses.
#[tokio::test]
async fn step_up_guesses_lock_the_account() {
    let clock = ManualClock::new();
    let (gw, _rec) = gateway(&clock).await;
    let e = gw.enrolled(&clock, "admin@example.com", &["admin"]).await;
    let access = e.access_token();
    for _ in 0..5 {
        let (status, _, _) = gw.post_with("/auth/step-up", access, json!({ "code": "000000" })).await;
        assert_eq!(status, 401);
    }
    let code = totp::code_at(&e.secret, clock.now() + 30).unwrap();
    clock.advance(Duration::from_secs(30));
    let (status, _, body) = gw.post_with("/auth/step-up", access, json!({ "code": code })).await;
    assert_eq!(status, 429, "{body}");
}

// A recovery code steps up too, once; its use is audited with the count left.
#[tokio::test]
async fn step_up_with_a_recovery_code() {
    let clock = ManualClock::new();
    let (gw, _rec) = gateway(&clock).await;
    let e = gw.enrolled(&clock, "admin@example.com", &["admin"]).await;
    let code = e.recovery_codes()[4].clone();
    clock.advance(Duration::from_secs(600));
    let (status, _, pair) = gw
        .post_with("/auth/step-up", e.access_token(), json!({ "code": code }))
        .await;
    assert_eq!(status, 200, "{pair}");
    assert_eq!(
        claims_of(pair["access_token"].as_str().unwrap())["auth_time"],
        json!(clock.now())
    );
    let used = gw.audit_events("recovery_code_used").await;
    assert_eq!(used[0].event.reason.as_deref(), Some("step-up; 9 recovery codes left"));
    let (status, _, _) = gw
        .post_with(
            "/auth/step-up",
            pair["access_token"].as_str().unwrap(),
            json!({ "code": code }),
        )
        .await;
    assert_eq!(status, 401);
}

// `policy explain --auth-age` and `policy test` with `auth_age` cases judge
// `mfa_max_age` as the gateway does: fresh passes, stale is the 401 challenge.
#[test]
fn policy_commands_know_mfa_max_age() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let cases = "\n[[test]]\nrequest = \"POST /api/transfers\"\nas = { user = \"u-1\", roles = [\"customer\"], mfa = true }\nauth_age = \"4m\"\nexpect = \"allow\"\n\n[[test]]\nrequest = \"POST /api/transfers\"\nas = { user = \"u-1\", roles = [\"customer\"], mfa = true }\nauth_age = \"6m\"\nexpect = \"unauthenticated\"\n";
    std::fs::write(policies.join("p.toml"), format!("{POLICY}{cases}")).unwrap();
    let config = dir.path().join("none.toml");
    let dir_arg = policies.to_str().unwrap();
    let explain = |age: &str| {
        common::cli(
            &config,
            &[
                "policy",
                "explain",
                "POST",
                "/api/transfers",
                "--role",
                "customer",
                "--mfa",
                "--auth-age",
                age,
                "--dir",
                dir_arg,
            ],
        )
    };
    let fresh = explain("1m");
    assert!(fresh.stdout.contains("decision: allow"), "{}", fresh.text);
    let stale = explain("10m");
    assert!(stale.stdout.contains("decision: 401"), "{}", stale.text);
    assert!(stale.stdout.contains("within the last 300s"), "{}", stale.text);
    let test = common::cli(&config, &["policy", "test", dir_arg]);
    assert!(test.ok && test.stdout.contains("2 passed, 0 failed"), "{}", test.text);
    let wrong = format!("{POLICY}{}", cases.replace("\"6m\"", "\"2m\""));
    std::fs::write(policies.join("p.toml"), wrong).unwrap();
    let test = common::cli(&config, &["policy", "test", dir_arg]);
    assert!(!test.ok && test.stdout.contains("1 passed, 1 failed"), "{}", test.text);
}
