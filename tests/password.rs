//! Password reset and change (contract §8), the common-password rule, and the
//! administrator's `user password`, `user enable` and `--json`: over real TLS, with the
//! fake clock for the mail interval, the token lifetime and the lockout.

mod common;

use std::time::Duration;

use common::{cli, cli_stdin, confirmation_token, field, start_shop, CliOut, Setup, TestGateway, PASSWORD};
use portcullis::audit::EventKind;
use portcullis::clock::{Clock, ManualClock};
use serde_json::{json, Value};

const NEW_PASSWORD: &str = "Fresh!Keyp4d-Lantern";

/// `POST /auth/password/forgot`.
async fn forgot(gw: &TestGateway, email: &str) -> (u16, Value) {
    gw.post("/auth/password/forgot", json!({ "email": email })).await
}

/// `POST /auth/password/reset`.
async fn reset(gw: &TestGateway, token: &str, password: &str) -> (u16, Value) {
    gw.post("/auth/password/reset", json!({ "token": token, "password": password }))
        .await
}

/// `POST /auth/password/change` with `access` as the Bearer token.
async fn change(gw: &TestGateway, access: &str, current: &str, new: &str) -> (u16, Value) {
    let resp = gw
        .client
        .post(gw.url("/auth/password/change"))
        .bearer_auth(access)
        .json(&json!({ "current_password": current, "new_password": new }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `POST /auth/refresh`: the status.
async fn refresh(gw: &TestGateway, refresh_token: &str) -> u16 {
    gw.post("/auth/refresh", json!({ "refresh_token": refresh_token }))
        .await
        .0
}

/// Signs in with `password`: (access token, refresh token).
async fn sign_in(gw: &TestGateway, email: &str, password: &str) -> (String, String) {
    let (status, body) = gw.login(email, password).await;
    assert_eq!(status, 200, "{body}");
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// The reset mails in the outbox.
fn reset_mails(gw: &TestGateway) -> Vec<String> {
    gw.outbox()
        .into_iter()
        .filter(|m| m.contains("/auth/password/reset?token="))
        .collect()
}

/// The reasons of the audit records of one kind, oldest first.
async fn reasons(gw: &TestGateway, kind: EventKind) -> Vec<(String, String)> {
    gw.audit_events(kind)
        .await
        .into_iter()
        .map(|r| (r.event.outcome, r.event.reason.unwrap_or_default()))
        .collect()
}

// Known and unknown addresses get the same answer; the known one gets one mail with a
// link under public_url, a second request within the minute sends none, one after the
// minute sends another; unconfirmed and disabled accounts get none; malformed JSON is
// 400. The trail tells the cases apart.
#[tokio::test]
async fn forgot_answers_alike_and_mails_once_a_minute() {
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let gw = Setup::shop(shop).with_clock(&clock).start().await;
    gw.add_user("known@example.com", &["customer"]).await;

    let known = forgot(&gw, "Known@Example.com").await;
    let unknown = forgot(&gw, "nobody@example.com").await;
    assert_eq!(known, (202, json!({ "status": "reset_sent" })));
    assert_eq!(unknown, known, "the answer tells the addresses apart");
    let mails = reset_mails(&gw);
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].contains("To: <known@example.com>"), "{}", mails[0]);
    assert!(mails[0].contains("https://localhost/auth/password/reset?token="));
    let token = confirmation_token(&mails[0]);
    assert!(token.len() >= 32);

    assert_eq!(forgot(&gw, "known@example.com").await, known);
    assert_eq!(reset_mails(&gw).len(), 1, "a second mail within the minute");
    clock.advance(Duration::from_secs(61));
    assert_eq!(forgot(&gw, "known@example.com").await, known);
    assert_eq!(reset_mails(&gw).len(), 2, "no mail after the minute");

    let resp = gw
        .client
        .post(gw.url("/auth/password/forgot"))
        .header("content-type", "application/json")
        .body("{\"email\":")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // Neither an unconfirmed nor a disabled account gets a mail; both get the same 202.
    let body = json!({ "email": "pending@example.com", "password": PASSWORD, "name": "P" });
    assert_eq!(gw.post("/auth/register", body).await.0, 202);
    let off = gw.add_user("off@example.com", &["customer"]).await;
    gw.auth()
        .store()
        .update_user(&off, |u| u.disabled = true)
        .await
        .unwrap();
    assert_eq!(forgot(&gw, "pending@example.com").await, known);
    assert_eq!(forgot(&gw, "off@example.com").await, known);
    assert_eq!(reset_mails(&gw).len(), 2);

    let trail = reasons(&gw, EventKind::PasswordResetRequested).await;
    let said: Vec<&str> = trail.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        said,
        [
            "mail sent",
            "no such account",
            "already sent within a minute",
            "mail sent",
            "account unconfirmed; no mail",
            "account disabled; no mail",
        ]
    );
    let all = gw.audit_events(EventKind::PasswordResetRequested).await;
    assert!(
        all.iter().all(|r| !format!("{:?}", r.event).contains(&token)),
        "a token reached the trail"
    );
}

// A reset works once: the old password, access and refresh tokens stop at once, the
// lockout is cleared; the token is then `invalid_token`. A password the policy refuses
// (rule `common` among others) leaves the token usable.
#[tokio::test]
async fn reset_works_once_revokes_and_unlocks() {
    let shop = start_shop().await;
    let gw = Setup::shop(shop).many_auth_requests().start().await;
    gw.add_user("r@example.com", &["customer"]).await;
    let (access, refresh_token) = sign_in(&gw, "r@example.com", PASSWORD).await;
    for _ in 0..5 {
        assert_eq!(gw.login("r@example.com", "Wrong!Passw0rd").await.0, 401);
    }
    assert_eq!(gw.login("r@example.com", PASSWORD).await.0, 429, "not locked");

    forgot(&gw, "r@example.com").await;
    let token = confirmation_token(&reset_mails(&gw)[0]);
    let (status, body) = reset(&gw, &token, "Password1!").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("password_policy")),
        "{body}"
    );
    assert!(body["rules"].as_array().unwrap().contains(&json!("common")), "{body}");
    assert_eq!(reset(&gw, &token, "short").await.0, 422);

    let (status, body) = reset(&gw, &token, NEW_PASSWORD).await;
    assert_eq!((status, body), (200, json!({ "status": "password_changed" })));
    let (status, body) = reset(&gw, &token, "Other!Passw0rd-Two").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_token")), "{body}");
    assert_eq!(reset(&gw, "made-up-token", NEW_PASSWORD).await.0, 400);

    assert_eq!(
        gw.get_with("/auth/me", &access).await.0,
        401,
        "old access token still works"
    );
    assert_eq!(refresh(&gw, &refresh_token).await, 401, "old refresh token still works");
    assert_eq!(gw.login("r@example.com", PASSWORD).await.0, 401);
    let (access, _) = sign_in(&gw, "r@example.com", NEW_PASSWORD).await;
    assert_eq!(gw.get_with("/auth/me", &access).await.0, 200);

    let trail = reasons(&gw, EventKind::PasswordReset).await;
    let outcomes: Vec<&str> = trail.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        outcomes,
        ["failure", "failure", "success", "failure", "failure"],
        "{trail:?}"
    );
    assert!(trail[0].1.contains("token kept"), "{trail:?}");
    assert!(trail[2].1.contains("every session revoked"), "{trail:?}");
}

