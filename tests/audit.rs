//! The audit trail, end to end: each event written by the flow that causes it (read back
//! through the query code the CLI uses), durability across SIGKILL, tamper detection,
//! overflow accounting, and escaping of user-supplied text.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{cli, closed_port, confirmation_token, start_shop, CliOut, Recorder, Setup, TestGateway, PASSWORD};
use portcullis::admin::{execute, AdminRequest};
use portcullis::audit::{list, EventKind, Query, Record};
use portcullis::auth::totp;
use portcullis::clock::{Clock, ManualClock};
use serde_json::json;

// Identity and administration events, each from the flow that causes it.
#[tokio::test]
async fn identity_events_recorded() {
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let gw = Setup::shop(shop).with_clock(&clock).start().await;
    let add = |email: &str, role: &str| AdminRequest::Add {
        email: email.into(),
        roles: vec![role.into()],
        password: Some(PASSWORD.into()),
        name: None,
    };
    execute(gw.auth(), add("cust@example.com", "customer")).await.unwrap();
    execute(gw.auth(), add("boss@example.com", "admin")).await.unwrap();

    gw.post(
        "/auth/register",
        json!({ "email": "new@example.com", "password": PASSWORD, "name": "N" }),
    )
    .await;
    let token = confirmation_token(&gw.outbox().pop().unwrap());
    gw.confirm(&token).await;

    let (_, t) = gw.login("cust@example.com", PASSWORD).await;
    gw.post("/auth/refresh", json!({ "refresh_token": t["refresh_token"] }))
        .await;
    gw.post("/auth/refresh", json!({ "refresh_token": t["refresh_token"] }))
        .await;
    let (_, t) = gw.login("cust@example.com", PASSWORD).await;
    gw.client
        .post(gw.url("/auth/logout"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    for _ in 0..6 {
        gw.login("cust@example.com", "Wrong!Passw0rd").await;
    }
    execute(
        gw.auth(),
        AdminRequest::Unlock {
            email: "cust@example.com".into(),
        },
    )
    .await
    .unwrap();

    let (_, first) = gw.login("boss@example.com", PASSWORD).await;
    let (_, enrol) = gw
        .post("/auth/totp/enroll", json!({ "mfa_token": first["mfa_token"] }))
        .await;
    let secret = enrol["secret"].as_str().unwrap().to_owned();
    let code = totp::code_at(&secret, clock.now()).unwrap();
    gw.post("/auth/mfa", json!({ "mfa_token": enrol["mfa_token"], "code": code }))
        .await;
    clock.advance(Duration::from_secs(30));
    let (_, next) = gw.login("boss@example.com", PASSWORD).await;
    gw.post("/auth/mfa", json!({ "mfa_token": next["mfa_token"], "code": "000000" }))
        .await;
    let (_, next) = gw.login("boss@example.com", PASSWORD).await;
    let code = totp::code_at(&secret, clock.now()).unwrap();
    gw.post("/auth/mfa", json!({ "mfa_token": next["mfa_token"], "code": code }))
        .await;

    execute(
        gw.auth(),
        AdminRequest::Roles {
            email: "cust@example.com".into(),
            roles: vec!["support".into()],
        },
    )
    .await
    .unwrap();
    execute(
        gw.auth(),
        AdminRequest::Revoke {
            email: "cust@example.com".into(),
        },
    )
    .await
    .unwrap();
    execute(
        gw.auth(),
        AdminRequest::Disable {
            email: "cust@example.com".into(),
        },
    )
    .await
    .unwrap();
    gw.client.get(gw.url("/api/orders")).send().await.unwrap();

    for event in [
        EventKind::UserCreated,
        EventKind::Register,
        EventKind::EmailConfirmed,
        EventKind::LoginSuccess,
        EventKind::TokenRefresh,
        EventKind::RefreshReuse,
        EventKind::Logout,
        EventKind::LoginFailure,
        EventKind::LoginLocked,
        EventKind::UserUnlocked,
        EventKind::MfaEnrolled,
        EventKind::MfaFailure,
        EventKind::MfaSuccess,
        EventKind::RolesChanged,
        EventKind::SessionsRevoked,
        EventKind::UserDisabled,
    ] {
        assert!(!gw.audit_events(event).await.is_empty(), "no {event} record");
    }
    let denied = gw.wait_for_events(EventKind::AccessDenied, 1).await;
    assert_eq!(denied[0].event.status, Some(401));
    assert_eq!(denied[0].event.path.as_deref(), Some("/api/orders"));
    let failures = gw.audit_events(EventKind::LoginFailure).await;
    assert_eq!(failures.len(), 5);
    assert_eq!(failures[0].event.email.as_deref(), Some("cust@example.com"));
    assert!(failures[0].event.ip.is_some() && failures[0].event.request_id.is_some());

    // No secret in any record.
    let all = list(gw.auth().store(), &Query::default()).await.unwrap();
    let text = serde_json::to_string(&all).unwrap();
    for secret in [
        PASSWORD,
        "Wrong!Passw0rd",
        &secret,
        &token,
        t["refresh_token"].as_str().unwrap(),
        &code,
    ] {
        assert!(!text.contains(secret), "a secret reached the audit trail");
    }
    assert_eq!(
        portcullis::audit::verify(gw.auth().store()).await.unwrap(),
        portcullis::audit::Verification::Intact {
            records: all.len() as u64
        }
    );
}

// Requests on audited routes, upstream errors and rate limits are recorded.
#[tokio::test]
async fn request_events_recorded() {
    let rec = Recorder::start().await;
    let dead = closed_port().await;
    let policy = r#"
upstream = "rec"

[[route]]
name = "staff records"
methods = ["GET"]
path = "/staff/{id}"
public = true
audit = true

[[route]]
name = "plain"
methods = ["GET"]
path = "/plain"
public = true

[[route]]
name = "broken"
methods = ["GET"]
path = "/broken"
public = true
upstream = "dead"
"#;
    let gw = Setup::new(&[("rec", rec.url()), ("dead", format!("http://{dead}"))], policy)
        .extra("[rate_limit]\nauth_per_ip = \"1/min\"\n")
        .start()
        .await;
    gw.client.get(gw.url("/staff/7")).send().await.unwrap();
    gw.client.get(gw.url("/plain")).send().await.unwrap();
    gw.client.get(gw.url("/broken")).send().await.unwrap();
    gw.client.get(gw.url("/auth/me")).send().await.unwrap();
    gw.client.get(gw.url("/auth/me")).send().await.unwrap();

    let requests = gw.wait_for_events(EventKind::Request, 1).await;
    assert_eq!(requests.len(), 1, "only the audited route is recorded");
    let r = &requests[0].event;
    assert_eq!(
        (r.route.as_deref(), r.status, r.path.as_deref()),
        (Some("staff records"), Some(200), Some("/staff/7"))
    );
    assert!(r.latency_ms.is_some());
    assert_eq!(
        gw.wait_for_events(EventKind::UpstreamError, 1).await[0].event.status,
        Some(502)
    );
    assert_eq!(
        gw.wait_for_events(EventKind::RateLimited, 1).await[0].event.status,
        Some(429)
    );
}

// A flood that overflows the queue is served in full and accounted for in one record.
#[tokio::test(flavor = "multi_thread")]
async fn flood_overflows_into_one_record() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], "upstream = \"rec\"\n")
        .extra("[audit]\nqueue = 1\n")
        .start()
        .await;
    let mut tasks = Vec::new();
    for i in 0..400 {
        let client = gw.client.clone();
        let url = gw.url(&format!("/nothing/{i}"));
        tasks.push(tokio::spawn(async move {
            client.get(url).send().await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 404, "serving stopped under the flood");
    }
    // The writer catches up within a few flush periods; every request is then either
    // recorded or counted in an overflow record.
    let mut accounted = (0, 0, 0);
    for _ in 0..100 {
        let overflow = gw.audit_events(EventKind::AuditOverflow).await;
        let written = gw.audit_events(EventKind::AccessDenied).await.len();
        let dropped: usize = overflow
            .iter()
            .map(|r| {
                let reason = r.event.reason.as_deref().unwrap();
                reason["queue full: ".len()..]
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            })
            .sum();
        accounted = (written, dropped, overflow.len());
        if written + dropped == 400 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (written, dropped, overflow_records) = accounted;
    assert!(
        overflow_records >= 1 && dropped > 0,
        "nothing overflowed: the test did not flood the queue"
    );
    assert_eq!(
        written + dropped,
        400,
        "records lost without account ({written} written, {dropped} counted)"
    );
}

// Control characters in user-supplied text are escaped in `audit list`.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_escaped() {
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let config = Setup::shop(shop).write(dir.path());
    let gw = TestGateway::launch(dir, &config, None).await;
    let forged = "x@example.com\n     99 2026-01-01T00:00:00.000Z login_success";
    gw.login(forged, "Wrong!Passw0rd").await;
    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "list", "--event", "login_failure"]);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().count(),
        1,
        "a newline in an email made a second line:\n{out}"
    );
    assert!(out.contains("x@example.com\\n"), "{out}");
    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "list", "--json", "--event", "login_failure"]);
    assert!(ok);
    let record: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        record["email"],
        forged.to_lowercase(),
        "emails are stored normalized, otherwise verbatim"
    );
}

