//! Recovery codes, the enrolment QR code and `user reset-mfa`, over real TLS.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{cli, start_shop, CliOut, Setup, TestGateway, PASSWORD};
use portcullis::auth::totp;
use portcullis::clock::{Clock, ManualClock};
use serde_json::{json, Value};

fn claims_of(token: &str) -> Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn gateway(clock: &ManualClock) -> TestGateway {
    let shop = start_shop().await;
    Setup::shop(shop).with_clock(clock).many_auth_requests().start().await
}

// The enrolment answer carries a QR code that decodes to exactly the otpauth URI, and the
// answer completing it ten distinct recovery codes of the documented shape.
#[tokio::test]
async fn enrolment_gives_qr_and_codes() {
    let clock = ManualClock::new();
    let gw = gateway(&clock).await;
    let e = gw.enrolled(&clock, "admin@example.com", &["admin"]).await;

    let png = base64::engine::general_purpose::STANDARD
        .decode(e.enrollment["qr_png"].as_str().unwrap())
        .expect("qr_png is standard base64 without a prefix");
    let image = image::load_from_memory(&png).unwrap().to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1);
    let (_, text) = grids[0].decode().unwrap();
    assert_eq!(text, e.enrollment["otpauth_uri"].as_str().unwrap());

    let codes = e.recovery_codes();
    assert_eq!(codes.len(), 10);
    let distinct: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(distinct.len(), 10);
    for c in &codes {
        assert_eq!(c.len(), 19, "{c}");
        assert!(c.split('-').all(|g| g.len() == 4), "{c}");
    }
    // Only hashes are kept: no code appears in the account record.
    let user = gw
        .auth()
        .store()
        .user_by_email("admin@example.com")
        .await
        .unwrap()
        .unwrap();
    let stored = serde_json::to_string(&user).unwrap();
    assert_eq!(user.recovery_codes.len(), 10);
    assert!(codes.iter().all(|c| !stored.contains(c.as_str())
        && !stored.contains(&c.replace('-', ""))
        && !stored.to_lowercase().contains(&c.replace('-', ""))));
    // A later login (not an enrolment) hands out no codes.
    let code = totp::code_at(&e.secret, clock.now() + 30).unwrap();
    clock.advance(Duration::from_secs(30));
    let t = gw.mfa_token("admin@example.com").await;
    let (status, body) = gw.post("/auth/mfa", json!({ "mfa_token": t, "code": code })).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("recovery_codes").is_none(), "{body}");
}

