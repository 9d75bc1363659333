//! Living with policy: hot reload, per-route rate limits, `explain` against the live
//! gateway, and shadow mode.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{cli, Recorder, Setup, TestGateway};
use portcullis::audit::EventKind;
use portcullis::clock::ManualClock;
use portcullis::policy::{Decision, PolicySet, Principal};
use serde_json::{json, Value};

fn public(name: &str, path: &str, upstream: &str) -> String {
    format!("[[route]]\nname = \"{name}\"\nmethods = [\"GET\"]\npath = \"{path}\"\npublic = true\nupstream = \"{upstream}\"\n")
}

fn write_policy(gw: &TestGateway, text: &str) {
    // Write a sibling and rename it over the file, as editors do.
    let dir = gw.dir.path().join("policies");
    std::fs::write(dir.join(".test.toml.tmp"), text).unwrap();
    std::fs::rename(dir.join(".test.toml.tmp"), dir.join("test.toml")).unwrap();
}

// A good edit is in force within a second; a broken one changes nothing, and both are
// audited.
#[tokio::test(flavor = "multi_thread")]
async fn reload_good_and_broken() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], &public("a", "/a", "rec"))
        .start()
        .await;
    assert_eq!((gw.status("/a").await, gw.status("/b").await), (200, 404));

    let edited = Instant::now();
    write_policy(&gw, &public("b", "/b", "rec"));
    while gw.status("/b").await != 200 {
        assert!(
            edited.elapsed() < Duration::from_secs(1),
            "the edit was not in force within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gw.status("/a").await, 404);
    let reload = gw.audit_events(EventKind::PolicyReload).await;
    assert!(reload
        .last()
        .unwrap()
        .event
        .reason
        .as_deref()
        .unwrap()
        .contains("added [b]; removed [a]"));

    write_policy(&gw, &format!("{}\n[[route]\nbroken", public("c", "/c", "rec")));
    let failed = gw.wait_for_events(EventKind::PolicyReloadFailed, 1).await;
    assert_eq!(failed.len(), 1, "the broken edit was not reported once");
    assert!(
        failed[0].event.reason.as_deref().unwrap().contains("test.toml:"),
        "{:?}",
        failed[0].event.reason
    );
    assert_eq!(
        (gw.status("/b").await, gw.status("/c").await),
        (200, 404),
        "a broken edit changed the policy"
    );
}

// Many reloads while requests flow: every request is decided by one whole policy, so it
// reaches the upstream that policy names, and nothing fails.
#[tokio::test(flavor = "multi_thread")]
async fn reload_under_load() {
    let (a, b) = (Recorder::start_named("a").await, Recorder::start_named("b").await);
    let version = |up: &str| {
        format!(
            "{}{}",
            public("v", "/v", up),
            public(&format!("only-{up}"), &format!("/only-{up}"), up)
        )
    };
    let gw = Setup::new(&[("a", a.url()), ("b", b.url())], &version("a"))
        .start()
        .await;
    let inner = gw.running.as_ref().unwrap().inner().clone();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let client = gw.client.clone();
        let url = gw.url("/v");
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..150 {
                let resp = client.get(&url).send().await.unwrap();
                assert_eq!(resp.status(), 200, "a request failed during a reload");
                seen.push(resp.headers()["x-upstream"].to_str().unwrap().to_owned());
            }
            seen
        }));
    }
    for i in 0..60 {
        write_policy(&gw, &version(if i % 2 == 0 { "b" } else { "a" }));
        // The watcher may be reloading the same change at the same moment; both are fine.
        let _ = inner.reload_policy().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    assert!(all.iter().all(|u| u == "a" || u == "b"));
    assert!(
        all.iter().any(|u| u == "a") && all.iter().any(|u| u == "b"),
        "reloads did not take effect"
    );
    assert!(
        gw.audit_events(EventKind::PolicyReload).await.len() >= 30,
        "too few reloads took effect"
    );
    assert!(gw.audit_events(EventKind::PolicyReloadFailed).await.iter().all(|r| r
        .event
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("changed during")));
}