// Login and logout records survive a SIGKILL right after the responses; the chain then
// verifies; an offline change to one record makes `audit verify` fail naming it.
#[tokio::test(flavor = "multi_thread")]
async fn crash_then_tamper() {
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port().await.port();
    let config = Setup::shop(shop).write(dir.path());
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&config, text).unwrap();
    let CliOut { ok, text: out, .. } = cli(
        &config,
        &["user", "add", "--email", "k@example.com", "--role", "customer"],
    );
    assert!(ok, "{out}");
    let password = common::field(&out, "password");

    let mut child = common::serve(&config);
    let ca = dir.path().join("data/tls/gateway.crt");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut client = None;
    for _ in 0..100 {
        if let Ok(pem) = std::fs::read(&ca) {
            let c = common::client_builder(&pem, addr).build().unwrap();
            if c.get(format!("https://localhost:{port}/healthz")).send().await.is_ok() {
                client = Some(c);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = client.expect("the gateway did not start");
    let url = |p: &str| format!("https://localhost:{port}{p}");
    let t: serde_json::Value = client
        .post(url("/auth/login"))
        .json(&json!({ "email": "k@example.com", "password": password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status = client
        .post(url("/auth/logout"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    child.kill().unwrap(); // SIGKILL: no shutdown, no last flush.
    child.wait().unwrap();

    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "list", "--json"]);
    assert!(ok, "{out}");
    let names: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        names.contains(&EventKind::LoginSuccess.to_string()) && names.contains(&EventKind::Logout.to_string()),
        "{names:?}"
    );
    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "verify"]);
    assert!(ok, "{out}");

    // Tamper with record 2 offline.
    let store = offline(dir.path());
    edit_record(&store, 2, |r| r.event.user_id = Some("u-someone-else".into())).await;
    close(store).await;
    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "verify"]);
    assert!(!ok);
    assert!(out.contains("BROKEN at record 2"), "{out}");
}

