//! Browsers: form login to a cookie session (`__Host-portcullis`), the session resolved
//! to the principal a bearer token gives, its end (logout, `user revoke`, idle timeout),
//! the CSRF rule for cookie-authenticated unsafe methods, the redirect to log in (never
//! to another host), and the pages themselves (headers, escaping, forms, lockout).

mod common;

use std::time::Duration;

use common::{Recorder, Setup, TestGateway, PASSWORD};
use portcullis::admin::{execute, AdminRequest};
use portcullis::audit::EventKind;
use portcullis::auth::totp;
use portcullis::clock::{Clock, ManualClock};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};

const POLICY: &str = r#"
upstream = "rec"

[[route]]
name = "app"
methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
path = "/app/{*rest}"
roles = ["customer", "admin"]

[[route]]
name = "staff"
methods = ["GET"]
path = "/staff"
roles = ["admin"]

[[route]]
name = "transfers"
methods = ["POST"]
path = "/transfers"
roles = ["customer", "admin"]
mfa_max_age = "5m"

[[route]]
name = "public"
methods = ["GET"]
path = "/public"
public = true
"#;

/// The gateway's origin as `public_url` gives it in the test configuration.
const ORIGIN: &str = "https://localhost";

async fn start(clock: Option<&ManualClock>, extra: &str) -> (TestGateway, Recorder, reqwest::Client) {
    let rec = Recorder::start().await;
    let mut setup = Setup::new(&[("rec", rec.url())], POLICY)
        .many_auth_requests()
        .extra(extra);
    if let Some(c) = clock {
        setup = setup.with_clock(c);
    }
    let gw = setup.start().await;
    let client = common::client_builder(&gw.ca_pem, gw.addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (gw, rec, client)
}

/// A gateway (see [`start`]) with customer `c@example.com` signed in through the login
/// form: the gateway, the upstream's recorder, the client and the browser's cookies.
async fn signed_in(clock: Option<&ManualClock>, extra: &str) -> (TestGateway, Recorder, reqwest::Client, Jar) {
    let (gw, rec, client) = start(clock, extra).await;
    gw.add_user("c@example.com", &["customer"]).await;
    let (jar, _) = form_login(&gw, &client, "c@example.com", "/").await;
    (gw, rec, client, jar)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_in(set: &[String], name: &str) -> Option<String> {
    set.iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|rest| rest.split(';').next().unwrap().to_owned())
}

/// A browser's cookies.
#[derive(Clone, Debug)]
struct Jar {
    session: Option<String>,
    csrf: String,
}

impl Jar {
    fn header(&self) -> String {
        match &self.session {
            Some(s) => format!("__Host-portcullis={s}; __Host-portcullis-csrf={}", self.csrf),
            None => format!("__Host-portcullis-csrf={}", self.csrf),
        }
    }
}

/// Opens the login page: the CSRF cookie it sets, and the page.
async fn login_page(gw: &TestGateway, client: &reqwest::Client, next: &str) -> (Jar, String) {
    let resp = client
        .get(gw.url(&format!("/auth/login?next={}", encode(next))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let csrf = cookie_in(&set_cookies(&resp), "__Host-portcullis-csrf").expect("a CSRF cookie");
    (Jar { session: None, csrf }, resp.text().await.unwrap())
}

/// Posts a form to `path` with the browser's cookies and its CSRF field.
async fn post_form(
    gw: &TestGateway,
    client: &reqwest::Client,
    jar: &Jar,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut all = fields.to_vec();
    all.push(("csrf", &jar.csrf));
    client
        .post(gw.url(path))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(COOKIE, jar.header())
        .body(form(&all))
        .send()
        .await
        .unwrap()
}

/// Logs in through the form (no second factor): the browser's cookies after it.
async fn form_login(gw: &TestGateway, client: &reqwest::Client, email: &str, next: &str) -> (Jar, reqwest::Response) {
    let (jar, _) = login_page(gw, client, next).await;
    let resp = post_form(
        gw,
        client,
        &jar,
        "/auth/login",
        &[("email", email), ("password", PASSWORD), ("next", next)],
    )
    .await;
    let set = set_cookies(&resp);
    let jar = Jar {
        session: cookie_in(&set, "__Host-portcullis"),
        csrf: cookie_in(&set, "__Host-portcullis-csrf").unwrap_or(jar.csrf),
    };
    (jar, resp)
}

async fn get(gw: &TestGateway, client: &reqwest::Client, jar: &Jar, path: &str) -> u16 {
    let resp = client
        .get(gw.url(path))
        .header(COOKIE, jar.header())
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

// A form login sets both cookies with the contract's attributes and sends the browser to
// `next`; the session id is opaque (not a JWT) and new at every login.
#[tokio::test]
async fn form_login_sets_cookies() {
    let (gw, _rec, client) = start(None, "").await;
    gw.add_user("c@example.com", &["customer"]).await;
    let (jar, resp) = form_login(&gw, &client, "c@example.com", "/app/orders?id=7").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/app/orders?id=7");
    let set = set_cookies(&resp);
    let session = set.iter().find(|c| c.starts_with("__Host-portcullis=")).unwrap();
    for attr in ["; Secure", "; HttpOnly", "; SameSite=Lax", "; Path=/"] {
        assert!(session.contains(attr), "{session}");
    }
    let csrf = set.iter().find(|c| c.starts_with("__Host-portcullis-csrf=")).unwrap();
    assert!(csrf.contains("; Secure") && csrf.contains("; SameSite=Lax") && csrf.contains("; Path=/"));
    assert!(!csrf.contains("HttpOnly"), "scripts read the CSRF cookie: {csrf}");
    let id = jar.session.clone().unwrap();
    assert!(id.len() >= 22 && !id.contains('.'), "opaque, at least 128 bits: {id}");
    let (again, _) = form_login(&gw, &client, "c@example.com", "/").await;
    assert_ne!(again.session, jar.session, "the id rotates at login");
    assert_eq!(gw.wait_for_events(EventKind::LoginSuccess, 2).await.len(), 2);
}

/// The status of a GET of `path` with `Cookie: cookie`, and the `Cookie` headers the
/// upstream then saw, as bytes.
async fn upstream_cookies(
    gw: &TestGateway,
    rec: &Recorder,
    client: &reqwest::Client,
    path: &str,
    cookie: &[u8],
) -> (u16, Vec<Vec<u8>>) {
    let value = reqwest::header::HeaderValue::from_bytes(cookie).unwrap();
    let resp = client.get(gw.url(path)).header(COOKIE, value).send().await.unwrap();
    let seen = rec.requests();
    let last = seen.last().unwrap();
    let cookies = last
        .headers
        .get_all(COOKIE)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    (resp.status().as_u16(), cookies)
}

// The cookie is the principal: a route for the user's role passes, another role's is
// 403; the upstream never sees the gateway's cookies, other cookies pass unchanged.
#[tokio::test]
async fn cookie_resolves_and_never_reaches_upstream() {
    let (gw, rec, client, jar) = signed_in(None, "").await;
    let resp = client
        .get(gw.url("/app/x"))
        .header(COOKIE, format!("theme=dark; {}; lang=en", jar.header()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(get(&gw, &client, &jar, "/staff").await, 403);
    let seen = rec.requests();
    let last = seen.last().unwrap();
    let cookies: Vec<_> = last
        .headers
        .get_all(COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies, ["theme=dark; lang=en"]);
    assert_eq!(last.headers["x-auth-email"], "c@example.com");
    // Another cookie's value past ASCII (UTF-8) neither hides the session from the
    // gateway nor carries it upstream; that cookie passes byte for byte.
    let mixed = format!("name=caf\u{e9}; {}", jar.header());
    for path in ["/app/x", "/public"] {
        let (status, cookies) = upstream_cookies(&gw, &rec, &client, path, mixed.as_bytes()).await;
        assert_eq!(
            (status, cookies),
            (200, vec!["name=caf\u{e9}".as_bytes().to_vec()]),
            "{path}"
        );
    }
    // A request with only the gateway's cookies reaches the upstream with no Cookie.
    assert_eq!(get(&gw, &client, &jar, "/app/y").await, 200);
    assert!(rec.requests().last().unwrap().headers.get(COOKIE).is_none());
    // An unknown session id is anonymous.
    let stale = Jar {
        session: Some("A".repeat(43)),
        csrf: jar.csrf.clone(),
    };
    assert_eq!(get(&gw, &client, &stale, "/app/x").await, 401);
    assert_eq!(get(&gw, &client, &stale, "/public").await, 200);
}

// Logout through the form ends the session and clears both cookies; the old id is then
// anonymous.
#[tokio::test]
async fn logout_clears_cookies() {
    let (gw, _rec, client, jar) = signed_in(None, "").await;
    let account = client
        .get(gw.url("/auth/account"))
        .header(COOKIE, jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(account.status(), 200);
    let page = account.text().await.unwrap();
    assert!(page.contains("c@example.com") && page.contains("customer"));
    assert!(page.contains(r#"action="/auth/logout""#));
    let resp = post_form(&gw, &client, &jar, "/auth/logout", &[]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/auth/login");
    let set = set_cookies(&resp);
    assert_eq!(set.len(), 2);
    assert!(set.iter().all(|c| c.contains("Max-Age=0")), "{set:?}");
    assert_eq!(get(&gw, &client, &jar, "/app/x").await, 401);
    let account = client
        .get(gw.url("/auth/account"))
        .header(COOKIE, jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(
        (account.status().as_u16(), &account.headers()[LOCATION]),
        (303, &"/auth/login".parse().unwrap())
    );
    assert_eq!(gw.wait_for_events(EventKind::Logout, 1).await.len(), 1);
}

// `user revoke` (the administrators' command) ends a cookie session at once, cached or
// not.
#[tokio::test]
async fn user_revoke_ends_cookie_session() {
    let (gw, _rec, client, jar) = signed_in(None, "").await;
    assert_eq!(get(&gw, &client, &jar, "/app/x").await, 200);
    let revoke = AdminRequest::Revoke {
        email: "c@example.com".into(),
    };
    execute(gw.auth(), revoke).await.unwrap();
    assert_eq!(get(&gw, &client, &jar, "/app/x").await, 401);
    // A new login after it works.
    let (jar, _) = form_login(&gw, &client, "c@example.com", "/").await;
    assert_eq!(get(&gw, &client, &jar, "/app/x").await, 200);
}

// Within one second (fake clock): a `user revoke` ends the session made before it and
// not the one made after it; a second revoke in that second ends that one too.
#[tokio::test]
async fn user_revoke_and_login_in_the_same_second() {
    let clock = ManualClock::new();
    let (gw, _rec, client, before) = signed_in(Some(&clock), "").await;
    let revoke = || AdminRequest::Revoke {
        email: "c@example.com".into(),
    };
    execute(gw.auth(), revoke()).await.unwrap();
    assert_eq!(get(&gw, &client, &before, "/app/x").await, 401);
    let (after, _) = form_login(&gw, &client, "c@example.com", "/").await;
    assert_eq!(get(&gw, &client, &after, "/app/x").await, 200, "made after the revoke");
    let (status, body) = gw.login("c@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let refresh = serde_json::json!({ "refresh_token": body["refresh_token"] });
    let (status, body) = gw.post("/auth/refresh", refresh).await;
    assert_eq!(status, 200, "a bearer session made after it refreshes: {body}");
    execute(gw.auth(), revoke()).await.unwrap();
    assert_eq!(
        get(&gw, &client, &after, "/app/x").await,
        401,
        "the second revoke covers it"
    );
    let (last, _) = form_login(&gw, &client, "c@example.com", "/").await;
    assert_eq!(get(&gw, &client, &last, "/app/x").await, 200);
}

// An attribute change keeps a cookie session and gives its next request the account as it
// is now, as a refresh does for a bearer session.
#[tokio::test]
async fn attribute_change_refreshes_cookie_session() {
    let (gw, rec, client, jar) = signed_in(None, "").await;
    assert_eq!(get(&gw, &client, &jar, "/app/x").await, 200);
    assert!(rec.requests().last().unwrap().headers.get("x-auth-attr-tier").is_none());
    let set = [("tier".to_owned(), "gold".to_owned())].into_iter().collect();
    gw.auth()
        .change_attributes("c@example.com", set, Vec::new())
        .await
        .unwrap();
    assert_eq!(get(&gw, &client, &jar, "/app/x").await, 200, "the session lives on");
    assert_eq!(rec.requests().last().unwrap().headers["x-auth-attr-tier"], "gold");
}

// `[tokens] idle_timeout` ends an unused cookie session (fake clock); use keeps it alive.
#[tokio::test]
async fn idle_timeout_ends_cookie_session() {
    let clock = ManualClock::new();
    let (gw, _rec, client, jar) =
        signed_in(Some(&clock), "[tokens]\naccess_ttl = \"1h\"\nidle_timeout = \"5m\"\n").await;
    clock.advance(Duration::from_secs(240));
    assert_eq!(get(&gw, &client, &jar, "/app/x").await, 200);
    clock.advance(Duration::from_secs(240));
    assert_eq!(get(&gw, &client, &jar, "/app/x").await, 200, "used 4 minutes ago");
    clock.advance(Duration::from_secs(301));
    assert_eq!(get(&gw, &client, &jar, "/app/x").await, 401);
    gw.auth().sweep().await;
    assert_eq!(get(&gw, &client, &jar, "/app/x").await, 401);
    assert_eq!(gw.wait_for_events(EventKind::SessionExpired, 1).await.len(), 1);
}

/// A CSRF case: the method, the extra headers, the `Cookie` header.
type Case<'a> = (reqwest::Method, Vec<(&'a str, &'a str)>, &'a str);

/// A cookie-authenticated `method` to `/app/x` with extra headers: its status and code.
async fn unsafe_request(
    gw: &TestGateway,
    client: &reqwest::Client,
    cookies: &str,
    method: reqwest::Method,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut req = client.request(method, gw.url("/app/x")).header(COOKIE, cookies);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    (status, body["error"].as_str().unwrap_or("").to_owned())
}

// CSRF: a cookie-authenticated unsafe request passes with the gateway's Origin, or with
// X-CSRF-Token equal to the CSRF cookie; without both, with another Origin, a token that
// differs from the cookie, or a token without the cookie, it is 403 `csrf`, audited.
// Bearer requests need neither; with a bearer token the cookie is ignored.
#[tokio::test]
async fn csrf_combinations() {
    let (gw, rec, client, jar) = signed_in(None, "").await;
    let both = jar.header();
    let session_only = format!("__Host-portcullis={}", jar.session.clone().unwrap());
    use reqwest::Method as M;
    let allowed: Vec<Case> = vec![
        (M::POST, vec![("origin", ORIGIN)], &both),
        (M::DELETE, vec![("origin", ORIGIN)], &session_only),
        (M::PUT, vec![("x-csrf-token", &jar.csrf)], &both),
        (
            M::PATCH,
            vec![("origin", "https://evil.example"), ("x-csrf-token", &jar.csrf)],
            &both,
        ),
    ];
    for (m, h, c) in &allowed {
        assert_eq!(unsafe_request(&gw, &client, c, m.clone(), h).await.0, 200, "{m} {h:?}");
    }
    let refused: Vec<Case> = vec![
        (M::POST, vec![], &both),
        (M::DELETE, vec![("origin", "https://evil.example")], &both),
        (M::PUT, vec![("origin", "null")], &both),
        (M::PATCH, vec![("x-csrf-token", "not-the-cookie")], &both),
        (M::POST, vec![("x-csrf-token", &jar.csrf)], &session_only),
    ];
    let before = rec.requests().len();
    for (m, h, c) in &refused {
        assert_eq!(
            unsafe_request(&gw, &client, c, m.clone(), h).await,
            (403, "csrf".to_owned()),
            "{m} {h:?}"
        );
    }
    assert_eq!(rec.requests().len(), before, "nothing refused reached the upstream");
    let denied = gw.wait_for_events(EventKind::AccessDenied, refused.len()).await;
    assert_eq!(denied.len(), refused.len());
    assert!(
        denied.iter().all(|r| r.event.reason.as_deref() == Some("csrf")),
        "{denied:?}"
    );
    assert!(denied.iter().all(|r| r.event.email.as_deref() == Some("c@example.com")));
    // Safe methods need nothing.
    assert_eq!(get(&gw, &client, &jar, "/app/x").await, 200);
    // Bearer: no Origin, no token; the cookie beside it is ignored and still stripped.
    let token = gw.access_token("c@example.com").await;
    let (status, _) = unsafe_request(
        &gw,
        &client,
        &format!("{both}; other=1"),
        M::POST,
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, 200);
    let last = rec.requests().last().unwrap().headers.clone();
    assert_eq!(last[COOKIE], "other=1");
}

// A browser's GET without credentials on a protected route is sent to log in, with the
// path and query to come back to; API clients, other methods and public routes are not.
#[tokio::test]
async fn redirect_to_login() {
    let (gw, _rec, client) = start(None, "").await;
    let html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let resp = client
        .get(gw.url("/app/orders?id=7&x=a%20b"))
        .header("accept", html)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()[LOCATION],
        "/auth/login?next=/app/orders%3Fid%3D7%26x%3Da%2520b"
    );
    let api = client
        .get(gw.url("/app/orders"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    let no_accept = client.get(gw.url("/app/orders")).send().await.unwrap();
    assert_eq!(no_accept.status(), 401);
    let post = client
        .post(gw.url("/app/orders"))
        .header("accept", html)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 401);
    let public = client
        .get(gw.url("/public"))
        .header("accept", html)
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 200);
    let missing = client
        .get(gw.url("/nowhere"))
        .header("accept", html)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

// `next` never leads off this gateway: each shape of open redirect ends at the account
// page after login, and the login page never carries it.
#[tokio::test]
async fn open_redirect_shapes() {
    let (gw, _rec, client) = start(None, "").await;
    gw.add_user("c@example.com", &["customer"]).await;
    let long = format!("/{}", "a".repeat(3000));
    let shapes = [
        "//evil.example",
        "/\\evil.example",
        "\\\\evil",
        "https://evil",
        "javascript:alert(1)",
        "%2F%2Fevil",
        "/%5Cevil",
        "/..//evil",
        "/a\r\nLocation: https://evil",
        &long,
        "/%2e%2e/",
        "/%2F/evil.example",
        "https:evil.example",
        " //evil.example",
    ];
    for next in shapes {
        let (jar, page) = login_page(&gw, &client, next).await;
        assert!(page.contains(r#"name="next" value="/auth/account""#), "{next:?}");
        let resp = post_form(
            &gw,
            &client,
            &jar,
            "/auth/login",
            &[("email", "c@example.com"), ("password", PASSWORD), ("next", next)],
        )
        .await;
        assert_eq!(resp.status(), 303, "{next:?}");
        assert_eq!(resp.headers()[LOCATION], "/auth/account", "{next:?}");
    }
}

// The pages: the security headers, the forms' fields, escaped input, the stylesheet.
#[tokio::test]
async fn pages_headers_forms_and_escaping() {
    let (gw, _rec, client) = start(None, "").await;
    for path in [
        "/auth/login",
        "/auth/register",
        "/auth/password/forgot",
        "/auth/password/reset?token=t",
    ] {
        let resp = client.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        assert_eq!(h[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(
            h["content-security-policy"],
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["referrer-policy"], "no-referrer");
        let page = resp.text().await.unwrap();
        assert!(page.contains(r#"<input type="hidden" name="csrf" value=""#), "{path}");
        assert!(page.contains(r#"<button type="submit">"#), "{path}");
    }
    let (jar, page) = login_page(&gw, &client, "/").await;
    assert!(page.contains(r#"<form method="post" action="/auth/login">"#));
    assert!(page.contains(r#"name="email""#) && page.contains(r#"type="password" name="password""#));
    assert!(page.contains(&format!(r#"name="csrf" value="{}""#, jar.csrf)));
    // Wrong credentials: the form again, the API's generic message, the input escaped.
    let evil = "<script>alert(1)</script>@example.com";
    let resp = post_form(
        &gw,
        &client,
        &jar,
        "/auth/login",
        &[("email", evil), ("password", "wrong"), ("next", "/")],
    )
    .await;
    assert_eq!(resp.status(), 401);
    let page = resp.text().await.unwrap();
    assert!(page.contains("invalid email or password"));
    assert!(!page.contains("<script>"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;@example.com"));
    // A form post without the CSRF field, or with another site's Origin, is refused.
    let no_field = client
        .post(gw.url("/auth/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(COOKIE, jar.header())
        .body(form(&[("email", "c@example.com"), ("password", PASSWORD)]))
        .send()
        .await
        .unwrap();
    assert_eq!(no_field.status(), 403);
    let cross_site = client
        .post(gw.url("/auth/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example")
        .body(form(&[
            ("email", "c@example.com"),
            ("password", PASSWORD),
            ("csrf", "forged"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    assert_eq!(gw.wait_for_events(EventKind::AccessDenied, 2).await.len(), 2);
    // Same Origin is enough without the field.
    let same_site = client
        .post(gw.url("/auth/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("origin", ORIGIN)
        .body(form(&[("email", "nobody@example.com"), ("password", "wrong")]))
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status(), 401);
    // The JSON API on the same path is unchanged.
    assert_eq!(gw.login("nobody@example.com", "wrong").await.0, 401);
    let css = client.get(gw.url("/auth/static/portcullis.css")).send().await.unwrap();
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["cache-control"], "public, max-age=3600");
    assert!(css.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/css"));
}

// Past the lockout, a form login answers like the API: 429, the generic message.
#[tokio::test]
async fn form_lockout_like_api() {
    let (gw, _rec, client) = start(None, "").await;
    gw.add_user("c@example.com", &["customer"]).await;
    let (jar, _) = login_page(&gw, &client, "/").await;
    let mut last = 0;
    for _ in 0..8 {
        let resp = post_form(
            &gw,
            &client,
            &jar,
            "/auth/login",
            &[("email", "c@example.com"), ("password", "Wrong!Passw0rd")],
        )
        .await;
        last = resp.status().as_u16();
    }
    assert_eq!(last, 429);
    let resp = post_form(
        &gw,
        &client,
        &jar,
        "/auth/login",
        &[("email", "c@example.com"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("too many failed attempts; try again later"));
    assert_eq!(gw.login("c@example.com", PASSWORD).await.0, 429);
}

// Staff enrol TOTP through the pages: the QR code and secret, the code form, the
// recovery codes once, then the session; a later login asks for the code, and a wrong
// one shows the form again. Step-up with the cookie rotates the id.
#[tokio::test]
async fn totp_enrolment_and_step_up_through_pages() {
    let clock = ManualClock::new();
    let (gw, _rec, client) = start(Some(&clock), "[tokens]\naccess_ttl = \"1h\"\n").await;
    gw.add_user("a@example.com", &["admin"]).await;
    let (jar, _) = login_page(&gw, &client, "/staff").await;
    let fields = [("email", "a@example.com"), ("password", PASSWORD), ("next", "/staff")];
    let resp = post_form(&gw, &client, &jar, "/auth/login", &fields).await;
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains(r#"<img class="qr" src="data:image/png;base64,"#),
        "{page}"
    );
    assert!(page.contains(r#"<form method="post" action="/auth/mfa">"#));
    let token = between(&page, r#"name="mfa_token" value=""#, "\"");
    let secret = between(&page, r#"<span class="secret">"#, "<");
    let code = totp::code_at(&secret, clock.now()).unwrap();
    let resp = post_form(
        &gw,
        &client,
        &jar,
        "/auth/mfa",
        &[("mfa_token", &token), ("code", &code), ("next", "/staff")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let set = set_cookies(&resp);
    let page = resp.text().await.unwrap();
    assert_eq!(page.matches("<li>").count(), 10, "ten recovery codes: {page}");
    assert!(page.contains(r#"href="/staff""#));
    let first = Jar {
        session: cookie_in(&set, "__Host-portcullis"),
        csrf: cookie_in(&set, "__Host-portcullis-csrf").unwrap(),
    };
    assert_eq!(get(&gw, &client, &first, "/staff").await, 200);

    // The next login asks for the code; a wrong one shows the form again.
    clock.advance(Duration::from_secs(60));
    let resp = post_form(&gw, &client, &jar, "/auth/login", &fields).await;
    let page = resp.text().await.unwrap();
    let token = between(&page, r#"name="mfa_token" value=""#, "\"");
    let wrong = post_form(
        &gw,
        &client,
        &jar,
        "/auth/mfa",
        &[("mfa_token", &token), ("code", "000000")],
    )
    .await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains(r#"action="/auth/mfa""#));

    // Past mfa_max_age, the cookie session steps up; its id rotates.
    clock.advance(Duration::from_secs(600));
    let transfer = |jar: Jar| {
        let c = client.clone();
        let url = gw.url("/transfers");
        async move {
            c.post(url)
                .header(COOKIE, jar.header())
                .header("x-csrf-token", jar.csrf.clone())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(transfer(first.clone()).await, 401);
    let code = totp::code_at(&secret, clock.now()).unwrap();
    let resp = client
        .post(gw.url("/auth/step-up"))
        .header(COOKIE, first.header())
        .header("x-csrf-token", first.csrf.clone())
        .json(&serde_json::json!({ "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let rotated = Jar {
        session: cookie_in(&set_cookies(&resp), "__Host-portcullis"),
        csrf: first.csrf.clone(),
    };
    assert_ne!(rotated.session, first.session);
    assert_eq!(transfer(rotated).await, 200);
    assert_eq!(get(&gw, &client, &first, "/staff").await, 401, "the old id is over");
}

fn between(text: &str, start: &str, end: &str) -> String {
    let at = text.find(start).unwrap_or_else(|| panic!("no {start} in {text}")) + start.len();
    text[at..].split(end).next().unwrap().to_owned()
}

// Registration and the forgotten-password pair through the pages: the same generic
// answers as the API, the mails, and a reset that ends the browser's session; `user
// disable` ends one too.
#[tokio::test]
async fn register_and_reset_pages() {
    let (gw, _rec, client) = start(None, "").await;
    let (jar, _) = login_page(&gw, &client, "/").await;
    let resp = post_form(
        &gw,
        &client,
        &jar,
        "/auth/register",
        &[("email", "new@example.com"), ("name", "New"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(resp.status(), 202);
    assert_eq!(gw.outbox().len(), 1, "the confirmation mail");
    let weak = post_form(
        &gw,
        &client,
        &jar,
        "/auth/register",
        &[("email", "weak@example.com"), ("name", "W"), ("password", "short")],
    )
    .await;
    assert_eq!(weak.status(), 422);
    assert!(weak.text().await.unwrap().contains(r#"action="/auth/register""#));

    gw.add_user("c@example.com", &["customer"]).await;
    let (session, _) = form_login(&gw, &client, "c@example.com", "/").await;
    assert_eq!(get(&gw, &client, &session, "/app/x").await, 200);
    let mails = gw.outbox().len();
    for email in ["c@example.com", "nobody@example.com"] {
        let resp = post_form(&gw, &client, &jar, "/auth/password/forgot", &[("email", email)]).await;
        assert_eq!(resp.status(), 202, "the same answer for {email}");
        assert!(resp.text().await.unwrap().contains("If an account has this address"));
    }
    let outbox = gw.outbox();
    assert_eq!(outbox.len(), mails + 1, "one mail, to the real account");
    let token = common::confirmation_token(outbox.last().unwrap());
    let page = client
        .get(gw.url(&format!("/auth/password/reset?token={token}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!(r#"name="token" value="{token}""#)));
    let bad = post_form(
        &gw,
        &client,
        &jar,
        "/auth/password/reset",
        &[("token", "made-up"), ("password", "N3w!Passw0rd-long")],
    )
    .await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("the token is invalid or expired"));
    let ok = post_form(
        &gw,
        &client,
        &jar,
        "/auth/password/reset",
        &[("token", &token), ("password", "N3w!Passw0rd-long")],
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        get(&gw, &client, &session, "/app/x").await,
        401,
        "the reset ended the session"
    );

    gw.add_user("d@example.com", &["customer"]).await;
    let (session, _) = form_login(&gw, &client, "d@example.com", "/").await;
    assert_eq!(get(&gw, &client, &session, "/app/x").await, 200);
    let disable = AdminRequest::Disable {
        email: "d@example.com".into(),
    };
    execute(gw.auth(), disable).await.unwrap();
    assert_eq!(get(&gw, &client, &session, "/app/x").await, 401);
}

/// Asks `/auth/verify` about `method path` with the browser's cookies, as nginx passes
/// them on, and `origin` if any.
async fn verify_with_cookie(
    gw: &TestGateway,
    client: &reqwest::Client,
    jar: &Jar,
    method: &str,
    path: &str,
    origin: Option<&str>,
) -> reqwest::Response {
    let mut req = client
        .get(gw.url("/auth/verify"))
        .header(COOKIE, jar.header())
        .header("x-original-method", method)
        .header("x-original-uri", path);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send().await.unwrap()
}

// Forward-auth takes the session cookie the browser sent the other proxy: the same
// principal (identity headers), the role refused, and for an unsafe method the same CSRF
// rule as at the gateway (the client's Origin, or 403 csrf).
#[tokio::test]
async fn forward_auth_with_the_cookie() {
    let (gw, rec, client, jar) = signed_in(None, "").await;
    let resp = verify_with_cookie(&gw, &client, &jar, "GET", "/app/orders", None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-auth-email"], "c@example.com");
    assert_eq!(
        verify_with_cookie(&gw, &client, &jar, "GET", "/staff", None)
            .await
            .status(),
        403
    );
    let refused = verify_with_cookie(&gw, &client, &jar, "POST", "/app/orders", None).await;
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "csrf", "{body}");
    let allowed = verify_with_cookie(&gw, &client, &jar, "POST", "/app/orders", Some(ORIGIN)).await;
    assert_eq!(allowed.status(), 200);
    assert!(rec.requests().is_empty(), "forward-auth forwards nothing");
}