// The N+1th request in the window is 429 with Retry-After and RateLimit headers; the
// window refills; routes and users do not share buckets.
#[tokio::test]
async fn route_rate_limits() {
    let clock = ManualClock::new();
    let rec = Recorder::start().await;
    let policy = format!(
        "{}rate_limit = \"3/min\"\n{}rate_limit = \"3/min\"\n[[route]]\nname = \"mine\"\nmethods = [\"GET\"]\npath = \"/mine\"\nroles = [\"customer\"]\nupstream = \"rec\"\nrate_limit = \"2/min\"\n",
        public("limited", "/limited", "rec"),
        public("other", "/other", "rec")
    );
    let gw = Setup::new(&[("rec", rec.url())], &policy)
        .with_clock(&clock)
        .start()
        .await;
    for remaining in ["2", "1", "0"] {
        let resp = gw.client.get(gw.url("/limited")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["ratelimit-limit"], "3");
        assert_eq!(resp.headers()["ratelimit-remaining"], remaining);
    }
    let resp = gw.client.get(gw.url("/limited")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let h = resp.headers();
    assert_eq!(
        (
            h["retry-after"].to_str().unwrap(),
            h["ratelimit-limit"].to_str().unwrap()
        ),
        ("20", "3")
    );
    assert_eq!(
        (
            h["ratelimit-remaining"].to_str().unwrap(),
            h["ratelimit-reset"].to_str().unwrap()
        ),
        ("0", "20")
    );
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "rate_limited");
    assert_eq!(gw.status("/other").await, 200, "routes share a bucket");
    clock.advance(Duration::from_secs(20));
    assert_eq!(gw.status("/limited").await, 200, "the window did not refill");
    assert_eq!(gw.status("/limited").await, 429);

    let (t1, t2) = (
        gw.signed_in("one@example.com", &["customer"]).await.1,
        gw.signed_in("two@example.com", &["customer"]).await.1,
    );
    for _ in 0..2 {
        assert_eq!(gw.get_with("/mine", &t1).await.0, 200);
    }
    assert_eq!(gw.get_with("/mine", &t1).await.0, 429);
    assert_eq!(gw.get_with("/mine", &t2).await.0, 200, "users share a bucket");
    assert!(!gw.wait_for_events(EventKind::RateLimited, 1).await.is_empty());
}