/// Splits one `audit list` line into its fields: `key=value` pairs and bare words, a
/// quoted value (`"..."`, with `\"` and `\\` escapes) being one field whatever it holds.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            '\\' if quoted => {
                cur.push(c);
                cur.extend(chars.next());
            }
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    out.extend((!cur.is_empty()).then_some(cur));
    out
}

/// A quoted field value read back: quotes removed, escapes undone.
fn unquote(shown: &str) -> String {
    let inner = shown
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{shown} is not quoted"));
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next().unwrap() {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hex: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
            }
            c => out.push(c),
        }
    }
    out
}

/// The value of `key=` among a line's fields, when there is exactly one such field.
fn field<'a>(fields: &'a [String], key: &str) -> Option<&'a str> {
    let prefix = format!("{key}=");
    let found: Vec<&str> = fields.iter().filter_map(|f| f.strip_prefix(&prefix)).collect();
    assert!(found.len() <= 1, "{key} appears {} times in {fields:?}", found.len());
    found.first().copied()
}

// Emails with spaces and `key=value` text, line and paragraph separators, bidi
// overrides and zero-width characters are each printed on one line of `audit list`,
// inside their own field: no field is forged, no line is added, nothing is reordered.
#[tokio::test(flavor = "multi_thread")]
async fn forged_fields_and_separators_escaped() {
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let config = Setup::shop(shop).write(dir.path());
    let gw = TestGateway::launch(dir, &config, None).await;
    let forgeries = [
        "a@example.com ip=6.6.6.6 user=u-admin status=200",
        "b@example.com\u{2028}    99 2026-01-01T00:00:00.000Z login_success",
        "c@example.com\u{2029}d",
        "\u{202e}moc.elpmaxe@e",
        "f\u{200b}@exa\u{85}mple.com\u{2066}\u{feff}",
        "g\"@example.com ip=\"6.6.6.6\"",
    ];
    for email in forgeries {
        gw.login(email, "Wrong!Passw0rd").await;
    }
    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "list", "--event", "login_failure"]);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.split_terminator('\n').collect();
    assert_eq!(
        lines.len(),
        forgeries.len(),
        "a record took more or fewer lines:\n{out}"
    );
    for (line, email) in lines.iter().zip(forgeries) {
        for c in line.chars() {
            assert!(
                !c.is_control()
                    && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
                    && !matches!(c, '\u{200b}'..='\u{200f}' | '\u{feff}'),
                "{c:?} printed raw in {line:?}"
            );
        }
        let f = fields(line);
        assert_eq!(field(&f, "ip"), Some("127.0.0.1"), "{line}");
        assert_eq!(field(&f, "user"), Some("-"), "{line}");
        assert!(field(&f, "status").is_none(), "{line}");
        let shown = field(&f, "email").unwrap();
        assert_eq!(unquote(shown), email.to_lowercase(), "{line}");
    }
    // JSON lines: one per record, nothing raw, and each email exact once parsed.
    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "list", "--json", "--event", "login_failure"]);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.split_terminator('\n').collect();
    assert_eq!(lines.len(), forgeries.len(), "{out}");
    for (line, email) in lines.iter().zip(forgeries) {
        assert!(line.is_ascii(), "{line}");
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["email"], email.to_lowercase());
    }
}

