//! Several gateways as one (contract §11): two gateways started in-process on one
//! throwaway PostgreSQL, each with its own data directory, over real TLS. An account,
//! a logout, a refresh family, a lockout count and the audit chain made through one are
//! what the other sees. Then the database goes away under traffic and comes back. Mail
//! made on either goes through one shared spool and is sent once.

mod common;

use std::sync::Once;
use std::time::{Duration, Instant};

use common::postgres::PgCluster;
use common::smtp::{Mode, SmtpServer};
use common::Recorder;
use common::{confirmation_token, Setup, TestGateway, OPEN_POLICY, PASSWORD};
use portcullis::audit::EventKind;
use portcullis::auth::totp;
use portcullis::clock::{Clock, ManualClock};
use serde_json::json;

/// Every gateway of one store shares this key (PORTCULLIS_SECRET_KEY).
fn secret_key() {
    static KEY: Once = Once::new();
    // Set once, before any gateway of this binary reads it; every test calls this first.
    KEY.call_once(|| std::env::set_var("PORTCULLIS_SECRET_KEY", "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="));
}

/// Two gateways in front of one recorder, on one fresh database of `cluster`.
async fn pair_on(cluster: &PgCluster, rec: &Recorder, policy: &str) -> (TestGateway, TestGateway) {
    secret_key();
    let url = cluster.database().await;
    let store = format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\nconnect_timeout = \"1s\"\n");
    let setup = || {
        Setup::new(&[("rec", rec.url())], policy)
            .many_auth_requests()
            .extra(&store)
    };
    (setup().start().await, setup().start().await)
}

/// Two gateways on one fresh database of the shared cluster, both on `clock`.
async fn pair_clocked(rec: &Recorder, clock: &ManualClock, extra: &str) -> (TestGateway, TestGateway) {
    secret_key();
    let url = PgCluster::shared().database().await;
    let store = format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\nconnect_timeout = \"1s\"\n");
    let setup = || {
        Setup::new(&[("rec", rec.url())], OPEN_POLICY)
            .with_clock(clock)
            .many_auth_requests()
            .extra(&format!("{store}{extra}"))
    };
    (setup().start().await, setup().start().await)
}

async fn pair(rec: &Recorder) -> (TestGateway, TestGateway) {
    pair_on(PgCluster::shared(), rec, OPEN_POLICY).await
}