// A token older than reset_ttl is refused; so is one issued before a newer one, and one
// whose account changed its password since. A sign-in in the second of a reset works.
#[tokio::test]
async fn reset_token_expires_and_dies_with_the_password() {
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let gw = Setup::shop(shop)
        .with_clock(&clock)
        .extra("[password]\nreset_ttl = \"10m\"\n")
        .start()
        .await;
    gw.add_user("e@example.com", &["customer"]).await;

    forgot(&gw, "e@example.com").await;
    let expired = confirmation_token(&reset_mails(&gw)[0]);
    clock.advance(Duration::from_secs(10 * 60 + 1));
    let (status, body) = reset(&gw, &expired, NEW_PASSWORD).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_token")));
    gw.auth().sweep().await;
    assert_eq!(
        gw.auth().store().counts().await.unwrap().resets,
        0,
        "the expired token was not pruned"
    );

    forgot(&gw, "e@example.com").await;
    let older = confirmation_token(&reset_mails(&gw)[1]);
    clock.advance(Duration::from_secs(61));
    forgot(&gw, "e@example.com").await;
    let newer = confirmation_token(&reset_mails(&gw)[2]);
    assert_eq!(
        reset(&gw, &older, NEW_PASSWORD).await.0,
        400,
        "a newer token voids the older"
    );

    let (access, _) = sign_in(&gw, "e@example.com", PASSWORD).await;
    assert_eq!(change(&gw, &access, PASSWORD, NEW_PASSWORD).await.0, 204);
    assert_eq!(
        reset(&gw, &newer, "Another!Keyp4d-Meadow").await.0,
        400,
        "a token outlived a password change"
    );

    // A reset and a sign-in within the same second (the clock stands still): the new
    // session works, the one from before the reset does not.
    clock.advance(Duration::from_secs(61));
    let (before, _) = sign_in(&gw, "e@example.com", NEW_PASSWORD).await;
    forgot(&gw, "e@example.com").await;
    let token = confirmation_token(reset_mails(&gw).last().unwrap());
    assert_eq!(reset(&gw, &token, "Third!Keyp4d-Orchard").await.0, 200);
    let (after, _) = sign_in(&gw, "e@example.com", "Third!Keyp4d-Orchard").await;
    assert_eq!(
        gw.get_with("/auth/me", &after).await.0,
        200,
        "a sign-in right after a reset is refused"
    );
    assert_eq!(gw.get_with("/auth/me", &before).await.0, 401);
}

