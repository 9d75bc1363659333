//! Account attributes: set by `portcullis user attr` (through the running gateway's
//! socket and with it stopped), carried in refreshed tokens, compared by owner-by-
//! attribute routes against path tricks, forwarded as `X-Auth-Attr-*` (and never taken
//! from a client), and understood by `policy test` and `policy explain`.

mod common;

use common::{cli, Recorder, Setup, TestGateway, OPEN_POLICY};
use serde_json::json;

const POLICY: &str = r#"
upstream = "rec"

[[route]]
name = "own record"
methods = ["GET"]
path = "/api/users/{id}"
owner = { segment = "id", attribute = "customer_id" }

[[test]]
request = "GET /api/users/42"
as = { user = "u-1", attributes = { customer_id = "42" } }
expect = "allow"

[[test]]
request = "GET /api/users/43"
as = { user = "u-1", attributes = { customer_id = "42" } }
expect = "deny"

[[test]]
request = "GET /api/users/42"
as = { user = "u-1" }
expect = "deny"
"#;

async fn gateway(rec: &Recorder) -> TestGateway {
    Setup::new(&[("rec", rec.url())], POLICY)
        .many_auth_requests()
        .start()
        .await
}

/// Sets attributes as `portcullis user attr set` does.
async fn set_attr(gw: &TestGateway, email: &str, key: &str, value: &str) {
    let set = [(key.to_owned(), value.to_owned())].into_iter().collect();
    gw.auth().change_attributes(email, set, Vec::new()).await.unwrap();
}

/// Logs in: (access token, refresh token).
async fn tokens(gw: &TestGateway, email: &str) -> (String, String) {
    let (status, body) = gw.login(email, common::PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// The status of a raw `GET target` with a bearer token.
async fn raw_get(gw: &TestGateway, target: &str, token: &str) -> u16 {
    gw.raw(&format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    ))
    .await
    .status
}

// The `{id}` segment must equal the caller's `customer_id`: 42 gets /api/users/42 and
// not 43; a caller without the attribute gets neither. Path tricks never reach another
// record: dot segments and an encoded `/` are refused before the policy, `%34%32` is
// the canonical 42 (decoded, and forwarded as 42), a trailing slash is another path.
#[tokio::test(flavor = "multi_thread")]
async fn ownership_by_attribute() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec).await;
    gw.add_user("c42@example.com", &["customer"]).await;
    set_attr(&gw, "c42@example.com", "customer_id", "42").await;
    let (t42, _) = tokens(&gw, "c42@example.com").await;
    let (_, t_none) = gw.signed_in("none@example.com", &["customer"]).await;

    assert_eq!(raw_get(&gw, "/api/users/42", &t42).await, 200);
    assert_eq!(raw_get(&gw, "/api/users/43", &t42).await, 403);
    assert_eq!(raw_get(&gw, "/api/users/42", &t_none).await, 403);
    assert_eq!(raw_get(&gw, "/api/users/", &t_none).await, 404);
    for trick in [
        "/api/users/42/../43",
        "/api/users/42/%2e%2e/43",
        "/api/users/42%2F43",
        "/api/users/42%2f..%2f43",
        "/api/users//43",
    ] {
        assert_eq!(raw_get(&gw, trick, &t42).await, 400, "{trick}");
    }
    assert_eq!(
        raw_get(&gw, "/api/users/42/", &t42).await,
        404,
        "a trailing slash is no route"
    );
    assert_eq!(raw_get(&gw, "/api/users/43?id=42", &t42).await, 403);
    assert_eq!(raw_get(&gw, "/api/users/42;43", &t42).await, 403);
    assert_eq!(
        raw_get(&gw, "/api/users/%34%32", &t42).await,
        200,
        "the canonical form of 42"
    );
    assert_eq!(raw_get(&gw, "/api/users/%34%33", &t42).await, 403);
    let targets: Vec<String> = rec.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, ["/api/users/42", "/api/users/42"]);
    for r in rec.requests() {
        assert_eq!(r.headers["x-auth-attr-customer-id"], "42");
    }
}

