//! The account flows under attack: the lockout covers the second factor, a TOTP code is
//! accepted once however many requests carry it, a pending registration cannot be
//! hijacked, state an attacker can grow is pruned, and mail cannot be turned on its owner.

mod common;

use std::time::Duration;

use common::{confirmation_token, start_shop, Setup, TestGateway, PASSWORD};
use portcullis::auth::totp;
use portcullis::clock::{Clock, ManualClock};
use serde_json::{json, Value};

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// A staff account with TOTP already enrolled.
async fn enrolled(gw: &TestGateway, email: &str) -> String {
    let id = gw.add_user(email, &["admin"]).await;
    gw.auth().set_totp(&id, SECRET).await.unwrap();
    id
}

/// A six-digit code that is not valid now (nor one step either side).
fn wrong_code(now: u64) -> String {
    let valid: Vec<String> = [now - 30, now, now + 30]
        .iter()
        .map(|t| totp::code_at(SECRET, *t).unwrap())
        .collect();
    (0..1000)
        .map(|n| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .unwrap()
}

async fn mfa(gw: &TestGateway, token: &Value, code: &str) -> u16 {
    gw.post("/auth/mfa", json!({ "mfa_token": token, "code": code }))
        .await
        .0
}

// A right password followed by wrong codes counts toward the lockout: after five, even a
// right password and a right code are refused, until the lockout has passed.
#[tokio::test]
async fn wrong_codes_lock_the_account() {
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let gw = Setup::shop(shop).with_clock(&clock).start().await;
    enrolled(&gw, "m@example.com").await;
    let wrong = wrong_code(clock.now());
    for round in 0..4 {
        let (status, body) = gw.login("m@example.com", PASSWORD).await;
        assert_eq!(
            (status, body["mfa_required"].as_bool()),
            (200, Some(true)),
            "round {round}: {body}"
        );
        assert_eq!(mfa(&gw, &body["mfa_token"], &wrong).await, 401, "round {round}");
    }
    // Two challenges from right passwords; the fifth wrong code locks the account, and the
    // other challenge then fails even with the right code.
    let (_, fifth) = gw.login("m@example.com", PASSWORD).await;
    let (_, sixth) = gw.login("m@example.com", PASSWORD).await;
    assert_eq!(mfa(&gw, &fifth["mfa_token"], &wrong).await, 401);
    let code = totp::code_at(SECRET, clock.now()).unwrap();
    assert_eq!(
        mfa(&gw, &sixth["mfa_token"], &code).await,
        429,
        "a right code passed the lockout"
    );
    assert_eq!(gw.login("m@example.com", PASSWORD).await.0, 429);

    clock.advance(Duration::from_secs(15 * 60 + 1));
    let (status, body) = gw.login("m@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let code = totp::code_at(SECRET, clock.now()).unwrap();
    assert_eq!(mfa(&gw, &body["mfa_token"], &code).await, 200);

    // A completed login starts the count afresh: four more wrong codes do not lock.
    clock.advance(Duration::from_secs(30));
    let wrong = wrong_code(clock.now());
    for _ in 0..4 {
        let (_, body) = gw.login("m@example.com", PASSWORD).await;
        assert_eq!(mfa(&gw, &body["mfa_token"], &wrong).await, 401);
    }
    let (status, body) = gw.login("m@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    let code = totp::code_at(SECRET, clock.now()).unwrap();
    assert_eq!(mfa(&gw, &body["mfa_token"], &code).await, 200);
}

// Parallel /auth/mfa requests carrying one valid code, each with a challenge of its own
// and queued behind a login of the same account: exactly one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_code_accepted_once() {
    const PARALLEL: usize = 3;
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let gw = Setup::shop(shop).many_auth_requests().with_clock(&clock).start().await;
    enrolled(&gw, "race@example.com").await;
    for round in 0..3 {
        clock.advance(Duration::from_secs(30));
        let mut challenges = Vec::new();
        for _ in 0..PARALLEL {
            let (status, body) = gw.login("race@example.com", PASSWORD).await;
            assert_eq!(status, 200, "{body}");
            challenges.push(body["mfa_token"].as_str().unwrap().to_owned());
        }
        let code = totp::code_at(SECRET, clock.now()).unwrap();
        let login = {
            let (client, url) = (gw.client.clone(), gw.url("/auth/login"));
            tokio::spawn(async move {
                let body = json!({ "email": "race@example.com", "password": PASSWORD });
                client.post(url).json(&body).send().await.unwrap().status().as_u16()
            })
        };
        let tries: Vec<_> = challenges
            .into_iter()
            .map(|token| {
                let (client, url, code) = (gw.client.clone(), gw.url("/auth/mfa"), code.clone());
                tokio::spawn(async move {
                    let body = json!({ "mfa_token": token, "code": code });
                    client.post(url).json(&body).send().await.unwrap().status().as_u16()
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for t in tries {
            statuses.push(t.await.unwrap());
        }
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 401, 401],
            "round {round}: one code accepted more than once"
        );
        assert_eq!(login.await.unwrap(), 200);
    }
}

// Someone registers the owner's address first; the owner registers with a password of
// their own and confirms. The first registrant's link confirms nothing, and their
// password never signs in.
#[tokio::test]
async fn pending_registration_not_hijacked() {
    let shop = start_shop().await;
    let gw = Setup::shop(shop).start().await;
    let attacker = "Att4cker!Passw0rd";
    let register = |password: &'static str| {
        let gw = &gw;
        async move {
            gw.post(
                "/auth/register",
                json!({ "email": "owner@example.com", "password": password, "name": "Owner" }),
            )
            .await
        }
    };
    assert_eq!(register(attacker).await.0, 202);
    assert_eq!(register(PASSWORD).await.0, 202);
    let mail = gw.outbox();
    assert_eq!(mail.len(), 2);
    let (first, latest) = (confirmation_token(&mail[0]), confirmation_token(&mail[1]));

    // The older link, the one the first registrant's registration sent, is dead.
    assert_eq!(gw.confirm(&first).await, 400);
    assert_ne!(gw.login("owner@example.com", attacker).await.0, 200);

    assert_eq!(gw.confirm(&latest).await, 200);
    assert_eq!(gw.login("owner@example.com", attacker).await.0, 401);
    assert_eq!(gw.login("owner@example.com", PASSWORD).await.0, 200);
    assert_eq!(gw.auth().store().users().await.unwrap().len(), 1);
}

// Registering a confirmed address sends its owner at most one notice an hour.
#[tokio::test]
async fn registration_notice_once_an_hour() {
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let gw = Setup::shop(shop).with_clock(&clock).start().await;
    gw.add_user("taken@example.com", &["customer"]).await;
    let body = json!({ "email": "taken@example.com", "password": "Other!Passw0rd", "name": "X" });
    for _ in 0..4 {
        assert_eq!(gw.post("/auth/register", body.clone()).await.0, 202);
    }
    assert_eq!(gw.outbox().len(), 1, "more than one notice within the hour");
    clock.advance(Duration::from_secs(59 * 60));
    gw.auth().sweep().await;
    assert_eq!(gw.post("/auth/register", body.clone()).await.0, 202);
    assert_eq!(gw.outbox().len(), 1);
    clock.advance(Duration::from_secs(61));
    gw.auth().sweep().await;
    assert_eq!(gw.post("/auth/register", body.clone()).await.0, 202);
    let mail = gw.outbox();
    assert_eq!(mail.len(), 2);
    assert!(mail[1].contains("already has one"), "{}", mail[1]);
}

// What a registrant types as a name never reaches the gateway's mail.
#[tokio::test]
async fn name_left_out_of_mail() {
    let shop = start_shop().await;
    let gw = Setup::shop(shop).start().await;
    let name = "Bob. URGENT: sign in at https://evil.example";
    let body = json!({ "email": "bob@example.com", "password": PASSWORD, "name": name });
    assert_eq!(gw.post("/auth/register", body).await.0, 202);
    let mail = gw.outbox();
    assert_eq!(mail.len(), 1);
    assert!(
        !mail[0].contains("evil.example") && !mail[0].contains("URGENT") && !mail[0].contains("Bob"),
        "{}",
        mail[0]
    );
    assert!(mail[0].contains("https://localhost/auth/confirm?token="));
}

// The periodic sweep forgets what has run out: failure counts past their window, expired
// confirmations and the accounts never confirmed, MFA challenges, sessions and their
// refresh tokens. Live state stays; one user holds one enrolment challenge at a time.
#[tokio::test]
async fn sweep_prunes_what_an_attacker_can_grow() {
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let gw = Setup::shop(shop).many_auth_requests().with_clock(&clock).start().await;
    let store = gw.auth().store();
    gw.add_user("c@example.com", &["customer"]).await;
    for i in 0..3 {
        assert_eq!(gw.login(&format!("ghost{i}@example.com"), PASSWORD).await.0, 401);
    }
    let body = json!({ "email": "pending@example.com", "password": PASSWORD, "name": "P" });
    assert_eq!(gw.post("/auth/register", body.clone()).await.0, 202);
    let (_, tokens) = gw.login("c@example.com", PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        let resp = gw
            .client
            .post(gw.url("/auth/totp/enroll"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let n = store.counts().await.unwrap();
    assert_eq!(n.challenges, 1, "every enrolment kept a challenge: {n:?}");
    assert_eq!(
        (n.users, n.confirmations, n.failures, n.sessions),
        (2, 1, 3, 1),
        "{n:?}"
    );

    // A minute on, nothing has run out yet.
    clock.advance(Duration::from_secs(60));
    gw.auth().sweep().await;
    let n = store.counts().await.unwrap();
    assert_eq!(
        (n.users, n.confirmations, n.challenges, n.failures, n.sessions),
        (2, 1, 1, 3, 1),
        "{n:?}"
    );

    // Past the challenge lifetime and the failure window.
    clock.advance(Duration::from_secs(15 * 60));
    gw.auth().sweep().await;
    let n = store.counts().await.unwrap();
    assert_eq!((n.challenges, n.failures), (0, 0), "{n:?}");
    assert_eq!((n.users, n.confirmations, n.sessions), (2, 1, 1), "{n:?}");
    // The session is still alive and rotates.
    let (status, rotated) = gw
        .post("/auth/refresh", json!({ "refresh_token": tokens["refresh_token"] }))
        .await;
    assert_eq!(status, 200, "{rotated}");

    // Past the refresh lifetime (12 h) and the confirmation lifetime (24 h).
    clock.advance(Duration::from_secs(25 * 3600));
    gw.auth().sweep().await;
    let n = store.counts().await.unwrap();
    assert_eq!(
        (
            n.users,
            n.confirmations,
            n.challenges,
            n.failures,
            n.sessions,
            n.refresh
        ),
        (1, 0, 0, 0, 0, 0),
        "{n:?}"
    );
    assert!(store.user_by_email("pending@example.com").await.unwrap().is_none());
    assert!(store.user_by_email("c@example.com").await.unwrap().is_some());

    // The address is free again: a new registration makes an account that confirms.
    assert_eq!(gw.post("/auth/register", body).await.0, 202);
    let token = confirmation_token(gw.outbox().last().unwrap());
    assert_eq!(gw.confirm(&token).await, 200);
    assert_eq!(gw.login("pending@example.com", PASSWORD).await.0, 200);
}