// Two concurrent resets with one token: exactly one wins.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_resets_one_wins() {
    let shop = start_shop().await;
    let gw = Setup::shop(shop).many_auth_requests().start().await;
    gw.add_user("c@example.com", &["customer"]).await;
    forgot(&gw, "c@example.com").await;
    let token = confirmation_token(&reset_mails(&gw)[0]);
    let passwords = ["Racer!One-Keyp4d", "Racer!Two-Keyp4d"];
    let attempts = passwords.iter().map(|p| reset(&gw, &token, p));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 1, "{statuses:?}");
    let winner = passwords[statuses.iter().position(|s| *s == 200).unwrap()];
    sign_in(&gw, "c@example.com", winner).await;
}

// A change needs the current password: a wrong one is 401 and counts toward the lockout
// like a failed login (five lock the login too); a weak new one is 422; success is 204
// and revokes every other session, not the caller's. No token: 401.
#[tokio::test]
async fn change_counts_failures_and_keeps_only_the_callers_session() {
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let gw = Setup::shop(shop).with_clock(&clock).many_auth_requests().start().await;
    gw.add_user("ch@example.com", &["customer"]).await;
    let (mine, _) = sign_in(&gw, "ch@example.com", PASSWORD).await;

    let resp = gw
        .client
        .post(gw.url("/auth/password/change"))
        .json(&json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    for n in 0..5 {
        let (status, body) = change(&gw, &mine, "Wrong!Passw0rd", NEW_PASSWORD).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_credentials")),
            "{n}"
        );
    }
    let (status, body) = gw.login("ch@example.com", PASSWORD).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("locked")),
        "wrong changes did not lock"
    );
    let (status, body) = change(&gw, &mine, PASSWORD, NEW_PASSWORD).await;
    assert_eq!((status, body["error"].as_str()), (429, Some("locked")));
    assert_eq!(gw.audit_events(EventKind::LoginLocked).await.len(), 2);

    clock.advance(Duration::from_secs(15 * 60 + 1));
    let (mine, my_refresh) = sign_in(&gw, "ch@example.com", PASSWORD).await;
    let (other, other_refresh) = sign_in(&gw, "ch@example.com", PASSWORD).await;
    let (status, body) = change(&gw, &mine, PASSWORD, "Qwerty123!").await;
    assert_eq!(status, 422, "{body}");
    assert!(body["rules"].as_array().unwrap().contains(&json!("common")), "{body}");
    let (status, _) = change(&gw, &mine, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(status, 204);

    assert_eq!(
        gw.get_with("/auth/me", &mine).await.0,
        200,
        "the caller's session ended"
    );
    assert_eq!(refresh(&gw, &my_refresh).await, 200);
    assert_eq!(gw.get_with("/auth/me", &other).await.0, 401, "another session survived");
    assert_eq!(refresh(&gw, &other_refresh).await, 401);
    assert_eq!(gw.login("ch@example.com", PASSWORD).await.0, 401);
    sign_in(&gw, "ch@example.com", NEW_PASSWORD).await;

    let trail = reasons(&gw, EventKind::PasswordChanged).await;
    let outcomes: Vec<&str> = trail.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        outcomes,
        ["failure", "failure", "failure", "failure", "failure", "failure", "success"],
        "{trail:?}"
    );
    assert!(trail[0].1.contains("wrong current password"), "{trail:?}");
    assert!(trail[6].1.contains("other sessions revoked"), "{trail:?}");
}

