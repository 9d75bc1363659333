//! `[registration]`: off by default (`/auth/register` is then a path without a route),
//! the roles and attributes a self-registered account gets, the allowed email domains,
//! and the start-up errors of a bad table.

mod common;

use common::{cli, confirmation_token, Recorder, Setup, PASSWORD};
use portcullis::Config;
use serde_json::{json, Value};

const POLICY: &str = r#"
upstream = "rec"

[[route]]
name = "readers"
methods = ["GET"]
path = "/api/docs"
roles = ["reader"]
"#;

const ROLES: &str = "[roles]\nreader = { description = \"reads\" }\neditor = { description = \"edits\" }\n";

fn register_body(email: &str) -> Value {
    json!({ "email": email, "password": PASSWORD, "name": "New" })
}

/// The status and body of a request, without the request id (which differs each time).
async fn answer(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let mut body: Value = resp.json().await.unwrap_or(Value::Null);
    if let Some(o) = body.as_object_mut() {
        o.remove("request_id");
    }
    (status, body)
}

// Registration off (no table): POST /auth/register and GET /auth/confirm answer exactly
// as a path without a route, and no account or mail is made.
#[tokio::test(flavor = "multi_thread")]
async fn off_is_not_found() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], POLICY)
        .registration(None)
        .start()
        .await;
    let register = answer(
        gw.client
            .post(gw.url("/auth/register"))
            .json(&register_body("a@example.com")),
    )
    .await;
    let unrouted = answer(gw.client.post(gw.url("/nowhere")).json(&register_body("a@example.com"))).await;
    assert_eq!(register.0, 404);
    assert_eq!(register.1["error"], "not_found");
    assert_eq!(register, unrouted);
    let confirm = answer(gw.client.get(gw.url("/auth/confirm?token=abc"))).await;
    assert_eq!(confirm, unrouted);
    assert!(gw
        .auth()
        .store()
        .user_by_email("a@example.com")
        .await
        .unwrap()
        .is_none());
    assert!(gw.outbox().is_empty());
    assert!(rec.requests().is_empty());
}

// Turned on, a confirmed self-registered account holds `default_roles` (and
// `default_attributes`): the upstream receives them, and a route of one of those roles
// lets it through. `require_mfa_roles` defaults to none: nobody is asked to enrol.
#[tokio::test(flavor = "multi_thread")]
async fn default_roles_and_attributes() {
    let rec = Recorder::start().await;
    let mut setup = Setup::new(&[("rec", rec.url())], POLICY)
        .registration(Some(
            "[registration]\nenabled = true\ndefault_roles = [\"reader\", \"editor\"]\ndefault_attributes = { plan = \"free\" }\n",
        ))
        .extra(ROLES);
    setup.login = String::new();
    let gw = setup.start().await;
    assert_eq!(gw.post("/auth/register", register_body("New@Example.com")).await.0, 202);
    let token = confirmation_token(gw.outbox().last().unwrap());
    assert_eq!(gw.confirm(&token).await, 200);
    let (status, body) = gw.login("new@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().expect("no enrolment asked for");
    assert_eq!(gw.get_with("/api/docs", access).await.0, 200);
    let seen = rec.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["x-auth-roles"], "reader,editor");
    assert_eq!(seen[0].headers["x-auth-attr-plan"], "free");
    // An account made by an administrator with a staff-like role is not asked either.
    gw.add_user("boss@example.com", &["editor"]).await;
    let (status, body) = gw.login("boss@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    assert!(body["access_token"].is_string(), "{body}");
}

// `allowed_domains` takes the domain whole, in any case, and nothing else: subdomains
// and suffixes are refused with 403 `domain_not_allowed`, the same answer whether the
// address has an account or not.
#[tokio::test(flavor = "multi_thread")]
async fn allowed_domains() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], POLICY)
        .registration(Some(
            "[registration]\nenabled = true\ndefault_roles = [\"customer\"]\nallowed_domains = [\"Shop.Example\"]\n",
        ))
        .many_auth_requests()
        .start()
        .await;
    gw.add_user("staff@other.example", &["customer"]).await;
    let refused = answer(
        gw.client
            .post(gw.url("/auth/register"))
            .json(&register_body("nobody@other.example")),
    )
    .await;
    assert_eq!(refused.0, 403);
    assert_eq!(refused.1["error"], "domain_not_allowed");
    for email in [
        "staff@other.example",
        "x@evil.shop.example",
        "x@shop.example.evil",
        "x@hop.example",
        "shop.example@evil.example",
    ] {
        let got = answer(gw.client.post(gw.url("/auth/register")).json(&register_body(email))).await;
        assert_eq!(got, refused, "{email}");
    }
    assert!(gw.outbox().is_empty(), "no mail for a refused domain");
    for email in ["X@SHOP.EXAMPLE", " y@Shop.Example "] {
        assert_eq!(gw.post("/auth/register", register_body(email)).await.0, 202, "{email}");
    }
    assert_eq!(gw.outbox().len(), 2);
    assert!(gw
        .auth()
        .store()
        .user_by_email("x@shop.example")
        .await
        .unwrap()
        .is_some());
}

// A bad table stops start-up with file, line and key: an undeclared default role,
// registration on without roles, an empty domain list.
#[tokio::test(flavor = "multi_thread")]
async fn bad_tables_refuse_to_start() {
    for (table, line, col, want) in [
        (
            "[registration]\nenabled = true\ndefault_roles = [\"reader\", \"customer\"]\n",
            3,
            28,
            "[registration] default_roles: role \"customer\" is not declared in [roles]",
        ),
        (
            "[registration]\nenabled = true\n",
            2,
            11,
            "[registration] default_roles: registration is enabled: name the roles",
        ),
        (
            "[registration]\nenabled = true\ndefault_roles = [\"reader\"]\nallowed_domains = []\n",
            4,
            19,
            "[registration] allowed_domains: an empty list lets nobody register",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup::new(&[("rec", "http://127.0.0.1:9".into())], POLICY)
            .registration(None)
            .extra(ROLES)
            .extra(table);
        let path = setup.write(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().position(|l| l == "[registration]").unwrap() + 1;
        let err = Config::load(&path).unwrap_err().to_string();
        let at = format!("gateway.toml:{}:{col}: {want}", first + line - 1);
        assert!(err.contains(&at), "{err}\nwanted {at}");
        let out = cli(&path, &["serve"]);
        assert!(!out.ok);
        assert!(out.stderr.contains(&at), "{}", out.stderr);
    }
}