// Audited routes and refusals record the canonical path the policy judged, not the
// target as the client spelled it.
#[tokio::test]
async fn canonical_path_recorded() {
    let rec = Recorder::start().await;
    let policy = r#"
upstream = "rec"

[[route]]
name = "staff records"
methods = ["GET"]
path = "/staff/{id}"
public = true
audit = true

[[route]]
name = "members"
methods = ["GET"]
path = "/members/{id}"
roles = ["customer"]
"#;
    let gw = Setup::new(&[("rec", rec.url())], policy).start().await;
    let resp = gw
        .raw("GET /%73taff/%37 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    let resp = gw
        .raw("GET /%6dembers/%41 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(resp.status, 401, "{}", resp.head);
    let requests = gw.wait_for_events(EventKind::Request, 1).await;
    assert_eq!(requests[0].event.path.as_deref(), Some("/staff/7"));
    let denied = gw.wait_for_events(EventKind::AccessDenied, 1).await;
    assert_eq!(denied[0].event.path.as_deref(), Some("/members/A"));
}

// A target under /auth/ that the normalizer refuses is audited as access_denied, like
// any other refused target: the request is classified after normalization.
#[tokio::test]
async fn refused_auth_targets_audited() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], common::OPEN_POLICY).start().await;
    for target in [
        "/auth/%2e%2e/admin",
        "/auth/..%2fstaff",
        "/auth//me",
        "/auth/%2E%2E/%2E%2E/x",
    ] {
        let resp = gw
            .raw(&format!(
                "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(resp.status, 400, "{target}: {}", resp.head);
    }
    let denied = gw.wait_for_events(EventKind::AccessDenied, 4).await;
    let paths: Vec<_> = denied
        .iter()
        .map(|r| r.event.path.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        paths,
        [
            "/auth/%2e%2e/admin",
            "/auth/..%2fstaff",
            "/auth//me",
            "/auth/%2E%2E/%2E%2E/x"
        ],
        "{denied:?}"
    );
    assert!(denied.iter().all(|r| r.event.status == Some(400)));
    assert!(rec.requests().is_empty());
}

/// Opens the stopped gateway's database in `dir`, as someone with its files would, to
/// change the trail through the store; [`close`] flushes it and lets it go.
fn offline(dir: &Path) -> portcullis::store::Store {
    portcullis::store::Store::open(&dir.join("data")).unwrap()
}

async fn close(store: portcullis::store::Store) {
    store.flush().await.unwrap();
}

/// Changes one record in place, leaving its hash as it was.
async fn edit_record(store: &portcullis::store::Store, seq: u64, change: impl FnOnce(&mut Record)) {
    let trail = store.backend();
    let mut r: Record = serde_json::from_slice(&trail.audit_get(seq).await.unwrap().unwrap()).unwrap();
    change(&mut r);
    trail
        .audit_overwrite(seq, &serde_json::to_vec(&r).unwrap())
        .await
        .unwrap();
}

/// Rewrites records `from..` of the chain with `forge` applied to the first, and
/// re-hashes from there so the chain alone still verifies.
async fn rewrite_tail(store: &portcullis::store::Store, from: u64, forge: impl FnOnce(&mut Record)) {
    let trail = store.backend();
    let mut forge = Some(forge);
    let mut prev: Option<String> = None;
    for (seq, v) in trail.audit_range(from, usize::MAX).await.unwrap() {
        let mut r: Record = serde_json::from_slice(&v).unwrap();
        if let Some(f) = forge.take() {
            f(&mut r);
        }
        if let Some(p) = prev {
            r.prev_hash = p;
        }
        r.hash = r.compute_hash();
        prev = Some(r.hash.clone());
        trail
            .audit_overwrite(seq, &serde_json::to_vec(&r).unwrap())
            .await
            .unwrap();
    }
}

/// Removes every record from `from` on: the trail is written again without them.
async fn cut_tail(store: &portcullis::store::Store, from: u64) {
    let trail = store.backend();
    let kept: Vec<_> = trail
        .audit_range(0, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|(seq, _)| *seq < from)
        .collect();
    trail.audit_remove_before(u64::MAX).await.unwrap();
    let mut kept = Some(kept);
    trail
        .audit_append(&mut |_| kept.take().unwrap_or_default())
        .await
        .unwrap();
    assert_eq!(trail.audit_last().await.unwrap().map(|(seq, _)| seq + 1), Some(from));
}

/// Writes one (durable) audit record: an admin unlock of `email` (its account is made
/// first, without a record, when there is none: unlocking no account is an error).
async fn unlock(gw: &TestGateway, email: &str) {
    if gw.auth().store().user_by_email(email).await.unwrap().is_none() {
        gw.add_user(email, &["customer"]).await;
    }
    execute(gw.auth(), AdminRequest::Unlock { email: email.into() })
        .await
        .unwrap();
}

/// Shuts the gateway down after closing the client's connections (a graceful shutdown
/// waits for open ones), so that its database can be opened by the command line.
async fn stop(gw: &mut TestGateway) {
    gw.client = reqwest::Client::new();
    gw.shutdown().await;
}

/// A gateway's directory with a few records written and a checkpoint signed at
/// shutdown; returns the directory, the config path and the number of records.
async fn checkpointed_trail() -> (tempfile::TempDir, std::path::PathBuf, u64) {
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let config = Setup::shop(shop).write(dir.path());
    let mut gw = TestGateway::launch(dir, &config, None).await;
    for i in 0..4 {
        unlock(&gw, &format!("nobody{i}@example.com")).await;
    }
    // Unlock records are written before the command answers: nothing is pending.
    let n = list(gw.auth().store(), &Query::default()).await.unwrap().len() as u64;
    stop(&mut gw).await;
    let TestGateway { dir, .. } = gw;
    (dir, config, n)
}

// The chain is anchored by signed checkpoints: the gateway stores one at shutdown, and
// `audit verify` then detects a cut tail and a rewritten, re-hashed tail, which the
// chain alone does not; `audit checkpoint` prints one (while the gateway runs, and
// when it is stopped) that `audit verify --checkpoint FILE` checks later, even after
// the stored checkpoints are deleted; a checkpoint whose signature fails is refused.
#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_anchor_the_chain() {
    // A cut tail, caught by the checkpoint stored at shutdown.
    let (dir, config, n) = checkpointed_trail().await;
    assert!(n >= 4);
    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "verify"]);
    assert!(ok, "{out}");
    assert!(out.contains("checkpoint"), "{out}");
    let store = offline(dir.path());
    cut_tail(&store, n).await;
    close(store).await;
    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "verify"]);
    assert!(!ok, "a cut tail passed: {out}");
    assert!(out.contains(&format!("BROKEN at record {n}")), "{out}");

    // A rewritten, re-hashed tail, caught by the stored checkpoint.
    let (dir, config, n) = checkpointed_trail().await;
    let store = offline(dir.path());
    rewrite_tail(&store, n - 1, |r| {
        r.event.email = Some("someone-else@example.com".into())
    })
    .await;
    close(store).await;
    assert_eq!(
        {
            let store = portcullis::store::Store::open(&dir.path().join("data")).unwrap();
            portcullis::audit::verify(&store).await.unwrap()
        },
        portcullis::audit::Verification::Intact { records: n },
        "the forgery is not a consistent chain: the test proves nothing"
    );
    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "verify"]);
    assert!(!ok, "a rewritten tail passed: {out}");
    // The forged record is n - 1. The checkpoint signed at shutdown names record n; one
    // signed by the periodic timer (which first fires at start-up, so on a busy machine
    // after some of the records) may name n - 1 itself, and the first checkpoint that
    // fails is the one reported.
    assert!(
        out.contains(&format!("BROKEN at record {n}")) || out.contains(&format!("BROKEN at record {}", n - 1)),
        "{out}"
    );

    // Exported while the gateway runs; tail rewritten and stored checkpoints deleted:
    // only the exported checkpoint catches it.
    let (dir, config, _) = checkpointed_trail().await;
    let mut gw = TestGateway::launch(dir, &config, None).await;
    unlock(&gw, "late@example.com").await;
    let CliOut { ok, text: exported, .. } = cli(&config, &["audit", "checkpoint"]);
    assert!(ok, "{exported}");
    let checkpoint: serde_json::Value = serde_json::from_str(exported.trim()).unwrap();
    let seq = checkpoint["seq"].as_u64().unwrap();
    assert_eq!(
        seq,
        gw.audit_events(EventKind::UserUnlocked).await.last().unwrap().seq,
        "the checkpoint is not of the head"
    );
    stop(&mut gw).await;
    let TestGateway { dir, .. } = gw;
    let file = dir.path().join("checkpoint.json");
    std::fs::write(&file, &exported).unwrap();
    let file_arg = file.to_str().unwrap();
    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "verify", "--checkpoint", file_arg]);
    assert!(ok, "{out}");
    let store = offline(dir.path());
    rewrite_tail(&store, seq, |r| r.event.email = Some("someone-else@example.com".into())).await;
    store.sled().unwrap().db().drop_tree("audit_checkpoints").unwrap();
    close(store).await;
    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "verify"]);
    assert!(ok, "no stored checkpoint is left, the chain alone verifies: {out}");
    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "verify", "--checkpoint", file_arg]);
    assert!(!ok, "a rewritten tail passed the exported checkpoint: {out}");
    assert!(out.contains(&format!("BROKEN at record {seq}")), "{out}");

    // Exported while stopped; tail cut and stored checkpoints deleted.
    let (dir, config, n) = checkpointed_trail().await;
    let CliOut { ok, text: exported, .. } = cli(&config, &["audit", "checkpoint"]);
    assert!(ok, "{exported}");
    let file = dir.path().join("checkpoint.json");
    std::fs::write(&file, &exported).unwrap();
    let file_arg = file.to_str().unwrap();
    let store = offline(dir.path());
    cut_tail(&store, n).await;
    store.sled().unwrap().db().drop_tree("audit_checkpoints").unwrap();
    close(store).await;
    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "verify"]);
    assert!(ok, "{out}");
    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "verify", "--checkpoint", file_arg]);
    assert!(!ok, "a cut tail passed the exported checkpoint: {out}");
    assert!(out.contains(&format!("BROKEN at record {n}")), "{out}");

    // A checkpoint edited to name another record fails its signature.
    let mut forged: serde_json::Value = serde_json::from_str(exported.trim()).unwrap();
    forged["seq"] = (n - 1).into();
    std::fs::write(&file, forged.to_string()).unwrap();
    let CliOut { ok, text: out, .. } = cli(&config, &["audit", "verify", "--checkpoint", file_arg]);
    assert!(!ok, "an edited checkpoint was accepted: {out}");
    assert!(out.contains("signature"), "{out}");
}