// `policy explain` and the live gateway agree on every request of a table of methods,
// paths and callers, over the shipped policies: what explain allows reaches the upstream
// (that method, that path, once), what it refuses gets its status and reaches nothing.
#[tokio::test(flavor = "multi_thread")]
async fn explain_agrees_with_gateway() {
    let upstream = Recorder::start().await;
    let gw = Setup::shop(upstream.addr)
        .extra("[login]\nrequire_mfa_roles = []\n")
        .start()
        .await;
    let mut callers: Vec<(Option<Principal>, Option<String>)> = vec![(None, None)];
    for (email, role) in [
        ("c@example.com", "customer"),
        ("i@example.com", "inventory"),
        ("s@example.com", "support"),
        ("a@example.com", "admin"),
    ] {
        let (id, token) = gw.signed_in(email, &[role]).await;
        let principal = Principal {
            id,
            email: email.into(),
            roles: vec![role.into()],
            mfa: false,
            auth_time: 0,
            attributes: Default::default(),
        };
        callers.push((Some(principal), Some(token)));
    }
    let customer_id = callers[1].0.as_ref().unwrap().id.clone();
    let set = PolicySet::load_dir_with(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"), &|_| true).unwrap();
    let paths = [
        "/api/products".to_owned(),
        "/api/products/3".into(),
        "/api/customers".into(),
        format!("/api/customers/{customer_id}"),
        "/api/customers/u-other".into(),
        format!("/api/customers/{customer_id}/orders"),
        "/api/customers/u-other/orders".into(),
        "/api/orders".into(),
        "/api/staff".into(),
        "/api/staff/1".into(),
        "/api/unknown".into(),
        "/".into(),
    ];
    let mut checked = 0;
    for method in [
        http::Method::GET,
        http::Method::POST,
        http::Method::PUT,
        http::Method::DELETE,
    ] {
        for path in &paths {
            for (principal, token) in &callers {
                let expected = match set.explain(&method, path, principal.as_ref()).decision {
                    Decision::Allow { .. } => "forwarded",
                    Decision::NotFound => "404",
                    Decision::Unauthenticated { .. } => "401",
                    Decision::Forbidden { .. } => "403",
                };
                let mut req = gw.client.request(
                    reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(),
                    gw.url(path),
                );
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let who = principal.as_ref().map_or("anonymous".to_owned(), |p| p.roles.join(","));
                let before = upstream.requests().len();
                let code = req.json(&json!({})).send().await.unwrap().status().as_u16();
                let received = upstream.requests().split_off(before);
                let live = match received.as_slice() {
                    [] => code.to_string(),
                    [r] if r.method == method.as_str() && r.target == *path => "forwarded".into(),
                    other => panic!("{method} {path} as {who}: the upstream received {other:?}"),
                };
                assert_eq!(live, expected, "{method} {path} as {who}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4 * 12 * 5);
}

// Shadow mode lets refused requests through and audits them as would_deny, per route
// and for the whole gateway; a path no route matches is still 404.
#[tokio::test]
async fn shadow_mode() {
    let rec = Recorder::start().await;
    let policy = "upstream = \"rec\"\n[[route]]\nname = \"trial\"\nmethods = [\"GET\"]\npath = \"/trial\"\nroles = [\"admin\"]\nenforce = false\n[[route]]\nname = \"strict\"\nmethods = [\"GET\"]\npath = \"/strict\"\nroles = [\"admin\"]\n";
    let gw = Setup::new(&[("rec", rec.url())], policy).start().await;
    assert_eq!(gw.status("/trial").await, 200);
    assert_eq!(gw.status("/strict").await, 401);
    assert_eq!(rec.requests().len(), 1);
    let would = gw.wait_for_events(EventKind::WouldDeny, 1).await;
    assert_eq!(would.len(), 1);
    assert_eq!(
        (would[0].event.status, would[0].event.route.as_deref()),
        (Some(401), Some("trial"))
    );

    let gw = Setup::new(&[("rec", rec.url())], policy)
        .extra("[policy]\nmode = \"shadow\"\n")
        .start()
        .await;
    assert_eq!(gw.status("/strict").await, 200);
    assert_eq!(gw.status("/nowhere").await, 404);
}

// An emptied `roles` list allows nobody through the live gateway (403 for every signed-in
// caller, nothing forwarded), while a route without `roles` still admits them; `policy
// explain` and `policy check` say why.
#[tokio::test(flavor = "multi_thread")]
async fn empty_roles_allow_nobody() {
    let rec = Recorder::start().await;
    let policy = "upstream = \"rec\"\n[[route]]\nname = \"emptied\"\nmethods = [\"GET\"]\npath = \"/emptied\"\nroles = []\n[[route]]\nname = \"signed-in\"\nmethods = [\"GET\"]\npath = \"/signed-in\"\n";
    let gw = Setup::new(&[("rec", rec.url())], policy)
        .extra("[login]\nrequire_mfa_roles = []\n")
        .start()
        .await;
    let (_, token) = gw.signed_in("e@example.com", &["admin"]).await;
    assert_eq!(gw.get_with("/emptied", &token).await.0, 403);
    assert_eq!(gw.get_with("/signed-in", &token).await.0, 200);
    assert_eq!(rec.requests().len(), 1, "only the route without `roles` forwarded");

    let config = gw.dir.path().join("gateway.toml");
    let text = cli(&config, &["policy", "explain", "GET", "/emptied", "--role", "admin"]).stdout;
    assert!(text.contains("roles = [] allows nobody"), "{text}");
    assert!(text.contains("decision: 403"), "{text}");
    let policies = gw.dir.path().join("policies");
    let text = cli(&config, &["policy", "check", policies.to_str().unwrap()]).text;
    assert!(text.contains("roles = [] allows nobody"), "{text}");
}
