//! `[tokens] idle_timeout`, with the fake clock: use keeps a session alive past the
//! timeout, an unused one is ended (its access and refresh tokens refused with 401
//! `invalid_token`, one `session_expired` record however many requests carry it), a
//! restart keeps the last-used times, and nothing of it happens when the key is absent.

mod common;

use std::time::Duration;

use common::{Recorder, Setup, TestGateway, PASSWORD};
use portcullis::audit::EventKind;
use portcullis::clock::ManualClock;
use serde_json::{json, Value};

const POLICY: &str = "upstream = \"app\"\n[[route]]\nmethods = [\"GET\"]\npath = \"/x\"\nroles = [\"customer\"]\n";

const MINUTE: Duration = Duration::from_secs(60);

async fn setup(clock: &ManualClock, idle: bool) -> (Setup, Recorder) {
    let app = Recorder::start().await;
    let mut tokens = "[tokens]\naccess_ttl = \"1h\"\n".to_owned();
    if idle {
        tokens.push_str("idle_timeout = \"5m\"\n");
    }
    let setup = Setup::new(&[("app", app.url())], POLICY)
        .with_clock(clock)
        .many_auth_requests()
        .extra(&tokens);
    (setup, app)
}

/// Signs a customer in: its access and refresh tokens.
async fn sign_in(gw: &TestGateway, email: &str) -> (String, String) {
    gw.add_user(email, &["customer"]).await;
    let (status, body) = gw.login(email, PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// A proxied request with `token`: its status and the `error` of a refusal.
async fn use_token(gw: &TestGateway, token: &str) -> (u16, Value) {
    let (status, body) = gw.get_with("/x", token).await;
    (status, body["error"].clone())
}

async fn refresh(gw: &TestGateway, token: &str) -> (u16, Value) {
    gw.post("/auth/refresh", json!({ "refresh_token": token })).await
}

// A session in use outlives the timeout (requests and refreshes both count as use); left
// alone for the timeout, its access token (on the request path) and its refresh token
// get 401 invalid_token, and it is audited once as session_expired, whether the refresh
// or the sweep ends it and however many requests bring the idle token. Another session
// in use lives on.
#[tokio::test]
async fn idle_session_ends_once() {
    let clock = ManualClock::new();
    let (setup, _app) = setup(&clock, true).await;
    let gw = setup.start().await;
    let (access, refresh_token) = sign_in(&gw, "a@example.com").await;
    let (other, _) = sign_in(&gw, "b@example.com").await;

    // Used every four minutes: alive after twelve.
    for _ in 0..3 {
        clock.advance(4 * MINUTE);
        assert_eq!(use_token(&gw, &access).await.0, 200);
        assert_eq!(use_token(&gw, &other).await.0, 200);
    }
    // A refresh is use too.
    clock.advance(4 * MINUTE);
    let (status, pair) = refresh(&gw, &refresh_token).await;
    assert_eq!(status, 200, "{pair}");
    assert_eq!(use_token(&gw, &other).await.0, 200);
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let refresh_token = pair["refresh_token"].as_str().unwrap().to_owned();
    clock.advance(4 * MINUTE);
    assert_eq!(use_token(&gw, &access).await.0, 200);
    assert_eq!(use_token(&gw, &other).await.0, 200);

    // Five minutes unused: refused, many times, before anything ends the session.
    clock.advance(3 * MINUTE);
    assert_eq!(use_token(&gw, &other).await.0, 200);
    clock.advance(2 * MINUTE);
    for _ in 0..5 {
        assert_eq!(use_token(&gw, &access).await, (401, json!("invalid_token")));
    }
    let (status, body) = refresh(&gw, &refresh_token).await;
    assert_eq!((status, &body["error"]), (401, &json!("invalid_token")), "{body}");
    assert_eq!(refresh(&gw, &refresh_token).await.0, 401);
    gw.auth().sweep().await;
    assert_eq!(use_token(&gw, &access).await.0, 401);
    assert_eq!(use_token(&gw, &other).await.0, 200, "the session in use lives on");

    // The other session, left alone, is ended by the sweep instead.
    clock.advance(5 * MINUTE);
    assert_eq!(use_token(&gw, &other).await.0, 401);
    gw.auth().sweep().await;
    gw.auth().sweep().await;
    let expired = gw.wait_for_events(EventKind::SessionExpired, 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let expired_again = gw.audit_events(EventKind::SessionExpired).await;
    assert_eq!(expired.len(), 2, "{expired:?}");
    assert_eq!(expired_again.len(), 2, "one record per session: {expired_again:?}");
    let users: Vec<_> = expired.iter().map(|r| r.event.user_id.clone().unwrap()).collect();
    assert_ne!(users[0], users[1]);
    assert_eq!(use_token(&gw, &other).await.0, 401);

    // A new sign-in of the same account is a fresh session.
    let (status, body) = gw.login("a@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    assert_eq!(use_token(&gw, body["access_token"].as_str().unwrap()).await.0, 200);
}

// Without `idle_timeout`, a session unused for half an hour still works.
#[tokio::test]
async fn idle_timeout_off_by_default() {
    let clock = ManualClock::new();
    let (setup, _app) = setup(&clock, false).await;
    let gw = setup.start().await;
    let (access, refresh_token) = sign_in(&gw, "a@example.com").await;
    clock.advance(30 * MINUTE);
    gw.auth().sweep().await;
    assert_eq!(use_token(&gw, &access).await.0, 200);
    assert_eq!(refresh(&gw, &refresh_token).await.0, 200);
    assert!(gw.auth().idle_timeout().is_none());
    assert!(
        gw.auth().store().activity().await.unwrap().is_empty(),
        "nothing tracked"
    );
    assert!(gw.audit_events(EventKind::SessionExpired).await.is_empty());
}

// The last-used times are stored in batches (by the sweep, and at shutdown), so a
// restart neither ends a session in use nor revives an idle one.
#[tokio::test]
async fn last_use_survives_restart() {
    let clock = ManualClock::new();
    let (setup, _app) = setup(&clock, true).await;
    let dir = tempfile::tempdir().unwrap();
    let config = setup.write(dir.path());
    let gw = TestGateway::launch(dir, &config, Some(clock.clone())).await;
    let (access, _) = sign_in(&gw, "a@example.com").await;
    let (idle, _) = sign_in(&gw, "b@example.com").await;
    clock.advance(2 * MINUTE);
    assert_eq!(use_token(&gw, &access).await.0, 200);
    assert!(
        gw.auth().store().activity().await.unwrap().is_empty(),
        "no write per request"
    );
    gw.auth().sweep().await;
    assert_eq!(
        gw.auth().store().activity().await.unwrap().len(),
        2,
        "written by the sweep"
    );
    clock.advance(2 * MINUTE);
    assert_eq!(use_token(&gw, &access).await.0, 200);

    let mut gw = gw;
    gw.client = reqwest::Client::new();
    gw.shutdown().await;
    let TestGateway { dir, .. } = gw;
    let gw = TestGateway::launch(dir, &config, Some(clock.clone())).await;
    // Eight minutes after sign-in, four after the last use (saved at shutdown).
    clock.advance(4 * MINUTE);
    assert_eq!(use_token(&gw, &access).await.0, 200);
    assert_eq!(use_token(&gw, &idle).await.0, 401, "idle since sign-in");
    clock.advance(5 * MINUTE);
    assert_eq!(use_token(&gw, &access).await.0, 401);
}