// Registration on one gateway (its mail's link confirmed on the other), then login on
// either: one account, and each gateway's tokens are good on the other (the signing key
// is shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_on_one_login_on_the_other() {
    let rec = Recorder::start().await;
    let (a, b) = pair(&rec).await;
    let (status, body) = a
        .post(
            "/auth/register",
            json!({ "email": "r@example.com", "password": PASSWORD, "name": "R" }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let mail = a.outbox().pop().expect("no confirmation mail");
    assert_eq!(b.confirm(&confirmation_token(&mail)).await, 200);
    let token = b.access_token("r@example.com").await;
    let id = a
        .auth()
        .store()
        .user_by_email("r@example.com")
        .await
        .unwrap()
        .unwrap()
        .id;
    assert_eq!(a.get_with(&format!("/members/{id}"), &token).await.0, 200);
    let token = a.access_token("r@example.com").await;
    assert_eq!(b.get_with(&format!("/members/{id}"), &token).await.0, 200);
}

// A logout on one gateway is refused on the other within a second; so is every token of
// a user whose tokens were revoked there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_refused_on_the_other() {
    let rec = Recorder::start().await;
    let (a, b) = pair(&rec).await;
    let (id, token) = a.signed_in("l@example.com", &["customer"]).await;
    let path = format!("/members/{id}");
    assert_eq!(b.get_with(&path, &token).await.0, 200);
    let out = a
        .client
        .post(a.url("/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert!((200..300).contains(&out), "logout: {out}");
    let logged_out = Instant::now();
    loop {
        let (status, body) = b.get_with(&path, &token).await;
        if status == 401 {
            assert_eq!(body["error_description"], "revoked", "{body}");
            break;
        }
        assert!(
            logged_out.elapsed() < Duration::from_secs(1),
            "still {status} on b after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// A refresh token used twice, once on each gateway, revokes its whole family on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_reuse_across_gateways_revokes_the_family() {
    let rec = Recorder::start().await;
    let (a, b) = pair(&rec).await;
    let id = a.add_user("f@example.com", &["customer"]).await;
    let (status, first) = a.login("f@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = b
        .post("/auth/refresh", json!({ "refresh_token": first["refresh_token"] }))
        .await;
    assert_eq!(status, 200, "{second}");
    // The spent token again, on the other gateway: reuse.
    let (status, _) = a
        .post("/auth/refresh", json!({ "refresh_token": first["refresh_token"] }))
        .await;
    assert_eq!(status, 401);
    // The family is gone everywhere: its newest refresh token and its access token.
    let (status, _) = b
        .post("/auth/refresh", json!({ "refresh_token": second["refresh_token"] }))
        .await;
    assert_eq!(status, 401);
    let token = second["access_token"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    while a.get_with(&format!("/members/{id}"), token).await.0 != 401 {
        assert!(Instant::now() < deadline, "the family's access token still works on a");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Wrong passwords guessed in parallel, split between the gateways, are counted exactly:
// the lockout comes at max_failures (5) whichever gateway took them, and then both
// refuse even the right password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_counted_across_gateways() {
    let rec = Recorder::start().await;
    let (a, b) = pair(&rec).await;
    a.add_user("g@example.com", &["customer"]).await;
    let guesses = (0..5).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        async move { gw.login("g@example.com", "wrong-Passw0rd!").await.0 }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
    assert_eq!(a.login("g@example.com", PASSWORD).await.0, 429);
    assert_eq!(b.login("g@example.com", PASSWORD).await.0, 429);
    let failures = a.auth().store().failures("g@example.com").await.unwrap();
    assert!(failures.locked_until_ms > 0, "{failures:?}");
}

// `portcullis keys public-pem` run against either gateway's configuration prints the
// one signing key the gateways share through the database (not a key of its own in
// data_dir), the key that verifies both gateways' tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_public_pem_is_the_shared_key() {
    let rec = Recorder::start().await;
    let (a, b) = pair(&rec).await;
    let shared = a.auth().keys().public_pem();
    assert_eq!(b.auth().keys().public_pem(), shared);
    for gw in [&a, &b] {
        let config = gw.dir.path().join("gateway.toml");
        let out = tokio::task::spawn_blocking(move || common::cli(&config, &["keys", "public-pem"]))
            .await
            .unwrap();
        assert!(out.ok, "{}", out.stderr);
        assert_eq!(out.stdout, shared);
    }
    assert!(
        !a.dir.path().join("data/keys").exists(),
        "a key file was made in data_dir"
    );
}

// A TOTP code is good once across the gateways: the code that completed a login on one
// is refused on the other (its step is the account's last used one, in the shared store),
// and the next step's code is good on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_code_used_on_one_refused_on_the_other() {
    let rec = Recorder::start().await;
    let clock = ManualClock::new();
    let (a, b) = pair_clocked(&rec, &clock, "").await;
    let enrolled = a.enrolled(&clock, "t@example.com", &["admin"]).await;
    clock.advance(Duration::from_secs(30));
    let (on_a, on_b) = (a.mfa_token("t@example.com").await, b.mfa_token("t@example.com").await);
    let code = totp::code_at(&enrolled.secret, clock.now()).unwrap();
    let (status, body) = a.post("/auth/mfa", json!({ "mfa_token": on_a, "code": code })).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = b.post("/auth/mfa", json!({ "mfa_token": on_b, "code": code })).await;
    assert_eq!(status, 401, "the code used on a was taken again on b: {body}");
    clock.advance(Duration::from_secs(30));
    let on_b = b.mfa_token("t@example.com").await;
    let code = totp::code_at(&enrolled.secret, clock.now()).unwrap();
    let (status, body) = b.post("/auth/mfa", json!({ "mfa_token": on_b, "code": code })).await;
    assert_eq!(status, 200, "{body}");
}

// With `idle_timeout`, a session used only on one gateway is not ended as idle by the
// other, which saw it once and then not for longer than the timeout: the sweeps share
// the last-used times through the store. Left unused, it is ended once, for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_see_use_on_the_other_gateway() {
    let rec = Recorder::start().await;
    let clock = ManualClock::new();
    let (a, b) = pair_clocked(&rec, &clock, "[tokens]\naccess_ttl = \"1h\"\nidle_timeout = \"5m\"\n").await;
    let (id, token) = a.signed_in("i@example.com", &["customer"]).await;
    let path = format!("/members/{id}");
    assert_eq!(b.get_with(&path, &token).await.0, 200);
    for minute in 1..=10 {
        clock.advance(Duration::from_secs(60));
        assert_eq!(a.get_with(&path, &token).await.0, 200, "minute {minute} on a");
        a.auth().sweep().await;
        b.auth().sweep().await;
    }
    assert_eq!(b.get_with(&path, &token).await.0, 200, "b ended a session in use on a");
    assert!(b.audit_events(EventKind::SessionExpired).await.is_empty());
    clock.advance(Duration::from_secs(6 * 60));
    b.auth().sweep().await;
    a.auth().sweep().await;
    assert_eq!(a.get_with(&path, &token).await.0, 401);
    assert_eq!(b.get_with(&path, &token).await.0, 401);
    // Ended by whichever sweep found it first, recorded once in the shared chain.
    assert_eq!(a.wait_for_events(EventKind::SessionExpired, 1).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.audit_events(EventKind::SessionExpired).await.len(), 1);
}

// A route's rate budget is one budget across the gateways: 6 requests a minute, taken
// in parallel from both, let exactly 6 through; the 429s carry the RateLimit headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_rate_limit_shared_exactly() {
    let rec = Recorder::start().await;
    let policy = "upstream = \"rec\"\n[[route]]\nname = \"limited\"\nmethods = [\"GET\"]\npath = \"/limited\"\npublic = true\nrate_limit = \"6/min\"\n";
    let (a, b) = pair_on(PgCluster::shared(), &rec, policy).await;
    let calls = (0..10).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        async move {
            let resp = gw.client.get(gw.url("/limited")).send().await.unwrap();
            (resp.status().as_u16(), resp.headers().contains_key("ratelimit-limit"))
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    assert_eq!(answers.iter().filter(|(s, _)| *s == 200).count(), 6, "{answers:?}");
    assert_eq!(answers.iter().filter(|(s, _)| *s == 429).count(), 4, "{answers:?}");
    assert!(answers.iter().all(|(_, h)| *h), "{answers:?}");
    assert_eq!(rec.requests().len(), 6);
}

// The audit trail is one chain: records written through both gateways verify together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_audit_chain_from_both() {
    let rec = Recorder::start().await;
    let (mut a, mut b) = pair(&rec).await;
    a.signed_in("c1@example.com", &["customer"]).await;
    b.signed_in("c2@example.com", &["customer"]).await;
    a.login("c1@example.com", "wrong-Passw0rd!").await;
    b.login("c2@example.com", "wrong-Passw0rd!").await;
    let store = a.auth().store().clone();
    a.shutdown().await;
    b.shutdown().await;
    let report = portcullis::audit::verify(&store).await.unwrap();
    assert!(
        matches!(report, portcullis::audit::Verification::Intact { records } if records > 4),
        "{report:?}"
    );
    let records = portcullis::audit::list(&store, &Default::default()).await.unwrap();
    let emails: Vec<_> = records.iter().filter_map(|r| r.event.email.clone()).collect();
    assert!(emails.iter().any(|e| e == "c1@example.com"), "{emails:?}");
    assert!(emails.iter().any(|e| e == "c2@example.com"), "{emails:?}");
}

// The database stops under traffic: requests that need nothing from it keep flowing,
// logins answer 503 promptly (never a hang, never a 500), and when it is back every
// gateway works again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_and_recovery() {
    let cluster = PgCluster::start();
    let rec = Recorder::start().await;
    let (a, b) = pair_on(&cluster, &rec, OPEN_POLICY).await;
    let (id, token) = a.signed_in("o@example.com", &["customer"]).await;
    let path = format!("/members/{id}");
    cluster.stop();
    for gw in [&a, &b] {
        // An already-verified caller on a route that needs nothing from the database.
        assert_eq!(gw.get_with(&path, &token).await.0, 200);
        let started = Instant::now();
        let (status, body) = gw.login("o@example.com", PASSWORD).await;
        assert_eq!(status, 503, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "login took {:?}",
            started.elapsed()
        );
    }
    cluster.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    for gw in [&a, &b] {
        loop {
            let (status, body) = gw.login("o@example.com", PASSWORD).await;
            if status == 200 {
                break;
            }
            assert_ne!(status, 500, "{body}");
            assert!(Instant::now() < deadline, "no recovery: {status} {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `[email.smtp]` for `server`, a test SMTP server on loopback without TLS.
fn smtp_to(server: &SmtpServer) -> String {
    format!(
        "[email.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"Shop <no-reply@shop.example>\"\n",
        server.addr.port()
    )
}

/// Two gateways on one fresh database of `cluster`, both sending mail to `server`, with
/// short retry waits (50 ms doubling to 200 ms).
async fn mail_pair(cluster: &PgCluster, rec: &Recorder, server: &SmtpServer) -> (TestGateway, TestGateway) {
    secret_key();
    let url = cluster.database().await;
    let extra = format!(
        "[store]\nbackend = \"postgres\"\nurl = \"{url}\"\nconnect_timeout = \"1s\"\n{}",
        smtp_to(server)
    );
    let quick = |c: &mut portcullis::Config| {
        let smtp = c.email.smtp.as_mut().unwrap();
        smtp.retry_first = Duration::from_millis(50);
        smtp.retry_max = Duration::from_millis(200);
    };
    let setup = || {
        Setup::new(&[("rec", rec.url())], OPEN_POLICY)
            .many_auth_requests()
            .extra(&extra)
    };
    (setup().start_with(quick).await, setup().start_with(quick).await)
}

async fn register(gw: &TestGateway, email: &str) -> (u16, serde_json::Value) {
    gw.post(
        "/auth/register",
        json!({ "email": email, "password": PASSWORD, "name": "M" }),
    )
    .await
}

/// Waits (at most 10 s) until the shared spool is empty; returns what is left.
async fn spool_drained(gw: &TestGateway) -> Vec<String> {
    for _ in 0..200 {
        if gw.spool().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.spool()
}

/// Asserts that `server` received each of `to` exactly once, and nothing else.
fn each_once(server: &SmtpServer, to: &[String]) {
    let mut got: Vec<String> = server.received().iter().map(|m| m.to.join(",")).collect();
    got.sort();
    let mut want = to.to_vec();
    want.sort();
    assert_eq!(got, want, "not every message was delivered exactly once");
}

// Mail made on both gateways goes through the one shared spool: 12 registrations, made
// two at a time and split between the gateways, reach the mail server once each, and none is
// sent again afterwards (each gateway's sender claims a message for itself); the spool
// is then empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_spool_sends_each_message_once() {
    let rec = Recorder::start().await;
    let server = SmtpServer::start(Mode::Plain).await;
    let (a, b) = mail_pair(PgCluster::shared(), &rec, &server).await;
    let to: Vec<String> = (0..12).map(|i| format!("once{i}@example.com")).collect();
    // Two at a time, one on each gateway (more would meet the password hashing queue).
    for pair in to.chunks(2) {
        let ((s1, b1), (s2, b2)) = tokio::join!(register(&a, &pair[0]), register(&b, &pair[1]));
        assert_eq!((s1, s2), (202, 202), "{b1} {b2}");
    }
    assert_eq!(server.wait_for(12, Duration::from_secs(20)).await.len(), 12);
    // Long enough for a second sending to show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    each_once(&server, &to);
    assert!(spool_drained(&a).await.is_empty(), "delivered mail stayed in the spool");
    assert!(a.outbox().is_empty() && b.outbox().is_empty());
    for gw in [&a, &b] {
        let files = std::fs::read_dir(gw.dir.path().join("data/spool")).map_or(0, Iterator::count);
        assert_eq!(files, 0, "a gateway spooled mail in its data_dir");
    }
}

// The mail server is down while mail is made on both gateways: the messages wait in the
// shared spool (there when the API answers, seen by both), both senders keep retrying,
// and once the server is back each message arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_put_during_an_smtp_outage_is_sent_once() {
    let rec = Recorder::start().await;
    let mut server = SmtpServer::start(Mode::Plain).await;
    server.stop();
    let (a, b) = mail_pair(PgCluster::shared(), &rec, &server).await;
    let to: Vec<String> = (0..6).map(|i| format!("down{i}@example.com")).collect();
    for (i, email) in to.iter().enumerate() {
        let gw = if i % 2 == 0 { &a } else { &b };
        assert_eq!(register(gw, email).await.0, 202);
    }
    assert_eq!(a.spool().len(), 6, "the messages are not in the shared spool");
    assert!(b.spool()[0].contains("To: down0@example.com"), "{:?}", b.spool());
    // Both senders try (and fail) a few times.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.spool().len(), 6, "a message was dropped during the outage");

    server.resume().await;
    assert_eq!(server.wait_for(6, Duration::from_secs(20)).await.len(), 6);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    each_once(&server, &to);
    assert!(spool_drained(&b).await.is_empty());
}

// A 5xx to a message of the shared spool: given up once, by whichever gateway claimed
// it: one mail_undeliverable record in the one audit chain, one try, and the message
// leaves the spool; the next message still goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_mail_is_given_up_once() {
    let rec = Recorder::start().await;
    let server = SmtpServer::start(Mode::Plain).await;
    server.refuse_rcpt("bounce", 550);
    let (a, b) = mail_pair(PgCluster::shared(), &rec, &server).await;
    assert_eq!(register(&a, "bounce@example.com").await.0, 202);
    assert_eq!(register(&b, "fine@example.com").await.0, 202);
    assert_eq!(server.wait_for(1, Duration::from_secs(10)).await.len(), 1);
    let events = b.wait_for_events(EventKind::MailUndeliverable, 1).await;
    assert_eq!(events.len(), 1, "the refusal was not audited");
    assert_eq!(events[0].event.email.as_deref(), Some("bounce@example.com"));
    assert_eq!(events[0].event.reason.as_deref(), Some("550"));
    assert!(
        spool_drained(&a).await.is_empty(),
        "a refused message stayed in the spool"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(a.audit_events(EventKind::MailUndeliverable).await.len(), 1);
    let tries = server.rcpts().iter().filter(|r| r.starts_with("bounce")).count();
    assert_eq!(tries, 1, "a message refused for good was tried again");
    each_once(&server, &["fine@example.com".to_owned()]);
}

// The database goes away: mail cannot be made durable, so the API answers 503
// `unavailable` (never a 500, never a 202 for mail that was not kept), the senders log
// and back off; once it is back, mail is made and delivered again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_through_a_database_outage() {
    let cluster = PgCluster::start();
    let rec = Recorder::start().await;
    let server = SmtpServer::start(Mode::Plain).await;
    let (a, b) = mail_pair(&cluster, &rec, &server).await;
    assert_eq!(register(&a, "before@example.com").await.0, 202);
    assert_eq!(server.wait_for(1, Duration::from_secs(10)).await.len(), 1);
    cluster.stop();
    let (status, body) = register(&b, "during@example.com").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable", "{body}");
    // The senders meet the outage a few times.
    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut to = vec!["before@example.com".to_owned()];
    for (i, gw) in [&a, &b].into_iter().enumerate() {
        let email = format!("after{i}@example.com");
        loop {
            let (status, body) = register(gw, &email).await;
            if status == 202 {
                break;
            }
            assert_eq!(status, 503, "{body}");
            assert!(Instant::now() < deadline, "no recovery: {status} {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        to.push(email);
    }
    assert_eq!(server.wait_for(3, Duration::from_secs(20)).await.len(), 3);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    each_once(&server, &to);
}

// A gateway whose sender waits out a long backoff (the mail server is down) stops at
// once, and the message it tried stays in the shared spool for the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_prompt_and_keeps_the_shared_spool() {
    secret_key();
    let rec = Recorder::start().await;
    let mut server = SmtpServer::start(Mode::Plain).await;
    server.stop();
    let url = PgCluster::shared().database().await;
    let mut gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .extra(&format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n{}",
            smtp_to(&server)
        ))
        .start_with(|c| c.email.smtp.as_mut().unwrap().retry_first = Duration::from_secs(300))
        .await;
    assert_eq!(register(&gw, "wait@example.com").await.0, 202);
    // The sender has tried, failed and gone to sleep for 300 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.client = reqwest::Client::new();
    tokio::time::timeout(Duration::from_secs(10), gw.shutdown())
        .await
        .expect("the mail sender held up the shutdown");
    let left = common::shared_spool(&url);
    assert_eq!(left.len(), 1, "the message left the shared spool at shutdown");
    assert!(left[0].contains("To: wait@example.com"));
}