// Common passwords fail registration with rule `common`; `reject_common = false` lets
// them through.
#[tokio::test]
async fn common_passwords_rejected_unless_configured() {
    let shop = start_shop().await;
    let gw = Setup::shop(shop).start().await;
    for weak in ["Password1!", "Qwerty123!"] {
        let body = json!({ "email": "w@example.com", "password": weak, "name": "W" });
        let (status, resp) = gw.post("/auth/register", body).await;
        assert_eq!(
            (status, resp["error"].as_str()),
            (422, Some("password_policy")),
            "{weak}"
        );
        assert_eq!(resp["rules"], json!(["common"]), "{weak}");
    }
    let body = json!({ "email": "w@example.com", "password": PASSWORD, "name": "W" });
    assert_eq!(gw.post("/auth/register", body).await.0, 202);

    let shop = start_shop().await;
    let lax = Setup::shop(shop)
        .extra("[password]\nreject_common = false\n")
        .start()
        .await;
    let body = json!({ "email": "w@example.com", "password": "Password1!", "name": "W" });
    assert_eq!(lax.post("/auth/register", body).await.0, 202);
}

// `user password` and `user enable`, with the gateway stopped and running; `--json` on
// `user list` and `user show` is one JSON value with no secret field; an unknown user
// is a clear error and exit 1.
#[tokio::test(flavor = "multi_thread")]
async fn user_password_enable_and_json() {
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let config = Setup::shop(shop).write(dir.path());
    let out = cli_stdin(
        &config,
        &[
            "user",
            "add",
            "--email",
            "p@example.com",
            "--role",
            "customer",
            "--password-stdin",
        ],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(out.ok, "{}", out.stderr);

    // Stopped: straight to the database.
    let out = cli_stdin(
        &config,
        &["user", "password", "p@example.com", "--password-stdin"],
        b"Password1!\n",
    );
    assert!(!out.ok && out.stderr.contains("common"), "{}", out.text);
    let out = cli_stdin(
        &config,
        &["user", "password", "p@example.com", "--password-stdin"],
        format!("{NEW_PASSWORD}\n").as_bytes(),
    );
    assert!(out.ok, "{}", out.stderr);
    assert!(!out.stdout.contains(NEW_PASSWORD), "printed a chosen password");
    let out = cli(&config, &["user", "disable", "p@example.com"]);
    assert!(out.ok, "{}", out.stderr);
    let out = cli(&config, &["user", "show", "p@example.com", "--json"]);
    assert!(out.ok, "{}", out.stderr);
    let shown: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(shown["email"], "p@example.com");
    assert_eq!(shown["disabled"], true);
    let CliOut { ok, stderr, .. } = cli(&config, &["user", "password", "nobody@example.com"]);
    assert!(!ok && stderr.contains("no account"), "{stderr}");
    let CliOut { ok, stderr, .. } = cli(&config, &["user", "enable", "nobody@example.com"]);
    assert!(!ok && stderr.contains("no account"), "{stderr}");

    // Running: the same commands go through its socket.
    let gw = TestGateway::launch(dir, &config, None).await;
    assert_eq!(gw.login("p@example.com", NEW_PASSWORD).await.0, 403, "disabled");
    let out = cli(&config, &["user", "enable", "p@example.com"]);
    assert!(out.ok, "{}", out.stderr);
    let (access, refresh_token) = sign_in(&gw, "p@example.com", NEW_PASSWORD).await;
    for _ in 0..5 {
        gw.login("p@example.com", "Wrong!Passw0rd").await;
    }
    let out = cli(&config, &["user", "password", "p@example.com"]);
    assert!(out.ok, "{}", out.stderr);
    let generated = field(&out.stdout, "password");
    assert_eq!(gw.get_with("/auth/me", &access).await.0, 401, "old token still works");
    assert_eq!(refresh(&gw, &refresh_token).await, 401);
    sign_in(&gw, "p@example.com", &generated).await;

    let out = cli(&config, &["user", "list", "--json"]);
    assert!(out.ok, "{}", out.stderr);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    let users = list.as_array().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["email"], "p@example.com");
    assert_eq!(users[0]["disabled"], false);
    let out = cli(&config, &["user", "show", "p@example.com", "--json"]);
    let shown: Value = serde_json::from_str(&out.stdout).unwrap();
    for secret in ["password_hash", "password", "totp_secret", "recovery_codes"] {
        assert!(
            shown.get(secret).is_none() && users[0].get(secret).is_none(),
            "{secret}"
        );
    }
    assert!(!out.stdout.contains("$argon2"), "{}", out.stdout);

    let changed = reasons(&gw, EventKind::PasswordChanged).await;
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert!(changed
        .iter()
        .all(|(o, r)| o == "success" && r.contains("by admin command")));
    assert_eq!(gw.audit_events(EventKind::UserEnabled).await.len(), 1);
}