// A recovery code completes a login once, typed in any case and without dashes, and
// counts as the second factor; a second use, or a wrong code, is 401 and spends the
// challenge and counts as a failed attempt, like a wrong TOTP code.
#[tokio::test]
async fn recovery_code_logs_in_once() {
    let clock = ManualClock::new();
    let gw = gateway(&clock).await;
    let e = gw.enrolled(&clock, "admin@example.com", &["admin"]).await;
    let codes = e.recovery_codes();

    let t = gw.mfa_token("admin@example.com").await;
    let typed = codes[0].replace('-', "").to_uppercase();
    let (status, body) = gw
        .post("/auth/mfa", json!({ "mfa_token": t, "recovery_code": typed }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["amr"],
        json!(["pwd", "otp"])
    );
    let used = gw.audit_events("recovery_code_used").await;
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].event.reason.as_deref(), Some("login; 9 recovery codes left"));
    assert_eq!(used[0].event.email.as_deref(), Some("admin@example.com"));

    // Used once: refused the second time, and the challenge is spent.
    let t = gw.mfa_token("admin@example.com").await;
    let (status, body) = gw
        .post("/auth/mfa", json!({ "mfa_token": t, "recovery_code": codes[0] }))
        .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_code")), "{body}");
    let code = totp::code_at(&e.secret, clock.now() + 30).unwrap();
    clock.advance(Duration::from_secs(30));
    assert_eq!(
        gw.post("/auth/mfa", json!({ "mfa_token": t, "code": code })).await.0,
        401
    );
    assert_eq!(gw.auth().store().failures("admin@example.com").await.unwrap().count, 1);

    // A wrong code: 401, challenge spent, counted.
    let t = gw.mfa_token("admin@example.com").await;
    let (status, body) = gw
        .post(
            "/auth/mfa",
            json!({ "mfa_token": t, "recovery_code": "aaaa-bbbb-cccc-dddd" }),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_code")));
    assert_eq!(
        gw.post("/auth/mfa", json!({ "mfa_token": t, "code": code })).await.0,
        401
    );
    assert_eq!(gw.auth().store().failures("admin@example.com").await.unwrap().count, 2);
    let failures = gw.audit_events("mfa_failure").await;
    assert!(failures
        .iter()
        .any(|r| r.event.reason.as_deref() == Some("wrong or used recovery code")));

    // Both a code and a recovery code, or neither: 400.
    let t = gw.mfa_token("admin@example.com").await;
    let both = json!({ "mfa_token": t, "code": code, "recovery_code": codes[1] });
    assert_eq!(gw.post("/auth/mfa", both).await.0, 400);
    assert_eq!(gw.post("/auth/mfa", json!({ "mfa_token": t })).await.0, 400);
    // The other codes still work (and a success clears the count).
    let (status, _) = gw
        .post("/auth/mfa", json!({ "mfa_token": t, "recovery_code": codes[1] }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(gw.auth().store().failures("admin@example.com").await.unwrap().count, 0);
}

// Regenerating needs a token that passed TOTP; it voids the old set: an old code is
// refused, a new one works.
#[tokio::test]
async fn regeneration_voids_the_old_set() {
    let clock = ManualClock::new();
    let gw = gateway(&clock).await;
    let e = gw.enrolled(&clock, "admin@example.com", &["admin"]).await;
    let old = e.recovery_codes();

    let resp = gw
        .client
        .post(gw.url("/auth/totp/recovery-codes"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let (_, customer) = gw.signed_in("cust@example.com", &["customer"]).await;
    let (status, _, body) = gw.post_with("/auth/totp/recovery-codes", &customer, json!({})).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")), "{body}");

    let (status, _, body) = gw
        .post_with("/auth/totp/recovery-codes", e.access_token(), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let new: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(new.len(), 10);
    assert!(new.iter().all(|c| !old.contains(c)));
    let events = gw.audit_events("recovery_codes_regenerated").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.email.as_deref(), Some("admin@example.com"));

    let t = gw.mfa_token("admin@example.com").await;
    assert_eq!(
        gw.post("/auth/mfa", json!({ "mfa_token": t, "recovery_code": old[2] }))
            .await
            .0,
        401,
        "a code of the old set still worked"
    );
    let t = gw.mfa_token("admin@example.com").await;
    assert_eq!(
        gw.post("/auth/mfa", json!({ "mfa_token": t, "recovery_code": new[2] }))
            .await
            .0,
        200
    );
}

// Two uses of one code at once, through two challenges: exactly one wins.
#[tokio::test]
async fn concurrent_use_has_one_winner() {
    let clock = ManualClock::new();
    let gw = gateway(&clock).await;
    let e = gw.enrolled(&clock, "admin@example.com", &["admin"]).await;
    let code = e.recovery_codes()[0].clone();
    for round in 0..3 {
        let code = if round == 0 {
            code.clone()
        } else {
            e.recovery_codes()[round].clone()
        };
        let mut tokens = Vec::new();
        for _ in 0..4 {
            tokens.push(gw.mfa_token("admin@example.com").await);
        }
        let attempts = tokens
            .iter()
            .map(|t| gw.post("/auth/mfa", json!({ "mfa_token": t, "recovery_code": code })));
        let statuses: Vec<u16> = futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 3, "{statuses:?}");
        gw.auth().store().clear_failures("admin@example.com").await.unwrap();
    }
    let user = gw
        .auth()
        .store()
        .user_by_email("admin@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.recovery_codes.len(), 7);
}

// `user reset-mfa` while the gateway runs: TOTP and recovery codes gone, every session
// revoked, the next login enrols again; audited.
#[tokio::test(flavor = "multi_thread")]
async fn reset_mfa_while_running() {
    let clock = ManualClock::new();
    let gw = gateway(&clock).await;
    let e = gw.enrolled(&clock, "admin@example.com", &["admin"]).await;
    let config = gw.dir.path().join("gateway.toml");
    assert_eq!(gw.get_with("/auth/me", e.access_token()).await.0, 200);

    let CliOut { ok, stdout, stderr, .. } = cli(&config, &["user", "reset-mfa", "admin@example.com"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("admin@example.com"), "{stdout}");
    assert_eq!(gw.get_with("/auth/me", e.access_token()).await.0, 401);
    let refresh = e.grant["refresh_token"].as_str().unwrap();
    assert_eq!(
        gw.post("/auth/refresh", json!({ "refresh_token": refresh })).await.0,
        401
    );
    let events = gw.audit_events("mfa_reset").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.email.as_deref(), Some("admin@example.com"));

    let (status, body) = gw.login("admin@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    assert_eq!(body["mfa_enrollment_required"], true, "{body}");
    // The old recovery codes are gone with the secret.
    let user = gw
        .auth()
        .store()
        .user_by_email("admin@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(user.totp_secret.is_none() && user.recovery_codes.is_empty());
    // Enrolling again works at once, even within the step of the last code accepted.
    let (_, enrol) = gw
        .post("/auth/totp/enroll", json!({ "mfa_token": body["mfa_token"] }))
        .await;
    let code = totp::code_at(enrol["secret"].as_str().unwrap(), clock.now()).unwrap();
    let (status, grant) = gw
        .post("/auth/mfa", json!({ "mfa_token": enrol["mfa_token"], "code": code }))
        .await;
    assert_eq!(status, 200, "{grant}");
    assert_eq!(grant["recovery_codes"].as_array().unwrap().len(), 10);
}

// `user reset-mfa` with the gateway stopped: the same change, seen after a restart; a
// customer without a required second factor logs in with the password alone.
#[tokio::test(flavor = "multi_thread")]
async fn reset_mfa_while_stopped() {
    let clock = ManualClock::new();
    let mut gw = gateway(&clock).await;
    let e = gw.enrolled(&clock, "admin@example.com", &["admin"]).await;
    let access = e.access_token().to_owned();
    let config = gw.dir.path().join("gateway.toml");
    gw.shutdown().await;
    let TestGateway { dir, .. } = gw;

    let CliOut { ok, stderr, .. } = cli(&config, &["user", "reset-mfa", "admin@example.com"]);
    assert!(ok, "{stderr}");
    let CliOut { ok, .. } = cli(&config, &["user", "reset-mfa", "nobody@example.com"]);
    assert!(!ok);

    let gw = TestGateway::launch(dir, &config, Some(clock.clone())).await;
    assert_eq!(gw.get_with("/auth/me", &access).await.0, 401);
    assert_eq!(gw.audit_events("mfa_reset").await.len(), 1);
    let (status, body) = gw.login("admin@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    assert_eq!(body["mfa_enrollment_required"], true, "{body}");
}