// `user attr set` through the running gateway's socket: the old access token stops
// working at once, the refresh token still works and its new access token carries the
// attribute (forwarded as X-Auth-Attr-Customer-Id). The change is audited with the
// key, not the value. Then with the gateway stopped: `unset` and another `set`, seen
// after a restart, with the same effect on the tokens issued before.
#[tokio::test(flavor = "multi_thread")]
async fn cli_while_running_and_stopped() {
    let rec = Recorder::start().await;
    let mut gw = gateway(&rec).await;
    let config = gw.dir.path().join("gateway.toml");
    gw.add_user("ann@example.com", &["customer"]).await;
    let (old, refresh) = tokens(&gw, "ann@example.com").await;
    assert_eq!(gw.get_with("/api/users/k9-zz", &old).await.0, 403);

    let out = cli(
        &config,
        &[
            "user",
            "attr",
            "set",
            "ann@example.com",
            "customer_id=k9-zz",
            "tier=gold",
        ],
    );
    assert!(out.ok, "{}", out.text);
    assert_eq!(gw.get_with("/auth/me", &old).await.0, 401, "the old token is stale");
    let (status, pair) = gw.post("/auth/refresh", json!({ "refresh_token": refresh })).await;
    assert_eq!(status, 200, "{pair}");
    let fresh = pair["access_token"].as_str().unwrap().to_owned();
    assert_eq!(gw.get_with("/api/users/k9-zz", &fresh).await.0, 200);
    let seen = rec.requests();
    assert_eq!(seen.last().unwrap().headers["x-auth-attr-customer-id"], "k9-zz");
    assert_eq!(seen.last().unwrap().headers["x-auth-attr-tier"], "gold");

    let list = cli(&config, &["user", "attr", "list", "ann@example.com"]);
    assert!(list.ok);
    assert_eq!(list.stdout, "customer_id=k9-zz\ntier=gold\n");
    let show = cli(&config, &["user", "show", "ann@example.com", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(shown["attributes"]["customer_id"], "k9-zz");
    let events = gw.wait_for_events("user_attributes_changed", 1).await;
    assert_eq!(events.len(), 1);
    let reason = events[0].event.reason.clone().unwrap();
    assert!(reason.contains("customer_id") && reason.contains("tier"), "{reason}");
    assert!(!reason.contains("k9-zz"), "values stay out of the trail: {reason}");

    // Refusals exit non-zero and change nothing.
    for args in [
        &["user", "attr", "set", "nobody@example.com", "customer_id=1"][..],
        &["user", "attr", "list", "nobody@example.com"],
        &["user", "attr", "set", "ann@example.com", "Customer-Id=1"],
        &["user", "attr", "set", "ann@example.com", "customer_id="],
        &["user", "attr", "set", "ann@example.com", "customer_id"],
    ] {
        let out = cli(&config, args);
        assert!(!out.ok, "{args:?}: {}", out.text);
    }
    assert_eq!(gw.get_with("/api/users/k9-zz", &fresh).await.0, 200);

    // Stopped: the command opens the database itself.
    let (before, refresh) = tokens(&gw, "ann@example.com").await;
    gw.shutdown().await;
    let TestGateway { dir, .. } = gw;
    let out = cli(&config, &["user", "attr", "unset", "ann@example.com", "tier"]);
    assert!(out.ok, "{}", out.text);
    let out = cli(&config, &["user", "attr", "set", "ann@example.com", "customer_id=77"]);
    assert!(out.ok, "{}", out.text);
    let gw = TestGateway::launch(dir, &config, None).await;
    assert_eq!(
        gw.get_with("/api/users/k9-zz", &before).await.0,
        401,
        "stale after a restart too"
    );
    let (status, pair) = gw.post("/auth/refresh", json!({ "refresh_token": refresh })).await;
    assert_eq!(status, 200, "{pair}");
    let fresh = pair["access_token"].as_str().unwrap();
    assert_eq!(gw.get_with("/api/users/77", fresh).await.0, 200);
    assert_eq!(gw.get_with("/api/users/k9-zz", fresh).await.0, 403);
    let last = rec.requests().last().unwrap().clone();
    assert!(last.headers.get("x-auth-attr-tier").is_none());
    assert_eq!(gw.audit_events("user_attributes_changed").await.len(), 3);
}

// A client's own attribute headers never reach the upstream, in any spelling; the
// upstream hears only the attributes of the verified caller.
#[tokio::test(flavor = "multi_thread")]
async fn client_attribute_headers_stripped() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    gw.add_user("c@example.com", &["customer"]).await;
    set_attr(&gw, "c@example.com", "customer_id", "7").await;
    let token = gw.access_token("c@example.com").await;
    for bearer in [None, Some(token.as_str())] {
        let mut req = gw
            .client
            .get(gw.url("/anything"))
            .header("X-Auth-Attr-Customer-Id", "42")
            .header("x_auth_attr_customer_id", "42")
            .header("X-Auth-Attr-Role", "admin");
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.unwrap().status(), 200);
    }
    let seen = rec.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        let attrs: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(n, _)| n.as_str().replace('_', "-").starts_with("x-auth-attr"))
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let want: Vec<(String, String)> = if r.headers.contains_key("x-auth-user") {
            vec![("x-auth-attr-customer-id".into(), "7".into())]
        } else {
            Vec::new()
        };
        assert_eq!(attrs, want);
    }
}

// `policy test` runs cases with attributes (and fails a wrong one); `policy explain
// --attr` judges an owner-by-attribute route as the gateway would.
#[test]
fn policy_commands_understand_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&[("rec", "http://127.0.0.1:9".into())], POLICY);
    let config = setup.write(dir.path());
    let out = cli(&config, &["policy", "test"]);
    assert!(out.ok, "{}", out.text);
    assert!(out.text.contains("3 passed, 0 failed"), "{}", out.text);

    let explain = |extra: &[&str]| {
        let mut args = vec!["policy", "explain", "GET", "/api/users/42", "--user", "u-1"];
        args.extend_from_slice(extra);
        cli(&config, &args)
    };
    let allowed = explain(&["--attr", "customer_id=42"]);
    assert!(allowed.ok, "{}", allowed.text);
    assert!(
        allowed.stdout.contains("attributes [customer_id=42]"),
        "{}",
        allowed.stdout
    );
    assert!(allowed.stdout.contains("decision: allow"), "{}", allowed.stdout);
    let refused = explain(&["--attr", "customer_id=43"]);
    assert!(refused.stdout.contains("decision: 403"), "{}", refused.stdout);
    assert!(refused.stdout.contains("customer_id"), "{}", refused.stdout);
    assert!(!explain(&["--attr", "Bad-Key=1"]).ok);

    let wrong = POLICY.replace("expect = \"deny\"\n", "expect = \"allow\"\n");
    std::fs::write(dir.path().join("policies/test.toml"), wrong).unwrap();
    let out = cli(&config, &["policy", "test"]);
    assert!(!out.ok, "{}", out.text);
}