// A second-factor challenge opened by the old password dies with it: after a reset, the
// mfa_token from before is refused even with a valid code, while the new password's
// login completes.
#[tokio::test]
async fn reset_voids_open_mfa_challenges() {
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let gw = Setup::shop(shop).with_clock(&clock).start().await;
    let staff = gw.enrolled(&clock, "staff@example.com", &["admin"]).await;

    let (status, before) = gw.login("staff@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["mfa_required"], true, "{before}");
    forgot(&gw, "staff@example.com").await;
    let token = confirmation_token(&reset_mails(&gw)[0]);
    assert_eq!(reset(&gw, &token, NEW_PASSWORD).await.0, 200);

    clock.advance(Duration::from_secs(30));
    let code = portcullis::auth::totp::code_at(&staff.secret, clock.now()).unwrap();
    let (status, body) = gw
        .post("/auth/mfa", json!({ "mfa_token": before["mfa_token"], "code": code }))
        .await;
    assert_eq!(status, 401, "a challenge of the old password completed: {body}");
    assert_eq!(body["error"], "invalid_token", "{body}");

    let (status, after) = gw.login("staff@example.com", NEW_PASSWORD).await;
    assert_eq!(status, 200, "{after}");
    let (status, grant) = gw
        .post("/auth/mfa", json!({ "mfa_token": after["mfa_token"], "code": code }))
        .await;
    assert_eq!(status, 200, "{grant}");
}
